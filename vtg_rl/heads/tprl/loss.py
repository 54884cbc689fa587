"""TPRL: three-stage progressive RL on a frozen backbone (GIRL-DETR), for any grounding head.

Any head that follows the head protocol of :mod:`vtg_rl.heads.protocol` (GIRL-DETR and R2-Tuning
both do, so one loop serves both) can be post-trained.

Stages, over training progress p in [0, 1]:

1. top-1 refinement (always on): L1 + GIoU of the highest-scoring query toward its best-IoU ground truth,
   only where the two overlap (``refine_overlap_only``): a top-1 window on another moment is a ranking
   error, and regressing it onto the ground truth cost 1.6 points of held-out R1@0.7 where the same
   refiner trained on overlapping windows only gained 0.8 (benchmarks/tprl_ceiling.py, seed 0);
2. reward-weighted regression of the top-k queries, weight (1 - tIoU), ramped in linearly from
   ``stage2_start`` over ``stage2_ramp``; only queries that overlap a ground truth (tIoU > 0) are pulled:
   a query on another moment is not a poor localisation of this one, and dragging those onto the ground
   truth (weight 1) lowered the greedy train tIoU from 0.83 to 0.75 in a trial;
3. from ``stage3_start``: self-critical REINFORCE over *which query to output*: policy
   softmax(confidence / T) with the confidence in [0, 1] (:func:`query_confidence`, the number written
   next to each window), ``num_samples`` draws, reward = tIoU (:mod:`vtg_rl.spans`), baseline = the
   greedy query's reward; ``policy_top_k`` restricts the draws to the highest-scoring queries. On
   log-scores instead of a [0, 1] confidence the policy is so peaked that the
   draws almost always repeat the greedy choice and the advantage is ~0 (seen in a trial).

The IoU head (when present) is kept calibrated throughout, because it is part of the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from vtg_rl.heads.protocol import query_confidence, query_scores
from vtg_rl.heads.span_losses import batched_best_iou, pad_targets, span_losses


@dataclass
class TPRLConfig:
    """Knobs of the three stages (fractions are of the total number of TPRL steps)."""

    stage2_start: float = 0.2
    stage2_ramp: float = 0.2
    stage3_start: float = 0.5
    top_k: int = 3
    temperature: float = 0.5
    num_samples: int = 3
    # stage 3 draws only among the ``policy_top_k`` highest-scoring queries (0 = all of them): with all 10,
    # most draws land on queries that are plainly wrong (negative advantage, ~9 in 10 groups have no draw
    # better than the greedy one), which sharpens the ranking the head already has instead of reordering
    # its plausible candidates
    policy_top_k: int = 0
    # stage 1 pulls only a top-1 window that overlaps a ground truth (tIoU > 0), like stage 2: a window on
    # another moment is a ranking error, not a poor localisation of this one
    refine_overlap_only: bool = True
    refine_weight: float = 1.0
    topk_weight: float = 1.0
    rl_weight: float = 1.0
    iou_head_weight: float = 1.0
    l1_weight: float = 10.0
    giou_weight: float = 1.0
    # forward the frozen backbone with its dropout active (no gradient, no parameter moves): on the training
    # videos the converged backbone is near-perfect, so without noise the policy rarely sees the mistakes it
    # makes on held-out data and the RL / refinement signal is ~0
    backbone_dropout: bool = False

    def __post_init__(self):
        if not 0 <= self.stage2_start <= 1 or not 0 <= self.stage3_start <= 1 or self.stage2_ramp < 0:
            raise ValueError(f"TPRL stage boundaries must lie in [0, 1]: {self}")
        if self.top_k < 1 or self.num_samples < 1 or self.temperature <= 0 or self.policy_top_k < 0:
            raise ValueError(f"TPRL needs top_k >= 1, num_samples >= 1, temperature > 0, policy_top_k >= 0: {self}")

    def stage_weights(self, progress: float) -> tuple[float, float, float]:
        """(stage 1, stage 2, stage 3) weights at training progress ``progress`` in [0, 1]."""
        if self.stage2_ramp > 0:
            ramp = min(max((progress - self.stage2_start) / self.stage2_ramp, 0.0), 1.0)
        else:
            ramp = float(progress >= self.stage2_start)
        return self.refine_weight, self.topk_weight * ramp, self.rl_weight * float(progress >= self.stage3_start)


# --------------------------------------------------------------------------- freezing / isolation
def freeze_backbone(model: nn.Module) -> tuple[int, int]:
    """Make only ``model.head_parameters()`` trainable; returns ``(trainable, total)`` counts."""
    if hasattr(model, "freeze_backbone"):
        return model.freeze_backbone()
    head = {id(p) for p in model.head_parameters()}
    if not head:
        raise ValueError(f"{type(model).__name__}.head_parameters() yielded nothing: no head to train")
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())


def backbone_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every non-head parameter and buffer, to prove afterwards that nothing moved."""
    head = {id(p) for p in model.head_parameters()}
    snap = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in head}
    snap.update({f"buffer:{n}": b.detach().clone() for n, b in model.named_buffers()})
    return snap


def changed_backbone_tensors(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> list[str]:
    """Names of backbone tensors that are not bit-identical to ``snapshot`` (empty = isolation held)."""
    current = dict(model.named_parameters())
    current.update({f"buffer:{n}": b for n, b in model.named_buffers()})
    return [n for n, v in snapshot.items() if not torch.equal(current[n].detach().cpu(), v.cpu())]


# --------------------------------------------------------------------------- the objective
def tprl_loss(outputs: dict, targets: list[dict], progress: float, cfg: TPRLConfig,
              generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The TPRL objective for one batch at training ``progress`` in [0, 1]; returns ``(loss, logs)``.

    Vectorised over the batch; videos without ground truth contribute nothing."""
    w1, w2, w3 = cfg.stage_weights(progress)
    spans = outputs["pred_spans"]
    scores = query_scores(outputs)
    confidence = query_confidence(outputs)
    valid = torch.isfinite(scores)
    if not valid.any(1).all():
        bad = int((~valid.any(1)).nonzero()[0])
        raise ValueError(f"batch item {bad}: every query is masked out (query_mask all False)")
    gt, gt_mask = pad_targets(targets, spans)
    rows = gt_mask.any(1).nonzero().squeeze(1)  # videos with ground truth
    zero = spans.sum() * 0.0 + scores.masked_fill(~valid, 0).sum() * 0.0
    logs = {"tprl/w_stage2": w2, "tprl/w_stage3": w3}
    if len(rows) == 0:
        return zero, logs
    spans, scores, valid, gt, gt_mask = spans[rows], scores[rows], valid[rows], gt[rows], gt_mask[rows]
    confidence = confidence[rows]
    with torch.no_grad():  # reward and assignment: no gradient through the IoU
        iou, best = batched_best_iou(spans, gt, gt_mask)
    ar = torch.arange(len(rows), device=spans.device)

    def regression(q_idx):  # (R, k) query indices -> (R, k) L1 + GIoU toward each query's best ground truth
        k = q_idx.shape[1]
        pred = spans[ar[:, None].expand(-1, k), q_idx].reshape(-1, 2)
        target = gt[ar[:, None].expand(-1, k), best[ar[:, None].expand(-1, k), q_idx]].reshape(-1, 2)
        l1, giou = span_losses(pred, target)
        return (cfg.l1_weight * l1 + cfg.giou_weight * giou).reshape(-1, k)

    top1 = scores.argmax(1)
    greedy = iou[ar, top1]
    logs["tprl/greedy_iou"] = float(greedy.mean())
    parts = {"refine": zero, "topk": zero, "rl": zero, "iou_head": zero}
    if w1 > 0:
        refine = regression(top1[:, None])[:, 0]
        if cfg.refine_overlap_only:
            keep = (greedy > 0).float()
            parts["refine"] = (refine * keep).sum() / keep.sum().clamp(min=1)
        else:
            parts["refine"] = refine.mean()
    if w2 > 0:
        top_scores, top = scores.topk(min(cfg.top_k, scores.shape[1]), dim=1)
        top_iou = iou[ar[:, None], top]
        # skip padding candidates (fewer than k valid) and queries on other moments (no overlap)
        keep = (torch.isfinite(top_scores) & (top_iou > 0)).float()
        weight = (1 - top_iou) * keep
        parts["topk"] = ((weight * regression(top)).sum(1) / keep.sum(1).clamp(min=1)).mean()
    if w3 > 0:
        allowed = valid
        if 0 < cfg.policy_top_k < scores.shape[1]:
            cut = scores.topk(cfg.policy_top_k, dim=1).values[:, -1:]
            allowed = valid & (scores >= cut)
        logp = F.log_softmax((confidence / cfg.temperature).masked_fill(~allowed, float("-inf")), -1)
        draws = torch.multinomial(logp.detach().exp(), cfg.num_samples, replacement=True, generator=generator)
        reward = iou[ar[:, None], draws]
        advantage = reward - greedy[:, None]  # self-critical: the greedy choice is the baseline
        parts["rl"] = -(advantage * logp[ar[:, None], draws]).mean()
        logs.update({"tprl/sampled_iou": float(reward.mean()), "tprl/advantage": float(advantage.mean())})
    if cfg.iou_head_weight > 0 and outputs.get("pred_iou") is not None:
        pred_iou = outputs["pred_iou"][rows]
        parts["iou_head"] = F.binary_cross_entropy_with_logits(pred_iou[valid], iou[valid].to(pred_iou))
    loss = w1 * parts["refine"] + w2 * parts["topk"] + w3 * parts["rl"] + cfg.iou_head_weight * parts["iou_head"]
    logs.update({f"tprl/{k}": float(v.detach()) for k, v in parts.items()})
    return loss, logs
