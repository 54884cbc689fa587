"""vtg_rl.metrics: hand-computed values of every metric, the reference's rules (greedy matching,
ties, first-10, splits, HL binarisation), error messages, files, and the vectorised code against a
plain per-query loop on random submissions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vtg_rl.data.schema import VTGSample, write_jsonl
from vtg_rl.metrics import (SubmissionError, evaluate, load_ground_truth, read_submission, write_submission)
from vtg_rl.metrics.highlights import highlight_ap
from vtg_rl.metrics.moment_retrieval import average_precision, pairwise_ious

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
THRESHOLDS = ("0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95")


def gt_row(qid, windows, duration=150, **kw):
    return {"qid": qid, "duration": duration, "relevant_windows": windows, **kw}


def pred_row(qid, windows, **kw):
    return {"qid": qid, "pred_relevant_windows": windows, **kw}


def mr_map(pred_windows, gt_windows):
    """mAP block of a single query under the charades protocol (no saliency)."""
    return evaluate([pred_row(1, pred_windows)], [gt_row(1, gt_windows)], protocol="charades")["full"]["MR-mAP"]


# --------------------------------------------------------------------------- moment retrieval mAP
def test_map_greedy_one_to_one_matching():
    # A hits gt0, B duplicates A (gt0 already taken -> false positive), C hits gt1:
    # tp = [1, 0, 1]; precision = [1, 1/2, 2/3]; recall = [1/2, 1/2, 1]
    # interpolated precision = [1, 2/3, 2/3] -> AP = 1/2 * 1 + 1/2 * 2/3 = 0.8333
    m = mr_map([[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.7]], [[0, 10], [20, 30]])
    assert all(m[t] == 83.33 for t in THRESHOLDS)
    assert m["average"] == 83.33


def test_map_sorts_by_score_not_listing():
    # listed C, A, B but the scores order them A, B, C: the same AP as above
    m = mr_map([[20, 30, 0.7], [0, 10, 0.9], [0, 10, 0.8]], [[0, 10], [20, 30]])
    assert m["average"] == 83.33


def test_map_score_ties_keep_the_listed_order():
    gt = [[0, 10]]
    # equal scores: the miss listed first ranks first -> precision 1/2 at full recall
    assert mr_map([[50, 60, 0.5], [0, 10, 0.5]], gt)["average"] == 50.0
    assert mr_map([[0, 10, 0.5], [50, 60, 0.5]], gt)["average"] == 100.0


def test_map_iou_ties_take_the_later_ground_truth():
    # P1 = [1, 5] has IoU 0.6 with both gt [0, 4] and gt [2, 6]; the reference walks a reversed
    # argsort, so P1 takes the later one, [2, 6]. P2 = [2, 6] (lower score) then finds [2, 6]
    # taken and [0, 4] at IoU 1/3: a false positive.
    #   thresholds 0.5-0.6: tp = [1, 0] -> AP = 1/2
    #   thresholds 0.65+  : P1 misses; P2 takes [2, 6]: precision [0, 1/2], recall [0, 1/2] -> AP = 1/4
    m = mr_map([[1, 5, 0.9], [2, 6, 0.8]], [[0, 4], [2, 6]])
    assert [m[t] for t in THRESHOLDS] == [50.0] * 3 + [25.0] * 7
    assert m["average"] == 32.5  # (3 * 0.5 + 7 * 0.25) / 10


def test_map_uses_only_the_first_ten_listed_windows():
    misses = [[100 + i, 101 + i, 0.9] for i in range(10)]
    assert mr_map(misses + [[0, 10, 1.0]], [[0, 10]])["average"] == 0.0  # the 11th, best-scored hit is cut
    assert mr_map(misses[:9] + [[0, 10, 1.0]], [[0, 10]])["average"] == 100.0


def test_map_threshold_boundaries():
    # IoU exactly 0.5 and 0.75 count (>=)
    m = mr_map([[0, 10, 1.0]], [[0, 5]])  # IoU 0.5
    assert m["0.5"] == 100.0 and m["0.55"] == 0.0
    m = mr_map([[0, 4, 1.0]], [[0, 3]])  # IoU 0.75
    assert m["0.75"] == 100.0 and m["0.8"] == 0.0


def test_zero_length_and_out_of_range_predictions_are_scored():
    gt = [gt_row(1, [[0, 10]], duration=10), gt_row(2, [[0, 10]], duration=10)]
    pred = [pred_row(1, [[5, 5, 1.0]]),          # zero length: IoU 0
            pred_row(2, [[-5, 12, 1.0]])]        # out of range: IoU 10/17 = 0.588, scored as is
    r = evaluate(pred, gt, protocol="charades")
    assert r["brief"]["R1@0.5"] == 50.0
    assert r["brief"]["R1@0.7"] == 0.0
    assert r["brief"]["mIoU"] == round(100 * (10 / 17) / 2, 2)


# --------------------------------------------------------------------------- R1 / R5 / mIoU
def test_r1_uses_the_first_listed_window_and_the_best_ground_truth():
    gt = [gt_row(1, [[0, 10], [40, 50]])]
    # the first listed window hits the *second* gt window exactly; a later, higher-scored one misses
    r = evaluate([pred_row(1, [[40, 50, 0.1], [80, 90, 0.9]])], gt, protocol="qvhighlights")
    assert r["full"]["MR-R1"]["0.95"] == 100.0
    assert any("decreasing score" in n for n in r["meta"]["notes"])


def test_r5_and_miou():
    gt = [gt_row(1, [[0, 10]]), gt_row(2, [[0, 10]])]
    misses = [[50 + i, 51 + i, 1 - i / 10] for i in range(5)]
    pred = [pred_row(1, [[0, 5, 1.0]] + misses),      # top-1 IoU 0.5
            pred_row(2, misses + [[0, 10, 0.1]])]     # the hit is 6th: outside R5
    b = evaluate(pred, gt, protocol="tacos")["brief"]
    assert b["R1@0.5"] == 50.0 and b["R1@0.7"] == 0.0
    assert b["R5@0.5"] == 50.0 and b["R5@0.3"] == 50.0
    assert b["mIoU"] == 25.0  # (0.5 + 0) / 2
    pred[1] = pred_row(2, misses[:4] + [[0, 10, 0.1]])  # now 5th: inside R5
    assert evaluate(pred, gt, protocol="tacos")["brief"]["R5@0.7"] == 50.0


def test_windows_without_scores_rank_in_listed_order():
    r = evaluate([pred_row(1, [[50, 60], [0, 10]])], [gt_row(1, [[0, 10]])], protocol="charades")
    assert r["full"]["MR-mAP"]["average"] == 50.0  # miss first, hit second


# --------------------------------------------------------------------------- splits + fixture
def test_length_splits_keep_only_in_range_ground_truth():
    gt = [gt_row(1, [[0, 8], [20, 60]])]  # 8 s (short) and 40 s (long)
    pred = [pred_row(1, [[20, 60, 0.9]])]
    r = evaluate(pred, gt)
    assert r["full"]["MR-mAP"]["average"] == 50.0   # one of two windows found
    assert r["long"]["MR-mAP"]["average"] == 100.0  # only the long window is ground truth here
    assert r["short"]["MR-mAP"]["average"] == 0.0   # the prediction is a false positive here
    assert r["middle"]["num_queries"] == 0 and r["middle"]["MR-mAP"]["average"] is None
    assert r["short"]["MR-R1"]["0.5"] == 0.0 and r["long"]["MR-R1"]["0.5"] == 100.0


def test_boundary_lengths_fall_in_the_lower_split():
    r = evaluate([pred_row(1, [[0, 10, 1.0]]), pred_row(2, [[0, 30, 1.0]])],
                 [gt_row(1, [[0, 10]]), gt_row(2, [[0, 30]])])
    assert r["short"]["num_queries"] == 1 and r["middle"]["num_queries"] == 1 and r["long"]["num_queries"] == 0


def test_qvhighlights_fixture_hand_computed():
    r = evaluate(FIXTURES / "qvh_preds.jsonl", FIXTURES / "qvh_gt_raw.jsonl")
    # MR: per-query AP 1 (exact), 0.8333 (duplicate + second window), 0.5 (miss then hit)
    # R1: q1 and q2 hit, q3's first window misses
    # short = q1, q2 (windows of 6 s and 10 s); long = q3 (50 s); no middle window
    # HL, q1 (5 clips, pred 0.1 .9 .5 .5 .2): Fair APs 1, 0.8333, 0; Good 0.8333, 0.3333, 0;
    # VeryGood 1, 0.3333, 0. q2: all labels 0 -> AP 0, top clip negative. q3: the single labelled
    # clip is the top one -> AP 1 for all annotators and levels, a hit.
    expected = {
        "MR-full-R1@0.5": 66.67, "MR-full-R1@0.7": 66.67, "MR-full-mAP": 77.78, "MR-full-mAP@0.5": 77.78,
        "MR-full-mAP@0.75": 77.78, "MR-long-mAP": 50.0, "MR-middle-mAP": None, "MR-short-mAP": 91.67,
        "HL-min-Fair-mAP": 53.7, "HL-min-Fair-Hit1": 66.67, "HL-min-Good-mAP": 46.3, "HL-min-Good-Hit1": 66.67,
        "HL-min-VeryGood-mAP": 48.15, "HL-min-VeryGood-Hit1": 66.67,
    }
    assert r["brief"] == expected
    assert list(r["brief"]) == list(expected)  # the reference's key order


# --------------------------------------------------------------------------- highlights
def hl(gt_kw, saliency, duration):
    gt = [gt_row(1, [[0, 2]], duration=duration, **gt_kw)]
    return evaluate([pred_row(1, [[0, 2, 1.0]], pred_saliency_scores=saliency)], gt)


def test_hl_ties_and_unweighted_mean_over_recall_steps():
    # one annotator-free check of the AP flavour: labels [0,1,1,1,0], scores with a tie at 0.5:
    # thresholds 0.9 (p 1, r 1/3) and 0.5 (p 1, r 1) -> AP 1; labels [0,1,0,1,0] -> (1 + 2/3) / 2
    scores = np.array([[0.1, 0.9, 0.5, 0.5, 0.2]])
    valid = np.ones_like(scores, dtype=bool)
    labels = np.array([[[0, 1, 1, 1, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]], dtype=float)
    ap = highlight_ap(scores, valid, labels, np.ones((1, 4), dtype=bool))
    np.testing.assert_allclose(ap, [[1.0, (1 + 2 / 3) / 2, 0.0, 1.0]])


def test_hl_prediction_cut_and_zero_padded_to_the_clip_count():
    # 4 clips (8 s); clip 0 is positive for every annotator
    gt_kw = {"relevant_clip_ids": [0], "saliency_scores": [[2, 2, 2]]}
    # longer prediction: cut to 4 clips (all 0 -> one tie group -> precision 1/4); its top clip
    # (index 5) lies beyond the video: a miss
    r = hl(gt_kw, [0, 0, 0, 0, 0, 1.0], duration=8)
    assert r["HL-min-Fair"] == {"HL-mAP": 25.0, "HL-Hit1": 0.0}
    # shorter prediction: padded with zeros, clip 0 on top -> AP 1 and a hit
    r = hl(gt_kw, [1.0], duration=8)
    assert r["HL-min-Fair"] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}
    # Good needs >= 3: every label is 0 -> AP 0
    assert r["HL-min-Good"]["HL-mAP"] == 0.0


def test_hl_hit_is_any_annotator_and_first_maximum():
    gt_kw = {"relevant_clip_ids": [1, 2], "saliency_scores": [[0, 0, 4], [1, 1, 1]]}
    r = hl(gt_kw, [0.0, 0.7, 0.7, 0.1], duration=8)  # tie 0.7: clip 1 (first) -> third annotator's 4
    assert r["HL-min-VeryGood"]["HL-Hit1"] == 100.0
    r = hl(gt_kw, [0.0, 0.6, 0.7, 0.1], duration=8)  # clip 2: all 1 -> below Fair
    assert r["HL-min-Fair"]["HL-Hit1"] == 0.0


def test_hl_partial_last_clip_extends_the_clip_count():
    # a 9 s video has int(9 / 2) = 4 clips in the reference, but the synthetic world labels the
    # final partial clip (id 4): it is kept instead of failing
    gt_kw = {"relevant_clip_ids": [4], "saliency_scores": [[3, 3, 3]]}
    r = hl(gt_kw, [0, 0, 0, 0, 1.0], duration=9)
    assert r["HL-min-Good"] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}


def test_hl_skipped_with_a_note_without_saliency():
    r = evaluate([pred_row(1, [[0, 2, 1.0]])], [gt_row(1, [[0, 2]])])
    assert "HL-min-Fair-mAP" not in r["brief"] and "HL-min-Fair" not in r
    assert any("pred_saliency_scores" in n for n in r["meta"]["notes"])
    assert len(r["brief"]) == 8


# --------------------------------------------------------------------------- grounded QA
def test_gqa_metrics():
    gt = [VTGSample(qid="a", vid="v", duration=20, query="q?", windows=[[0, 10]], answer="A", options=["x", "y"]),
          VTGSample(qid="b", vid="v", duration=20, query="q?", windows=[[10, 20]], answer="B", options=["x", "y"])]
    pred = [pred_row("a", [[0, 6, 1.0]], pred_answer="a"),      # right answer, IoU 0.6
            pred_row("b", [[10, 20, 1.0]], pred_answer=0)]      # wrong answer (index 0 = A), IoU 1
    b = evaluate(pred, gt, protocol="gqa")["brief"]
    assert b == {"Acc@QA": 50.0, "mIoU": 80.0, "IoU@0.3": 100.0, "IoU@0.5": 100.0, "GQA@0.5": 50.0}
    pred[0]["pred_answer"] = "maybe"
    with pytest.raises(SubmissionError, match="qid a: 'pred_answer'"):
        evaluate(pred, gt, protocol="gqa")


# --------------------------------------------------------------------------- errors and qids
@pytest.mark.parametrize("windows, message", [
    ([[3, float("nan"), 0.5]], "qid 7: window 0 has a NaN"),
    ([[0, 1, 0.9], [5, 2, 0.5]], "qid 7: window 1 starts after it ends"),
    ([], "qid 7: 'pred_relevant_windows' must be a non-empty list"),
    (None, "qid 7: 'pred_relevant_windows' must be a non-empty list"),
    ([[0, 1, 0.9], [0, 1]], "qid 7: window"),
    ([["a", 1, 0.9]], "qid 7: window"),
])
def test_bad_predictions_name_the_qid(windows, message):
    gt = [gt_row(6, [[0, 2]]), gt_row(7, [[0, 2]])]
    pred = [pred_row(6, [[0, 2, 1.0]]), pred_row(7, windows)]
    with pytest.raises(SubmissionError, match=message.replace("(", r"\(")):
        evaluate(pred, gt)


def test_missing_duplicate_and_unknown_qids():
    gt = [gt_row(1, [[0, 10]]), gt_row(2, [[0, 10]])]
    with pytest.raises(SubmissionError, match="qid 2: no prediction.*allow-missing"):
        evaluate([pred_row(1, [[0, 10, 1.0]])], gt)
    with pytest.raises(SubmissionError, match="qid 1: predicted twice"):
        evaluate([pred_row(1, [[0, 10, 1.0]]), pred_row("1", [[0, 10, 1.0]]), pred_row(2, [[0, 1, 1]])], gt)
    with pytest.raises(SubmissionError, match="qid 9: not in the ground truth"):
        evaluate([pred_row(1, [[0, 10, 1.0]]), pred_row(2, [[0, 10, 1.0]]), pred_row(9, [[0, 1, 1]])], gt)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate([], gt, protocol="coco")


def test_allow_missing_scores_missing_queries_zero():
    gt = [gt_row(1, [[0, 10]], relevant_clip_ids=[0], saliency_scores=[[4, 4, 4]]),
          gt_row(2, [[0, 10]], relevant_clip_ids=[0], saliency_scores=[[4, 4, 4]])]
    pred = [pred_row("1", [[0, 10, 1.0]], pred_saliency_scores=[1.0, 0.0])]
    r = evaluate(pred, gt, allow_missing=True)
    assert r["meta"]["num_missing"] == 1
    assert r["brief"]["MR-full-R1@0.5"] == 50.0 and r["brief"]["MR-full-mAP"] == 50.0
    assert r["brief"]["HL-min-Fair-mAP"] == 50.0 and r["brief"]["HL-min-Fair-Hit1"] == 50.0


def test_int_and_str_qids_match():
    r = evaluate([pred_row("5", [[0, 10, 1.0]])], [gt_row(5, [[0, 10]])], protocol="charades")
    assert r["brief"]["R1@0.7"] == 100.0


def test_ground_truth_problems_name_the_qid():
    with pytest.raises(SubmissionError, match="ground truth qid 3: no windows"):
        evaluate([pred_row(3, [[0, 1, 1]])], [gt_row(3, [])])
    with pytest.raises(SubmissionError, match="ground truth qid 3: window 0"):
        evaluate([pred_row(3, [[0, 1, 1]])], [gt_row(3, [[4, 2]])])
    gt = [gt_row(3, [[0, 2]], relevant_clip_ids=[0, 1], saliency_scores=[[1, 1, 1]])]
    with pytest.raises(SubmissionError, match="ground truth qid 3: 2 relevant_clip_ids but 1"):
        evaluate([pred_row(3, [[0, 1, 1]], pred_saliency_scores=[1.0])], gt)


def test_bad_saliency_names_the_qid():
    gt = [gt_row(4, [[0, 2]], relevant_clip_ids=[0], saliency_scores=[[2, 2, 2]])]
    with pytest.raises(SubmissionError, match="qid 4: saliency score 1 is NaN"):
        evaluate([pred_row(4, [[0, 1, 1]], pred_saliency_scores=[0.1, float("nan")])], gt)
    with pytest.raises(SubmissionError, match="qid 4: 'pred_saliency_scores' must be a list of numbers"):
        evaluate([pred_row(4, [[0, 1, 1]], pred_saliency_scores=[0.1, "x"])], gt)


# --------------------------------------------------------------------------- files
def test_write_and_read_submission(tmp_path):
    path = write_submission(tmp_path / "sub" / "preds.jsonl", [
        {"qid": 1, "pred_relevant_windows": np.array([[0.0, 2.0, 0.1], [3.0, 4.0, 0.9]]),
         "pred_saliency_scores": np.float32([0.5, 0.25])},
    ])
    rows = read_submission(path)
    assert rows == [{"qid": 1, "pred_relevant_windows": [[3.0, 4.0, 0.9], [0.0, 2.0, 0.1]],
                     "pred_saliency_scores": [0.5, 0.25]}]
    with pytest.raises(SubmissionError, match="qid 2: cannot be written"):
        write_submission(tmp_path / "bad.jsonl", [{"qid": 2, "pred_relevant_windows": [[0, float("nan"), 1]]}])
    assert not (tmp_path / "bad.jsonl").exists()
    with pytest.raises(SubmissionError, match="qid 2: window"):
        write_submission(tmp_path / "bad.jsonl", [{"qid": 2, "pred_relevant_windows": [[0, 1]]}])
    (tmp_path / "broken.jsonl").write_text('{"qid": 1}\n{nope\n')
    with pytest.raises(SubmissionError, match="broken.jsonl:2"):
        read_submission(tmp_path / "broken.jsonl")


def test_ground_truth_in_unified_and_raw_form_agree(tmp_path):
    raw = load_ground_truth(FIXTURES / "qvh_gt_raw.jsonl")
    assert [s.qid for s in raw] == ["1", "2", "3"] and raw[1].windows == [[0.0, 10.0], [20.0, 30.0]]
    write_jsonl(raw, tmp_path / "unified.jsonl")
    unified = load_ground_truth(tmp_path / "unified.jsonl")
    preds = read_submission(FIXTURES / "qvh_preds.jsonl")
    assert evaluate(preds, unified) == evaluate(preds, raw)


# --------------------------------------------------------------------------- vectorised == per-query loop
def loop_detection_ap(preds, gts, thresholds):
    """Plain transcription of the protocol for one query: preds [(s, e, score)], gts [(s, e)]."""
    preds = sorted(preds[:10], key=lambda p: -p[2])  # stable: ties keep the listed order
    out = []
    for thr in thresholds:
        taken, tps = set(), []
        for s, e, _ in preds:
            ious = [max(0.0, min(e, ge) - max(s, gs)) / ((e - s) + (ge - gs) - max(0.0, min(e, ge) - max(s, gs)))
                    for gs, ge in gts]
            ranked = sorted(range(len(gts)), key=lambda j: (ious[j], j), reverse=True)
            hit = next((j for j in ranked if ious[j] >= thr and j not in taken), None)
            if hit is not None:
                taken.add(hit)
            tps.append(hit is not None)
        tp = np.cumsum(tps)
        precision = tp / np.arange(1, len(tps) + 1)
        recall = tp / len(gts)
        ap, prev_r = 0.0, 0.0
        for k in range(len(tps)):
            ap += (recall[k] - prev_r) * precision[k:].max()
            prev_r = recall[k]
        out.append(ap)
    return out


def loop_highlight_ap(labels, scores):
    """Plain AP of the video2gif flavour: mean interpolated precision where recall grows."""
    if len(set(labels)) == 1:
        return float(labels[0])
    levels = sorted(set(scores), reverse=True)
    points = []
    for t in levels:
        chosen = [y for y, s in zip(labels, scores) if s >= t]
        points.append((sum(chosen), sum(chosen) / len(chosen)))
    ap, prev_tp = [], 0
    for i, (tp, _) in enumerate(points):
        if tp > prev_tp:
            ap.append(max(p for _, p in points[i:]))
        prev_tp = tp
    return float(np.mean(ap))


def test_vectorised_map_equals_a_per_query_loop():
    rng = np.random.default_rng(0)
    thresholds = [0.5, 0.7, 0.9]
    q, p, g = 40, 12, 3
    # 2 s grid windows and one-decimal scores: plenty of IoU and score ties
    starts = rng.integers(0, 20, size=(q, p)) * 2.0
    pred = np.stack([starts, starts + rng.integers(1, 8, size=(q, p)) * 2.0], -1)
    scores = np.round(rng.random((q, p)), 1)
    gstart = rng.integers(0, 20, size=(q, g)) * 2.0
    gt = np.stack([gstart, gstart + rng.integers(1, 8, size=(q, g)) * 2.0], -1)
    n_gt = rng.integers(1, g + 1, size=q)
    gt_mask = np.arange(g)[None] < n_gt[:, None]
    pred_mask = np.ones((q, 10), dtype=bool)
    ap = average_precision(pairwise_ious(pred[:, :10], gt, gt_mask), scores[:, :10], pred_mask, n_gt, thresholds)
    for i in range(q):
        expected = loop_detection_ap([tuple(w) + (sc,) for w, sc in zip(pred[i].tolist(), scores[i])],
                                     [tuple(w) for w in gt[i, :n_gt[i]].tolist()], thresholds)
        np.testing.assert_allclose(ap[i], expected, atol=1e-12, err_msg=f"query {i}")


def test_vectorised_highlight_ap_equals_a_per_query_loop():
    rng = np.random.default_rng(1)
    q, length = 60, 20
    scores = np.round(rng.normal(size=(q, length)), 1)  # ties
    n = rng.integers(3, length + 1, size=q)
    valid = np.arange(length)[None] < n[:, None]
    labels = (rng.random((q, 3, length)) < rng.random((q, 1, 1))).astype(float)
    ap = highlight_ap(np.where(valid, scores, 0.0), valid, labels, np.ones((q, 3), dtype=bool))
    for i in range(q):
        for a in range(3):
            expected = loop_highlight_ap(labels[i, a, :n[i]].tolist(), scores[i, :n[i]].tolist())
            assert ap[i, a] == pytest.approx(expected, abs=1e-12), (i, a)


def test_results_are_json_serialisable():
    r = evaluate(FIXTURES / "qvh_preds.jsonl", FIXTURES / "qvh_gt_raw.jsonl")
    assert json.loads(json.dumps(r, allow_nan=False)) == r


def test_docstring_examples_hold():
    import doctest

    import vtg_rl.metrics
    import vtg_rl.metrics.grounded_qa

    for module in (vtg_rl.metrics, vtg_rl.metrics.grounded_qa):
        result = doctest.testmod(module)
        assert result.attempted >= 1 and result.failed == 0, module.__name__
