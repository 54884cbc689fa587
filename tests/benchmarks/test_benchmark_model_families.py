"""benchmarks/model_families.py --quick runs end to end and writes every key the results page relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAMILY_KEYS = {
    "family", "time_representation", "miou", "r1_05", "r1_07", "format_rate", "eval_samples",
    "better_baseline_miou", "margin_over_better_baseline", "learns_grounding", "learning_curve", "curve_area",
    "first_step_over_baseline_plus_margin", "sft_s_per_step", "tokens_per_sample", "grpo",
    "shared_prefix_step_ratio", "time_reading", "wall_s", "loadavg_before", "loadavg_after",
}
TOP_KEYS = {
    "command", "date", "machine", "python", "torch_threads", "budget", "world", "baselines", "better_baseline_miou",
    "margin", "families", "fastest_learner", "wall_s", "loadavg_1_5_15_before", "loadavg_1_5_15_after",
}


@pytest.mark.slow
def test_quick_run_writes_every_key(tmp_path):
    out = tmp_path / "model_families.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/model_families.py"), "--quick",
           "--families", "qwen2_5_vl,qwen3_5", "--work", str(tmp_path / "work"),
           "--frame-cache", str(tmp_path / "frames"), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())

    assert TOP_KEYS <= set(result), TOP_KEYS - set(result)
    assert result["quick"] is True and result["torch_threads"] == 1
    assert result["budget"]["steps"] == 4 and result["world"]["eval_samples"] == 8
    assert set(result["baselines"]) == {"baseline_mean_span_miou", "baseline_whole_video_miou"}
    assert result["better_baseline_miou"] == pytest.approx(max(result["baselines"].values()), abs=1e-4)

    rows = {f["family"]: f for f in result["families"]}
    assert list(rows) == ["qwen2_5_vl", "qwen3_5"]
    for family, row in rows.items():
        assert "error" not in row, row
        assert FAMILY_KEYS <= set(row), (family, FAMILY_KEYS - set(row))
        assert 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["format_rate"] <= 1.0
        assert row["learns_grounding"] == (row["miou"] >= row["better_baseline_miou"] + result["margin"])
        assert [pt["step"] for pt in row["learning_curve"]] == [1, 3, 4]  # 1/3, 2/3 and 3/3 of 4 steps
        assert row["sft_s_per_step"] > 0 and row["tokens_per_sample"] > 0
        assert set(row["time_reading"]) == {"answers", "center_partial_corr", "pred_center_residual_std_s"}
    # the prompt carries the video: far more tokens than the ~70-token target
    assert rows["qwen2_5_vl"]["tokens_per_sample"] > 100
    assert rows["qwen2_5_vl"]["time_representation"] == "mrope-seconds"
    assert rows["qwen3_5"]["time_representation"] == "text-timestamps"
    # Qwen2.5-VL runs shared prefix and is timed; Qwen3.5's is refused by the library, with its reason
    assert rows["qwen2_5_vl"]["shared_prefix_step_ratio"] > 0
    assert rows["qwen3_5"]["shared_prefix_step_ratio"] is None
    assert "linear-attention" in rows["qwen3_5"]["grpo"]["refused"]
    assert result["fastest_learner"]["family"] in rows
