"""Moment-retrieval metrics, vectorised over queries.

The numbers follow the QVHighlights reference protocol (moment_detr's ``standalone_eval``):

* **R1@m** uses the *first listed* window of each prediction (submissions list windows by
  decreasing score; :func:`vtg_rl.metrics.write_submission` sorts them) against the ground-truth
  window it overlaps most; a hit when IoU >= m. **R5@m**: any of the first five listed windows.
  **mIoU**: mean top-1 IoU.
* **mAP** takes the first 10 listed windows, sorts them by score (a stable sort: ties keep the
  listed order) and matches them greedily, one-to-one, to the ground-truth windows at each tIoU
  threshold: each prediction takes the unmatched ground-truth window of highest IoU (ties: the
  later window, as the reference's reversed ``argsort`` does) if that IoU >= the threshold. AP is
  the ActivityNet / VOC-2011 interpolated area (precision made non-increasing from the right,
  summed over recall steps); mAP is the mean over queries, ``average`` the mean over thresholds.
* **Length splits** keep, per query, only the ground-truth windows whose length ``l`` lies in
  ``(lo, hi]`` and drop queries with none: short (0, 10], middle (10, 30], long (30, 150]. The
  ``full`` split keeps every window.

Everything here works on padded arrays with masks; :mod:`vtg_rl.metrics` builds them from the
submission and the ground truth. IoU comes from :mod:`vtg_rl.spans` (the project's one implementation).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from vtg_rl.spans import temporal_iou

#: tIoU thresholds of the QVHighlights protocol, 0.5:0.05:0.95, rounded as the reference does
MAP_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
#: R1 thresholds: Charades/TACoS' 0.3 plus the QVHighlights range
R1_THRESHOLDS = (0.3,) + MAP_THRESHOLDS
#: ground-truth length splits (lo, hi] in seconds
LENGTH_SPLITS = {"short": (0.0, 10.0), "middle": (10.0, 30.0), "long": (30.0, 150.0)}
MAX_MAP_WINDOWS = 10


def pct(x) -> float:
    """A fraction as the reference reports it: percent with two decimals (string rounding)."""
    return float(f"{100 * float(x):.2f}")


def threshold_key(t: float) -> str:
    """The reference's dict key of a threshold: ``str`` of the rounded float ("0.5", "0.55")."""
    return str(float(f"{t:.2f}"))


def pairwise_ious(pred: np.ndarray, gt: np.ndarray, gt_mask: np.ndarray) -> np.ndarray:
    """IoU of every predicted window with every ground-truth window of the same query.

    Args:
        pred: ``(Q, P, 2)`` predicted windows.
        gt: ``(Q, G, 2)`` ground-truth windows (padded).
        gt_mask: ``(Q, G)`` True where a ground-truth window exists.

    Returns ``(Q, P, G)``, with ``-inf`` at padded ground-truth slots so that they never reach a
    threshold nor win an argmax.
    """
    iou = np.asarray(temporal_iou(pred[:, :, None, :], gt[:, None, :, :]), dtype=np.float64)
    return np.where(gt_mask[:, None, :], iou, -np.inf)


def best_gt_iou(iou: np.ndarray) -> np.ndarray:
    """``(Q, P, G)`` -> ``(Q, P)``: each prediction's IoU with its best ground-truth window (0 if none)."""
    if iou.shape[-1] == 0:
        return np.zeros(iou.shape[:-1])
    return np.maximum(iou.max(-1), 0.0)


def average_precision(iou: np.ndarray, scores: np.ndarray, pred_mask: np.ndarray, n_gt: np.ndarray,
                      thresholds=MAP_THRESHOLDS) -> np.ndarray:
    """Per-query detection AP at each tIoU threshold, greedy one-to-one matching by score.

    Args:
        iou: ``(Q, P, G)`` from :func:`pairwise_ious` (``-inf`` at padded ground truth), P <= 10
            listed predictions in submission order.
        scores: ``(Q, P)`` prediction scores.
        pred_mask: ``(Q, P)`` True where a prediction exists.
        n_gt: ``(Q,)`` number of ground-truth windows of each query (> 0).
        thresholds: tIoU thresholds.

    Returns ``(Q, T)`` average precision in [0, 1]; 0 for a query without predictions.
    """
    q, p, g = iou.shape
    thr = np.asarray(thresholds, dtype=np.float64)
    t = len(thr)
    # Stable sort by decreasing score; padded predictions go last.
    key = np.where(pred_mask, -scores, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    iou = np.take_along_axis(iou, order[:, :, None], axis=1)
    valid = np.take_along_axis(pred_mask, order, axis=1)

    locked = np.zeros((q, t, g), dtype=bool)
    tp = np.zeros((q, t, p), dtype=bool)
    rows = np.arange(q)[:, None]
    cols = np.arange(t)[None, :]
    for k in range(p):  # sequential by construction: earlier (higher-score) predictions lock first
        iou_k = iou[:, None, k, :]  # (Q, 1, G)
        candidate = (iou_k >= thr[None, :, None]) & ~locked & valid[:, None, k, None]
        has = candidate.any(-1)  # (Q, T)
        masked = np.where(candidate, iou_k, -np.inf)
        # highest IoU, ties to the later ground-truth window (argmax over the reversed axis)
        pick = g - 1 - np.argmax(masked[:, :, ::-1], axis=-1) if g else np.zeros((q, t), dtype=int)
        if g:
            locked[rows, cols, pick] |= has
        tp[:, :, k] = has
    fp = valid[:, None, :] & ~tp
    tp_cum = np.cumsum(tp, axis=-1, dtype=np.float64)
    fp_cum = np.cumsum(fp, axis=-1, dtype=np.float64)
    seen = tp_cum + fp_cum
    precision = np.divide(tp_cum, seen, out=np.zeros_like(tp_cum), where=seen > 0)
    n_gt = np.asarray(n_gt, dtype=np.float64)[:, None, None]
    recall = np.divide(tp_cum, n_gt, out=np.zeros_like(tp_cum), where=n_gt > 0)
    # interpolated precision: the best precision at this or any later (higher-recall) rank
    interp = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
    recall_step = np.diff(recall, axis=-1, prepend=0.0)
    return (recall_step * interp).sum(-1)


def split_mask(gt: np.ndarray, gt_mask: np.ndarray, split: Optional[str]) -> np.ndarray:
    """Ground-truth slots kept by a length split (``None`` / "full": all of them)."""
    if split in (None, "full"):
        return gt_mask
    lo, hi = LENGTH_SPLITS[split]
    length = gt[..., 1] - gt[..., 0]
    return gt_mask & (length > lo) & (length <= hi)


def moment_retrieval_block(pred: np.ndarray, scores: np.ndarray, pred_mask: np.ndarray,
                           gt: np.ndarray, gt_mask: np.ndarray, scored: np.ndarray,
                           r1_thresholds=R1_THRESHOLDS, map_thresholds=MAP_THRESHOLDS,
                           recall_k: int = 5) -> dict:
    """All MR numbers for one split, reference-rounded.

    Args:
        pred, scores, pred_mask: ``(Q, P, 2)``, ``(Q, P)``, ``(Q, P)`` first ``P <= 10`` listed windows.
        gt, gt_mask: ``(Q, G, 2)``, ``(Q, G)`` ground truth of the split (queries without any
            window of the split must already be removed).
        scored: ``(Q,)`` False for queries without a prediction (``allow_missing``): they score 0.

    Returns ``{"MR-mAP": {thr: ..., "average": ...}, "MR-R1": {thr: ...}, "MR-R5": {...},
    "MR-mIoU": ..., "num_queries": Q}``; every metric is None when Q == 0.
    """
    n = pred.shape[0]
    if n == 0:
        return {"MR-mAP": {**{threshold_key(t): None for t in map_thresholds}, "average": None},
                "MR-R1": {threshold_key(t): None for t in r1_thresholds},
                f"MR-R{recall_k}": {threshold_key(t): None for t in r1_thresholds},
                "MR-mIoU": None, "num_queries": 0}
    pred_mask = pred_mask & scored[:, None]
    iou = pairwise_ious(pred, gt, gt_mask)
    top = np.where(pred_mask, best_gt_iou(iou), 0.0)  # (Q, P), listed order
    top1 = top[:, 0]
    topk = top[:, :recall_k].max(1)
    ap = average_precision(iou[:, :MAX_MAP_WINDOWS], scores[:, :MAX_MAP_WINDOWS],
                           pred_mask[:, :MAX_MAP_WINDOWS], gt_mask.sum(1), map_thresholds)
    ap_per_threshold = ap.mean(0)
    mr_map = {threshold_key(t): pct(v) for t, v in zip(map_thresholds, ap_per_threshold)}
    mr_map["average"] = pct(ap_per_threshold.mean())
    return {
        "MR-mAP": mr_map,
        "MR-R1": {threshold_key(t): pct(np.mean(top1 >= t)) for t in r1_thresholds},
        f"MR-R{recall_k}": {threshold_key(t): pct(np.mean(topk >= t)) for t in r1_thresholds},
        "MR-mIoU": pct(top1.mean()),
        "num_queries": int(n),
    }


def moment_retrieval_splits(pred, scores, pred_mask, gt, gt_mask, scored,
                            splits=("full", "short", "middle", "long")) -> dict:
    """:func:`moment_retrieval_block` for each length split (see the module docstring)."""
    out = {}
    for name in splits:
        mask = split_mask(gt, gt_mask, name)
        keep = mask.any(1)
        out[name] = moment_retrieval_block(pred[keep], scores[keep], pred_mask[keep], gt[keep], mask[keep],
                                           scored[keep])
    return out
