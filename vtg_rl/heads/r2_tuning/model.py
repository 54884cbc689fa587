"""R2-Tuning: a light side-adapter on the last K layers of a frozen CLIP, for moment retrieval,
highlight detection and video summarisation (per-clip saliency; samples without windows train it alone).

:class:`R2Tuning` = :class:`~vtg_rl.heads.r2_tuning.block.R2Block` (spatial pooling, recurrent gate, temporal
refinement) + a conv pyramid with moment heads + a per-clip saliency head. It takes the frozen CLIP's
multi-layer hidden states, either precomputed (the cached-feature path used for training, see
:mod:`vtg_rl.heads.r2_tuning.features`) or computed on the fly from pixels and token ids by a CLIP it holds frozen
(``R2Tuning(config, clip=clip_model)``: the end-to-end path, whose CLIP must stay bit-identical).

The forward output follows the head protocol (:mod:`vtg_rl.heads.protocol`): ``pred_spans (B, Q, 2)`` normalised
(centre, width), ``pred_logits (B, Q)``, ``pred_iou (B, Q)``, with one "query" per pyramid anchor and
``query_mask (B, Q)`` marking anchors on real clips (padding anchors also get a -1e4 logit so a loop that
ignores the mask still never picks them). :meth:`head_parameters` are the moment head's parameters and
:meth:`freeze_backbone` freezes everything else, so :mod:`vtg_rl.heads.tprl` post-trains the moment head.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from vtg_rl.heads.protocol import query_scores
from vtg_rl.heads.r2_tuning.block import R2Block
from vtg_rl.heads.r2_tuning.heads import (Anchors, ConvPyramid, MomentHead, SaliencyHead, decode_spans, make_anchors,
                                          nms_spans)
from vtg_rl.heads.r2_tuning.losses import layer_contrastive_loss, moment_losses, saliency_loss, video_contrastive_loss
from vtg_rl.spans import span_cxw_to_xx, span_xx_to_cxw

PADDING_LOGIT = -1e4
#: the Trainer's checkpoint layout: ``model.safetensors`` + ``r2_config.json``
WEIGHTS_NAME = "model.safetensors"


@dataclass
class R2Architecture:
    """R2-Tuning's sizes and loss weights; the training config inherits them, so a flag means the same in the
    model and the recipe."""

    hidden_size: int = field(default=32, metadata={"help": "R2 block width D (paper: 256 on ViT-B/32)"})
    num_clip_layers: int = field(default=4, metadata={"help": "last K layers of both CLIP towers (paper: 4)"})
    num_heads: int = 4
    num_levels: int = field(default=4, metadata={"help": "conv pyramid levels (strides 1, 2, 4, ...)"})
    temperature: float = field(default=0.07, metadata={"help": "contrastive temperature"})
    nms_threshold: float = field(default=0.7, metadata={"help": "drop a moment whose IoU with a better one exceeds this"})
    w_cls: float = 1.0
    w_l1: float = 1.0
    w_giou: float = 1.0
    w_iou: float = 0.5
    w_saliency: float = 1.0
    w_video_contrastive: float = 0.1
    w_layer_contrastive: float = 0.1

    def r2_architecture(self) -> dict:
        """The architecture fields of this object (of a training config too)."""
        return {f.name: getattr(self, f.name) for f in fields(R2Architecture)}


@dataclass
class R2ModelConfig(R2Architecture):
    """A whole R2-Tuning model: the architecture, the CLIP widths it reads, dropout and the moments it keeps;
    saved as ``r2_config.json`` next to the weights."""

    vision_dim: int = 64
    text_dim: int = 64
    dropout: float = 0.1
    max_moments: int = 10

    def to_json_string(self) -> str:  # TensorBoard's callback logs ``model.config`` through this
        return json.dumps(asdict(self), indent=2, allow_nan=False)

    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "r2_config.json").write_text(json.dumps(asdict(self), indent=2, allow_nan=False))

    @classmethod
    def load(cls, directory: str | Path) -> "R2ModelConfig":
        path = Path(directory) / "r2_config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no R2-Tuning config (is {directory} an R2-Tuning checkpoint?)")
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown R2-Tuning config keys {sorted(unknown)}")
        return cls(**data)


class R2Tuning(nn.Module):
    def __init__(self, config: R2ModelConfig, clip: Optional[nn.Module] = None):
        super().__init__()
        self.config = config
        self.block = R2Block(config.vision_dim, config.text_dim, config.hidden_size, config.num_clip_layers,
                             config.num_heads, dropout=config.dropout)
        self.pyramid = ConvPyramid(config.hidden_size, config.num_levels)
        self.moment_head = MomentHead(config.hidden_size)
        self.saliency_head = SaliencyHead(config.hidden_size)
        self.clip = clip
        if clip is not None:
            clip.requires_grad_(False)
            clip.eval()

    # ------------------------------------------------------------------ parameter bookkeeping
    def adapter_parameters(self):
        """Everything R2-Tuning trains (all but the frozen CLIP)."""
        return [p for n, p in self.named_parameters() if not n.startswith("clip.")]

    def head_parameters(self):
        """The moment head (class, span, IoU): what TPRL post-trains."""
        return list(self.moment_head.parameters())

    def freeze_backbone(self) -> tuple[int, int]:
        """Freeze everything except :meth:`head_parameters` (TPRL's gradient isolation); returns
        ``(trainable, total)`` parameter counts (the frozen CLIP included when attached)."""
        self.requires_grad_(False)
        for p in self.head_parameters():
            p.requires_grad_(True)
        return sum(p.numel() for p in self.parameters() if p.requires_grad), sum(p.numel() for p in self.parameters())

    def save_config(self, directory: str | Path) -> None:
        """Called by the head trainers' checkpointing next to ``model.safetensors``."""
        self.config.save(directory)

    def parameter_counts(self, frozen_extra: int = 0) -> dict[str, float]:
        """Trainable / frozen parameter counts; ``frozen_extra`` adds a CLIP that is not attached
        (the cached-feature path) so the fraction is reported against the whole system."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad) + int(frozen_extra)
        return {"trainable_params": trainable, "frozen_params": frozen,
                "trainable_fraction": trainable / max(trainable + frozen, 1)}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.clip is not None:
            self.clip.eval()  # the frozen tower never switches to training behaviour (dropout)
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, video_layers: Optional[torch.Tensor] = None, video_mask: Optional[torch.Tensor] = None,
                query_layers: Optional[torch.Tensor] = None, query_mask: Optional[torch.Tensor] = None,
                clip_len_norm: Optional[torch.Tensor] = None, windows: Optional[list] = None,
                saliency: Optional[torch.Tensor] = None, moment_mask: Optional[torch.Tensor] = None,
                same_pair: Optional[torch.Tensor] = None, pixel_values: Optional[torch.Tensor] = None,
                input_ids: Optional[torch.Tensor] = None) -> dict:
        """Predict moments and saliency; with ``windows`` (list of ``(G, 2)`` normalised (start, end)) also
        the training losses (``loss`` and its parts). ``saliency (B, T)`` in [0, 1] and ``moment_mask (B, T)``
        (clips inside a ground-truth window) enable the saliency and contrastive losses.

        End-to-end path (a CLIP is attached): pass ``pixel_values (B, T, 3, H, W)`` and ``input_ids (B, L)``
        (with ``query_mask`` as the attention mask) instead of the layer states.
        """
        if video_layers is None:
            video_layers, query_layers = self._clip_states(pixel_values, input_ids, query_mask)
        if video_mask is None or query_mask is None or clip_len_norm is None:
            raise ValueError("R2Tuning.forward needs video_mask, query_mask and clip_len_norm")
        video_mask, query_mask = video_mask.bool(), query_mask.bool()
        out = self.block(video_layers, video_mask, query_layers, query_mask)
        feats, level_masks = self.pyramid(out.frames, video_mask)
        anchors = make_anchors(level_masks, self.pyramid.strides)
        cls, dist, iou = [], [], []
        for f, m in zip(feats, level_masks):
            c, d, i = self.moment_head(f, m)
            cls.append(c), dist.append(d), iou.append(i)
        cls_logits, distances, iou_logits = torch.cat(cls, 1), torch.cat(dist, 1), torch.cat(iou, 1)
        spans = decode_spans(anchors, distances, clip_len_norm.to(distances))
        saliency_logits = self.saliency_head(out.frames, out.sentence)
        result = {
            "pred_spans": span_xx_to_cxw(spans),
            "pred_logits": cls_logits.masked_fill(~anchors.mask, PADDING_LOGIT),
            "pred_iou": iou_logits.masked_fill(~anchors.mask, PADDING_LOGIT),
            "query_mask": anchors.mask,
            "saliency_scores": saliency_logits.masked_fill(~video_mask, 0.0),
            "video_mask": video_mask,
            "gates": out.gates,
        }
        if windows is None:
            return result
        cfg = self.config
        parts = self._moment_losses(anchors, cls_logits, distances, spans, iou_logits, windows,
                                    clip_len_norm.to(spans))
        if saliency is not None:
            parts["loss_saliency"] = saliency_loss(saliency_logits, saliency.to(saliency_logits), video_mask)
        if moment_mask is not None:
            moment_mask = moment_mask.bool()
            parts["loss_video_contrastive"] = video_contrastive_loss(out.layer_cls[0], out.layer_sentences[0],
                                                                     moment_mask, same_pair, cfg.temperature)
            parts["loss_layer_contrastive"] = layer_contrastive_loss(out.layer_frames, out.layer_sentences,
                                                                     moment_mask, video_mask, cfg.temperature)
        weights = {"loss_cls": cfg.w_cls, "loss_l1": cfg.w_l1, "loss_giou": cfg.w_giou, "loss_iou": cfg.w_iou,
                   "loss_saliency": cfg.w_saliency, "loss_video_contrastive": cfg.w_video_contrastive,
                   "loss_layer_contrastive": cfg.w_layer_contrastive}
        result["loss"] = sum((weights[k] * v for k, v in parts.items()), saliency_logits.sum() * 0.0)
        result.update(parts)
        return result

    def _moment_losses(self, anchors: Anchors, cls_logits, distances, spans, iou_logits, windows: list,
                       clip_len_norm: torch.Tensor) -> dict:
        """The moment losses over the samples that have ground-truth windows only: a highlight-only or
        summarisation sample (no spans) adds no span, foreground or IoU term (it is not a video without
        moments, it is a video whose moments are not annotated). ``{}`` when no sample has windows."""
        has = [i for i, w in enumerate(windows) if w.numel() > 0]
        if not has:
            return {}
        if len(has) < len(windows):
            idx = torch.tensor(has, device=cls_logits.device)
            anchors = Anchors(anchors.centers[idx], anchors.strides, anchors.levels, anchors.mask[idx])
            cls_logits, distances, spans, iou_logits = cls_logits[idx], distances[idx], spans[idx], iou_logits[idx]
            windows, clip_len_norm = [windows[i] for i in has], clip_len_norm[idx]
        return moment_losses(anchors, cls_logits, distances, spans, iou_logits, windows, clip_len_norm,
                             self.config.num_levels)

    def _clip_states(self, pixel_values, input_ids, attention_mask):
        if self.clip is None:
            raise ValueError("R2Tuning got no video_layers and holds no CLIP: pass cached layer states, "
                             "or build R2Tuning(config, clip=CLIPModel) for the end-to-end path")
        from vtg_rl.heads.r2_tuning.features import clip_layer_states

        with torch.no_grad():
            return clip_layer_states(self.clip, pixel_values, input_ids, attention_mask, self.config.num_clip_layers)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, batch: dict, durations: list[float]) -> list[dict]:
        """Moments (NMS'd, best first, seconds) and per-clip saliency for each sample of a collated batch.

        Returns ``[{"pred_relevant_windows": [[s, e, score], ...], "pred_saliency_scores": [...]}]``.
        """
        was_training = self.training
        self.eval()
        out = self.forward(**{k: v for k, v in batch.items() if k not in ("windows",)})
        self.train(was_training)
        spans = span_cxw_to_xx(out["pred_spans"])
        # rank with the score TPRL optimises (foreground x IoU estimate), so RL improves what is submitted
        scores = query_scores(out).exp()
        results = []
        for b, duration in enumerate(durations):
            m = out["query_mask"][b]
            s, sc = spans[b][m], scores[b][m]
            length_ok = (s[:, 1] - s[:, 0]) > 0
            s, sc = s[length_ok], sc[length_ok]
            keep = nms_spans(s, sc, self.config.nms_threshold, self.config.max_moments)
            windows = [[round(float(a) * duration, 2), round(float(e) * duration, 2), round(float(c), 4)]
                       for (a, e), c in zip(s[keep].tolist(), sc[keep].tolist())]
            n_clips = int(batch["video_mask"][b].sum())
            sal = out["saliency_scores"][b, :n_clips].tolist()
            results.append({"pred_relevant_windows": windows, "pred_saliency_scores": [round(x, 4) for x in sal]})
        return results


def save_r2(model: R2Tuning, directory: str | Path) -> None:
    """Adapter weights (never the frozen CLIP) as safetensors + the architecture config."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith("clip.")}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    model.config.save(directory)


def load_r2(directory: str | Path, clip: Optional[nn.Module] = None, device: str = "cpu") -> R2Tuning:
    from safetensors.torch import load_file

    directory = Path(directory)
    config = R2ModelConfig.load(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no R2-Tuning adapter weights")
    model = R2Tuning(config, clip=clip)
    missing, unexpected = model.load_state_dict(load_file(str(weights), device=device), strict=False)
    missing = [k for k in missing if not k.startswith("clip.")]
    if missing or unexpected:
        raise ValueError(f"{weights}: does not match the R2-Tuning config (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return model.to(device)
