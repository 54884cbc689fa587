"""Hungarian matching between predicted span queries and ground-truth spans (DETR set prediction).

Cost per (query, target) = ``w_class * (-p_fg) + w_l1 * |cxw_q - cxw_t|_1 + w_giou * (-GIoU)``; the
optimal one-to-one assignment per video comes from ``scipy.optimize.linear_sum_assignment``.
GIoU is the shared implementation in :mod:`vtg_rl.spans`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from vtg_rl.spans import generalized_temporal_iou, span_cxw_to_xx


@dataclass
class MatcherWeights:
    cost_class: float = 4.0
    cost_l1: float = 10.0
    cost_giou: float = 1.0


class HungarianMatcher:
    """Call with ``outputs`` (``pred_spans`` (B, Q, 2) cxw, ``pred_logits`` (B, Q)) and ``targets``
    (a list of B dicts with ``spans`` (n_b, 2) cxw). Returns B pairs ``(query_idx, target_idx)``
    of int64 tensors, one entry per ground-truth span (``min(Q, n_b)`` of them)."""

    def __init__(self, weights: MatcherWeights | None = None):
        self.w = weights or MatcherWeights()

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        spans, logits = outputs["pred_spans"], outputs["pred_logits"]
        if len(targets) != spans.shape[0]:
            raise ValueError(f"matcher got {len(targets)} targets for a batch of {spans.shape[0]}")
        sizes = [len(t["spans"]) for t in targets]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in targets]
        # one cost matrix for the whole batch (queries x all targets), split per video (as DETR does)
        b, q = spans.shape[:2]
        flat = spans.reshape(b * q, 2).float()
        gt = torch.cat([t["spans"] for t in targets]).to(flat)
        cost = (self.w.cost_l1 * torch.cdist(flat, gt, p=1)
                - self.w.cost_giou * generalized_temporal_iou(span_cxw_to_xx(flat), span_cxw_to_xx(gt))
                - self.w.cost_class * torch.sigmoid(logits.reshape(b * q).float())[:, None])
        cost = cost.reshape(b, q, -1).cpu().numpy()
        result, start = [], 0
        for i, n in enumerate(sizes):
            q_idx, t_idx = linear_sum_assignment(cost[i, :, start:start + n]) if n else ([], [])
            result.append((torch.as_tensor(q_idx, dtype=torch.int64), torch.as_tensor(t_idx, dtype=torch.int64)))
            start += n
        return result
