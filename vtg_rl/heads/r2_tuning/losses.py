"""R2-Tuning's losses: moment targets on the conv pyramid, focal / regression / IoU losses, saliency,
and the two contrastive constraints that align the frozen CLIP towers through the adapter:

* **video-level**: across the batch, the mean [CLS] projection of a video's moment clips must be closer
  to *its* sentence than to the other samples' sentences (InfoNCE both ways). Pairs that share a video
  or the exact query text are not used as negatives (they are not wrong matches).
* **layer-wise**: at every CLIP layer the adapter visits, the query-pooled vector of each clip must be
  closer to the layer's sentence vector for clips inside the moment than for clips outside it
  (multi-positive InfoNCE over the clips of one video).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from vtg_rl.heads.r2_tuning.heads import Anchors
from vtg_rl.spans import cross_temporal_iou, generalized_temporal_iou


def level_of_length(length_clips: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Pyramid level that regresses a moment of this length (clips): [0,4) -> 0, [4,8) -> 1, [8,16) -> 2, ...

    Level ``l`` has stride ``2**l``, so every level sees moments 2-4 strides long (the last level takes all
    longer ones), which keeps the regressed distances of similar size across levels.
    """
    lvl = torch.floor(torch.log2(length_clips.clamp(min=1e-6) / 2.0)).long()
    return lvl.clamp(0, num_levels - 1)


def assign_moment_targets(anchors: Anchors, windows: list[torch.Tensor], clip_len_norm: torch.Tensor,
                          num_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive anchors and their ground-truth moment.

    ``windows[b]``: ``(G, 2)`` normalised (start, end). An anchor is positive for a moment when it lies on
    the moment's level and its centre falls inside the moment; the anchor nearest the moment's centre on
    that level is always positive, so very short moments are never left without one. An anchor claimed by
    several moments takes the shortest (FCOS rule).

    Returns ``pos (B, Q)`` bool and ``target (B, Q, 2)`` normalised (start, end) (zeros where not positive).
    """
    bsz, q = anchors.mask.shape
    pos = torch.zeros(bsz, q, dtype=torch.bool, device=anchors.mask.device)
    target = torch.zeros(bsz, q, 2, device=anchors.centers.device)
    for b in range(bsz):
        w = windows[b]
        if w.numel() == 0:
            continue
        w_clips = w.to(anchors.centers) / clip_len_norm[b]                                   # (G, 2) in clips
        length = w_clips[:, 1] - w_clips[:, 0]
        on_level = anchors.levels[:, None] == level_of_length(length, num_levels)[None, :]  # (Q, G)
        valid = anchors.mask[b][:, None] & on_level
        c = anchors.centers[b][:, None]
        claim = valid & (c > w_clips[None, :, 0]) & (c < w_clips[None, :, 1])
        dist = (c - w_clips.mean(-1)[None, :]).abs().masked_fill(~valid, float("inf"))
        nearest = dist.argmin(0)                                                             # (G,)
        has_anchor = torch.isfinite(dist.min(0).values)
        g_idx = torch.arange(w.shape[0], device=w.device)[has_anchor]
        claim[nearest[has_anchor], g_idx] = True
        lengths = length[None, :].expand_as(claim).masked_fill(~claim, float("inf"))
        best = lengths.argmin(1)
        pos[b] = claim.any(1)
        target[b] = w.to(target)[best] * pos[b][:, None]
    return pos, target


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                       alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss summed over ``mask``ed entries (normalise outside)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (a_t * ce * (1 - p_t) ** gamma)[mask].sum()


def moment_losses(anchors: Anchors, cls_logits: torch.Tensor, distances: torch.Tensor, spans: torch.Tensor,
                  iou_logits: torch.Tensor, windows: list[torch.Tensor], clip_len_norm: torch.Tensor,
                  num_levels: int) -> dict[str, torch.Tensor]:
    """Focal classification, L1 on stride-scaled distances + gIoU on decoded spans, IoU-head BCE."""
    pos, target = assign_moment_targets(anchors, windows, clip_len_norm, num_levels)
    num_pos = pos.sum().clamp(min=1).float()
    loss_cls = sigmoid_focal_loss(cls_logits, pos.float(), anchors.mask) / num_pos
    if pos.any():
        scale = (anchors.strides[None, :] * clip_len_norm[:, None])[pos]                   # clip -> norm, per anchor
        centre = (anchors.centers * clip_len_norm[:, None])[pos]
        tgt = target[pos]
        tgt_dist = torch.stack([centre - tgt[:, 0], tgt[:, 1] - centre], -1) / scale[:, None]
        loss_l1 = F.l1_loss(distances[pos], tgt_dist)
        loss_giou = (1 - torch.diagonal(generalized_temporal_iou(spans[pos], tgt))).mean()
    else:
        loss_l1 = loss_giou = distances.sum() * 0.0
    # IoU head: how well each valid anchor's (detached) decoded span overlaps its best ground truth
    with torch.no_grad():
        iou_target = torch.zeros_like(iou_logits)
        for b, w in enumerate(windows):
            if w.numel():
                iou_target[b] = cross_temporal_iou(spans[b].detach(), w.to(spans)).max(1).values
    loss_iou = F.binary_cross_entropy_with_logits(iou_logits[anchors.mask], iou_target[anchors.mask])
    return {"loss_cls": loss_cls, "loss_l1": loss_l1, "loss_giou": loss_giou, "loss_iou": loss_iou}


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``-log(sum_pos exp / sum_valid exp)`` per row; rows without a positive or a negative are skipped.

    ``logits, positives, valid``: ``(N, M)``. Returns the mean over usable rows (0 when none).
    """
    negatives = valid & ~positives
    usable = (positives & valid).any(1) & negatives.any(1)
    if not usable.any():
        return logits.sum() * 0.0
    lg = logits.masked_fill(~valid, float("-inf"))[usable]
    pos_lg = logits.masked_fill(~(positives & valid), float("-inf"))[usable]
    return (torch.logsumexp(lg, 1) - torch.logsumexp(pos_lg, 1)).mean()


def video_contrastive_loss(layer_cls: torch.Tensor, sentence: torch.Tensor, moment_mask: torch.Tensor,
                           same_pair: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """Video-level alignment across the batch. ``layer_cls (B, T, D)``, ``sentence (B, D)``,
    ``moment_mask (B, T)`` clips inside the moment, ``same_pair (B, B)`` True where j is not a negative for i."""
    m = moment_mask.to(layer_cls.dtype)[..., None]
    has = moment_mask.any(1)
    if has.sum() < 2:
        return layer_cls.sum() * 0.0
    video = F.normalize((layer_cls * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)[has]
    text = F.normalize(sentence, dim=-1)[has]
    logits = video @ text.t() / temperature
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    valid = torch.ones_like(eye)
    if same_pair is not None:
        valid = ~same_pair[has][:, has] | eye
    return 0.5 * (multi_positive_nce(logits, eye, valid) + multi_positive_nce(logits.t(), eye, valid.t()))


def layer_contrastive_loss(layer_frames: list[torch.Tensor], layer_sentences: list[torch.Tensor],
                           moment_mask: torch.Tensor, video_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Layer-wise alignment: at each layer, moment clips are the positives for the sentence among the clips."""
    losses = []
    for frames, sentence in zip(layer_frames, layer_sentences):
        logits = (F.normalize(frames, dim=-1) * F.normalize(sentence, dim=-1)[:, None, :]).sum(-1) / temperature
        losses.append(multi_positive_nce(logits, moment_mask & video_mask, video_mask))
    return torch.stack(losses).mean()


def saliency_loss(saliency_logits: torch.Tensor, saliency_target: torch.Tensor, video_mask: torch.Tensor,
                  temperature: float = 0.5, rank_threshold: float = 0.5) -> torch.Tensor:
    """Soft BCE toward the per-clip saliency in [0, 1], plus a ranking term: clips at or above
    ``rank_threshold`` must out-score the other clips of the same video (multi-positive InfoNCE)."""
    bce = F.binary_cross_entropy_with_logits(saliency_logits[video_mask], saliency_target[video_mask])
    rank = multi_positive_nce(saliency_logits / temperature, saliency_target >= rank_threshold, video_mask)
    return bce + rank
