"""What the trainers need to know about one video-LLM family, in one object.

Every place that used to assume Qwen2.5-VL (placeholder tokens, the processor's key set, time checks, the
end-of-turn token, tokens that must never be sampled, the vision tower, shared-prefix positions) asks the
family's :class:`VideoLLMAdapter` instead. The base class holds the behaviour the Qwen-style families share;
each family overrides what differs (see the sibling modules). Adapters are cheap: one per processor.

Videos always arrive as :class:`vtg_rl.data.video.SampledVideo` (frames decoded by PyAV, with the true
presentation time of every frame). How that time reaches the model is the family's
``time_representation``:

* ``mrope-seconds``: absolute time in the rotary positions (Qwen2.5-VL, ``second_per_grid_ts``);
* ``mrope-frame-index``: the temporal-patch index in the rotary positions (Qwen2-VL): seconds per position
  depend on the sampling rate, which must therefore stay fixed;
* ``text-timestamps``: ``<t seconds>`` markers the processor writes from the frames' timestamps (Qwen3-VL,
  Qwen3.5);
* ``injected-timestamps``: no time signal of its own; vtg-rl writes a timestamp before every frame
  (LLaVA-OneVision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from transformers import BatchFeature


class UnsupportedFamilyFeature(ValueError):
    """A feature (shared prefix, vLLM rollouts, a vision-feature cache) the model family cannot run exactly."""


@dataclass(frozen=True)
class Capabilities:
    """What a family supports beyond plain forwards (each checked at start-up, never mid-run)."""

    shared_prefix: bool
    vllm: bool
    vision_cache: bool


def clean_messages(messages: list[dict]) -> list[dict]:
    """Messages with None-valued keys removed from content blocks.

    HF datasets give every content block every key (a text block gains ``"video": None``), which some chat
    templates render as a second video; keys that are None carry nothing, so they are dropped."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [{k: v for k, v in b.items() if v is not None} if isinstance(b, dict) else b for b in content]
            message = {**message, "content": content}
        out.append(message)
    return out


class VideoLLMAdapter:
    """One family's conventions; subclasses set the class attributes and override the hooks."""

    #: registry name
    family: str = ""
    #: ``config.model_type`` values of the family
    model_types: tuple[str, ...] = ()
    #: processor class names of the family
    processor_classes: tuple[str, ...] = ()
    time_representation: str = ""
    capabilities = Capabilities(shared_prefix=False, vllm=False, vision_cache=False)
    #: the video placeholder the chat template writes for a payload-free ``{"type": "video"}`` block
    video_placeholder: str = "<|video_pad|>"
    #: tokens that stand for vision content and must never be generated as text
    vision_token_strings: tuple[str, ...] = ("<|video_pad|>", "<|image_pad|>", "<|vision_start|>",
                                             "<|vision_end|>", "<|vision_pad|>")
    end_of_turn: str = "<|im_end|>"
    #: whether the forward needs ``mm_token_type_ids`` (0 text, 1 image, 2 video) to place vision positions
    needs_token_types: bool = True
    #: how frames of a variable-frame-rate video are chosen: "native" keeps the decoded frames and passes
    #: their real timestamps; "even" resamples to an even time grid (families whose time is a fixed rate)
    time_grid: str = "native"

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if self.end_token_id() is None:
            raise ValueError(f"the {self.family} tokenizer has no end-of-turn token {self.end_of_turn!r}")

    # ------------------------------------------------------------------ tokens
    def _token_id(self, token: str) -> Optional[int]:
        i = self.tokenizer.convert_tokens_to_ids(token)
        return None if i is None or i == self.tokenizer.unk_token_id else int(i)

    def end_token_id(self) -> Optional[int]:
        return self._token_id(self.end_of_turn)

    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else self.end_token_id()

    def suppress_token_ids(self) -> list[int]:
        """Ids that generation must never sample (a sampled vision token would be taken for a video slot)."""
        return sorted({i for i in (self._token_id(t) for t in self.vision_token_strings) if i is not None})

    def video_token_ids(self) -> list[int]:
        ids = getattr(self.processor, "video_token_ids", None)
        if ids:
            return [int(i) for i in ids if i is not None]
        i = self._token_id(getattr(self.processor, "video_token", self.video_placeholder))
        return [] if i is None else [i]

    def image_token_ids(self) -> list[int]:
        ids = getattr(self.processor, "image_token_ids", None)
        if ids:
            return [int(i) for i in ids if i is not None]
        i = self._token_id(getattr(self.processor, "image_token", "<|image_pad|>"))
        return [] if i is None else [i]

    def token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """0 text, 1 image, 2 video for every token, derived from the ids (covers completions and any padding)."""
        # every log-prob forward asks: look the vision token ids up once per adapter, not per call
        if getattr(self, "_typed_ids", None) is None:
            self._typed_ids = [(v, torch.tensor(ids)) for v, ids in ((1, self.image_token_ids()),
                                                                     (2, self.video_token_ids())) if ids]
        out = torch.zeros_like(input_ids)
        for value, ids in self._typed_ids:
            out[torch.isin(input_ids, ids.to(input_ids.device))] = value
        return out

    # ------------------------------------------------------------------ prompts and inputs
    def render_prompt(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat-template string with one placeholder per payload-free ``{"type": "video"}`` block."""
        return self.processor.apply_chat_template(clean_messages(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def count_placeholders(self, text: str) -> int:
        return text.count(self.video_placeholder)

    @property
    def temporal_patch_size(self) -> int:
        return int(getattr(self.processor.video_processor, "temporal_patch_size", 1) or 1)

    @property
    def pixel_factor(self) -> int:
        vp = self.processor.video_processor
        return int(getattr(vp, "patch_size", 14)) * int(getattr(vp, "merge_size", 1))

    def processor_call(self, texts: list[str], videos: list) -> tuple[list[str], dict]:
        """The texts and video keyword arguments handed to the processor (hook)."""
        return texts, dict(videos=[v.frames for v in videos], video_metadata=[self.metadata_for(v) for v in videos],
                           do_sample_frames=False)

    def metadata_for(self, video):
        """The ``VideoMetadata`` the processor sees for ``video`` (hook; default: the decoder's own)."""
        return video.metadata

    def build_inputs(self, texts: Sequence[str], videos: Sequence, padding_side: str = "left",
                     return_tensors: str = "pt") -> BatchFeature:
        """Tokenise rendered prompts and process their videos into one padded batch.

        ``texts[i]`` are chat-template strings; their placeholders, in order, take ``videos`` (one
        :class:`~vtg_rl.data.video.SampledVideo` per placeholder). ``padding_side="left"`` for generation,
        ``"right"`` for training losses. The time the model is told is checked against the frames' timestamps.
        """
        from vtg_rl.data.video import SampledVideo

        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        texts, videos = list(texts), list(videos)
        n_blocks = [self.count_placeholders(t) for t in texts]
        if sum(n_blocks) != len(videos):
            raise ValueError(f"the prompts hold {sum(n_blocks)} video placeholder(s) ({self.video_placeholder} per "
                             f"text: {n_blocks}) but {len(videos)} video(s) were given; render prompts with a "
                             f'payload-free {{"type": "video"}} block and pass one SampledVideo per block')
        for v in videos:
            if not isinstance(v, SampledVideo):
                raise TypeError(f"videos must be vtg_rl.data.video.SampledVideo (frames + metadata), got {type(v)}")
            if v.metadata is None or not v.metadata.fps or not v.metadata.frames_indices:
                raise ValueError(f"{v.path}: video metadata (fps, frames_indices) is required for true timestamps")
        call_texts, kwargs = self.processor_call(texts, videos) if videos else (texts, {})
        batch = self.processor(text=call_texts, padding=True, padding_side=padding_side,
                               return_tensors=return_tensors, **kwargs)
        if self.needs_token_types and "mm_token_type_ids" not in batch:
            raise RuntimeError(f"the {self.family} processor returned no mm_token_type_ids: the model would fall back "
                               "to 1-D positions; use a processor from transformers >= 5.19")
        if videos:
            self.check_time(batch, videos)
        return batch

    def check_time(self, batch: BatchFeature, videos: list) -> None:
        """Raise when the time the model is told differs from the frames' timestamps (hook)."""

    # ------------------------------------------------------------------ per-video tensors
    def split_videos(self, batch: BatchFeature, n_videos: int) -> list[dict[str, torch.Tensor]]:
        """The batch's video tensors cut into one dict per video, every tensor keeping a leading dimension
        so that :meth:`merge_videos` is a concatenation (default: Qwen's flattened patches + ``video_grid_thw``)."""
        grid = batch["video_grid_thw"]
        if grid.size(0) != n_videos:
            raise ValueError(f"expected {n_videos} video(s), the processor returned {grid.size(0)}")
        pixels = torch.split(batch["pixel_values_videos"], grid.prod(-1).tolist(), dim=0)
        rows = [{"pixel_values_videos": pixels[i], "video_grid_thw": grid[i:i + 1]} for i in range(n_videos)]
        if "second_per_grid_ts" in batch:
            spg = torch.as_tensor(batch["second_per_grid_ts"], dtype=torch.float32).reshape(-1)
            for i, row in enumerate(rows):
                row["second_per_grid_ts"] = spg[i:i + 1]
        return rows

    @staticmethod
    def merge_videos(rows: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Model keyword arguments for several videos' tensors, in order."""
        if not rows:
            return {}
        return {k: torch.cat([r[k] for r in rows], dim=0) for k in rows[0]}

    def forward_kwargs(self, input_ids: torch.Tensor, video_kwargs: dict) -> dict:
        """Everything a forward / ``generate`` needs besides ``input_ids`` / ``attention_mask``."""
        out = dict(video_kwargs)
        if self.needs_token_types:
            out["mm_token_type_ids"] = self.token_type_ids(input_ids)
        return out

    # ------------------------------------------------------------------ time
    def told_times(self, batch: BatchFeature, videos: list) -> list[np.ndarray]:
        """Per video, the time in seconds the model is told for each temporal step (hook)."""
        raise NotImplementedError

    def true_step_times(self, video) -> np.ndarray:
        """Per temporal step, the presentation time of its first frame, relative to the first frame."""
        ts = np.asarray(video.timestamps, dtype=np.float64)
        return ts[:: self.temporal_patch_size] - ts[0]

    # ------------------------------------------------------------------ model
    @staticmethod
    def core(model):
        """The module holding the vision tower and the language model (through DDP / DeepSpeed / PEFT)."""
        return unwrap_to(model, lambda m: hasattr(m, "language_model") and VideoLLMAdapter._tower_of(m) is not None)

    @staticmethod
    def _tower_of(module):
        for name in ("visual", "vision_tower"):
            tower = getattr(module, name, None)
            if isinstance(tower, torch.nn.Module):
                return tower
        return None

    def vision_tower(self, model):
        core = self.core(model)
        if core is None:
            raise ValueError(f"{type(model).__name__} has no vision tower the {self.family} adapter recognises")
        return self._tower_of(core)

    def check_model(self, model, feature: str) -> None:
        """Raise :class:`UnsupportedFamilyFeature` when ``feature`` ("shared_prefix", "vllm", "vision_cache")
        cannot run exactly on this family."""
        if not getattr(self.capabilities, feature):
            raise UnsupportedFamilyFeature(self.unsupported_reason(feature))

    def unsupported_reason(self, feature: str) -> str:
        off = {"shared_prefix": "shared_prefix=False", "vllm": "use_vllm=False",
               "vision_cache": "vision_cache_size=0"}[feature]
        return f"{feature} is not supported for {self.family} models; set {off}"

    def prompt_positions(self, core, ids: torch.Tensor, mask: torch.Tensor, video_kwargs: dict) -> torch.Tensor:
        """The rotary positions of left-padded prompts ``ids`` (shape ``(3, U, P)`` for mRoPE families)."""
        raise UnsupportedFamilyFeature(self.unsupported_reason("shared_prefix"))

    def step_features(self, model, videos: list) -> list:
        """The tokens the language model sees for each video, per temporal step: a list of
        ``(features (T', L, D) float32 numpy, frames per step)`` (the data agents' appearance check)."""
        vp = self.processor.video_processor
        batch = vp(videos=[v.frames for v in videos], video_metadata=[self.metadata_for(v) for v in videos],
                   do_sample_frames=False, return_tensors="pt")
        merge = int(getattr(vp, "merge_size", 1))
        with torch.no_grad():
            out = model.get_video_features(batch["pixel_values_videos"].to(model.device),
                                           batch["video_grid_thw"].to(model.device))
        tokens = out.pooler_output if hasattr(out, "pooler_output") else out
        result = []
        for v, feats, (t, h, w) in zip(videos, tokens, batch["video_grid_thw"].tolist()):
            feats = feats.float().cpu().numpy().reshape(t, (h // merge) * (w // merge), -1)
            result.append((feats, len(v.timestamps) // t))
        return result

    # ------------------------------------------------------------------ sizes
    def tokens_per_step(self, video_kwargs: dict) -> int:
        """Video tokens per temporal step of one processed video (for length estimates)."""
        grid = video_kwargs["video_grid_thw"][0]
        merge = int(getattr(self.processor.video_processor, "merge_size", 1))
        return int(grid[1] * grid[2]) // (merge * merge)

    def extra_tokens_per_step(self) -> int:
        """Text tokens the family adds per temporal step (timestamp markers, separators)."""
        return 0


def unwrap_to(model, wanted):
    """The first module, going inwards through DDP / DeepSpeed (``module``), PEFT (``base_model``) and the
    ``model`` attribute of a ``*ForConditionalGeneration``, for which ``wanted(module)`` holds; None if none."""
    seen = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        if wanted(model):
            return model
        model = next((inner for inner in (getattr(model, a, None) for a in ("module", "base_model", "model"))
                      if isinstance(inner, torch.nn.Module) and inner is not model), None)
    return None


def isclose_all(a, b, tol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))


def fmt_times(values, n: int = 6) -> str:
    values = list(values)
    head = ", ".join(f"{float(v):.2f}" for v in values[:n])
    return f"[{head}{', ...' if len(values) > n else ''}]"


def close(a: float, b: float, rel: float = 1e-4) -> bool:
    return math.isclose(a, b, rel_tol=rel)
