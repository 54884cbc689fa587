"""Model inputs for chat prompts with videos, with the time the model is told checked against the frames.

The work is the model family's (:mod:`vtg_rl.mllm.families`): these functions find the adapter of the
processor and delegate. Two silent failures of the stack are closed there for every family:

- frames handed to a processor without ``video_metadata`` get the processor's fallback fps (Qwen2.5-VL's
  ``second_per_grid_ts`` becomes 2/24 s, Qwen3-VL's timestamp markers assume 24 fps), so the time the
  model is told no longer means seconds; the metadata of :class:`vtg_rl.data.video.SampledVideo` is passed
  and the result is checked against the frames' true presentation times;
- without ``mm_token_type_ids`` the Qwen families quietly use 1-D positions; it is required in the output.
"""

from __future__ import annotations

from typing import Sequence

from transformers import BatchFeature

from vtg_rl.data.video import SampledVideo
from vtg_rl.mllm.families import adapter_for
from vtg_rl.mllm.families.base import clean_messages

__all__ = ["VIDEO_PAD", "VIDEO_BLOCK", "clean_messages", "render_prompt", "expected_second_per_grid",
           "build_video_inputs"]

#: Qwen2-VL / Qwen2.5-VL's video placeholder and vision block (other families: ``adapter.video_placeholder``)
VIDEO_PAD = "<|video_pad|>"
VIDEO_BLOCK = "<|vision_start|><|video_pad|><|vision_end|>"


def render_prompt(processor, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The chat-template string for ``messages`` (one video placeholder per payload-free
    ``{"type": "video"}`` block), ready for :func:`build_video_inputs`."""
    return adapter_for(processor).render_prompt(messages, add_generation_prompt=add_generation_prompt)


def expected_second_per_grid(processor, video: SampledVideo) -> float:
    return processor.video_processor.temporal_patch_size / video.sampled_fps


def build_video_inputs(processor, texts: Sequence[str], videos: Sequence[SampledVideo],
                       padding_side: str = "left", return_tensors: str = "pt") -> BatchFeature:
    """Tokenise rendered prompts and process their videos into one padded batch (see
    :meth:`vtg_rl.mllm.families.VideoLLMAdapter.build_inputs`). For Qwen2.5-VL the batch holds
    ``input_ids``, ``attention_mask``, ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``
    (real seconds per temporal patch) and ``mm_token_type_ids``; other families hold their own keys."""
    return adapter_for(processor).build_inputs(texts, videos, padding_side=padding_side,
                                               return_tensors=return_tensors)
