"""The demo report on a fake runs folder: baselines, gains with standard errors, noise wording, index.html."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from vtg_rl.report import Stage, gains, render_report, write_report
from vtg_rl.report.index import write_index, write_views
from vtg_rl.report.stats import baseline_ious, describe_gain, paired, se, submission_ious
from vtg_rl.data.schema import read_jsonl

N = 40
DUR = 30.0


def _sample(i: int, window, split: str) -> dict:
    return {"qid": f"{split}{i}", "vid": f"v{split}{i}", "duration": DUR, "query": f"shape {i}",
            "windows": [window], "video_path": f"videos/v{split}{i}.mp4", "meta": {}}


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _sub(path, windows):
    _jsonl(path, [{"qid": f"test{i}", "pred_relevant_windows": [[s, e, 1.0]]} for i, (s, e) in enumerate(windows)])


@pytest.fixture
def run(tmp_path):
    """A runs folder as make demo leaves it, with made-up predictions whose IoUs are known."""
    gt = [[3.0 + (i % 5) * 4, 9.0 + (i % 5) * 4] for i in range(N)]  # 6 s events at 5 places
    _jsonl(tmp_path / "world/test.jsonl", [_sample(i, w, "test") for i, w in enumerate(gt)])
    _jsonl(tmp_path / "world/train.jsonl", [_sample(i, [6.0, 18.0], "train") for i in range(10)])
    # SFT: exact on the first 30 queries, a disjoint span on the last 10 -> mIoU 0.75
    _sub(tmp_path / "sft/sub.jsonl", [w if i < 30 else [29.0, 30.0] for i, w in enumerate(gt)])
    (tmp_path / "sft/metrics.json").write_text(json.dumps({"miou": 0.75}))
    # GRPO: one more query exact -> +0.025, a tiny change on 40 queries
    _sub(tmp_path / "grpo/sub.jsonl", [w if i < 31 else [29.0, 30.0] for i, w in enumerate(gt)])
    (tmp_path / "sft/curves.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "agents").mkdir()
    _jsonl(tmp_path / "agents/cleaned.jsonl", [_sample(i, [6.0, 18.0], "train") for i in range(3)])
    _jsonl(tmp_path / "agents/cleaned.flagged.jsonl", [_sample(9, [6.0, 18.0], "train")])
    (tmp_path / "stage_times.tsv").write_text("world\t60\tran\nsft\t700\tran\t3.10 2.50 2.00\nsft\t0\treused\t1.00 1.00 1.00\ngrpo\t0\treused\n")
    stages = [Stage("SFT", "sft/metrics.json", plots=["sft/curves.png"], submission="sft/sub.jsonl", view_name="SFT"),
              Stage("GRPO", "grpo/metrics.json", submission="grpo/sub.jsonl", previous="SFT", view_name="GRPO"),
              Stage("head", "head/metrics.json", submission="head/sub.jsonl", previous="GRPO")]
    return tmp_path, stages, gt


def test_standard_errors():
    x = np.array([0.0, 1.0, 1.0, 0.0])
    assert se(x) == pytest.approx(np.std(x, ddof=1) / 2)
    d, e = paired(np.array([1.0, 0.5, 0.2]), np.array([0.5, 0.5, 0.1]))
    assert d == pytest.approx(0.2) and e == pytest.approx(np.std([0.5, 0.0, 0.1], ddof=1) / math.sqrt(3))
    assert describe_gain(0.01, 0.01) == "+0.010 ± 0.010 (within noise)"
    assert describe_gain(0.10, 0.01) == "+0.100 ± 0.010"
    assert describe_gain(-0.05, 0.01) == "-0.050 ± 0.010"


def test_baselines_and_stage_ious(run):
    root, stages, gt = run
    test, train = read_jsonl(root / "world/test.jsonl"), read_jsonl(root / "world/train.jsonl")
    base = baseline_ious(train, test)
    whole = np.array([6.0 / DUR] * N)  # a 6 s event in a 30 s video
    assert base["whole video"] == pytest.approx(whole)
    mean_span = [max(0.0, min(18, e) - max(6, s)) / (max(18, e) - min(6, s)) for s, e in gt]
    assert base["mean span"] == pytest.approx(mean_span)
    assert 0 < base["random span"].mean() < base["whole video"].mean() + 0.2
    iou, missing = submission_ious(root / "sft/sub.jsonl", test)
    assert missing == 0 and iou.mean() == pytest.approx(0.75)
    # a query with no row scores 0 and is counted
    (root / "short.jsonl").write_text(json.dumps({"qid": "test0", "pred_relevant_windows": [[3.0, 9.0, 1]]}) + "\n")
    iou, missing = submission_ious(root / "short.jsonl", test)
    assert missing == N - 1 and iou[0] == 1.0 and iou[1:].sum() == 0


def test_report_opens_with_baselines_and_says_gains(run):
    root, stages, gt = run
    text = render_report(root, stages)
    g = gains(root, stages)
    assert g["n"] == N and g["better_baseline"] == max(g["baselines"], key=lambda k: g["baselines"][k]["miou"])
    # the baselines come first, before any stage row
    first_stage = text.index("| SFT |")
    for name in ("mean span", "whole video", "random span"):
        assert text.index(f"| baseline: {name}") < first_stage
    # SFT: mIoU with its standard error, and its gain over the better baseline with the paired SE
    sft_iou = np.array([1.0] * 30 + [0.0] * 10)
    assert f"| SFT | 0.750 ± {se(sft_iou):.3f} |" in text
    better = g["baselines"][g["better_baseline"]]["miou"]
    assert re.search(r"\| SFT \| [^\n]*\| " + re.escape(f"{0.75 - better:+.3f} ± "), text)
    # GRPO vs SFT: +0.025 on 40 queries is within noise, and the report says so in words
    grpo_vs_sft = paired(np.array([1.0] * 31 + [0.0] * 9), sft_iou)
    assert grpo_vs_sft[0] == pytest.approx(0.025)
    assert f"{grpo_vs_sft[0]:+.3f} ± {grpo_vs_sft[1]:.3f} (within noise) vs SFT" in text
    assert "GRPO vs SFT: +0.025" in text and "**within noise**" in text
    # SFT clears the baseline by many SE: not called noise
    assert re.search(r"- SFT vs baseline: [^\n]*better by \d+\.\d SE", text)
    # a stage without predictions is listed, not dropped; the old full-metrics table is still there
    assert "| head | - | - | - | - | - | no predictions (head/sub.jsonl) |" in text
    assert "| SFT | 0.750 | - |" in text and "not run (grpo/metrics.json missing)" in text
    # stage times: the last run that did the work; reused-only stages say so
    assert "| sft | 11m40s | 3.10 2.50 2.00 |" in text and "| grpo | reused (no measured run) | - |" in text
    assert "| world | 1m00s | - |" in text and "| total | 12m40s | |" in text


def test_report_without_a_world_keeps_the_plain_table(tmp_path):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "eval_after.json").write_text(json.dumps({"miou": 0.5}))
    text = render_report(tmp_path, [Stage("SFT", "sft/eval_after.json")])
    assert "Baselines and gains" not in text and "| SFT | 0.500 |" in text


def test_index_links_report_plots_and_viewer_pages(run):
    root, stages, gt = run
    write_report(root, stages)
    assert json.loads((root / "report.json").read_text())["stages"]["SFT"]["miou"] == pytest.approx(0.75)
    views = write_views(root, stages)
    index = write_index(root, stages, gains(root, stages), views)
    page = index.read_text()
    hrefs = re.findall(r'href="([^"]+)"', page)
    for h in ("REPORT.md", "report.json", "view_heldout.html", "view_flagged.html", "sft/curves.png", "sft/sub.jsonl"):
        assert h in hrefs
    for h in hrefs:  # every link resolves to a file in the runs folder
        assert (root / h).is_file(), h
    heldout = (root / "view_heldout.html").read_text()
    assert '"name":"SFT"' in heldout and '"name":"GRPO"' in heldout
    assert "test39" in heldout
    assert "train9" in (root / "view_flagged.html").read_text()  # the flagged sample is on the review page
    assert "baseline: whole video" in page and "within noise" in page
