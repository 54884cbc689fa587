"""Grounded-QA metrics (NExT-GQA / ReXTime style).

* **Acc@QA**: the predicted option letter equals the answer.
* **mIoU**, **IoU@0.3**, **IoU@0.5**: top-1 (first listed) window against the best-overlapping
  evidence window, as for moment retrieval.
* **GQA@0.5**: right answer *and* IoU >= 0.5 (grounded accuracy; NExT-GQA's own Acc@GQA uses
  intersection over prediction instead, which we do not report).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from vtg_rl.metrics.moment_retrieval import best_gt_iou, pairwise_ious, pct

GQA_IOU_THRESHOLDS = (0.3, 0.5)


def normalise_choice(value) -> Optional[str]:
    """An option as an upper-case letter: "b" / "(B)" / 1 -> "B"; None stays None.

    >>> normalise_choice(2), normalise_choice(" c ")
    ('C', 'C')
    """
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return chr(ord("A") + int(value)) if 0 <= int(value) < 26 else None
    if isinstance(value, str):
        text = value.strip().strip("()").strip()
        if len(text) == 1 and text.isalpha():
            return text.upper()
    return None


def grounded_qa_metrics(first_window: np.ndarray, gt: np.ndarray, gt_mask: np.ndarray,
                        pred_answers: list, gt_answers: list, scored: np.ndarray) -> dict:
    """QA accuracy and grounding of the first listed window, reference-rounded (percent).

    Args:
        first_window: ``(Q, 2)`` first listed predicted window.
        gt, gt_mask: ``(Q, G, 2)``, ``(Q, G)`` evidence windows.
        pred_answers, gt_answers: letters (``normalise_choice``), None when missing.
        scored: ``(Q,)`` False for queries without a prediction: wrong and IoU 0.
    """
    q = first_window.shape[0]
    if q == 0:
        return {"Acc@QA": None, "mIoU": None, **{f"IoU@{t}": None for t in GQA_IOU_THRESHOLDS}, "GQA@0.5": None,
                "num_queries": 0}
    iou = best_gt_iou(pairwise_ious(first_window[:, None, :], gt, gt_mask))[:, 0]
    iou = np.where(scored, iou, 0.0)
    correct = np.array([p is not None and p == g for p, g in zip(pred_answers, gt_answers)]) & scored
    out = {"Acc@QA": pct(correct.mean()), "mIoU": pct(iou.mean())}
    out.update({f"IoU@{t}": pct(np.mean(iou >= t)) for t in GQA_IOU_THRESHOLDS})
    out["GQA@0.5"] = pct(np.mean(correct & (iou >= 0.5)))
    out["num_queries"] = int(q)
    return out
