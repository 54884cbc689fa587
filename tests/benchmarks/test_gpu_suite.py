"""benchmarks/gpu_suite.py: --smoke runs every measurement end to end (CPU, tiny shapes) and writes the JSON the
results page is filled from; the real shapes have the released parameter counts; a failure, an out-of-memory
error or an exhausted time budget is recorded instead of stopping the suite."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks/gpu_suite.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


TOP_KEYS = {"suite", "smoke", "started", "device", "versions", "config", "videos", "models", "wall_s", "budget_left_s",
            "complete"}
TIMED_KEYS = ("step_s", "peak_memory_gb", "model_tflop_per_step", "achieved_tflops", "mfu")


@pytest.mark.slow
def test_smoke_run_measures_everything(tmp_path):
    out = tmp_path / "gpu_suite.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--work", str(tmp_path / "work")]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wall = time.time() - t0
    result = json.loads(out.read_text())

    assert TOP_KEYS <= set(result), TOP_KEYS - set(result)
    assert result["complete"] is True
    assert result["smoke"] is True and result["device"]["type"] == "cpu" and result["device"]["dtype"] == "float32"
    assert positive(result["device"]["peak_bf16_tflops"])
    assert result["versions"]["torch"] == torch.__version__.split("+")[0]
    assert result["versions"]["transformers"] and result["versions"]["trl"]
    assert result["config"]["budget_s"] == 420 and result["config"]["frames"] == 8
    assert result["wall_s"] < wall

    assert list(result["models"]) == ["qwen2_5_vl_3b", "qwen3_vl_8b"]
    for key, family in (("qwen2_5_vl_3b", "qwen2_5_vl"), ("qwen3_vl_8b", "qwen3_vl")):
        model = result["models"][key]
        assert model["family"] == family and model["shape_name"] == f"{family}_tiny"
        assert positive(model["parameters"]["total"]) and positive(model["parameters"]["text_flop_params"])
        assert model["processor"]["merge_size"] == 2 and model["processor"]["temporal_patch_size"] == 2
        assert model["processor"]["patch_size"] == (14 if family == "qwen2_5_vl" else 16)
        m = model["measurements"]
        assert set(m) == {"sft", "grpo", "generate"}

        sft = m["sft"]
        assert sft["status"] == "ok", sft
        for k in TIMED_KEYS + ("tokens_per_step", "tokens_per_s", "collate_s", "video_tokens_per_sample"):
            assert positive(sft[k]), (key, "sft", k, sft.get(k))
        assert sft["timed_reps"] == 1 and sft["batch_size"] == 2

        grpo = m["grpo"]
        assert grpo["status"] == "ok", grpo
        for arm in ("naive", "shared"):  # both arms measured
            for k in TIMED_KEYS + ("rollout_s", "train_s", "text_tokens", "completion_tokens_per_s"):
                assert positive(grpo[arm][k]), (key, arm, k, grpo[arm].get(k))
            assert grpo[arm]["status"] == "ok" and grpo[arm]["timed_reps"] == 1
        # the shared prefix runs each prompt once: fewer videos encoded and fewer language-model tokens per step
        assert grpo["shared"]["vision_forwards"] < grpo["naive"]["vision_forwards"]
        assert grpo["shared"]["text_tokens"] < grpo["naive"]["text_tokens"]
        assert grpo["shared"]["model_tflop_per_step"] < grpo["naive"]["model_tflop_per_step"]
        assert positive(grpo["shared_speedup"]) and grpo["num_generations"] == 2

        gen = m["generate"]
        assert gen["status"] == "ok", gen
        for k in TIMED_KEYS + ("tokens_per_s", "prefill_s", "prompt_tokens"):
            assert positive(gen[k]), (key, "generate", k, gen.get(k))
        assert gen["new_tokens"] == 8  # greedy, no early stop


def test_real_shapes_have_the_released_parameter_counts(suite):
    from transformers import AutoModelForImageTextToText

    class Tokenizer:  # the special-token ids are all the config takes from a tokenizer
        def __len__(self):
            return 484

        def convert_tokens_to_ids(self, token):
            return suite.ROLE_TOKENS.index(token) + 100

    released = {"qwen2_5_vl_3b": 3_754_622_976, "qwen3_vl_8b": 8_767_123_696}  # the checkpoints' safetensors totals
    for key, total in released.items():
        shape = suite.shapes_for(key)
        config, ids = suite.build_config(shape["family"], shape, Tokenizer())
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
        counts = suite.param_counts(model)
        assert counts["total"] == total, (key, counts)
        assert config.text_config.vocab_size == 151936 and config.video_token_id == ids["<|video_pad|>"]
        assert counts["text_flop_params"] < counts["total"] - counts["vision"] + counts["output_head"]


def test_a_failure_is_recorded_and_an_out_of_memory_error_retried_smaller(suite):
    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    record = suite.run_guarded(oom, retry=lambda: {"status": "ok", "step_s": 1.0})
    assert record["status"] == "ok" and record["first_attempt"]["out_of_memory"] is True
    assert "OutOfMemoryError" in record["first_attempt"]["error"]

    def missing_kernel():
        raise RuntimeError("no kernel image is available for execution on the device")

    record = suite.run_guarded(missing_kernel, retry=lambda: pytest.fail("retried after an error that is not OOM"))
    assert record["status"] == "error" and record["out_of_memory"] is False
    assert "no kernel image" in record["error"] and "missing_kernel" in record["traceback_tail"]

    record = suite.run_guarded(oom, retry=oom)  # the retry fails too: both errors are kept
    assert record["status"] == "error" and record["first_attempt"]["status"] == "error"


def test_the_time_budget_cuts_repetitions_and_is_shared_by_weight(suite):
    device = suite.Device(smoke=True, peak_tflops=2.0)
    calls = []

    def step(rep):
        calls.append(rep)
        return {"step_s": 0.01, "peak_memory_gb": 1.0, "model_flops": 2e10}

    spent = suite.Budget(5.0, start=time.perf_counter() - 10)  # already over
    warm, done = suite.timed_reps(step, 3, deadline=time.perf_counter() + 100, budget=spent)
    assert calls == [0] and done == []
    summary = suite.summarise(warm, done, (), device)
    assert summary["status"] == "warmup_only" and summary["mfu"] == pytest.approx(2e10 / 0.01 / 2e12)

    calls.clear()
    warm, done = suite.timed_reps(step, 3, deadline=time.perf_counter() + 100, budget=suite.Budget(100))
    assert calls == [0, 1, 2, 3] and suite.summarise(warm, done, (), device)["status"] == "ok"

    budget = suite.Budget(100.0)
    budget.plan = [("a/sft", 1.0), ("a/grpo", 3.0)]
    assert budget.share("a/sft") == pytest.approx(budget.left() / 4, rel=0.01)
    assert budget.share("a/grpo") == pytest.approx(budget.left(), rel=0.01)


def test_peak_table_matches_device_names(suite):
    assert suite.peak_for("NVIDIA H200")[0] == 989.0
    assert suite.peak_for("NVIDIA H100 PCIe")[0] == 756.0
    assert suite.peak_for("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert suite.peak_for("NVIDIA L40S")[0] == 362.0
    assert suite.peak_for("NVIDIA GeForce GTX 1080") == (None, None)
