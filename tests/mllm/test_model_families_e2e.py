"""Each video-LLM family through the project's own entry points, as a user runs them on a model folder:
``recipes/sft.py --model_name_or_path DIR``, ``recipes/grpo.py --curriculum`` on the SFT checkpoint,
``vtg-rl predict --model``, ``data_agents/reflect.py`` and ``data_agents/difficulty.py``.

(Qwen2.5-VL, the default family, runs through the same entry points in test_sft / test_grpo / test_agents.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ["qwen2_vl", "qwen3_vl", "qwen3_5", "llava_onevision"]


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_through_the_entry_points(family, tiny_family_dirs, synthetic_world, tmp_path):
    model = str(tiny_family_dirs(family))
    world = str(synthetic_world["train"].parent)
    py = sys.executable
    common = ["--synthetic_dir", world, "--max_eval_samples", "2", "--eval_batch_size", "2", "--report_to", "none",
              "--frame_cache_dir", str(tmp_path / "frames")]
    run([py, str(REPO / "recipes/sft.py"), "--model_name_or_path", model, "--output_dir", str(tmp_path / "sft"),
         "--max_steps", "2", "--max_train_samples", "4", "--per_device_train_batch_size", "2", "--bf16", "false",
         "--save_steps", "2", *common], REPO)
    sft_ckpt = tmp_path / "sft" / "checkpoint-final"
    assert (sft_ckpt / "config.json").is_file()
    assert json.loads((tmp_path / "sft" / "eval_after.json").read_text())["n"] == 2

    out = run([py, str(REPO / "recipes/grpo.py"), "--model_name_or_path", str(sft_ckpt), "--output_dir",
               str(tmp_path / "grpo"), "--max_steps", "1", "--max_train_samples", "4",
               "--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length", "8",
               "--curriculum", "--save_steps", "1", *common], REPO)
    assert (tmp_path / "grpo" / "checkpoint-final" / "config.json").is_file()
    assert f"for the {family} model" in out  # the shared-prefix choice follows the family

    out = run([py, "-m", "vtg_rl.cli", "predict", "--model", str(tmp_path / "grpo" / "checkpoint-final"), "--json",
               str(Path(world) / "videos" / "v0_000000.mp4"), "when does the red circle appear?"], REPO)
    assert "spans" in out or "[" in out

    data = str(synthetic_world["val"])
    run([py, str(REPO / "data_agents/reflect.py"), "--model", model, "--data", data, "--out",
         str(tmp_path / "agents" / "clean.jsonl"), "--num_rollouts", "2", "--max_new_tokens", "8"], REPO)
    summary = json.loads((tmp_path / "agents" / "clean.summary.json").read_text())
    assert summary
    run([py, str(REPO / "data_agents/difficulty.py"), "--model", model, "--data", data, "--out",
         str(tmp_path / "agents" / "difficulty.jsonl"), "--num_rollouts", "2", "--max_new_tokens", "8"], REPO)
    rows = [json.loads(x) for x in (tmp_path / "agents" / "difficulty.jsonl").read_text().splitlines()]
    assert rows and all("difficulty" in r["meta"] for r in rows)
