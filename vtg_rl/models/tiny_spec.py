"""The size spec and build bookkeeping shared by the tiny checkpoints of every video-LLM family
(:mod:`vtg_rl.models.tiny_families`, :mod:`vtg_rl.models.tiny_llava_onevision`): sizes, per-family defaults, the
idempotent build marker and saving."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from vtg_rl.models.tiny_qwen import BUILD_MARKER, TinySizes, _is_built

FAMILIES_BUILD_VERSION = 1  # bump when a family's build changes: stale folders are rebuilt
TINY_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "llava_onevision")



@dataclass
class TinyFamilySpec(TinySizes):
    """Sizes of a tiny model of any family; :data:`FAMILY_DEFAULTS` fills in what differs per family."""

    # per-frame pixel bounds of the video processor: 56x56 frames keep (Qwen2: factor 28) or nearly keep
    # (Qwen3: factor 32 -> 64x64) their size, larger frames shrink to at most max_frame_pixels
    min_frame_pixels: int = 56 * 56
    max_frame_pixels: int = 112 * 112
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 64
    # Qwen3-VL: vision layers whose merged features are added to the first text layers
    deepstack_visual_indexes: list[int] = field(default_factory=list)
    # Qwen3.5: every full_attention_interval-th text layer is full attention, the rest gated delta rules
    full_attention_interval: int = 4
    partial_rotary_factor: float = 1.0
    linear_num_key_heads: int = 2
    linear_num_value_heads: int = 4
    linear_key_head_dim: int = 32
    linear_value_head_dim: int = 32
    linear_conv_kernel_dim: int = 4
    chat_template: str = "qwen2_5_vl"  # a TRL template name; "llava_onevision" is the project's own
    frame_size: int = 56  # LLaVA-OneVision: every frame is resized to frame_size x frame_size
    extra: dict = field(default_factory=dict)  # extra text-config fields

    def rotary_half(self) -> int:
        return int(self.head_dim() * self.partial_rotary_factor) // 2


FAMILY_DEFAULTS = {
    # Qwen2-VL: Qwen2.5-VL's template and processors, ViT with quick-gelu MLP, 1-D temporal positions per grid
    "qwen2_vl": dict(mrope_section=[4, 6, 6]),
    # Qwen3-VL: patch 16 x merge 2 = 32-pixel factor, interleaved mRoPE, deepstack, timestamps in the prompt
    "qwen3_vl": dict(rope_theta=5_000_000.0, mrope_section=[6, 5, 5], patch_size=16, min_frame_pixels=32 * 32,
                     max_frame_pixels=128 * 128, deepstack_visual_indexes=[0], chat_template="qwen3_vl"),
    # Qwen3.5: 3 gated-delta layers then 1 full-attention layer; rotary on a quarter of each head
    "qwen3_5": dict(rope_theta=10_000_000.0, mrope_section=[2, 1, 1], partial_rotary_factor=0.25, patch_size=16,
                    min_frame_pixels=32 * 32, max_frame_pixels=128 * 128, chat_template="qwen3_5_nothink"),
    # LLaVA-OneVision: SigLIP on 56x56 frames (4x4 patches of 14, pooled to 2x2 per frame), Qwen2 text model
    "llava_onevision": dict(chat_template="llava_onevision"),
}


def make_family_spec(family: str, **overrides) -> TinyFamilySpec:
    if family not in FAMILY_DEFAULTS:
        raise ValueError(f"unknown tiny family {family!r}; known: {sorted(FAMILY_DEFAULTS)}")
    names = {f.name for f in fields(TinyFamilySpec)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown tiny {family} override(s) {unknown}; known: {sorted(names)}")
    spec = TinyFamilySpec(**{**FAMILY_DEFAULTS[family], **overrides})
    if spec.mrope_section is not None and sum(spec.mrope_section) != spec.rotary_half():
        raise ValueError(f"mrope_section {spec.mrope_section} must sum to rotary dim / 2 = {spec.rotary_half()}")
    return spec


def save_tiny(out_dir: Path, marker: dict, model, processor, eos_ids: list[int], pad_id: int) -> Path:
    """Save model (float32, safetensors) + processor, then the build marker last: a build interrupted half-way is
    rebuilt, never reused."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=pad_id, bos_token_id=None)
    model.to(torch.float32).save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    (out_dir / BUILD_MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
    return out_dir


def start_build(family: str, out_dir, seed: int, overrides: dict) -> tuple[Path, TinyFamilySpec, dict, bool]:
    out_dir = Path(out_dir)
    spec = make_family_spec(family, **overrides)
    marker = {"kind": f"tiny_{family}", "version": FAMILIES_BUILD_VERSION, "seed": seed, "spec": asdict(spec)}
    if _is_built(out_dir, marker):
        return out_dir, spec, marker, True
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / BUILD_MARKER).unlink(missing_ok=True)
    return out_dir, spec, marker, False
