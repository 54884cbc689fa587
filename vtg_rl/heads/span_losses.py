"""Span maths shared by the heads' losses, TPRL and decoding, on normalised (center, width) spans.

What is reported (:func:`cxw_to_unit_xx`), each query's best ground truth (:func:`best_target_iou`,
:func:`batched_best_iou`: TPRL's reward and the IoU head's target), padded batch targets
(:func:`pad_targets`) and the per-pair L1 + (1 - GIoU) regression (:func:`span_losses`).
All IoU maths comes from :mod:`vtg_rl.spans`.
"""

from __future__ import annotations

import torch

from vtg_rl.spans import cross_temporal_iou, generalized_temporal_iou, span_cxw_to_xx, temporal_iou


def cxw_to_unit_xx(spans: torch.Tensor) -> torch.Tensor:
    """Normalised (center, width) -> (start, end) clamped into the video, i.e. what is reported."""
    return span_cxw_to_xx(spans).clamp(0.0, 1.0)


def best_target_iou(pred_spans: torch.Tensor, gt_spans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tIoU of each predicted span ``(Q, 2)`` cxw with its best ground truth ``(n, 2)`` cxw.

    Returns ``(iou (Q,), index (Q,))``; this is the per-query reward of TPRL and the IoU head's target.
    """
    iou = cross_temporal_iou(cxw_to_unit_xx(pred_spans.float()), span_cxw_to_xx(gt_spans.float()))
    return iou.max(-1)


def pad_targets(targets: list[dict], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth spans of a batch as ``(B, N, 2)`` cxw with a ``(B, N)`` validity mask."""
    n = max([len(t["spans"]) for t in targets] + [1])
    gt = like.new_zeros(len(targets), n, 2)
    gt[..., 1] = 1.0  # padding: a harmless valid span, masked out anyway
    mask = torch.zeros(len(targets), n, dtype=torch.bool, device=like.device)
    for b, t in enumerate(targets):
        k = len(t["spans"])
        if k:
            gt[b, :k] = t["spans"].to(like)
            mask[b, :k] = True
    return gt, mask


def batched_best_iou(pred_spans: torch.Tensor, gt: torch.Tensor, gt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`best_target_iou` for a batch: ``pred (B, Q, 2)`` against padded ``gt (B, N, 2)`` -> ``(B, Q)`` twice.
    Rows without any ground truth get IoU 0."""
    iou = temporal_iou(cxw_to_unit_xx(pred_spans.float())[:, :, None], span_cxw_to_xx(gt.float())[:, None])
    iou = iou.masked_fill(~gt_mask[:, None, :], -1.0)
    best, idx = iou.max(-1)
    return best.clamp(min=0.0), idx


def span_losses(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair L1 (summed over center and width) and 1 - GIoU for paired spans ``(N, 2)`` cxw."""
    l1 = (pred - gt).abs().sum(-1)
    giou = torch.diagonal(generalized_temporal_iou(span_cxw_to_xx(pred), span_cxw_to_xx(gt)))
    return l1, 1 - giou
