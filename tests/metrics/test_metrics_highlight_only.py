"""TVSum / YouTube Highlights metrics and the Ego4D-NLQ / ActivityNet protocols, against values
computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vtg_rl.cli import main
from vtg_rl.data.schema import VTGSample
from vtg_rl.metrics import SubmissionError, evaluate
from vtg_rl.metrics.summarization import ranked_list_ap, tvsum_video_ap, youtube_video_ap

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _tv(qid, domain, labels):
    return VTGSample(qid, qid, 2.0 * len(labels), domain, task="summarization", clip_length=2.0,
                     clip_labels=labels, meta={"domain": domain})


def _yt(qid, domain, labels):
    return VTGSample(qid, qid, float(len(labels)), domain, task="highlight", clip_length=1.0,
                     clip_labels=[[x] for x in labels], meta={"domain": domain})


def _pred(qid, scores):
    return {"qid": qid, "pred_saliency_scores": scores}


# --------------------------------------------------------------------------- the AP formula
@pytest.mark.parametrize("ranked, ap", [
    ([1, 0, 1], 0.5 * (1 + 1) / 2 + 0.5 * (1 / 2 + 2 / 3) / 2),   # 0.791667 (standard AP would be 0.8333)
    ([0, 1, 0, 0, 0], 1.0 * (1 / 2 + 0) / 2),                      # 0.25
    ([0, 0, 0, 0, 1], 1.0 * (1 / 5 + 0) / 2),                      # 0.1
    ([1, 1, 0], 1.0),
    ([0, 0, 0], 0.0),                                              # no positive: 0, not NaN
])
def test_ranked_list_ap(ranked, ap):
    assert ranked_list_ap(np.array(ranked)) == pytest.approx(ap, abs=1e-12)


def test_ranked_list_ap_per_column():
    cols = np.array([[1, 0], [0, 1], [1, 0]])
    assert ranked_list_ap(cols) == pytest.approx([0.791667, 0.25], abs=1e-6)


# --------------------------------------------------------------------------- TVSum
# annotator A: [1, 2, 3, 4, 5, 1] -> numpy median of an even count = (2 + 3) / 2 = 2.5 -> positives
#   clips 2, 3, 4 (the upper middle value 3 counts; an upper-median rule ("> 3") would drop clip 2).
# annotator B: all 3 -> median 3 -> no positive -> AP 0.
# prediction [.9, .1, .8, .2, .3, .7] ranks clips 0, 2, 5, 4, 3 (| 1); A's labels there: 0 1 0 1 1, P = 3:
#   rank 2: 1/3 * (1/2 + 0) / 2 = 0.083333; rank 4: 1/3 * (2/4 + 1/3) / 2 = 0.138889;
#   rank 5: 1/3 * (3/5 + 2/4) / 2 = 0.183333 -> 0.405556. Video: (0.405556 + 0) / 2 = 0.202778.
TV_A = [[1, 3], [2, 3], [3, 3], [4, 3], [5, 3], [1, 3]]
TV_A_PRED = [0.9, 0.1, 0.8, 0.2, 0.3, 0.7]


def test_tvsum_video_ap_by_hand():
    per_annotator = tvsum_video_ap(np.array(TV_A_PRED), np.array(TV_A))
    assert per_annotator == pytest.approx([0.405556, 0.0], abs=1e-6)


def test_tvsum_protocol_domains_and_mean():
    gt = [_tv("VT_0", "VT", TV_A),
          _tv("VT_1", "VT", [[2], [4]]),          # median 3 -> clip 1 positive; ranked first -> AP 1
          _tv("BK_0", "BK", [[1], [5], [1]])]     # median 1 -> clip 1; tie .5/.5: clip 0 ranks first -> 0.25
    pred = [_pred("VT_0", TV_A_PRED), _pred("VT_1", [0.0, 1.0]), _pred("BK_0", [0.5, 0.5, 0.1])]
    r = evaluate(pred, gt, protocol="tvsum")
    # VT: (0.202778 + 1) / 2 = 0.601389; BK: 0.25; mean over domains: 0.425694
    assert r["brief"] == {"BK": 25.0, "VT": 60.14, "mAP": 42.57}   # canonical domain order: BK before VT
    assert r["domains"]["VT"] == {"mAP": 60.14, "num_videos": 2}
    assert r["videos"]["VT_0"] == {"domain": "VT", "AP": 20.28}
    assert r["meta"]["protocol"] == "tvsum" and r["meta"]["num_queries"] == 3
    assert any("absent: BT, DS, FM, GA, MS, PK, PR, VU" in n for n in r["meta"]["notes"])


def test_tvsum_extra_scores_are_dropped_before_ranking_and_short_ones_fail():
    gt = [_tv("VT_0", "VT", TV_A)]
    r = evaluate([_pred("VT_0", TV_A_PRED + [99.0, 98.0])], gt, protocol="tvsum")
    assert r["brief"]["mAP"] == 20.28  # the two extra (high) scores never enter the top 5
    assert any("2 saliency score(s) beyond the labelled clips of 1 video(s) were ignored" in n
               for n in r["meta"]["notes"])
    with pytest.raises(SubmissionError, match="qid VT_0: 5 saliency scores for 6 labelled clips"):
        evaluate([_pred("VT_0", TV_A_PRED[:5])], gt, protocol="tvsum")


def test_tvsum_ties_rank_the_earlier_clip_first():
    gt = [_tv("BK_0", "BK", [[1], [5], [1]])]
    assert evaluate([_pred("BK_0", [0.5, 0.5, 0.1])], gt, protocol="tvsum")["brief"]["mAP"] == 25.0
    assert evaluate([_pred("BK_0", [0.4, 0.5, 0.1])], gt, protocol="tvsum")["brief"]["mAP"] == 100.0


def test_tvsum_only_the_top_five_count():
    # 7 clips, one annotator: [1,1,1,1,1,1,5] -> median 1 -> only clip 6 positive. Ranked 6th -> outside
    # the top 5 -> AP 0; ranked 5th -> 1 * (1/5 + 0) / 2 = 0.1.
    gt = [_tv("PK_0", "PK", [[1]] * 6 + [[5]])]
    assert evaluate([_pred("PK_0", [7, 6, 5, 4, 3, 1, 2])], gt, protocol="tvsum")["brief"]["mAP"] == 0.0
    assert evaluate([_pred("PK_0", [7, 6, 5, 4, 1, 0, 2])], gt, protocol="tvsum")["brief"]["mAP"] == 10.0


# --------------------------------------------------------------------------- YouTube Highlights
def test_youtube_protocol_by_hand():
    gt = [_yt("dog_0", "dog", [0, 1, 1, 0, 0, 1]),
          _yt("dog_1", "dog", [0, 0, 1, 0]),
          _yt("surfing_0", "surfing", [1, 1, 1]),   # all positive: AP 1 whatever the ranking
          _yt("surfing_1", "surfing", [0, 0])]      # all negative: AP 0, named in a note
    pred = [_pred("dog_0", [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]),   # ranked labels 1 0 1 0 1 0: 1/3 + 0.194444 + 0.183333
            _pred("dog_1", [4, 3, 2, 1]),                      # 0 0 1 0: 1 * (1/3 + 0) / 2 = 0.166667
            _pred("surfing_0", [0.3, 0.2, 0.1]),
            _pred("surfing_1", [1.0, 2.0])]
    r = evaluate(pred, gt, protocol="youtube_highlight")
    # dog: (0.711111 + 0.166667) / 2 = 0.438889; surfing: (1 + 0) / 2 = 0.5; mean 0.469444
    assert r["videos"]["dog_0"]["AP"] == 71.11 and r["videos"]["dog_1"]["AP"] == 16.67
    assert r["brief"] == {"dog": 43.89, "surfing": 50.0, "mAP": 46.94}
    assert any("1 video(s) without a positive clip score AP 0: surfing_1" in n for n in r["meta"]["notes"])


def test_youtube_video_ap_matches_the_formula():
    assert youtube_video_ap(np.array([3.0, 2.0, 1.0]), np.array([[1], [1], [1]])) == 1.0
    assert youtube_video_ap(np.array([1.0, 2.0, 3.0]), np.array([[1], [1], [1]])) == 1.0
    assert youtube_video_ap(np.array([1.0, 2.0]), np.array([[0], [0]])) == 0.0


@pytest.mark.parametrize("scores, message", [
    ([0.1, float("nan"), 0.2], "qid dog_0: saliency score 1"),
    ([0.1, True, 0.2], "qid dog_0: saliency score 1 (True)"),
    ([], "qid dog_0: 'pred_saliency_scores' must be a non-empty list"),
    ([0.1, 0.2], "qid dog_0: 2 saliency scores for 3 labelled clips"),
])
def test_bad_saliency_predictions_name_the_qid(scores, message):
    with pytest.raises(SubmissionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate([_pred("dog_0", scores)], [_yt("dog_0", "dog", [0, 1, 0])], protocol="youtube_highlight")


def test_missing_predictions_and_wrong_task():
    gt = [_yt("dog_0", "dog", [0, 1, 0]), _yt("dog_1", "dog", [1, 0])]
    with pytest.raises(SubmissionError, match="qid dog_1: no prediction"):
        evaluate([_pred("dog_0", [0, 1, 0])], gt, protocol="youtube_highlight")
    r = evaluate([_pred("dog_0", [0, 1, 0])], gt, protocol="youtube_highlight", allow_missing=True)
    assert r["brief"] == {"dog": 50.0, "mAP": 50.0} and r["meta"]["num_missing"] == 1
    with pytest.raises(SubmissionError, match="ground truth qid dog_0: task 'highlight'"):
        evaluate([_pred("dog_0", [0, 1, 0]), _pred("dog_1", [1, 0])], gt, protocol="tvsum")


def test_release_files_as_ground_truth_and_cli(tmp_path, capsys):
    gt = DATA / "youtube_highlight/youtube_valid.jsonl"
    # labels: dog_0 [0,1,1,0,0,1], dog_1 [0,0,1,0], surfing_0 [1,0,0,0,1]; predict the labels themselves
    rows = [json.loads(line) for line in gt.read_text().splitlines()]
    pred = tmp_path / "p.jsonl"
    pred.write_text("".join(json.dumps(_pred(r["qid"], [x[0] for x in r["label"]])) + "\n" for r in rows))
    out = tmp_path / "m.json"
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--protocol", "youtube_highlight",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "youtube_highlight domain" in printed and "mean over domains" in printed
    assert json.loads(out.read_text())["brief"] == {"dog": 100.0, "surfing": 100.0, "mAP": 100.0}
    # a broken release file is refused with its location
    assert main(["eval", "--pred", str(pred), "--gt", str(DATA / "youtube_highlight/youtube_bad.jsonl"),
                 "--protocol", "youtube_highlight"]) == 2
    assert "youtube_bad.jsonl:2: [bad_clip_labels]" in capsys.readouterr().err


# --------------------------------------------------------------------------- Ego4D-NLQ / ActivityNet
def _mr(qid, window, duration=100.0):
    return VTGSample(qid, "v" + qid, duration, "q", windows=[window])


def test_ego4d_nlq_protocol_by_hand():
    gt = [_mr("a", [10.0, 20.0]), _mr("b", [0.0, 10.0])]
    pred = [{"qid": "a", "pred_relevant_windows": [[10, 20, 0.9], [0, 5, 0.5]]},                  # IoU 1
            {"qid": "b", "pred_relevant_windows": [[5, 15, 0.9], [0, 8, 0.8], [30, 40, 0.1]]}]    # 5/15; 2nd: 0.8
    r = evaluate(pred, gt, protocol="ego4d-nlq")
    assert r["brief"] == {"R1@0.3": 100.0, "R1@0.5": 50.0, "R5@0.3": 100.0, "R5@0.5": 100.0, "mIoU": 66.67}


def test_activitynet_protocol_by_hand():
    gt = [_mr("a", [0.0, 10.0]), _mr("b", [20.0, 40.0])]
    pred = [{"qid": "a", "pred_relevant_windows": [[0, 7.5, 0.9]]},     # IoU 0.75
            {"qid": "b", "pred_relevant_windows": [[30, 45, 0.9]]}]     # 10 / 25 = 0.4
    r = evaluate(pred, gt, protocol="activitynet")
    assert r["brief"] == {"R1@0.3": 100.0, "R1@0.5": 50.0, "R1@0.7": 50.0, "mIoU": 57.5}


def test_ego4d_and_activitynet_release_files_as_ground_truth():
    nlq = DATA / "ego4d-nlq/nlq_val.json"
    # ann-1_0 [12.1, 15.4]; ann-1_1 [200, 212.5]; ann-2_0 [470, 480]; ann-3_0 [0, 3.2]
    pred = [{"qid": "ann-1_0", "pred_relevant_windows": [[12.1, 15.4, 1.0]]},
            {"qid": "ann-1_1", "pred_relevant_windows": [[0, 10, 1.0], [200, 212.5, 0.5]]},
            {"qid": "ann-2_0", "pred_relevant_windows": [[470, 480, 1.0]]},
            {"qid": "ann-3_0", "pred_relevant_windows": [[100, 110, 1.0]]}]
    r = evaluate(pred, nlq, protocol="ego4d-nlq")
    assert r["brief"] == {"R1@0.3": 50.0, "R1@0.5": 50.0, "R5@0.3": 75.0, "R5@0.5": 75.0, "mIoU": 50.0}
    anet = DATA / "activitynet/val_1.json"
    qids = ["v_QOlSCBRmfWY_0", "v_QOlSCBRmfWY_1", "v_QOlSCBRmfWY_2", "v_ehGHCYKzyZ8_0", "v_ehGHCYKzyZ8_1"]
    pred = [{"qid": q, "pred_relevant_windows": [[0.0, 12.03, 1.0]]} for q in qids]
    # IoUs: [0.83,19.86] -> 11.2/19.86 = 0.5640; [17.37,60.81] -> 0; [56.26,79.42] -> 0;
    # [0,12.03] -> 1; [11.47,62.0] -> 0.56 / 62.0 = 0.0090
    r = evaluate(pred, anet, protocol="activitynet")
    assert r["brief"] == {"R1@0.3": 40.0, "R1@0.5": 40.0, "R1@0.7": 20.0, "mIoU": 31.46}
    with pytest.raises(ValueError, match=r"nlq_bad.json:\$\.videos\[0\]"):
        evaluate(pred, DATA / "ego4d-nlq/nlq_bad.json", protocol="ego4d-nlq")
