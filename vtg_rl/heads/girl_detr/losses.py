"""Supervised losses of GIRL-DETR (DETR set prediction).

* span: L1 on normalised (center, width) + (1 - GIoU) on (start, end), over Hungarian-matched pairs;
* label: foreground classification (BCE), background queries down-weighted (DETR's eos_coef);
* IoU head: BCE toward the (detached) tIoU of each query's span with its best ground truth;
* saliency: pairwise hinge ranking, every clip with a higher target must outscore one with a lower.
Applied to the last decoder layer and, with ``aux``, to every earlier layer.
The span maths shared with TPRL and decoding is in :mod:`vtg_rl.heads.span_losses`; all IoU maths
comes from :mod:`vtg_rl.spans`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from vtg_rl.heads.girl_detr.matcher import HungarianMatcher
from vtg_rl.heads.span_losses import batched_best_iou, pad_targets, span_losses


@dataclass
class LossWeights:
    span_l1: float = 10.0
    span_giou: float = 1.0
    label: float = 4.0
    background_weight: float = 0.1
    iou: float = 1.0
    saliency: float = 1.0
    saliency_margin: float = 0.2
    aux: bool = True


def saliency_ranking_loss(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge ``relu(margin - (s_i - s_j))`` over valid clip pairs with ``t_i > t_j``."""
    valid = mask[:, :, None] & mask[:, None, :] & (targets[:, :, None] > targets[:, None, :] + 1e-6)
    if not valid.any():
        return scores.sum() * 0.0
    hinge = F.relu(margin - (scores[:, :, None] - scores[:, None, :]))
    return hinge[valid].mean()


class DetrGroundingLoss:
    """``loss, parts = criterion(outputs, targets, saliency_targets)``; ``parts`` are floats for logging."""

    def __init__(self, weights: Optional[LossWeights] = None, matcher: Optional[HungarianMatcher] = None):
        self.w = weights or LossWeights()
        self.matcher = matcher or HungarianMatcher()

    def _layer(self, out: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        spans, logits = out["pred_spans"], out["pred_logits"]
        matches = self.matcher(out, targets)
        dev = spans.device
        batch_idx = torch.cat([torch.full((len(q),), b, dtype=torch.int64) for b, (q, _) in enumerate(matches)]).to(dev)
        query_idx = torch.cat([q for q, _ in matches]).to(dev)
        matched_gt = torch.cat([targets[b]["spans"][t] for b, (_, t) in enumerate(matches)]).to(spans)
        n_spans = max(len(query_idx), 1)
        if len(query_idx):
            l1, giou = span_losses(spans[batch_idx, query_idx], matched_gt)
            l1, giou = l1.sum() / n_spans, giou.sum() / n_spans
        else:
            l1 = giou = spans.sum() * 0.0
        fg = torch.zeros_like(logits)
        fg[batch_idx, query_idx] = 1.0
        weight = torch.where(fg > 0, torch.ones_like(fg), torch.full_like(fg, self.w.background_weight))
        label = (F.binary_cross_entropy_with_logits(logits, fg, reduction="none") * weight).sum() / weight.sum()
        parts = {"span_l1": l1, "span_giou": giou, "label": label}
        if "pred_iou" in out:
            parts["iou"] = iou_head_loss(out, targets)
        return parts

    def __call__(self, outputs: dict, targets: list[dict], saliency_targets: Optional[torch.Tensor] = None):
        parts = self._layer(outputs, targets)
        total = sum(getattr(self.w, k) * v for k, v in parts.items())
        if self.w.aux:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                aux_parts = self._layer(aux, targets)
                total = total + sum(getattr(self.w, k) * v for k, v in aux_parts.items())
                parts.update({f"{k}_{i}": v for k, v in aux_parts.items()})
        if saliency_targets is not None and "saliency_scores" in outputs and self.w.saliency > 0:
            sal = saliency_ranking_loss(outputs["saliency_scores"], saliency_targets.to(outputs["saliency_scores"]),
                                        outputs["video_mask"], self.w.saliency_margin)
            parts["saliency"] = sal
            total = total + self.w.saliency * sal
        return total, {k: float(v.detach()) for k, v in parts.items()}


def iou_head_loss(outputs: dict, targets: list[dict]) -> torch.Tensor:
    """BCE of the IoU head toward each query's tIoU with its best ground truth (target detached)."""
    spans, iou_logits = outputs["pred_spans"], outputs["pred_iou"]
    gt, gt_mask = pad_targets(targets, spans)
    has_gt = gt_mask.any(1)
    if not has_gt.any():
        return iou_logits.sum() * 0.0
    with torch.no_grad():
        iou, _ = batched_best_iou(spans, gt, gt_mask)
    return F.binary_cross_entropy_with_logits(iou_logits[has_gt], iou[has_gt].to(iou_logits))
