"""`vtg-rl infer`: the recipes' own numbers from a checkpoint, resume after kill -9, and 1 process == 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vtg_rl.cli import main as cli_main
from vtg_rl.data.schema import read_jsonl, write_jsonl
from vtg_rl.infer.shards import check_settings, differences, partial_files, shard

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(ROOT)}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _scores(pred: Path, gt: Path, tmp_path: Path) -> dict:
    metrics = tmp_path / f"{pred.stem}_metrics.json"
    assert cli_main(["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(metrics)]) == 0
    return json.loads(metrics.read_text())


# --------------------------------------------------------------------------- fast
def test_shards_are_whole_batches_whatever_the_number_of_processes():
    items = list(range(23))
    for world in (1, 2, 3, 5):
        parts = [shard(items, 4, r, world) for r in range(world)]
        assert sorted(x for p in parts for x in p) == items
        batches = {tuple(p[i:i + 4]) for p in parts for i in range(0, len(p), 4)}
        assert batches == {tuple(items[i:i + 4]) for i in range(0, 23, 4)}


def test_a_resume_with_other_settings_is_refused_naming_the_difference(tmp_path):
    out = tmp_path / "preds.jsonl"
    (tmp_path / "preds.partial.jsonl").write_text('{"qid": "a", "pred_relevant_windows": [[0, 1, 1]]}\n')
    before = {"model": "/m", "batch_size": 4, "video": {"fps": 2.0}}
    (tmp_path / "preds.partial.config.json").write_text(json.dumps(before))
    check_settings(out, before)  # the same settings resume
    with pytest.raises(ValueError, match=r"batch_size: 4 -> 8; video.fps: 2.0 -> 1.0"):
        check_settings(out, {**before, "batch_size": 8, "video": {"fps": 1.0}})
    assert differences({"a": 1}, {"a": 1, "b": 2}) == ["b: \"(unset)\" -> 2"]
    (tmp_path / "preds.partial.rank1.jsonl").write_text("")
    (tmp_path / "preds.partial.rank1.config.json").write_text("{}")
    assert [p.name for p in partial_files(out)] == ["preds.partial.jsonl", "preds.partial.rank1.jsonl"]


def test_clear_errors(tiny_qwen_dir, synthetic_world, tmp_path, capsys):
    out = str(tmp_path / "p.jsonl")
    assert cli_main(["infer", "--model", str(tmp_path), "--data", str(synthetic_world["test"]), "--out", out]) == 2
    assert "neither a video-LLM checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(synthetic_world["test"].read_text().splitlines()[0][:-1] + "\n")
    assert cli_main(["infer", "--model", str(tiny_qwen_dir), "--data", str(bad), "--out", out]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert cli_main(["infer", "--model", str(tiny_qwen_dir), "--data", str(synthetic_world["test"]),
                         "--out", out, "--vllm", "--no-probe"]) == 2
        assert "--vllm needs vLLM" in capsys.readouterr().err
    assert not list(tmp_path.glob("p.*"))


# --------------------------------------------------------------------------- the recipes' numbers
def _noisy_copy(model_dir, out: Path) -> Path:
    """The tiny Qwen with noise on its language model: its greedy answers are varied, input-dependent text
    (the untrained one repeats one token), so equal completions mean equal prompts, frames and settings."""
    import torch

    from vtg_rl.models.tiny_qwen import load_qwen_vl

    model, processor = load_qwen_vl(model_dir)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "language_model" in name or "embed" in name or "lm_head" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.mark.slow
def test_llm_infer_then_eval_gives_the_sft_recipes_numbers(tiny_qwen_dir, synthetic_world, tmp_path, monkeypatch):
    import vtg_rl.mllm.inference as inference
    from vtg_rl.mllm.sft import VideoSFTConfig
    from vtg_rl.mllm.sft_recipe import SFTScriptArguments, run_sft

    generated = []  # every generate_answers result, in call order
    real = inference.generate_answers
    monkeypatch.setattr(inference, "generate_answers", lambda *a, **k: generated.append(real(*a, **k)) or generated[-1])

    start = _noisy_copy(tiny_qwen_dir, tmp_path / "start")
    script = SFTScriptArguments(synthetic_dir=str(synthetic_world["test"].parent), max_train_samples=4,
                                max_eval_samples=None, eval_batch_size=2, eval_before=False)
    model_args = SimpleNamespace(model_name_or_path=str(start), dtype="float32", attn_implementation=None,
                                 trust_remote_code=False, use_peft=False)
    run = tmp_path / "sft"
    # bf16=False: with mixed precision the recipe scores its in-memory model under the trainer's autocast
    # wrapper, which checkpoint-final (float32 weights) does not carry
    args = VideoSFTConfig(output_dir=str(run), per_device_train_batch_size=2, max_steps=2, save_strategy="no",
                          report_to=[], use_cpu=True, learning_rate=1e-3, bf16=False)
    run_sft(script, args, model_args)
    after = json.loads((run / "eval_after.json").read_text())
    recipe_texts = [c for call in generated for c in call]
    generated.clear()

    pred = tmp_path / "preds.jsonl"
    assert cli_main(["infer", "--model", str(run / "checkpoint-final"), "--data", str(synthetic_world["test"]),
                     "--out", str(pred), "--batch-size", "2", "--no-progress"]) == 0
    assert [c for call in generated for c in call] == recipe_texts
    assert len({c[0] for c in recipe_texts}) == 4  # varied answers, not one repeated token
    assert _rows(pred) == _rows(run / "eval_after_submission.jsonl")
    full = _scores(pred, synthetic_world["test"], tmp_path)["full"]
    assert full["num_queries"] == after["n"] == 4
    assert full["MR-mIoU"] == pytest.approx(100 * after["miou"], abs=0.01)
    for key, thr in (("r1_03", "0.3"), ("r1_05", "0.5"), ("r1_07", "0.7")):
        assert full["MR-R1"][thr] == pytest.approx(100 * after[key], abs=0.01)
    assert not list(tmp_path.glob("preds.partial*")) and not list(tmp_path.glob("preds*.lock"))


@pytest.fixture(scope="module")
def girl_detr(tiny_clip_dir, synthetic_world, tmp_path_factory):
    """A GIRL-DETR head trained a few steps by the recipe, which also scored it on the test split."""
    from vtg_rl.heads.girl_detr.recipe import run_girl_detr
    from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig

    tmp = tmp_path_factory.mktemp("girl_detr")
    cfg = GirlDetrTrainingConfig(
        output_dir=str(tmp / "run"), max_steps=4, learning_rate=1e-3, hidden_dim=32, num_heads=4, ffn_dim=64,
        synthetic_dir=str(synthetic_world["train"].parent), clip_model=str(tiny_clip_dir),
        feature_root=str(tmp / "features"), clip_len=1.0, per_device_train_batch_size=8,
        per_device_eval_batch_size=4, report_to=[], disable_tqdm=True, use_cpu=True, save_strategy="no",
        eval_strategy="no")
    metrics = run_girl_detr(cfg)
    # every split in one file, for the long runs below
    everything = tmp / "all.jsonl"
    write_jsonl([s for split in ("train", "val", "test") for s in read_jsonl(synthetic_world[split])], everything)
    return SimpleNamespace(final=tmp / "run" / "final", run=tmp / "run", features=tmp / "features",
                           metrics=metrics, everything=everything)


@pytest.mark.slow
def test_head_infer_then_eval_gives_the_girl_detr_recipes_numbers(girl_detr, synthetic_world, tmp_path):
    pred = tmp_path / "preds.jsonl"
    assert cli_main(["infer", "--model", str(girl_detr.final), "--data", str(synthetic_world["test"]),
                     "--out", str(pred), "--batch-size", "4", "--no-progress"]) == 0
    assert _rows(pred) == _rows(girl_detr.run / "predictions_test.jsonl")  # features extracted afresh
    assert not (tmp_path / "preds.features").exists()
    brief = _scores(pred, synthetic_world["test"], tmp_path)["brief"]
    recipe = girl_detr.metrics["eval"]
    for key in ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-R1@0.7", "HL-min-VeryGood-mAP"):
        assert brief[key] == recipe[key], key
    # the recipe's own feature folder is reused (and kept)
    again = tmp_path / "again.jsonl"
    assert cli_main(["infer", "--model", str(girl_detr.final), "--data", str(synthetic_world["test"]),
                     "--out", str(again), "--batch-size", "4", "--feature-root", str(girl_detr.features),
                     "--no-progress"]) == 0
    assert again.read_bytes() == pred.read_bytes() and girl_detr.features.is_dir()


# --------------------------------------------------------------------------- resume and processes
def _infer_cmd(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vtg_rl.cli", "infer", "--model", str(model), "--data", str(data),
            "--out", str(out), "--batch-size", "2", "--device", "cpu", "--no-progress", *extra]


def _run(cmd: list[str], timeout: int = 600) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


@pytest.mark.slow
def test_a_run_killed_midway_resumes_to_the_uninterrupted_output(girl_detr, tmp_path):
    data, n = girl_detr.everything, len(read_jsonl(girl_detr.everything))
    whole = tmp_path / "whole" / "preds.jsonl"  # the reference reuses the recipe's features; the killed run extracts
    _run(_infer_cmd(girl_detr.final, data, whole, "--feature-root", str(girl_detr.features)))
    assert [r["qid"] for r in _rows(whole)] == [s.qid for s in read_jsonl(data)]

    out = tmp_path / "killed" / "preds.jsonl"
    partial = out.with_name("preds.partial.jsonl")
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(_infer_cmd(girl_detr.final, data, out), cwd=ROOT, env=ENV, stdout=log, stderr=log)
    deadline = time.time() + 300
    while _complete_lines(partial) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "infer finished (or failed) before it could be killed; see killed.log"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = _complete_lines(partial)
    assert 2 <= done < n
    with partial.open("ab") as f:  # a write cut short by the kill
        f.write(b'{"qid": "q0_0000')

    # other settings are refused, naming the difference, and touch nothing
    before = partial.read_bytes()
    proc = subprocess.run(_infer_cmd(girl_detr.final, data, out, "--top-k", "5"), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "top_k: 10 -> 5" in proc.stderr, proc.stderr[-3000:]
    assert partial.read_bytes() == before

    _run(_infer_cmd(girl_detr.final, data, out))
    rows = _rows(out)
    assert len(rows) == len({r["qid"] for r in rows}) == n
    assert out.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["preds.jsonl"]  # partial, config, lock, features gone


@pytest.mark.slow
def test_two_gloo_processes_predict_what_one_does(girl_detr, tmp_path):
    data = girl_detr.everything
    features = ["--feature-root", str(girl_detr.features)]
    one = tmp_path / "one" / "preds.jsonl"
    _run(_infer_cmd(girl_detr.final, data, one, *features))
    two = tmp_path / "two" / "preds.jsonl"
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
          str(_free_port()), "-m", *_infer_cmd(girl_detr.final, data, two, *features)[2:]])
    assert two.read_bytes() == one.read_bytes()
    assert sorted(p.name for p in two.parent.iterdir()) == ["preds.jsonl"]
