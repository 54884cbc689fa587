"""Model inputs for chat prompts with videos, with real timestamps and 3-D positions guaranteed.

Two silent failures of the stack are closed here (DESIGN §7):
- frames handed to the Qwen2.5-VL processor without ``video_metadata`` get ``second_per_grid_ts`` = 2/24 s
  (the processor's fallback fps), so the model's temporal positions no longer mean seconds; we pass the
  metadata of :class:`vtg_rl.data.video.SampledVideo` and check the result against the true sampled fps;
- without ``mm_token_type_ids`` Qwen2.5-VL quietly uses 1-D positions; we require it in the output.
"""

from __future__ import annotations

import math
from typing import Sequence

from transformers import BatchFeature

from vtg_rl.data.video import SampledVideo

VIDEO_PAD = "<|video_pad|>"
VIDEO_BLOCK = "<|vision_start|><|video_pad|><|vision_end|>"


def _clean_block(block):
    # HF datasets give every content block every key, e.g. a text block gains "video": None, which the Qwen
    # template renders as a second video; keys that are None carry nothing, so they are dropped.
    return {k: v for k, v in block.items() if v is not None} if isinstance(block, dict) else block


def clean_messages(messages: list[dict]) -> list[dict]:
    """Messages with None-valued keys removed from content blocks (see ``_clean_block``)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            message = {**message, "content": [_clean_block(b) for b in content]}
        out.append(message)
    return out


def render_prompt(processor, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The chat-template string for ``messages`` (one ``<|vision_start|><|video_pad|><|vision_end|>`` per
    payload-free ``{"type": "video"}`` block), ready for :func:`build_video_inputs`."""
    return processor.apply_chat_template(clean_messages(messages), tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def expected_second_per_grid(processor, video: SampledVideo) -> float:
    return processor.video_processor.temporal_patch_size / video.sampled_fps


def build_video_inputs(processor, texts: Sequence[str], videos: Sequence[SampledVideo],
                       padding_side: str = "left", return_tensors: str = "pt") -> BatchFeature:
    """Tokenise rendered prompts and process their videos into one padded batch.

    ``texts[i]`` are chat-template strings; the video placeholders across all texts, in order, take
    ``videos`` (usually one per text). Returns ``input_ids``, ``attention_mask``, ``pixel_values_videos``,
    ``video_grid_thw``, ``second_per_grid_ts`` (real seconds per temporal patch) and ``mm_token_type_ids``.
    ``padding_side="left"`` for generation, ``"right"`` for training losses.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    texts, videos = list(texts), list(videos)
    n_blocks = [t.count(VIDEO_PAD) for t in texts]
    if sum(n_blocks) != len(videos):
        raise ValueError(f"the prompts hold {sum(n_blocks)} video placeholder(s) ({VIDEO_PAD} per text: {n_blocks}) "
                         f"but {len(videos)} video(s) were given; render prompts with a payload-free "
                         f'{{"type": "video"}} block and pass one SampledVideo per block')
    for v in videos:
        if not isinstance(v, SampledVideo):
            raise TypeError(f"videos must be vtg_rl.data.video.SampledVideo (frames + metadata), got {type(v)}")
        if v.metadata is None or not v.metadata.fps or not v.metadata.frames_indices:
            raise ValueError(f"{v.path}: video metadata (fps, frames_indices) is required for true timestamps")
    kwargs = {}
    if videos:
        kwargs = dict(videos=[v.frames for v in videos], video_metadata=[v.metadata for v in videos],
                      do_sample_frames=False)
    batch = processor(text=texts, padding=True, padding_side=padding_side, return_tensors=return_tensors,
                      **kwargs)
    if "mm_token_type_ids" not in batch:
        raise RuntimeError("the processor returned no mm_token_type_ids: Qwen2.5-VL would fall back to 1-D "
                           "positions (DESIGN §7); use a Qwen2.5-VL processor from transformers >= 5.19")
    if videos:
        got = [float(s) for s in batch["second_per_grid_ts"]]
        for v, s in zip(videos, got):
            want = expected_second_per_grid(processor, v)
            if not math.isclose(s, want, rel_tol=1e-4):
                raise RuntimeError(f"{v.path}: second_per_grid_ts is {s:.4f} s but the video's sampled fps "
                                   f"{v.sampled_fps:.3f} gives {want:.4f} s; the metadata did not reach the processor")
    return batch
