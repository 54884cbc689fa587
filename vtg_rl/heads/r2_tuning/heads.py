"""R2-Tuning's prediction heads: a temporal conv pyramid, per-location moment heads, per-clip saliency,
and the decoding of moments (anchors -> spans -> NMS).

Every pyramid location is an anchor at the centre of ``stride`` clips. The moment head predicts a
foreground logit, the distances from the anchor to the moment's start and end (in units of the level's
stride, so every level regresses numbers of the same size), and an IoU logit (how well the decoded span
overlaps the truth: used by TPRL and as a ranking signal). Spans are normalised to the video duration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vtg_rl.spans import cross_temporal_iou


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of ``(B, C, T)``, position by position: no statistic spans time, so
    padding clips never change what real clips get (a GroupNorm over C x T would)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the padded positions of ``(B, C, T)``: a real clip next to padding then sees exactly the zero
    padding an unpadded video gives, so a prediction does not depend on what else is in the batch."""
    return x * mask[:, None, :].to(x.dtype)


class MaskedConvStack(nn.Module):
    """conv3 -> norm -> ReLU -> conv3 over time, padding-safe."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm = ChannelNorm(dim)
        self.conv2 = nn.Conv1d(dim, out, 3, padding=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.conv2(_masked(F.relu(self.norm(self.conv1(_masked(x, mask)))), mask))


class ConvPyramid(nn.Module):
    """Levels at strides 1, 2, 4, ...: level i+1 = strided conv of level i (masked, so padding never leaks)."""

    def __init__(self, dim: int, num_levels: int = 4):
        super().__init__()
        self.strides = [2 ** i for i in range(num_levels)]
        self.down = nn.ModuleList(nn.Conv1d(dim, dim, 3, stride=2, padding=1) for _ in range(num_levels - 1))
        self.norms = nn.ModuleList(ChannelNorm(dim) for _ in range(num_levels - 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``x (B, T, D)``, ``mask (B, T)`` -> per level ``(B, T_l, D)`` features and ``(B, T_l)`` masks."""
        feats, masks = [x], [mask]
        cur, m = x.transpose(1, 2), mask
        for down, norm in zip(self.down, self.norms):
            cur = F.relu(norm(down(_masked(cur, m))))
            # a coarse location is valid when the first clip it covers is real (= the unpadded output length)
            m = m[:, ::2][:, : cur.shape[-1]]
            cur = _masked(cur, m)
            feats.append(cur.transpose(1, 2))
            masks.append(m)
        return feats, masks


class MomentHead(nn.Module):
    """Shared across levels: foreground logit, (start, end) distances, IoU logit."""

    def __init__(self, dim: int):
        super().__init__()
        self.cls = MaskedConvStack(dim, 1)
        self.reg = MaskedConvStack(dim, 2)
        self.iou = nn.Conv1d(dim, 1, 3, padding=1)
        nn.init.constant_(self.cls.conv2.bias, -2.0)  # start with a low foreground prior (focal-loss practice)

    def forward(self, feat: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = feat.transpose(1, 2)
        return (self.cls(x, mask).squeeze(1), F.softplus(self.reg(x, mask)).transpose(1, 2),
                self.iou(_masked(x, mask)).squeeze(1))


class SaliencyHead(nn.Module):
    """Per-clip saliency logit from the refined, query-conditioned frame state and the sentence vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.frame = nn.Linear(dim, dim)
        self.sentence = nn.Linear(dim, dim)
        self.bias = nn.Linear(dim, 1)

    def forward(self, frames: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        bilinear = (self.frame(frames) * self.sentence(sentence)[:, None, :]).sum(-1) / frames.shape[-1] ** 0.5
        return bilinear + self.bias(frames).squeeze(-1)


@dataclass
class Anchors:
    centers: torch.Tensor  # (B, Q) anchor centres in clip units
    strides: torch.Tensor  # (Q,) stride of each anchor's level
    levels: torch.Tensor   # (Q,) level index
    mask: torch.Tensor     # (B, Q) True for anchors on real clips


def make_anchors(level_masks: list[torch.Tensor], strides: list[int]) -> Anchors:
    centers, st, lv, masks = [], [], [], []
    for i, (m, s) in enumerate(zip(level_masks, strides)):
        n = m.shape[1]
        c = (torch.arange(n, device=m.device, dtype=torch.float32) + 0.5) * s
        centers.append(c[None].expand(m.shape[0], -1))
        st.append(torch.full((n,), float(s), device=m.device))
        lv.append(torch.full((n,), i, device=m.device, dtype=torch.long))
        masks.append(m)
    return Anchors(torch.cat(centers, 1), torch.cat(st), torch.cat(lv), torch.cat(masks, 1).bool())


def decode_spans(anchors: Anchors, distances: torch.Tensor, clip_len_norm: torch.Tensor) -> torch.Tensor:
    """Anchor + stride-scaled distances -> normalised ``(start, end)`` in [0, 1], ``(B, Q, 2)``.

    ``clip_len_norm (B,)`` is one clip's length divided by the video duration.
    """
    scale = anchors.strides[None, :] * 1.0
    start = (anchors.centers - distances[..., 0] * scale) * clip_len_norm[:, None]
    end = (anchors.centers + distances[..., 1] * scale) * clip_len_norm[:, None]
    return torch.stack([start, end], -1).clamp(0.0, 1.0)


def nms_spans(spans: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.7,
              max_out: int | None = None) -> torch.Tensor:
    """Greedy 1-D non-maximum suppression. ``spans (N, 2)`` (start, end), ``scores (N,)``.

    Returns indices of the kept spans, best score first: a span is dropped when its temporal IoU
    with an already-kept, higher-scoring span is *above* ``iou_threshold``.
    """
    if spans.ndim != 2 or spans.shape[-1] != 2 or scores.shape != spans.shape[:1]:
        raise ValueError(f"nms_spans expects spans (N, 2) and scores (N,), got {tuple(spans.shape)} / "
                         f"{tuple(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)
    if order.numel() == 0:
        return order
    iou = cross_temporal_iou(spans[order], spans[order])
    suppressed = torch.zeros(order.numel(), dtype=torch.bool, device=spans.device)
    keep = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_out is not None and len(keep) >= max_out:
            break
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=spans.device)]
