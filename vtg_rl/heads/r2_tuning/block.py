"""The R2 block of R2-Tuning: a light side-adapter over the last K layers of a frozen CLIP.

The block walks the CLIP layers from the last one back (coarse to fine). At each layer k it

1. projects that layer's frame patch tokens and query token states into a small hidden size D
   (per-layer projections: each CLIP layer lives in its own feature space);
2. **query-modulated spatial pooling**: one cross-attention per frame whose query is the sentence
   vector of that layer plus the running frame state, over the frame's [CLS] + patch tokens, so what
   is pooled out of the picture depends on what the sentence asks for;
3. a **recurrent gate**: ``g = sigmoid(W [x_k; h])``, ``x = g * x_k + (1 - g) * h`` mixes the new
   layer's pooled vector with the result carried over from the deeper layer;
4. **temporal refinement**: one transformer decoder layer over the frames (self-attention in time,
   cross-attention to the query tokens), shared across layers: the block is *recurrent*.

It returns the refined per-frame states plus, per layer, the pooled frame vectors and the sentence
vectors, which the layer-wise contrastive loss aligns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed (parameter-free) temporal position code, ``(length, dim)``."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` where ``mask`` is True (``mask`` broadcast to ``x`` minus the last axis)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


@dataclass
class R2BlockOutput:
    frames: torch.Tensor            # (B, T, D) refined frame states after the last (shallowest) layer
    sentence: torch.Tensor          # (B, D) sentence vector of the last visited layer
    layer_frames: list              # K x (B, T, D) pooled frame vectors, deepest layer first
    layer_sentences: list           # K x (B, D) sentence vectors, deepest layer first
    layer_cls: list                 # K x (B, T, D) projected [CLS] token per frame (query-independent)
    gates: list                     # K-1 x (B, T) mean gate value (diagnostics)


class R2Block(nn.Module):
    """Query-modulated spatial pooling + recurrent gate + temporal refinement over K CLIP layers."""

    def __init__(self, vision_dim: int, text_dim: int, hidden_size: int = 32, num_layers: int = 4,
                 num_heads: int = 4, ffn_size: int | None = None, dropout: float = 0.1):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        if hidden_size % 2:
            raise ValueError(f"hidden_size {hidden_size} must be even (sinusoidal positions)")
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        # CLIP hidden states are not normalised (the towers' final LayerNorm comes after the last layer);
        # a parameter-free LayerNorm tames their scale before the per-layer projections.
        self.vision_norm = nn.LayerNorm(vision_dim, elementwise_affine=False)
        self.text_norm = nn.LayerNorm(text_dim, elementwise_affine=False)
        self.vision_proj = nn.ModuleList(nn.Linear(vision_dim, hidden_size) for _ in range(num_layers))
        self.text_proj = nn.ModuleList(nn.Linear(text_dim, hidden_size) for _ in range(num_layers))
        self.pool_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.pool_norm = nn.LayerNorm(hidden_size)
        self.gate = nn.Linear(2 * hidden_size, hidden_size)
        self.refine = nn.TransformerDecoderLayer(hidden_size, num_heads, dim_feedforward=ffn_size or 2 * hidden_size,
                                                 dropout=dropout, batch_first=True, norm_first=True)

    def forward(self, video_layers: torch.Tensor, video_mask: torch.Tensor, query_layers: torch.Tensor,
                query_mask: torch.Tensor) -> R2BlockOutput:
        """Args:
            video_layers: ``(B, T, K, P, Cv)`` frozen vision hidden states of the last K layers (shallow -> deep),
                P = 1 [CLS] + patch tokens of the frame sampled for each clip.
            video_mask: ``(B, T)`` True for real clips.
            query_layers: ``(B, K, L, Ct)`` frozen text hidden states of the last K layers (shallow -> deep).
            query_mask: ``(B, L)`` True for real tokens.
        """
        b, t, k, p, _ = video_layers.shape
        if k != self.num_layers or query_layers.shape[1] != self.num_layers:
            raise ValueError(f"R2Block was built for {self.num_layers} CLIP layers, got video {k} / "
                             f"text {query_layers.shape[1]} (re-extract features with the same --num_clip_layers)")
        vision_dim, text_dim = self.vision_proj[0].in_features, self.text_proj[0].in_features
        if video_layers.shape[-1] != vision_dim or query_layers.shape[-1] != text_dim:
            raise ValueError(f"R2Block was built for CLIP widths vision {vision_dim} / text {text_dim}, got "
                             f"{video_layers.shape[-1]} / {query_layers.shape[-1]} (features of another CLIP?)")
        video_mask = video_mask.bool()
        query_mask = query_mask.bool()
        pos = sinusoidal_positions(t, self.hidden_size, device=video_layers.device, dtype=video_layers.dtype)
        h = None
        layer_frames, layer_sentences, layer_cls, gates = [], [], [], []
        for layer in reversed(range(k)):  # from the last CLIP layer back to the earliest one we keep
            v = self.vision_proj[layer](self.vision_norm(video_layers[:, :, layer]))      # (B, T, P, D)
            q = self.text_proj[layer](self.text_norm(query_layers[:, layer]))            # (B, L, D)
            sentence = masked_mean(q, query_mask, dim=1)                                 # (B, D)
            # query-modulated spatial pooling: the sentence (plus what the frame already holds) picks patches
            pool_query = sentence[:, None, :].expand(b, t, -1)
            if h is not None:
                pool_query = pool_query + h
            pooled, _ = self.pool_attn(self.pool_norm(pool_query).reshape(b * t, 1, -1),
                                       v.reshape(b * t, p, -1), v.reshape(b * t, p, -1), need_weights=False)
            x = pooled.reshape(b, t, -1)
            layer_frames.append(x)
            layer_sentences.append(sentence)
            layer_cls.append(v[:, :, 0])
            if h is not None:  # recurrent gate with the deeper layer's result
                g = torch.sigmoid(self.gate(torch.cat([x, h], dim=-1)))
                x = g * x + (1 - g) * h
                gates.append(g.mean(-1))
            # temporal refinement conditioned on the query tokens
            h = self.refine(x + pos, q, tgt_key_padding_mask=~video_mask, memory_key_padding_mask=~query_mask)
            h = h.masked_fill(~video_mask[..., None], 0.0)
        return R2BlockOutput(frames=h, sentence=layer_sentences[-1], layer_frames=layer_frames,
                             layer_sentences=layer_sentences, layer_cls=layer_cls, gates=gates)
