"""`vtg-rl eval`: table + JSON on the hand-computed fixture, clear errors, and a submission the
project writes itself for the synthetic world."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from vtg_rl.cli import main
from vtg_rl.data.schema import read_jsonl
from vtg_rl.metrics import write_submission

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
REFERENCE_BRIEF_KEYS = [
    "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-long-mAP",
    "MR-middle-mAP", "MR-short-mAP", "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP", "HL-min-Good-Hit1",
    "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1",
]


def test_eval_prints_a_table_and_writes_the_reference_brief(tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = main(["eval", "--pred", str(FIXTURES / "qvh_preds.jsonl"), "--gt", str(FIXTURES / "qvh_gt_raw.jsonl"),
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "moment retrieval" in printed and "highlights" in printed
    assert any(line.split()[:3] == ["full", "3", "77.78"] for line in printed.splitlines())
    result = json.loads(out.read_text())
    assert list(result["brief"]) == REFERENCE_BRIEF_KEYS
    assert result["brief"]["MR-full-mAP"] == 77.78 and result["brief"]["HL-min-VeryGood-mAP"] == 48.15
    assert set(result) >= {"brief", "full", "short", "middle", "long", "HL-min-Fair", "meta"}


def test_eval_default_out_is_next_to_the_predictions(tmp_path):
    pred = tmp_path / "run_preds.jsonl"
    pred.write_text((FIXTURES / "qvh_preds.jsonl").read_text())
    assert main(["eval", "--pred", str(pred), "--gt", str(FIXTURES / "qvh_gt_raw.jsonl"), "--protocol", "tacos"]) == 0
    brief = json.loads((tmp_path / "run_preds_metrics.json").read_text())["brief"]
    assert list(brief) == ["R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU", "mAP"]


def test_eval_errors_name_the_qid_without_a_traceback(tmp_path, capsys):
    pred = tmp_path / "bad.jsonl"
    rows = [json.loads(line) for line in (FIXTURES / "qvh_preds.jsonl").read_text().splitlines()]
    rows[1]["pred_relevant_windows"][0] = [9.0, 3.0, 0.9]
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["eval", "--pred", str(pred), "--gt", str(FIXTURES / "qvh_gt_raw.jsonl"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "qid 2: window 0 starts after it ends" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()

    pred.write_text("".join(json.dumps(r) + "\n" for r in rows[:1]))
    assert main(["eval", "--pred", str(pred), "--gt", str(FIXTURES / "qvh_gt_raw.jsonl")]) == 2
    assert "qid 2: no prediction" in capsys.readouterr().err
    assert main(["eval", "--pred", str(pred), "--gt", str(FIXTURES / "qvh_gt_raw.jsonl"), "--allow-missing",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["meta"]["num_missing"] == 2

    assert main(["eval", "--pred", str(tmp_path / "nope.jsonl"), "--gt", str(FIXTURES / "qvh_gt_raw.jsonl")]) == 2
    assert "no such prediction file" in capsys.readouterr().err


def test_eval_on_a_project_written_submission_for_the_synthetic_world(synthetic_world, tmp_path):
    samples = read_jsonl(synthetic_world["val"])
    assert samples
    rows = []
    for i, s in enumerate(samples):
        start, end = s.windows[0]
        # even samples: the annotated window (IoU 1); odd ones: a zero-length window (IoU 0)
        window = [start, end, 0.9] if i % 2 == 0 else [start, start, 0.9]
        n_clips = math.ceil(s.duration / 2)
        saliency = [1.0 if c in (s.relevant_clip_ids or []) else 0.0 for c in range(n_clips)]
        rows.append({"qid": s.qid, "pred_relevant_windows": [[0.0, s.duration, 0.1], window],
                     "pred_saliency_scores": saliency})
    pred = write_submission(tmp_path / "preds.jsonl", rows)
    out = tmp_path / "metrics.json"
    # through the installed entry point's module, as a user runs it
    proc = subprocess.run([sys.executable, "-m", "vtg_rl.cli", "eval", "--pred", str(pred),
                           "--gt", str(synthetic_world["val"]), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    hits = sum(1 for i in range(len(samples)) if i % 2 == 0)
    # write_submission listed the 0.9-scored window first, so R1 sees it
    assert result["brief"]["MR-full-R1@0.7"] == round(100 * hits / len(samples), 2)
    assert result["full"]["num_queries"] == len(samples)
    # saliency = 1 on the labelled clips: the top clip is the first labelled one (first maximum)
    fair_hits = [bool(s.saliency_scores) and max(s.saliency_scores[0]) >= 2 for s in samples]
    assert result["brief"]["HL-min-Fair-Hit1"] == round(100 * sum(fair_hits) / len(samples), 2)
    assert list(result["brief"]) == REFERENCE_BRIEF_KEYS
