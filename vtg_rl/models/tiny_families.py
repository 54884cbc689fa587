"""Tiny, randomly initialised checkpoints of the other video-LLM families, saved exactly like released ones.

Each builder writes a folder that loads with plain ``AutoProcessor`` / ``AutoModelForImageTextToText``
``from_pretrained(dir)``, so code written against the tiny model takes the same path as a hub checkpoint of that
family. Sizes follow the tiny Qwen2.5-VL of :mod:`vtg_rl.models.tiny_qwen` (text hidden 128, 4 layers, 4 heads /
2 KV heads, FFN 512, tied embeddings; vision hidden 64, depth 2), and every family uses the project tokenizer
(one token per digit) plus the family's own added tokens and chat template.

Families: ``qwen2_vl``, ``qwen2_5_vl`` (built by :func:`vtg_rl.models.tiny_qwen.build_tiny_qwen2_5_vl`),
``qwen3_vl``, ``qwen3_5`` (hybrid gated-delta / full-attention text layers) and ``llava_onevision``
(:mod:`vtg_rl.models.tiny_llava_onevision`). Frames are always decoded by :mod:`vtg_rl.data.video`, so every video
processor is saved with ``do_sample_frames=False`` and pixel bounds that keep 56x56 frames near their size.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vtg_rl.models.tiny_llava_onevision import build_tiny_llava_onevision
from vtg_rl.models.tiny_spec import (FAMILY_DEFAULTS, TINY_FAMILIES, TinyFamilySpec, make_family_spec, save_tiny,
                                     start_build)

_QWEN_ROLE_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                     "<|vision_end|>")

__all__ = ["FAMILY_DEFAULTS", "TINY_FAMILIES", "TinyFamilySpec", "make_family_spec", "build_tiny",
           "build_tiny_qwen_family"]

def _qwen_processor(family: str, spec: TinyFamilySpec, seed: int):
    """Project tokenizer + the family's image/video processors (no frame sampling) + chat template."""
    from transformers import Qwen2VLImageProcessor

    from vtg_rl.models.tokenizer import QWEN3_EXTRA_ADDED_TOKENS, build_family_tokenizer, trl_chat_template

    common = dict(patch_size=spec.patch_size, temporal_patch_size=spec.temporal_patch_size,
                  merge_size=spec.spatial_merge_size)
    frames = dict(fps=spec.fps, min_frames=spec.min_frames, max_frames=spec.max_frames, do_sample_frames=False,
                  cap_pixels_per_frame=True)
    image_processor = Qwen2VLImageProcessor(**common, min_pixels=spec.min_frame_pixels,
                                            max_pixels=spec.max_frame_pixels)
    template = trl_chat_template(spec.chat_template)
    if family == "qwen2_vl":
        from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

        tokenizer = build_family_tokenizer(template, vocab_size=spec.vocab_size, seed=seed)
        video_processor = Qwen2VLVideoProcessor(**common, **frames, min_pixels=spec.min_frame_pixels,
                                                max_pixels=spec.max_frame_pixels)
        return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                video_processor=video_processor, chat_template=template)
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    tokenizer_class = None
    if family == "qwen3_5":  # the class AutoTokenizer maps qwen3_5 to, whatever tokenizer_config.json says
        from transformers.models.qwen3_5.tokenization_qwen3_5 import Qwen3_5Tokenizer as tokenizer_class
    tokenizer = build_family_tokenizer(template, tokenizer_class=tokenizer_class,
                                       added_tokens=QWEN3_EXTRA_ADDED_TOKENS, vocab_size=spec.vocab_size, seed=seed)
    factor = spec.patch_size * spec.spatial_merge_size
    # Qwen3's video size bounds count pixels over all frames; the per-frame cap (in merged tokens) is what
    # bounds each frame, as max_pixels does for Qwen2's processors
    video_processor = Qwen3VLVideoProcessor(
        **common, **frames, max_video_tokens=spec.max_frame_pixels // factor**2,
        size={"shortest_edge": spec.min_frame_pixels, "longest_edge": spec.max_frame_pixels * spec.max_frames})
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                            chat_template=template)


def _qwen_config(family: str, spec: TinyFamilySpec, tokenizer):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_ROLE_TOKENS}
    rope = {"rope_type": "default", "rope_theta": spec.rope_theta, "mrope_section": list(spec.mrope_section)}
    text = dict(vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_hidden_layers,
                num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
                intermediate_size=spec.intermediate_size, max_position_embeddings=spec.max_position_embeddings,
                pad_token_id=ids["<|endoftext|>"], rope_parameters=rope)
    vision = dict(depth=spec.vision_depth, num_heads=spec.vision_num_heads, patch_size=spec.patch_size,
                  spatial_merge_size=spec.spatial_merge_size, temporal_patch_size=spec.temporal_patch_size)
    roles = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                 vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                 tie_word_embeddings=True)
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        text.update(bos_token_id=None, eos_token_id=ids["<|im_end|>"], tie_word_embeddings=True)
        vision.update(embed_dim=spec.vision_hidden_size, hidden_size=spec.hidden_size,
                      mlp_ratio=spec.vision_intermediate_size // spec.vision_hidden_size)
        config_class = Qwen2VLConfig
    else:
        rope["mrope_interleaved"] = True
        grid_side = int(spec.max_frame_pixels ** 0.5) // spec.patch_size
        text.update(head_dim=spec.head_dim())
        vision.update(hidden_size=spec.vision_hidden_size, intermediate_size=spec.vision_intermediate_size,
                      out_hidden_size=spec.hidden_size, num_position_embeddings=grid_side ** 2)
        if family == "qwen3_vl":
            from transformers import Qwen3VLConfig as config_class

            vision.update(deepstack_visual_indexes=list(spec.deepstack_visual_indexes))
        else:
            from transformers import Qwen3_5Config as config_class

            rope["partial_rotary_factor"] = spec.partial_rotary_factor
            text.update(
                bos_token_id=None, eos_token_id=ids["<|im_end|>"], tie_word_embeddings=True,
                layer_types=["full_attention" if (i + 1) % spec.full_attention_interval == 0 else "linear_attention"
                             for i in range(spec.num_hidden_layers)],
                linear_num_key_heads=spec.linear_num_key_heads, linear_num_value_heads=spec.linear_num_value_heads,
                linear_key_head_dim=spec.linear_key_head_dim, linear_value_head_dim=spec.linear_value_head_dim,
                linear_conv_kernel_dim=spec.linear_conv_kernel_dim)
    text.update(spec.extra)
    return config_class(text_config=text, vision_config=vision, **roles), ids


def build_tiny_qwen_family(family: str, out_dir, seed: int = 0, **overrides) -> Path:
    """Build, initialise (seeded) and save a tiny ``qwen2_vl`` / ``qwen3_vl`` / ``qwen3_5`` + processor."""
    if family not in ("qwen2_vl", "qwen3_vl", "qwen3_5"):
        raise ValueError(f"{family!r} is not a Qwen vision-language family built here")
    out_dir, spec, marker, built = start_build(family, out_dir, seed, overrides)
    if built:
        return out_dir
    from transformers import AutoModelForImageTextToText

    processor = _qwen_processor(family, spec, seed)
    config, ids = _qwen_config(family, spec, processor.tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, trust_remote_code=False)
    return save_tiny(out_dir, marker, model, processor, [ids["<|im_end|>"], ids["<|endoftext|>"]],
                     ids["<|endoftext|>"])


def build_tiny(family: str, out_dir, seed: int = 0, **overrides) -> Path:
    """Build the tiny checkpoint of ``family`` (one of :data:`TINY_FAMILIES`) into ``out_dir``; idempotent."""
    if family == "qwen2_5_vl":
        from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

        return build_tiny_qwen2_5_vl(out_dir, seed=seed, **overrides)
    if family == "llava_onevision":
        return build_tiny_llava_onevision(out_dir, seed=seed, **overrides)
    if family in ("qwen2_vl", "qwen3_vl", "qwen3_5"):
        return build_tiny_qwen_family(family, out_dir, seed=seed, **overrides)
    raise ValueError(f"unknown tiny family {family!r}; known: {', '.join(TINY_FAMILIES)}")
