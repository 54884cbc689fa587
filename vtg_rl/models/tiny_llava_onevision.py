"""A tiny, randomly initialised LLaVA-OneVision (SigLIP vision tower + Qwen2 text model), saved like a release.

The vision tower sees every frame at ``frame_size`` x ``frame_size`` (56: 4x4 patches of 14), the projector maps
each patch to the text width and the video path pools 2x2 per frame, so a T-frame video becomes ``T * 4 + 1``
``<video>`` tokens (the +1 is the learned newline after the last frame). Built by
:func:`vtg_rl.models.tiny_families.build_tiny` (``family="llava_onevision"``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vtg_rl.models.tiny_spec import TinyFamilySpec, save_tiny, start_build

# Qwen2 chat markup; each content block is rendered where it stands, a payload-free {"type": "video"} block as
# one <video> (and an image block as one <image>), which the processor expands to the video's feature count.
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'video' or 'video' in content %}{{- '<video>' }}"
    "{%- elif content['type'] == 'image' or 'image' in content or 'image_url' in content %}{{- '<image>' }}"
    "{%- elif 'text' in content %}{{- content['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _processor(spec: TinyFamilySpec, seed: int):
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    from vtg_rl.models.tokenizer import LLAVA_ONEVISION_SPECIAL_TOKENS, build_family_tokenizer

    tokenizer = build_family_tokenizer(LLAVA_ONEVISION_CHAT_TEMPLATE, special_tokens=LLAVA_ONEVISION_SPECIAL_TOKENS,
                                       vocab_size=spec.vocab_size, seed=seed)
    side = spec.frame_size
    size = {"height": side, "width": side}
    # images: the any-resolution grid of 1x1 .. 2x2 tiles of the base size
    pinpoints = [[side * r, side * c] for r in (1, 2) for c in (1, 2)]
    image_processor = LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=pinpoints)
    video_processor = LlavaOnevisionVideoProcessor(size=size, do_sample_frames=False)
    return LlavaOnevisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        num_image_tokens=(side // spec.patch_size) ** 2, vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE, vision_aspect_ratio="anyres_max_9")


def _config(spec: TinyFamilySpec, tokenizer):
    from transformers import LlavaOnevisionConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<image>", "<video>")}
    text = dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
                num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
                num_key_value_heads=spec.num_key_value_heads, intermediate_size=spec.intermediate_size,
                max_position_embeddings=spec.max_position_embeddings,
                rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
                bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                tie_word_embeddings=True, **spec.extra)
    vision = dict(model_type="siglip_vision_model", hidden_size=spec.vision_hidden_size,
                  intermediate_size=spec.vision_intermediate_size, num_hidden_layers=spec.vision_depth,
                  num_attention_heads=spec.vision_num_heads, patch_size=spec.patch_size, image_size=spec.frame_size,
                  vision_use_head=False)
    side = spec.frame_size
    config = LlavaOnevisionConfig(
        text_config=text, vision_config=vision, image_token_index=ids["<image>"], video_token_index=ids["<video>"],
        vision_feature_select_strategy="full", vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=[[side * r, side * c] for r in (1, 2) for c in (1, 2)], tie_word_embeddings=True)
    return config, ids


def build_tiny_llava_onevision(out_dir, seed: int = 0, **overrides) -> Path:
    """Build, initialise (seeded) and save the tiny LLaVA-OneVision + processor into ``out_dir``; idempotent."""
    out_dir, spec, marker, built = start_build("llava_onevision", out_dir, seed, overrides)
    if built:
        return out_dir
    from transformers import LlavaOnevisionForConditionalGeneration

    processor = _processor(spec, seed)
    config, ids = _config(spec, processor.tokenizer)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    return save_tiny(out_dir, marker, model, processor, [ids["<|im_end|>"], ids["<|endoftext|>"]],
                     ids["<|endoftext|>"])
