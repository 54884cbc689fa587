"""The head protocol: what a grounding head returns, and how its queries are ranked.

GIRL-DETR and R2-Tuning both follow it, so one decoder (:mod:`vtg_rl.heads.predictions`), one trainer
(:class:`vtg_rl.heads.trainer.HeadTrainer`) and one RL loop (:mod:`vtg_rl.heads.tprl`) serve both:

* ``model(**batch["model_inputs"])`` returns a dict with ``pred_spans`` (B, Q, 2) normalised
  (center, width) in [0, 1], ``pred_logits`` (B, Q) (higher = more confident), optionally
  ``pred_iou`` (B, Q) IoU-head logits and ``query_mask`` (B, Q) bool (False = padding candidate);
* ``model.head_parameters()`` yields the detection-head parameters (the only ones TPRL trains);
* optionally ``model.freeze_backbone()``; otherwise :func:`vtg_rl.heads.tprl.loss.freeze_backbone` does
  it from ``head_parameters()``;
* targets: ``batch["targets"]``, a list of B dicts with ``spans`` (n_b, 2) normalised cxw.

:func:`query_scores` ranks the queries: it picks the greedy window, orders the submitted windows and
defines TPRL's policy, so what TPRL optimises is exactly what inference outputs.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class GroundingHead(Protocol):
    def head_parameters(self) -> Iterable[nn.Parameter]: ...

    def __call__(self, **model_inputs) -> dict: ...


def query_scores(outputs: dict) -> torch.Tensor:
    """Ranking score of each query: log p(foreground) + log IoU-estimate when an IoU head exists.

    The same score picks the greedy query, defines the RL policy and ranks the submitted windows,
    so what REINFORCE optimises is exactly what inference outputs.
    """
    logits = outputs["pred_logits"]
    if "pred_iou" in outputs and outputs["pred_iou"] is not None:
        scores = F.logsigmoid(logits) + F.logsigmoid(outputs["pred_iou"])
    else:
        scores = logits
    mask = outputs.get("query_mask")
    return scores if mask is None else scores.masked_fill(~mask.bool(), float("-inf"))


def query_confidence(outputs: dict) -> torch.Tensor:
    """The score as a number in [0, 1], same order as :func:`query_scores`: p_fg x IoU-estimate with an
    IoU head, sigmoid(logit) without; 0 for masked candidates."""
    scores = query_scores(outputs)
    return scores.exp() if outputs.get("pred_iou") is not None else torch.sigmoid(scores)
