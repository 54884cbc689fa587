"""Highlight-only metrics: TVSum (video summarisation, top-5 mAP) and YouTube Highlights (mAP).

The ground truth is highlight-only samples (``task`` "summarization" / "highlight",
``clip_labels`` = clips x annotators, ``meta["domain"]``); a prediction is a QVHighlights-style row
whose ``pred_saliency_scores`` holds one score per labelled clip (``pred_relevant_windows`` is not
needed). Both numbers follow the protocol of the public code bases these benchmarks are reported
with (UMT, UniVTG, lighthouse):

**Ranked-list AP** (:func:`ranked_list_ap`). Clips are ranked by predicted saliency, highest first.
Walking down the list, with ``P`` the number of positives *in the list*, after rank ``j`` recall is
``hits_j / P`` and precision ``hits_j / j``; AP adds, at every rank,
``(recall_j - recall_{j-1}) * (precision_j + precision_{j-1}) / 2`` (a trapezoid between
consecutive points, the curve starting at recall 0 with precision 1). A list without positives gives
AP 0. E.g. ``[1, 0, 1]``: 0.5 * (1 + 1) / 2 + 0 + 0.5 * (1/2 + 2/3) / 2 = 0.791667.

**TVSum** (:func:`tvsum_video_ap`). Per video and per annotator: the annotator's scores become
positive where ``score > median`` of that annotator's scores over the video's clips (``numpy.median``:
the mean of the two middle values for an even clip count; because ``>`` is strict and the scores are
compared with the mean of two *adjacent* sorted values, the lower middle value gives the same
labels, the upper one would not). The clips ranked by predicted saliency are cut to the top 5
(:data:`TVSUM_TOP_K`) and the ranked-list AP is computed on those 5 labels only (so ``P`` counts
the positives among the top 5, as the reference does: top-5 labels ``[0, 1, 0, 0, 0]`` give
(1 - 0) * (1/2 + 0) / 2 = 0.25, and any top 5 whose positives all come first gives 1). An annotator
whose top 5 holds no positive (e.g. all scores equal: nothing is above the median) gets AP 0.
The video's AP is the mean over its annotators (20), a domain's the mean over its videos, and
``mAP`` the mean over the domains present (BK, BT, DS, FM, GA, MS, PK, PR, VT, VU).

**YouTube Highlights** (:func:`youtube_video_ap`). Per video: the ranked-list AP over *all* its
clips against the 0/1 labels (positive: label > 0). A video without a positive clip gets AP 0
(counted, and named in a note); all-positive labels give AP 1 whatever the ranking. Domain mean over
videos, ``mAP`` the mean over the domains present (dog, gymnastics, parkour, skating, skiing, surfing).

Conventions of this implementation:

* **Ties** in the predicted scores are ranked by clip index (a stable sort: the earlier clip first);
  the reference codes use an unstable ``argsort``, so predictions with ties can score differently
  there; tie-free predictions score the same.
* **Length**: a prediction with *fewer* scores than the video has labelled clips is an error
  naming the qid (a clip cannot be ranked without a score); *extra* scores (beyond the labelled
  clips, e.g. a final partial feature clip) are dropped before ranking, and a note counts them.
* NaN / infinite / boolean / non-numeric scores are errors naming the qid. With ``allow_missing``
  a video without a prediction scores AP 0.
* Numbers are percent with two decimals (``mAP`` is computed from the unrounded domain values).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from vtg_rl.data.schema import TASK_HIGHLIGHT, TASK_SUMMARIZATION, VTGSample
from vtg_rl.metrics.submission import SubmissionError
from vtg_rl.metrics.moment_retrieval import pct

TVSUM_TOP_K = 5
TVSUM_DOMAINS = ("BK", "BT", "DS", "FM", "GA", "MS", "PK", "PR", "VT", "VU")
YOUTUBE_DOMAINS = ("dog", "gymnastics", "parkour", "skating", "skiing", "surfing")
#: protocol -> (task of its samples, canonical domain order)
CLIP_LABEL_PROTOCOLS = {
    "tvsum": (TASK_SUMMARIZATION, TVSUM_DOMAINS),
    "youtube_highlight": (TASK_HIGHLIGHT, YOUTUBE_DOMAINS),
}
NO_DOMAIN = "(no domain)"


def ranked_list_ap(ranked: np.ndarray) -> np.ndarray:
    """Trapezoid AP of binary labels already in ranked order, along the first axis.

    Args:
        ranked: ``(L,)`` or ``(L, C)`` 0/1 labels, rank 1 first; one AP per column.
    Returns a float (or ``(C,)``): 0 where a column has no positive.
    """
    y = np.asarray(ranked, dtype=np.float64)
    squeeze = y.ndim == 1
    if squeeze:
        y = y[:, None]
    n_pos = y.sum(0)
    hits = np.cumsum(y, axis=0)
    rank = np.arange(1, len(y) + 1, dtype=np.float64)[:, None]
    recall = np.divide(hits, n_pos, out=np.zeros_like(hits), where=n_pos > 0)
    precision = hits / rank
    prev_recall = np.vstack([np.zeros((1, y.shape[1])), recall[:-1]])
    prev_precision = np.vstack([np.ones((1, y.shape[1])), precision[:-1]])
    ap = ((recall - prev_recall) * (precision + prev_precision) / 2).sum(0)
    ap = np.where(n_pos > 0, ap, 0.0)
    return float(ap[0]) if squeeze else ap


def rank_clips(pred: np.ndarray) -> np.ndarray:
    """Clip indices by decreasing predicted score; ties: the lower clip index first."""
    return np.argsort(-np.asarray(pred, dtype=np.float64), kind="stable")


def tvsum_video_ap(pred: np.ndarray, labels: np.ndarray, top_k: int = TVSUM_TOP_K) -> np.ndarray:
    """Per-annotator top-``k`` AP of one video. ``pred``: ``(L,)``; ``labels``: ``(L, A)`` raw scores.
    Returns ``(A,)``."""
    labels = np.asarray(labels, dtype=np.float64)
    positive = labels > np.median(labels, axis=0, keepdims=True)
    top = rank_clips(pred)[:top_k]
    return ranked_list_ap(positive[top])


def youtube_video_ap(pred: np.ndarray, labels: np.ndarray) -> float:
    """AP of one video over all its clips. ``labels``: ``(L,)`` or ``(L, 1)`` 0/1."""
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)[:, 0] > 0
    return ranked_list_ap(y[rank_clips(pred)])


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_))


def _checked_labels(s: VTGSample, task: str) -> np.ndarray:
    labels = s.clip_labels
    if s.task != task:
        raise SubmissionError(f"ground truth qid {s.qid}: task {s.task!r}, but this protocol scores {task!r} samples")
    if not isinstance(labels, list) or not labels or not all(isinstance(r, list) and r for r in labels):
        raise SubmissionError(f"ground truth qid {s.qid}: no clip_labels (one row per clip) to score against")
    if len({len(r) for r in labels}) > 1 or not all(_is_number(x) and math.isfinite(x) for r in labels for x in r):
        raise SubmissionError(f"ground truth qid {s.qid}: clip_labels are ragged or not finite numbers")
    return np.asarray(labels, dtype=np.float64)


def _checked_prediction(qid: str, row: dict, n_clips: int) -> tuple[np.ndarray, int]:
    sal = row.get("pred_saliency_scores")
    if not isinstance(sal, (list, tuple)) or not sal:
        raise SubmissionError(f"qid {qid}: 'pred_saliency_scores' must be a non-empty list (one score per clip)")
    bad = next((i for i, v in enumerate(sal) if not _is_number(v) or not math.isfinite(v)), None)
    if bad is not None:
        raise SubmissionError(f"qid {qid}: saliency score {bad} ({sal[bad]!r}) is not a finite number")
    if len(sal) < n_clips:
        raise SubmissionError(f"qid {qid}: {len(sal)} saliency scores for {n_clips} labelled clips (one score per "
                              f"clip is needed)")
    return np.asarray(sal[:n_clips], dtype=np.float64), len(sal) - n_clips


def clip_label_metrics(samples: Sequence[VTGSample], rows: Sequence[Optional[dict]], protocol: str) -> dict[str, Any]:
    """TVSum / YouTube Highlights numbers for samples and their prediction rows (same order; None
    where a prediction is missing and ``allow_missing`` was given).

    Returns ``{"brief": {<domain>: mAP, ..., "mAP": mean over domains}, "domains": {<domain>:
    {"mAP", "num_videos"}}, "videos": {qid: {"domain", "AP"}}, "notes": [...]}`` in percent.
    """
    task, canonical = CLIP_LABEL_PROTOCOLS[protocol]
    per_video: dict[str, tuple[str, float]] = {}
    extra = n_extra_videos = 0
    no_positive: list[str] = []
    no_domain = 0
    for s, row in zip(samples, rows):
        labels = _checked_labels(s, task)
        domain = s.meta.get("domain") if isinstance(s.meta, dict) else None
        if domain is None:
            domain, no_domain = NO_DOMAIN, no_domain + 1
        domain = str(domain)
        if protocol == "youtube_highlight" and not (labels[:, 0] > 0).any():
            no_positive.append(s.qid)
        if row is None:
            per_video[s.qid] = (domain, 0.0)
            continue
        pred, n_extra = _checked_prediction(s.qid, row, len(labels))
        extra += n_extra
        n_extra_videos += n_extra > 0
        if protocol == "tvsum":
            ap = float(tvsum_video_ap(pred, labels).mean())
        else:
            ap = youtube_video_ap(pred, labels)
        per_video[s.qid] = (domain, ap)

    present = {d for d, _ in per_video.values()}
    order = [d for d in canonical if d in present] + sorted(present - set(canonical))
    domains = {}
    for d in order:
        aps = [ap for dom, ap in per_video.values() if dom == d]
        domains[d] = {"mAP": float(np.mean(aps)), "num_videos": len(aps)}
    overall = float(np.mean([b["mAP"] for b in domains.values()]))
    brief = {d: pct(b["mAP"]) for d, b in domains.items()}
    brief["mAP"] = pct(overall)
    notes = []
    missing_domains = [d for d in canonical if d not in present]
    if missing_domains:
        notes.append(f"mAP is the mean over the {len(order)} domain(s) present; absent: {', '.join(missing_domains)}")
    if no_domain:
        notes.append(f"{no_domain} video(s) without meta['domain'] are grouped as {NO_DOMAIN!r}")
    if extra:
        notes.append(f"{extra} saliency score(s) beyond the labelled clips of {n_extra_videos} video(s) were ignored")
    if no_positive:
        notes.append(f"{len(no_positive)} video(s) without a positive clip score AP 0: "
                     f"{', '.join(no_positive[:5])}{' ...' if len(no_positive) > 5 else ''}")
    return {
        "brief": brief,
        "domains": {d: {"mAP": pct(b["mAP"]), "num_videos": b["num_videos"]} for d, b in domains.items()},
        "videos": {q: {"domain": d, "AP": pct(ap)} for q, (d, ap) in per_video.items()},
        "notes": notes,
    }
