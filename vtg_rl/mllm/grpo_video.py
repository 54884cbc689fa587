"""The video side of :class:`~vtg_rl.mllm.grpo.VideoGRPOTrainer`: per-row video tensors of a rollout batch.

A GRPO generation batch holds each prompt ``num_generations`` times. Every row needs its video in
generation *and* in every log-prob forward (policy, old, reference), after TRL has shuffled and split the
batch; so the tensors are kept **per row** (:class:`VideoRows`), which TRL's ``shuffle_sequence_dict`` /
``split_tensor_dict`` permute and slice along with the other row fields. Identical rows of a group are
decoded, masked and processed once.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Optional

import torch

from vtg_rl.mllm.families import adapter_for

#: the per-row keys VideoGRPOTrainer adds to TRL's rollout dict
VIDEO_KEYS = ("video_fields", "video_keys")


@dataclass
class VideoRows:
    """One video per row: ``fields[i]`` is row i's video tensors (the model family's keys, each with a leading
    dimension so that rows concatenate, e.g. Qwen's ``pixel_values_videos`` patches and ``video_grid_thw``).

    ``keys[i]`` (optional) names what row i's pixels are: the video file, the sampling and the curriculum
    mask (:func:`video_key`); rows with equal keys hold equal pixels. It lets the shared-prefix path find a
    group's rows and cache a frozen vision tower's output across steps (:mod:`vtg_rl.mllm.shared_prefix`).
    """

    fields: list[dict[str, torch.Tensor]]
    keys: Optional[list[str]] = None

    def __len__(self) -> int:
        return len(self.fields)

    def select(self, start: int, end: int) -> "VideoRows":
        return VideoRows(self.fields[start:end], None if self.keys is None else self.keys[start:end])

    def take(self, rows) -> "VideoRows":
        idx = [int(i) for i in rows]
        return VideoRows([self.fields[i] for i in idx], None if self.keys is None else [self.keys[i] for i in idx])

    def model_kwargs(self, device=None) -> dict[str, torch.Tensor]:
        """The video keyword arguments of a forward / ``generate`` over these rows, in row order."""
        if not self.fields:
            return {}
        out = {k: torch.cat([f[k] for f in self.fields], dim=0) for k in self.fields[0]}
        return {k: v.to(device) for k, v in out.items()} if device is not None else out

    # the Qwen families' keys, per row (tests and tools read them)
    @property
    def pixel_values_videos(self) -> list[torch.Tensor]:
        return [f["pixel_values_videos"] for f in self.fields]

    @property
    def video_grid_thw(self) -> Optional[torch.Tensor]:
        return torch.cat([f["video_grid_thw"] for f in self.fields]) if "video_grid_thw" in self.fields[0] else None

    @property
    def second_per_grid_ts(self) -> Optional[torch.Tensor]:
        if "second_per_grid_ts" not in self.fields[0]:
            return None
        return torch.cat([f["second_per_grid_ts"] for f in self.fields])

    def signature(self, i: int) -> tuple:
        """What identifies row i's video without comparing pixels: the key, or the small tensors and shapes."""
        f = self.fields[i]
        small = tuple((k, tuple(v.shape), tuple(v.flatten().tolist()) if v.numel() <= 16 else None)
                      for k, v in sorted(f.items()))
        return (self.keys[i] if self.keys is not None else None, small)

    def same_pixels(self, a: int, b: int) -> bool:
        fa, fb = self.fields[a], self.fields[b]
        return all(fa[k] is fb[k] or (fa[k].shape == fb[k].shape and bool(torch.equal(fa[k], fb[k]))) for k in fa)

    def as_inputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"video_fields": list(self.fields)}
        if self.keys is not None:
            out["video_keys"] = list(self.keys)
        return out

    @classmethod
    def from_inputs(cls, inputs: dict) -> Optional["VideoRows"]:
        """Rebuild from a (shuffled, split) rollout dict; ``None`` when it carries no video."""
        if "video_fields" not in inputs:
            return None
        fields = inputs["video_fields"]
        if isinstance(fields, dict) or (fields and not isinstance(fields[0], dict)):
            raise TypeError("video_fields must be a per-row list of dicts in a VideoGRPOTrainer rollout dict")
        keys = inputs.get("video_keys")
        return cls(list(fields), None if keys is None else list(keys))


@dataclass
class RolloutVideo:
    """A rollout batch's prompts and videos, ready for generation and the log-prob forwards."""

    prompt_ids: list[list[int]]  # unpadded prompt token ids per row
    rows: VideoRows
    mask_fraction: list[float]  # fraction of each row's frames blanked by the curriculum (0 when unmasked)
    masked: list[bool]  # whether the curriculum masked the row
    videos: Optional[list] = None  # each row's SampledVideo as processed (masked, transformed): vLLM's input


def _row_key(row: dict) -> str:
    # rows of one GRPO group are identical; the key must cover everything that changes the video or prompt
    return json.dumps([row.get("qid"), row["video_path"], row.get("windows"), row.get("prompt")],
                      sort_keys=True, default=str)


def video_key(path: str, sampling, visible: Optional[list[bool]] = None, fill: Optional[str] = None,
              transform: Optional[str] = None) -> str:
    """What a row's pixels are: the file (resolved path, size, mtime), the frame sampling, the curriculum
    mask (``visible`` frames and ``fill``; ``None`` = unmasked) and any frame transform (e.g. the JPEG
    round trip of vLLM server mode). Equal keys -> equal pixels for one processor."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    blob = json.dumps({"path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                       "sampling": [sampling.fps, sampling.min_frames, sampling.max_frames, sampling.max_pixels,
                                    sampling.time_grid, sampling.pixel_factor],
                       "visible": None if visible is None else "".join("1" if v else "0" for v in visible),
                       "fill": fill, "transform": transform}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _difficulty(row: dict) -> Optional[float]:
    value = row.get("difficulty")
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def build_rollout_video(processor, sampling, rows: list[dict], masker=None, progress: float = 0.0,
                        device=None, frame_transform=None, transform_name: Optional[str] = None,
                        adapter=None) -> RolloutVideo:
    """Decode (cached), curriculum-mask and process the videos of ``rows`` (dataset rows with ``prompt``,
    ``video_path`` and, for masking, ``windows``, ``duration``, ``difficulty``, ``hard``).

    ``frame_transform`` (SampledVideo -> SampledVideo, named ``transform_name`` in the video keys) is applied
    after masking, to the frames every forward and the rollout engine see."""
    adapter = adapter or adapter_for(processor)
    sampling = sampling.for_family(adapter)
    keys, unique = [], {}
    for row in rows:
        if not row.get("video_path"):
            raise ValueError(f"sample {row.get('qid', '?')}: no video_path; VideoGRPOTrainer needs the video file "
                             "in a 'video_path' column (see vtg_rl.mllm.dataset.samples_to_hf)")
        key = _row_key(row)
        keys.append(key)
        unique.setdefault(key, row)

    texts, videos, fractions, masked, vkeys = [], [], [], [], []
    for row in unique.values():
        video = sampling.load(row["video_path"], qid=row.get("qid"))
        fraction, visible = 0.0, None
        if masker is not None:
            if not row.get("windows"):
                raise ValueError(f"sample {row.get('qid', '?')}: curriculum masking needs its annotated 'windows'")
            original = video
            video, fraction = masker.apply(video, row["windows"], float(row["duration"]), progress,
                                           difficulty=_difficulty(row), hard=row.get("hard"))
            if fraction > 0:
                window = masker.visible_window(row["windows"], float(row["duration"]), progress)
                visible = masker.visible_frames(original.timestamps, window).tolist()
        if frame_transform is not None:
            video = frame_transform(video)
        vkeys.append(video_key(row["video_path"], sampling, visible, masker.config.fill if visible else None,
                               transform_name if frame_transform is not None else None))
        texts.append(adapter.render_prompt(row["prompt"], add_generation_prompt=True))
        videos.append(video)
        fractions.append(fraction)
        masked.append(masker is not None and masker.is_hard(_difficulty(row), row.get("hard")))

    batch = adapter.build_inputs(texts, videos, padding_side="left")
    per_video = adapter.split_videos(batch, len(texts))
    ids = [batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist() for i in range(len(texts))]

    index = {key: i for i, key in enumerate(unique)}
    order = [index[k] for k in keys]
    if device is not None:  # once per unique video: the rows of a group share the same tensors on the device
        per_video = [{k: v.to(device) for k, v in f.items()} for f in per_video]
    video_rows = VideoRows(fields=[per_video[i] for i in order], keys=[vkeys[i] for i in order])
    return RolloutVideo(prompt_ids=[list(ids[i]) for i in order], rows=video_rows,
                        mask_fraction=[fractions[i] for i in order], masked=[masked[i] for i in order],
                        videos=[videos[i] for i in order])


def mm_token_type_ids(processor, input_ids: torch.Tensor) -> torch.Tensor:
    """The processor's modality rule (0 text, 1 image, 2 video) applied to token ids, on their device.

    Deriving it from the ids (rather than carrying the processor's prompt-only tensor) covers the
    completion tokens and any padding layout TRL chooses. Without it the Qwen families silently fall back
    to 1-D positions."""
    return adapter_for(processor).token_type_ids(input_ids)
