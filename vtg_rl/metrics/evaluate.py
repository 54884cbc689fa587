"""The evaluation front: :func:`evaluate` scores a submission under a benchmark's protocol."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from vtg_rl.data.loaders import load_samples
from vtg_rl.data.schema import VTGSample
from vtg_rl.metrics.submission import SubmissionError, as_samples, load_ground_truth, read_submission
from vtg_rl.metrics.highlights import highlight_metrics
from vtg_rl.metrics.moment_retrieval import MAX_MAP_WINDOWS, moment_retrieval_splits, threshold_key
from vtg_rl.metrics.grounded_qa import grounded_qa_metrics, normalise_choice
from vtg_rl.metrics.summarization import CLIP_LABEL_PROTOCOLS, clip_label_metrics

PROTOCOLS = ("qvhighlights", "charades", "tacos", "gqa", "ego4d-nlq", "activitynet", "tvsum", "youtube_highlight")
#: moment-retrieval protocols other than qvhighlights: their brief keys, (recall rank, tIoU) pairs
_MR_BRIEF = {
    "charades": ((1, 0.3), (1, 0.5), (1, 0.7), (5, 0.3), (5, 0.5), (5, 0.7)),
    "tacos": ((1, 0.3), (1, 0.5), (1, 0.7), (5, 0.3), (5, 0.5), (5, 0.7)),
    # the Ego4D episodic-memory NLQ evaluation: Rank@{1,5} at tIoU {0.3, 0.5} and top-1 mean IoU
    "ego4d-nlq": ((1, 0.3), (1, 0.5), (5, 0.3), (5, 0.5)),
    "activitynet": ((1, 0.3), (1, 0.5), (1, 0.7)),
}
#: protocol -> loader format of its raw release files (ground truth given as a path)
_RELEASE_FORMATS = {"ego4d-nlq": "ego4d-nlq", "activitynet": "activitynet", "tvsum": "tvsum",
                    "youtube_highlight": "youtube_highlight"}
#: the reference's brief keys for moment retrieval: (key, split, metric, threshold)
_QVH_MR_BRIEF = (
    ("MR-full-R1@0.5", "full", "MR-R1", "0.5"), ("MR-full-R1@0.7", "full", "MR-R1", "0.7"),
    ("MR-full-mAP", "full", "MR-mAP", "average"), ("MR-full-mAP@0.5", "full", "MR-mAP", "0.5"),
    ("MR-full-mAP@0.75", "full", "MR-mAP", "0.75"), ("MR-long-mAP", "long", "MR-mAP", "average"),
    ("MR-middle-mAP", "middle", "MR-mAP", "average"), ("MR-short-mAP", "short", "MR-mAP", "average"),
)
_WINDOWS_KEPT = MAX_MAP_WINDOWS  # R1 / R5 / mAP never look beyond the first 10 listed windows

PredictionsLike = Union[str, os.PathLike, Sequence[dict]]
GroundTruthLike = Union[str, os.PathLike, Sequence[Union[VTGSample, dict]]]


# --------------------------------------------------------------------------- validation
def _index_predictions(rows: Sequence[dict], gt_qids: list[str], allow_missing: bool) -> list[Optional[dict]]:
    """Prediction rows in ground-truth order (None where missing); checks duplicates / unknown qids."""
    by_qid: dict[str, dict] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "qid" not in row:
            raise SubmissionError(f"prediction row {i} has no 'qid'")
        qid = str(row["qid"])
        if qid in by_qid:
            raise SubmissionError(f"qid {qid}: predicted twice")
        by_qid[qid] = row
    known = set(gt_qids)
    unknown = [q for q in by_qid if q not in known]
    if unknown:
        raise SubmissionError(f"qid {unknown[0]}: not in the ground truth ({len(unknown)} such qids)")
    missing = [q for q in gt_qids if q not in by_qid]
    if missing and not allow_missing:
        raise SubmissionError(f"qid {missing[0]}: no prediction ({len(missing)} of {len(gt_qids)} ground-truth "
                              f"qids missing; use allow_missing / --allow-missing to score them 0)")
    return [by_qid.get(q) for q in gt_qids]


def _pad(values: np.ndarray, lengths: np.ndarray, width: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat rows (concatenated along axis 0) -> ``(Q, width, ...)`` keeping each row's first ``width``."""
    q = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    row = np.repeat(np.arange(q), lengths)
    pos = np.arange(len(values)) - np.repeat(offsets, lengths)
    keep = pos < width
    out = np.full((q, width) + values.shape[1:], fill, dtype=np.float64)
    out[row[keep], pos[keep]] = values[keep]
    mask = np.arange(width)[None, :] < lengths[:, None]
    return out, mask


def _first_bad(bad_flat: np.ndarray, lengths: np.ndarray, qids: list[str]) -> tuple[str, int]:
    """(qid, index within its row) of the first True of a flat per-window flag."""
    k = int(np.argmax(bad_flat))
    row = int(np.searchsorted(np.cumsum(lengths), k, side="right"))
    return qids[row], k - int(np.sum(lengths[:row]))


def _prediction_windows(rows: list[Optional[dict]], qids: list[str]):
    """Validated windows: ``(pred (Q,10,2), scores (Q,10), mask (Q,10))``."""
    lengths, flat = [], []
    for qid, row in zip(qids, rows):
        if row is None:
            lengths.append(0)
            continue
        w = row.get("pred_relevant_windows")
        if not isinstance(w, (list, tuple)) or len(w) == 0:
            raise SubmissionError(f"qid {qid}: 'pred_relevant_windows' must be a non-empty list, got {w!r}")
        lengths.append(len(w))
        flat.extend(w)
    lengths = np.asarray(lengths, dtype=int)
    if not flat:  # every query missing (allow_missing)
        q = len(rows)
        return np.zeros((q, _WINDOWS_KEPT, 2)), np.zeros((q, _WINDOWS_KEPT)), np.zeros((q, _WINDOWS_KEPT), bool)
    try:
        arr = np.array(flat, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] not in (2, 3):
            raise ValueError("bad shape")
    except (ValueError, TypeError):
        for qid, row in zip(qids, rows):  # slow path: find the row to blame
            for w in (row or {}).get("pred_relevant_windows") or []:
                ok = isinstance(w, (list, tuple)) and len(w) == len(flat[0]) and len(w) in (2, 3) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in w)
                if not ok:
                    raise SubmissionError(f"qid {qid}: window {w!r} is not [start, end, score] (every window of a "
                                          f"submission needs the same form)") from None
        raise SubmissionError("prediction windows are not numeric [start, end, score] lists") from None
    bad = ~np.isfinite(arr).all(1)
    if bad.any():
        qid, j = _first_bad(bad, lengths, qids)
        raise SubmissionError(f"qid {qid}: window {j} has a NaN or infinite value")
    bad = arr[:, 0] > arr[:, 1]
    if bad.any():
        qid, j = _first_bad(bad, lengths, qids)
        raise SubmissionError(f"qid {qid}: window {j} starts after it ends")
    if arr.shape[1] == 2:  # no scores: the listed order is the ranking
        pos = np.arange(len(arr)) - np.repeat(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        scores_flat = -pos.astype(np.float64)
    else:
        scores_flat = arr[:, 2]
    pred, mask = _pad(arr[:, :2], lengths, _WINDOWS_KEPT, 0.0)
    scores, _ = _pad(scores_flat, lengths, _WINDOWS_KEPT, 0.0)
    return pred, scores, mask


def _ground_truth_windows(samples: list[VTGSample]):
    lengths = np.array([len(s.windows) for s in samples], dtype=int)
    if (lengths == 0).any():
        raise SubmissionError(f"ground truth qid {samples[int(np.argmax(lengths == 0))].qid}: no windows to score "
                              f"against (label-free split?)")
    arr = np.array([w for s in samples for w in s.windows], dtype=np.float64).reshape(-1, 2)
    bad = ~np.isfinite(arr).all(1) | (arr[:, 0] >= arr[:, 1])
    if bad.any():
        qid, j = _first_bad(bad, lengths, [s.qid for s in samples])
        raise SubmissionError(f"ground truth qid {qid}: window {j} is not a finite span with start < end")
    return _pad(arr, lengths, int(lengths.max()), 0.0)


def _saliency_inputs(samples: list[VTGSample], rows: list[Optional[dict]], clip_length: float):
    """Arrays for :func:`highlight_metrics`, or a note saying why highlights are not scored."""
    if not any(r is not None and "pred_saliency_scores" in r for r in rows):
        return None, "no pred_saliency_scores in the submission"
    labelled = [s.saliency_scores is not None and s.relevant_clip_ids is not None for s in samples]
    if not any(labelled):
        return None, "the ground truth has no saliency labels"
    n_clips, n_annot = [], []
    for s, ok in zip(samples, labelled):
        if not ok:
            raise SubmissionError(f"ground truth qid {s.qid}: no relevant_clip_ids / saliency_scores (other queries "
                                  f"have them)")
        if len(s.relevant_clip_ids) != len(s.saliency_scores):
            raise SubmissionError(f"ground truth qid {s.qid}: {len(s.relevant_clip_ids)} relevant_clip_ids but "
                                  f"{len(s.saliency_scores)} saliency rows")
        widths = {len(r) for r in s.saliency_scores}
        if len(widths) > 1:
            raise SubmissionError(f"ground truth qid {s.qid}: saliency rows have different annotator counts")
        if s.relevant_clip_ids and min(s.relevant_clip_ids) < 0:
            raise SubmissionError(f"ground truth qid {s.qid}: negative relevant clip id")
        n_clips.append(max(int(s.duration / clip_length), max(s.relevant_clip_ids, default=-1) + 1))
        n_annot.append(widths.pop() if widths else 0)
    q, length, a = len(samples), max(n_clips), max(n_annot)
    gt_scores = np.zeros((q, length, a))
    n_rel = np.array([len(s.relevant_clip_ids) for s in samples], dtype=int)
    row = np.repeat(np.arange(q), n_rel)
    clip = np.fromiter((c for s in samples for c in s.relevant_clip_ids), dtype=int, count=int(n_rel.sum()))
    if len(set(n_annot)) == 1:  # the usual case: one flat array of all labelled clips
        values = np.array([r for s in samples for r in s.saliency_scores], dtype=np.float64).reshape(-1, a)
        gt_scores[row, clip] = values
    else:
        for i, s in enumerate(samples):
            if s.relevant_clip_ids:
                gt_scores[i, np.asarray(s.relevant_clip_ids, dtype=int), :n_annot[i]] = s.saliency_scores
    annot_mask = np.arange(a)[None, :] < np.asarray(n_annot)[:, None]

    pred_len, flat = [], []
    for s, row in zip(samples, rows):
        if row is None:
            pred_len.append(0)
            continue
        sal = row.get("pred_saliency_scores")
        if not isinstance(sal, (list, tuple)) or len(sal) == 0:
            raise SubmissionError(f"qid {s.qid}: 'pred_saliency_scores' must be a non-empty list (other rows have it)")
        pred_len.append(len(sal))
        flat.extend(sal)
    pred_len = np.asarray(pred_len, dtype=int)
    try:
        flat = np.fromiter(flat, dtype=np.float64, count=len(flat))
        if flat.ndim != 1:
            raise ValueError("nested")
    except (ValueError, TypeError):
        for s, row in zip(samples, rows):
            sal = (row or {}).get("pred_saliency_scores") or []
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sal):
                raise SubmissionError(f"qid {s.qid}: 'pred_saliency_scores' must be a list of numbers") from None
        raise
    bad = ~np.isfinite(flat)
    if bad.any():
        qid, j = _first_bad(bad, pred_len, [s.qid for s in samples])
        raise SubmissionError(f"qid {qid}: saliency score {j} is NaN or infinite")
    pred_full, _ = _pad(flat, pred_len, int(pred_len.max(initial=0)), -np.inf)
    return (pred_full, pred_len, gt_scores, np.asarray(n_clips), annot_mask), None


def _load_protocol_ground_truth(path, protocol: str) -> list[VTGSample]:
    """A unified-schema jsonl or a raw QVHighlights-style jsonl (:func:`load_ground_truth`); for the
    protocols of :data:`_RELEASE_FORMATS` also the benchmark's own release file, read and validated
    (strict) by its loader."""
    fmt = _RELEASE_FORMATS.get(protocol)
    if fmt is None:
        return load_ground_truth(path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ground-truth file")
    with path.open() as f:
        first = next((line for line in f if line.strip()), "")
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    if isinstance(head, dict) and "windows" in head:
        return load_ground_truth(path)
    samples, _ = load_samples(path, fmt, policy="strict", check_videos=False)
    return samples


# --------------------------------------------------------------------------- evaluate
def evaluate(predictions: PredictionsLike, ground_truth: GroundTruthLike, protocol: str = "qvhighlights",
             allow_missing: bool = False, clip_length: float = 2.0) -> dict:
    """Score a submission against ground truth.

    Args:
        predictions: submission rows, or the path of a submission jsonl.
        ground_truth: samples / raw rows, or the path of a unified or raw QVHighlights jsonl.
        protocol: "qvhighlights" (MR R1/R5/mIoU/mAP with length splits + HL, reference ``brief``
            keys), "charades" / "tacos" (R1@0.3/0.5/0.7, R5@..., mIoU), "activitynet"
            (R1@0.3/0.5/0.7, mIoU), "ego4d-nlq" (R1/R5 @0.3/0.5, mIoU), "gqa" (grounded QA),
            "tvsum" (top-5 mAP per domain) / "youtube_highlight" (mAP per domain): see
            :mod:`vtg_rl.metrics.summarization`. For ego4d-nlq / activitynet / tvsum /
            youtube_highlight the ground-truth path may also be the raw release file (read with
            :func:`vtg_rl.data.loaders.load_samples`, policy strict).
        allow_missing: score ground-truth queries without a prediction as 0 instead of failing.
        clip_length: saliency clip length in seconds (QVHighlights: 2).

    Returns a nested dict: ``brief`` (flat headline numbers), per-split blocks for moment
    retrieval ("full", and "short"/"middle"/"long" for qvhighlights), ``HL-min-*`` blocks when
    highlights are scored, ``QA`` for gqa, and ``meta`` (protocol, counts, notes). Numbers are
    percent with two decimals, rounded as the reference does; a split without queries gives None.
    Raises :class:`SubmissionError` naming the qid for unusable predictions.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if isinstance(ground_truth, (str, os.PathLike)):
        samples = _load_protocol_ground_truth(ground_truth, protocol)
    else:
        samples = as_samples(ground_truth)
    if isinstance(predictions, (str, os.PathLike)):
        predictions = read_submission(predictions)
    if not samples:
        raise SubmissionError("the ground truth is empty")
    qids = [s.qid for s in samples]
    if len(set(qids)) != len(qids):
        dup = next(q for i, q in enumerate(qids) if q in qids[:i])
        raise SubmissionError(f"ground truth qid {dup}: appears twice")
    rows = _index_predictions(predictions, qids, allow_missing)
    if protocol in CLIP_LABEL_PROTOCOLS:
        hl = clip_label_metrics(samples, rows, protocol)
        notes = hl.pop("notes")
        hl["meta"] = {"protocol": protocol, "num_queries": len(samples),
                      "num_missing": sum(r is None for r in rows), "notes": notes}
        return hl
    scored = np.array([r is not None for r in rows])
    pred, scores, pred_mask = _prediction_windows(rows, qids)
    gt, gt_mask = _ground_truth_windows(samples)
    notes: list[str] = []
    result: dict[str, Any] = {"brief": {}}

    if protocol == "gqa":
        answers = [normalise_choice(s.answer) for s in samples]
        missing_answer = [s.qid for s, a in zip(samples, answers) if a is None]
        if missing_answer:
            raise SubmissionError(f"ground truth qid {missing_answer[0]}: no answer letter (needed by protocol gqa)")
        pred_answers = []
        for qid, row in zip(qids, rows):
            if row is not None and normalise_choice(row.get("pred_answer")) is None:
                raise SubmissionError(f"qid {qid}: 'pred_answer' must be an option letter, got "
                                      f"{row.get('pred_answer')!r}")
            pred_answers.append(None if row is None else normalise_choice(row.get("pred_answer")))
        qa = grounded_qa_metrics(pred[:, 0], gt, gt_mask, pred_answers, answers, scored)
        result["brief"] = {k: v for k, v in qa.items() if k != "num_queries"}
        result["QA"] = qa
    else:
        splits = ("full", "short", "middle", "long") if protocol == "qvhighlights" else ("full",)
        result.update(moment_retrieval_splits(pred, scores, pred_mask, gt, gt_mask, scored, splits))
        if protocol == "qvhighlights":
            result["brief"] = {key: result[split][metric][thr] for key, split, metric, thr in _QVH_MR_BRIEF}
            hl_inputs, why = _saliency_inputs(samples, rows, clip_length)
            if hl_inputs is None:
                notes.append(f"highlight detection not scored: {why}")
            else:
                hl = highlight_metrics(*hl_inputs, scored)
                result.update(hl)
                for level, block in hl.items():
                    result["brief"][f"{level}-mAP"] = block["HL-mAP"]
                    result["brief"][f"{level}-Hit1"] = block["HL-Hit1"]
        else:
            full = result["full"]
            result["brief"] = {f"R{k}@{t}": full[f"MR-R{k}"][threshold_key(t)] for k, t in _MR_BRIEF[protocol]}
            result["brief"]["mIoU"] = full["MR-mIoU"]
            if protocol in ("charades", "tacos"):
                result["brief"]["mAP"] = full["MR-mAP"]["average"]
        listed_by_score = np.all((scores[:, 1:] <= scores[:, :-1]) | ~pred_mask[:, 1:])
        if not listed_by_score:
            notes.append("some predictions do not list windows by decreasing score: R1/R5/mIoU use the listed "
                         "order (as the reference does), mAP the scores")
    result["meta"] = {"protocol": protocol, "num_queries": len(samples), "num_missing": int((~scored).sum()),
                      "clip_length": clip_length, "notes": notes}
    return result

