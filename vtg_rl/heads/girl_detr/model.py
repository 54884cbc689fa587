"""GIRL-DETR: a small DETR grounding head over precomputed clip / token features.

Pipeline: project video clips and text tokens to ``hidden_dim``; *cross-modal interaction* (CMI)
aligns them *before* the encoder (video->text attention with a per-clip gate, text->video, then
video over the updated text; text tokens are dropped afterwards); a transformer encoder over the
video; a DAB-style decoder whose span queries carry learnable (center, width) anchors refined layer
by layer; *text-guided gating* (TGG) mixes a sentence vector into the content queries at the first
decoder layer; span / class / IoU heads per query and a query-conditioned saliency head per clip.

Ablation switches: ``use_cmi=False`` replaces CMI by Moment-DETR-style joint encoding (video and
text tokens concatenated into the encoder); ``use_tgg=False`` skips the gate.

The model follows the head protocol of :mod:`vtg_rl.heads.protocol`: ``forward`` returns
``pred_spans`` (B, Q, 2) normalised (center, width), ``pred_logits`` (B, Q), ``pred_iou`` (B, Q),
and it exposes ``head_parameters()`` / ``freeze_backbone()``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

CONFIG_NAME = "girl_detr_config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class GirlDetrArchitecture:
    """The sizes and switches of a GIRL-DETR head (defaults: the paper's); the training config inherits them,
    so a flag such as ``--num_queries`` means the same in the model and the recipe."""

    hidden_dim: int = 256
    num_queries: int = 10
    num_heads: int = 8
    num_cmi_layers: int = 1
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    ffn_dim: int = 1024
    dropout: float = 0.1
    input_dropout: float = 0.1
    use_cmi: bool = field(default=True, metadata={"help": "cross-modal interaction before the encoder"})
    use_tgg: bool = field(default=True, metadata={"help": "text-guided gating of the decoder queries"})
    use_clip_gate: bool = True

    def architecture(self) -> dict:
        """The architecture fields of this object (of a training config too)."""
        return {f.name: getattr(self, f.name) for f in fields(GirlDetrArchitecture)}


@dataclass
class GirlDetrConfig(GirlDetrArchitecture):
    """A GIRL-DETR head: its architecture and the sizes of the features it reads."""

    video_dim: int = 512
    text_dim: int = 512

    def __post_init__(self):
        if self.hidden_dim % self.num_heads or self.hidden_dim % 2:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be even and divisible by num_heads {self.num_heads}")
        for name in ("video_dim", "text_dim", "num_queries", "num_encoder_layers", "num_decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"GirlDetrConfig.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json_string(self) -> str:  # the Trainer's TensorBoard callback logs the model config with it
        return json.dumps(asdict(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> "GirlDetrConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GirlDetrConfig keys {sorted(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------- building blocks
def sine_embed(x: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of normalised positions ``x (...)`` in [0, 1] -> ``(..., dim)``."""
    half = dim // 2
    freqs = temperature ** (torch.arange(half, device=x.device, dtype=torch.float32) * 2 / dim)
    angles = x.float()[..., None] * (2 * math.pi) / freqs
    return torch.cat([angles.sin(), angles.cos()], -1)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x + self.drop(self.net(x)))


class Attention(nn.Module):
    """Multi-head attention + dropout + residual + LayerNorm. ``key_mask`` is True for *valid* keys."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def delta(self, q, k, v, key_mask):
        out, _ = self.attn(q, k, v, key_padding_mask=~key_mask, need_weights=False)
        return self.drop(out)

    def forward(self, x, q, k, v, key_mask):
        return self.norm(x + self.delta(q, k, v, key_mask))


class CrossModalInteraction(nn.Module):
    """One CMI layer: video<-text (gated per clip), text<-video, video<-updated text, FFN."""

    def __init__(self, cfg: GirlDetrConfig):
        super().__init__()
        h = cfg.hidden_dim
        self.video_from_text = Attention(h, cfg.num_heads, cfg.dropout)
        self.text_from_video = Attention(h, cfg.num_heads, cfg.dropout)
        self.video_from_new_text = Attention(h, cfg.num_heads, cfg.dropout)
        # the gate lets clips that have nothing to do with the query ignore the text message
        self.clip_gate = nn.Linear(2 * h, 1) if cfg.use_clip_gate else None
        self.ffn = FeedForward(h, cfg.ffn_dim, cfg.dropout)

    def forward(self, video, video_mask, video_pos, text, text_mask):
        msg = self.video_from_text.delta(video + video_pos, text, text, text_mask)
        if self.clip_gate is not None:
            msg = torch.sigmoid(self.clip_gate(torch.cat([video, msg], -1))) * msg
        video = self.video_from_text.norm(video + msg)
        text = self.text_from_video(text, text, video + video_pos, video, video_mask)
        video = self.video_from_new_text(video, video + video_pos, text, text, text_mask)
        return self.ffn(video), text


class EncoderLayer(nn.Module):
    def __init__(self, cfg: GirlDetrConfig):
        super().__init__()
        self.self_attn = Attention(cfg.hidden_dim, cfg.num_heads, cfg.dropout)
        self.ffn = FeedForward(cfg.hidden_dim, cfg.ffn_dim, cfg.dropout)

    def forward(self, x, mask, pos):
        return self.ffn(self.self_attn(x, x + pos, x + pos, x, mask))


class TextGuidedGate(nn.Module):
    """TGG: content queries cross-attend the sentence vector; a sigmoid gate decides how much to take."""

    def __init__(self, cfg: GirlDetrConfig):
        super().__init__()
        self.attn = nn.MultiheadAttention(cfg.hidden_dim, cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        self.gate = nn.Linear(2 * cfg.hidden_dim, cfg.hidden_dim)
        self.norm = nn.LayerNorm(cfg.hidden_dim)

    def forward(self, queries, sentence):
        msg, _ = self.attn(queries, sentence[:, None], sentence[:, None], need_weights=False)
        gate = torch.sigmoid(self.gate(torch.cat([queries, msg], -1)))
        return self.norm(queries + gate * msg)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: GirlDetrConfig):
        super().__init__()
        self.self_attn = Attention(cfg.hidden_dim, cfg.num_heads, cfg.dropout)
        self.cross_attn = Attention(cfg.hidden_dim, cfg.num_heads, cfg.dropout)
        self.ffn = FeedForward(cfg.hidden_dim, cfg.ffn_dim, cfg.dropout)

    def forward(self, tgt, query_pos, memory, memory_mask, memory_pos):
        q = tgt + query_pos
        all_queries = torch.ones(tgt.shape[:2], dtype=torch.bool, device=tgt.device)
        tgt = self.self_attn(tgt, q, q, tgt, all_queries)
        tgt = self.cross_attn(tgt, tgt + query_pos, memory + memory_pos, memory, memory_mask)
        return self.ffn(tgt)


# --------------------------------------------------------------------------- the model
class GirlDetr(nn.Module):
    """GIRL-DETR over ``video_feats (B, Lv, Dv)`` and ``text_feats (B, Lt, Dt)``."""

    def __init__(self, config: GirlDetrConfig):
        super().__init__()
        self.config = cfg = config
        h = cfg.hidden_dim
        self.video_proj = nn.Sequential(nn.LayerNorm(cfg.video_dim), nn.Dropout(cfg.input_dropout),
                                        nn.Linear(cfg.video_dim, h), nn.LayerNorm(h))
        self.text_proj = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Dropout(cfg.input_dropout),
                                       nn.Linear(cfg.text_dim, h), nn.LayerNorm(h))
        self.cmi = nn.ModuleList(CrossModalInteraction(cfg) for _ in range(cfg.num_cmi_layers)) if cfg.use_cmi else None
        # without CMI, text joins the encoder (Moment-DETR style); a type embedding tells the tokens apart
        self.text_type = None if cfg.use_cmi else nn.Parameter(torch.zeros(h))
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_encoder_layers))
        self.tgg = TextGuidedGate(cfg) if cfg.use_tgg else None
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(h)
        self.content_queries = nn.Embedding(cfg.num_queries, h)
        self.anchors = nn.Embedding(cfg.num_queries, 2)  # (center, width) logits, DAB-style
        self.anchor_pos = MLP(h, h, h, 2)  # sine(anchor) -> query position
        # saliency: clip memory against the sentence vector (query-conditioned)
        self.saliency_clip = nn.Linear(h, h)
        self.saliency_sentence = nn.Linear(h, h)
        # anchor refinement of the inner decoder layers: backbone. The last layer's span head only
        # produces outputs (nothing downstream reads it), so TPRL can train it without moving any
        # feature the head itself consumes.
        self.anchor_heads = nn.ModuleList(MLP(h, h, 2, 3) for _ in range(cfg.num_decoder_layers - 1))
        # --- the detection head: the only part TPRL trains
        self.span_head = MLP(h, h, 2, 3)
        self.class_head = nn.Linear(h, 1)
        self.iou_head = MLP(h, h, 1, 3)
        self._reset_parameters()

    def _reset_parameters(self):
        q = self.config.num_queries
        with torch.no_grad():
            # anchors spread over the video with a mix of widths, so queries start specialised
            centers = (torch.arange(q, dtype=torch.float32) + 0.5) / q
            widths = torch.tensor([0.1, 0.25, 0.5])[torch.arange(q) % 3]
            self.anchors.weight.copy_(inverse_sigmoid(torch.stack([centers, widths], -1)))
            nn.init.normal_(self.content_queries.weight, std=0.02)
            # the last span layers start at zero: initial predictions are the anchors themselves
            for head in [*self.anchor_heads, self.span_head]:
                nn.init.zeros_(head.layers[-1].weight)
                nn.init.zeros_(head.layers[-1].bias)

    # ------------------------------------------------------------------ head protocol
    def head_modules(self) -> list[nn.Module]:
        return [self.span_head, self.class_head, self.iou_head]

    def head_parameters(self) -> Iterator[nn.Parameter]:
        for m in self.head_modules():
            yield from m.parameters()

    def freeze_backbone(self) -> tuple[int, int]:
        """Freeze everything but the detection head; returns ``(trainable, total)`` parameter counts."""
        head = {id(p) for p in self.head_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in head)
        return sum(p.numel() for p in self.parameters() if p.requires_grad), sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def _positions(self, clip_centers, video_mask):
        if clip_centers is None:  # evenly spaced over the valid clips
            n = video_mask.sum(1, keepdim=True).clamp(min=1)
            idx = torch.arange(video_mask.shape[1], device=video_mask.device)[None]
            clip_centers = ((idx + 0.5) / n).clamp(max=1.0)
        return sine_embed(clip_centers, self.config.hidden_dim)

    def forward(self, video_feats, video_mask, text_feats, text_mask, clip_centers=None):
        cfg = self.config
        if video_feats.shape[-1] != cfg.video_dim or text_feats.shape[-1] != cfg.text_dim:
            raise ValueError(f"GIRL-DETR expects video dim {cfg.video_dim} and text dim {cfg.text_dim}, got "
                             f"{video_feats.shape[-1]} and {text_feats.shape[-1]} (feature dirs and config disagree)")
        video_mask, text_mask = video_mask.bool(), text_mask.bool()
        video = self.video_proj(video_feats)
        text = self.text_proj(text_feats)
        pos = self._positions(clip_centers, video_mask)
        lv = video.shape[1]
        if cfg.use_cmi:
            for layer in self.cmi:
                video, text = layer(video, video_mask, pos, text, text_mask)
            tokens, mask, token_pos = video, video_mask, pos
        else:
            tokens = torch.cat([video, text + self.text_type], 1)
            mask = torch.cat([video_mask, text_mask], 1)
            token_pos = torch.cat([pos, torch.zeros_like(text)], 1)
        for layer in self.encoder:
            tokens = layer(tokens, mask, token_pos)
        if not cfg.use_cmi:
            text = tokens[:, lv:]
        memory = tokens[:, :lv]
        # sentence vector: max-pool over the (fused) valid text tokens
        sentence = text.masked_fill(~text_mask[..., None], float("-inf")).max(1).values

        out = self._decode(memory, video_mask, pos, sentence)
        sal = (self.saliency_clip(memory) * self.saliency_sentence(sentence)[:, None]).sum(-1) / math.sqrt(cfg.hidden_dim)
        out["saliency_scores"] = sal.masked_fill(~video_mask, 0.0)
        out["video_mask"] = video_mask
        return out

    def _decode(self, memory, memory_mask, memory_pos, sentence):
        b = memory.shape[0]
        tgt = self.content_queries.weight[None].expand(b, -1, -1)
        ref = torch.sigmoid(self.anchors.weight)[None].expand(b, -1, -1)
        layers_out = []
        for i, layer in enumerate(self.decoder):
            query_pos = self.anchor_pos(torch.cat([sine_embed(ref[..., 0], self.config.hidden_dim // 2),
                                                   sine_embed(ref[..., 1], self.config.hidden_dim // 2)], -1))
            if i == 0 and self.tgg is not None:
                tgt = self.tgg(tgt, sentence)
            tgt = layer(tgt, query_pos, memory, memory_mask, memory_pos)
            hs = self.decoder_norm(tgt)
            span_head = self.span_head if i == len(self.decoder) - 1 else self.anchor_heads[i]
            spans = torch.sigmoid(span_head(hs) + inverse_sigmoid(ref))
            layers_out.append({"pred_spans": spans, "pred_logits": self.class_head(hs).squeeze(-1),
                               "pred_iou": self.iou_head(hs).squeeze(-1)})
            ref = spans.detach()  # DAB: the next layer starts from the refined anchor, no gradient through it
        out = dict(layers_out[-1])
        out["aux_outputs"] = layers_out[:-1]
        return out

    # ------------------------------------------------------------------ persistence
    def save_config(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_NAME).write_text(self.config.to_json_string())

    def save(self, out_dir: str | Path) -> Path:
        """Write ``girl_detr_config.json`` + ``model.safetensors`` (the Trainer's checkpoint layout)."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        self.save_config(out_dir)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(out_dir / WEIGHTS_NAME),
                  metadata={"format": "pt"})
        return out_dir

    @classmethod
    def load(cls, model_dir: str | Path, config: Optional[GirlDetrConfig] = None) -> "GirlDetr":
        """Load a head saved by :meth:`save` or a Trainer checkpoint (the config may come from a parent dir)."""
        from safetensors.torch import load_file

        model_dir = Path(model_dir)
        if config is None:
            cfg_path = next((d / CONFIG_NAME for d in (model_dir, model_dir.parent) if (d / CONFIG_NAME).is_file()), None)
            if cfg_path is None:
                raise FileNotFoundError(f"{model_dir}: no {CONFIG_NAME} here or in the parent folder")
            config = GirlDetrConfig.from_dict(json.loads(cfg_path.read_text()))
        weights = model_dir / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: no GIRL-DETR weights")
        model = cls(config)
        missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
        return model
