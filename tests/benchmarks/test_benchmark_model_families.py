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


AREAS = {"qwen2_vl": 0.3, "qwen2_5_vl": 0.2, "qwen3_5": 0.1, "llava_onevision": 0.15}


def _part(families, wall, **overrides):
    rows = [{"family": f, "time_representation": "t", "miou": 0.4, "r1_05": 0.3, "r1_07": 0.1, "format_rate": 1.0,
             "better_baseline_miou": 0.33, "learns_grounding": False, "sft_s_per_step": 1.0, "tokens_per_sample": 200.0,
             "shared_prefix_step_ratio": None, "learning_curve": [{"step": 3, "miou": 0.4}],
             "curve_area": AREAS[f]} for f in families]
    return {"command": f"benchmarks/model_families.py --families {','.join(families)}", "date": "2026-01-01T00:00:00",
            "quick": False, "budget": {"steps": 1050}, "world": {"dir": "w"}, "baselines": {"b": 0.33},
            "better_baseline_miou": 0.33, "margin": 0.1, "families": rows, "wall_s": wall,
            "loadavg_1_5_15_before": [1, 1, 1], "loadavg_1_5_15_after": [2, 2, 2], **overrides}


def _merge(tmp_path, *parts):
    files = []
    for i, part in enumerate(parts):
        files.append(tmp_path / f"part{i}.json")
        files[-1].write_text(json.dumps(part))
    out = tmp_path / "merged.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/model_families.py"), "--merge", *map(str, files),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return proc, out


def test_merge_joins_parts_of_one_measurement_in_library_order(tmp_path):
    proc, out = _merge(tmp_path, _part(["qwen3_5", "qwen2_vl"], 900.0), _part(["llava_onevision", "qwen2_5_vl"], 1200.0))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [f["family"] for f in result["families"]] == ["qwen2_vl", "qwen2_5_vl", "qwen3_5", "llava_onevision"]
    assert result["wall_s"] == 1200.0  # the parts ran side by side: the longest one
    assert [p["families"] for p in result["parts"]] == [["qwen3_5", "qwen2_vl"], ["llava_onevision", "qwen2_5_vl"]]
    assert result["fastest_learner"]["family"] == "qwen2_vl"  # the largest curve area of the four


def test_merge_refuses_parts_of_different_budgets_or_repeated_families(tmp_path):
    proc, _ = _merge(tmp_path, _part(["qwen3_5"], 1.0), _part(["qwen2_vl"], 1.0, budget={"steps": 105}))
    assert proc.returncode != 0 and "'budget' differs" in proc.stderr and "part1.json" in proc.stderr
    proc, _ = _merge(tmp_path, _part(["qwen3_5"], 1.0), _part(["qwen3_5"], 1.0))
    assert proc.returncode != 0 and "'qwen3_5' is also in" in proc.stderr
