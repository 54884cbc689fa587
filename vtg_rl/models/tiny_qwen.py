"""A tiny, randomly initialised Qwen2.5-VL that is saved and loaded exactly like a real checkpoint.

Everything downstream (SFT, GRPO, inference) loads models with :func:`load_qwen_vl`, i.e. only through
``from_pretrained(dir)``, so the tiny model and ``Qwen/Qwen2.5-VL-7B-Instruct`` take the same code path.
The default sizes are the ones measured to be learnable on 2 CPU cores: text hidden 128,
4 layers, 4 heads / 2 KV heads, FFN 512, tied embeddings; vision hidden 64, depth 2, patch 14, 2x2 merge,
temporal patch 2; ~1.3 M parameters in all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch

BUILD_MARKER = "vtg_rl_build.json"
BUILD_VERSION = 2  # bump when the tokenizer corpus or the build changes: stale dirs are rebuilt


@dataclass
class TinySizes:
    """The text and vision sizes every tiny video LLM shares (the family specs add their own fields)."""

    vocab_size: int = 480  # trained BPE incl. Qwen's specials; a family's own tokens are added on top
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 512
    rope_theta: float = 1_000_000.0
    # temporal/height/width split of the rotary frequencies (sums to rotary dim / 2); None -> Qwen's 1/4, 3/8,
    # 3/8 of head_dim/2
    mrope_section: Optional[list[int]] = None
    max_position_embeddings: int = 4096
    vision_hidden_size: int = 64
    vision_depth: int = 2
    vision_num_heads: int = 4
    vision_intermediate_size: int = 128
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2

    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class TinyQwenSpec(TinySizes):
    """Sizes of the tiny Qwen2.5-VL and its processor; every field can be overridden by name."""

    # Qwen2.5-VL's value: one temporal mRoPE position per half second, so time is readable from positions
    tokens_per_second: int = 2
    window_size: int = 112
    # 56x56 frames (4x4 patches -> 2x2 = 4 tokens per temporal grid) pass through without rescaling;
    # larger frames are shrunk to at most 112x112.
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 64
    extra: dict = field(default_factory=dict)

    def resolved_mrope_section(self) -> list[int]:
        if self.mrope_section is not None:
            section = list(self.mrope_section)
        else:
            half = self.head_dim() // 2
            t = half // 4
            h = (half - t) // 2
            section = [t, h, half - t - h]
        if sum(section) != self.head_dim() // 2:
            raise ValueError(f"mrope_section {section} must sum to head_dim/2 = {self.head_dim() // 2}")
        return section


def make_spec(**overrides) -> TinyQwenSpec:
    names = {f.name for f in fields(TinyQwenSpec)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown tiny Qwen2.5-VL override(s) {unknown}; known: {sorted(names)}")
    return TinyQwenSpec(**overrides)


def build_processor(spec: TinyQwenSpec, seed: int = 0):
    """Tokenizer (trained here) + Qwen2-VL image/video processors sized for small frames + chat template."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from vtg_rl.models.tokenizer import build_qwen_tokenizer, chat_template_text

    tokenizer = build_qwen_tokenizer(vocab_size=spec.vocab_size, seed=seed)
    common = dict(patch_size=spec.patch_size, temporal_patch_size=spec.temporal_patch_size,
                  merge_size=spec.spatial_merge_size, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    image_processor = Qwen2VLImageProcessor(**common)
    # Frames are sampled by vtg_rl.data.video (PyAV, true timestamps), never by the processor.
    video_processor = Qwen2VLVideoProcessor(**common, fps=spec.fps, min_frames=spec.min_frames,
                                            max_frames=spec.max_frames, do_sample_frames=False,
                                            cap_pixels_per_frame=True)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=video_processor, chat_template=chat_template_text())


def build_config(spec: TinyQwenSpec, tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size, max_position_embeddings=spec.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta,
                         "mrope_section": spec.resolved_mrope_section()},
        bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True, **spec.extra,
    )
    vision_config = dict(
        depth=spec.vision_depth, hidden_size=spec.vision_hidden_size, num_heads=spec.vision_num_heads,
        intermediate_size=spec.vision_intermediate_size, patch_size=spec.patch_size,
        spatial_merge_size=spec.spatial_merge_size, temporal_patch_size=spec.temporal_patch_size,
        tokens_per_second=spec.tokens_per_second, window_size=spec.window_size,
        out_hidden_size=spec.hidden_size, fullatt_block_indexes=[spec.vision_depth - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=True,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    ), ids


def _is_built(out_dir: Path, marker: dict) -> bool:
    path = out_dir / BUILD_MARKER
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    needed = ["config.json", "model.safetensors", "tokenizer.json", "processor_config.json"]
    return recorded == marker and all((out_dir / n).is_file() for n in needed)


def build_tiny_qwen2_5_vl(out_dir, seed: int = 0, **overrides) -> Path:
    """Build, initialise (seeded) and save the tiny Qwen2.5-VL + processor into ``out_dir``; returns it.

    Idempotent: when ``out_dir`` already holds a model built with the same seed and overrides it is reused.
    """
    out_dir = Path(out_dir)
    spec = make_spec(**overrides)
    marker = {"kind": "tiny_qwen2_5_vl", "version": BUILD_VERSION, "seed": seed, "spec": asdict(spec)}
    if _is_built(out_dir, marker):
        return out_dir
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / BUILD_MARKER).unlink(missing_ok=True)

    processor = build_processor(spec, seed=seed)
    config, ids = build_config(spec, processor.tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"],
        bos_token_id=None)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    # the marker goes last: a build interrupted half-way is rebuilt, never reused
    (out_dir / BUILD_MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True, allow_nan=False))
    return out_dir


def load_qwen_vl(path_or_id, dtype=torch.float32, attn_implementation: str = "sdpa", device_map=None,
                 trust_remote_code: bool = False):
    """(model, processor) through ``from_pretrained`` only: the same path a hub id such as
    ``Qwen/Qwen2.5-VL-7B-Instruct`` takes. A folder that asks to run its own code (``auto_map``) is
    refused unless ``trust_remote_code`` (see :mod:`vtg_rl.models.remote_code`)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg_rl.models.remote_code import refuse_custom_code

    path = str(path_or_id)
    local = Path(path)
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{local}: no config.json; build one with `vtg-rl models build-tiny --out {local}`")
    refuse_custom_code(path, trust_remote_code)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=dtype, attn_implementation=attn_implementation, device_map=device_map,
        trust_remote_code=trust_remote_code)
    return model, processor


def count_parameters(model) -> dict[str, int]:
    """Parameter counts (tied embeddings counted once): total, vision tower, language model."""
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    return {"total": total, "vision": vision, "language": total - vision}
