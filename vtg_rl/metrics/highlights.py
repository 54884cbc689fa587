"""Highlight-detection metrics (QVHighlights protocol), vectorised over queries and annotators.

Ground truth: per 2 s clip, one 0-4 score per annotator for the clips listed in
``relevant_clip_ids`` (every other clip scores 0). A clip is positive for an annotator when its
score >= the level's minimum: Fair >= 2, Good >= 3, VeryGood >= 4.

* **HIT@1**: the clip with the highest predicted saliency (the first one on ties) is positive for
  *any* annotator; mean over queries. A top clip beyond the video's clips counts as a miss.
* **HL mAP**: for every (query, annotator) pair, the AP of the predicted saliency against that
  annotator's binary labels; mean over all pairs. The prediction is cut to the video's clip
  count, or padded with 0. AP is the video2gif / QVHighlights flavour: thresholds are the distinct
  predicted scores; precision is made non-increasing toward lower recall (the best precision at
  any lower threshold); AP is the *unweighted* mean of that precision over the thresholds where
  recall grows. All-negative labels give AP 0, all-positive labels AP 1.

The clip count of a video is ``int(duration / clip_length)`` as in the reference, extended to
cover its annotated clips (the reference fails on a clip id beyond that count; a final partial clip
of a video whose duration is not a multiple of 2 s is such a clip).
"""

from __future__ import annotations

import numpy as np

from vtg_rl.metrics.moment_retrieval import pct

#: (name, minimum score of a positive clip)
SALIENCY_LEVELS = (("Fair", 2), ("Good", 3), ("VeryGood", 4))


def highlight_ap(scores: np.ndarray, valid: np.ndarray, labels: np.ndarray, label_mask: np.ndarray) -> np.ndarray:
    """AP of each (query, label column), e.g. one column per annotator (and saliency level).

    Args:
        scores: ``(Q, L)`` predicted saliency, already cut/padded to each video's clip count.
        valid: ``(Q, L)`` True for the clips of each video (a prefix of the row).
        labels: ``(Q, C, L)`` binary labels (0/1); the clip axis is last so that the running
            sums below walk contiguous memory.
        label_mask: ``(Q, C)`` True for the columns that exist (annotators of each query).

    Returns ``(Q, C)``; entries of masked columns are 0.
    """
    q, length = scores.shape
    if length == 0:
        return np.zeros(labels.shape[:2])
    # one ranking per query, shared by every label column
    order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    v = np.take_along_axis(valid, order, axis=1)
    y = np.take_along_axis(labels, order[:, None, :], axis=2) * v[:, None, :]
    # the last clip of each run of equal scores: a threshold of the precision-recall curve
    next_differs = np.ones_like(v)
    next_differs[:, :-1] = (s[:, 1:] != s[:, :-1]) | ~v[:, 1:]
    group_end = (v & next_differs)[:, None, :]
    cum_tp = np.cumsum(y, axis=2)  # (Q, C, L)
    rank = np.arange(1, length + 1, dtype=np.float64)
    precision = np.where(group_end, cum_tp / rank, 0.0)
    # interpolated precision: the best precision at this or any lower threshold (higher recall)
    interp = np.maximum.accumulate(precision[:, :, ::-1], axis=2)[:, :, ::-1]
    # true positives up to the previous threshold (cum_tp never decreases, so a running max of its
    # values at thresholds carries the latest one forward)
    tp_at_ends = np.maximum.accumulate(np.where(group_end, cum_tp, 0.0), axis=2)
    tp_before = np.zeros_like(tp_at_ends)
    tp_before[:, :, 1:] = tp_at_ends[:, :, :-1]
    counted = group_end & (cum_tp > tp_before)  # thresholds where recall grows
    n_counted = counted.sum(2)
    total = np.where(counted, interp, 0.0).sum(2)
    ap = np.divide(total, n_counted, out=np.zeros_like(total), where=n_counted > 0)
    return np.where(label_mask, ap, 0.0)


def highlight_metrics(pred_full: np.ndarray, pred_len: np.ndarray, gt_scores: np.ndarray, n_clips: np.ndarray,
                      annotator_mask: np.ndarray, scored: np.ndarray) -> dict:
    """HL mAP and HIT@1 at the three saliency levels, reference-rounded.

    Args:
        pred_full: ``(Q, K)`` predicted saliency as submitted (padded with -inf beyond ``pred_len``).
        pred_len: ``(Q,)`` number of predicted scores.
        gt_scores: ``(Q, L, A)`` 0-4 scores of every clip (0 for unlisted clips), L >= max clips.
        n_clips: ``(Q,)`` clips of each video.
        annotator_mask: ``(Q, A)`` True for the annotators of each query.
        scored: ``(Q,)`` False for queries without a prediction: they score 0 in every metric.

    Returns ``{"HL-min-Fair": {"HL-mAP": ..., "HL-Hit1": ...}, ...}``.
    """
    q, length, _ = gt_scores.shape
    clip = np.arange(length)[None, :]
    valid = clip < n_clips[:, None]
    # the reference cuts the prediction to the clip count or pads it with zeros
    take = np.minimum(length, pred_full.shape[1])
    scores = np.zeros((q, length))
    scores[:, :take] = pred_full[:, :take]
    scores = np.where(valid & (clip < pred_len[:, None]), scores, 0.0)
    # HIT@1 looks at the whole submitted row, first maximum
    top = np.argmax(pred_full, axis=1) if pred_full.shape[1] else np.zeros(q, dtype=int)
    top_inside = (top < n_clips) & (pred_len > 0) & scored
    top_scores = gt_scores[np.arange(q), np.minimum(top, max(length - 1, 0))] if length else np.zeros_like(
        annotator_mask, dtype=float)
    # all levels x annotators as label columns of one AP computation: (Q, levels * A, L)
    a = gt_scores.shape[2]
    by_clip_last = np.transpose(gt_scores, (0, 2, 1))
    labels = np.concatenate([(by_clip_last >= minimum) for _, minimum in SALIENCY_LEVELS], axis=1)
    ap_all = highlight_ap(scores, valid, labels.astype(np.float64), np.tile(annotator_mask, len(SALIENCY_LEVELS)))
    ap_all = np.where(scored[:, None], ap_all, 0.0)
    out = {}
    for i, (name, minimum) in enumerate(SALIENCY_LEVELS):
        hit = ((top_scores >= minimum) & annotator_mask).any(1) & top_inside
        ap = ap_all[:, i * a:(i + 1) * a]
        out[f"HL-min-{name}"] = {"HL-mAP": pct(ap.sum() / max(annotator_mask.sum(), 1)),
                                 "HL-Hit1": pct(hit.mean() if q else 0.0)}
    return out
