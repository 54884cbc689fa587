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

from vtg_rl.mllm.video_inputs import build_video_inputs, render_prompt

#: the per-row keys VideoGRPOTrainer adds to TRL's rollout dict
VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "video_keys")


@dataclass
class VideoRows:
    """One video per row: ``pixel_values_videos[i]`` is row i's ``(patches_i, dim)`` block.

    ``keys[i]`` (optional) names what row i's pixels are: the video file, the sampling and the curriculum
    mask (:func:`video_key`); rows with equal keys hold equal pixels. It lets the shared-prefix path find a
    group's rows and cache a frozen vision tower's output across steps (:mod:`vtg_rl.mllm.shared_prefix`).
    """

    pixel_values_videos: list[torch.Tensor]
    video_grid_thw: torch.Tensor  # (B, 3)
    second_per_grid_ts: torch.Tensor  # (B,)
    keys: Optional[list[str]] = None

    def __len__(self) -> int:
        return len(self.pixel_values_videos)

    def select(self, start: int, end: int) -> "VideoRows":
        return VideoRows(self.pixel_values_videos[start:end], self.video_grid_thw[start:end],
                         self.second_per_grid_ts[start:end], None if self.keys is None else self.keys[start:end])

    def model_kwargs(self, device=None) -> dict[str, torch.Tensor]:
        """The Qwen2.5-VL forward / generate keyword arguments for these rows, in row order."""
        pixels = torch.cat(list(self.pixel_values_videos), dim=0)
        out = {"pixel_values_videos": pixels, "video_grid_thw": self.video_grid_thw,
               "second_per_grid_ts": self.second_per_grid_ts}
        return {k: v.to(device) for k, v in out.items()} if device is not None else out

    def as_inputs(self) -> dict[str, Any]:
        out = {"pixel_values_videos": list(self.pixel_values_videos), "video_grid_thw": self.video_grid_thw,
               "second_per_grid_ts": self.second_per_grid_ts}
        if self.keys is not None:
            out["video_keys"] = list(self.keys)
        return out

    @classmethod
    def from_inputs(cls, inputs: dict) -> Optional["VideoRows"]:
        """Rebuild from a (shuffled, split) rollout dict; ``None`` when it carries no video."""
        if "pixel_values_videos" not in inputs:
            return None
        pixels = inputs["pixel_values_videos"]
        if isinstance(pixels, torch.Tensor):
            raise TypeError("pixel_values_videos must be a per-row list in a VideoGRPOTrainer rollout dict")
        keys = inputs.get("video_keys")
        return cls(list(pixels), inputs["video_grid_thw"], inputs["second_per_grid_ts"],
                   None if keys is None else list(keys))


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
                       "sampling": [sampling.fps, sampling.min_frames, sampling.max_frames, sampling.max_pixels],
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
                        device=None, frame_transform=None, transform_name: Optional[str] = None) -> RolloutVideo:
    """Decode (cached), curriculum-mask and process the videos of ``rows`` (dataset rows with ``prompt``,
    ``video_path`` and, for masking, ``windows``, ``duration``, ``difficulty``, ``hard``).

    ``frame_transform`` (SampledVideo -> SampledVideo, named ``transform_name`` in the video keys) is applied
    after masking, to the frames every forward and the rollout engine see."""
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
        texts.append(render_prompt(processor, row["prompt"], add_generation_prompt=True))
        videos.append(video)
        fractions.append(fraction)
        masked.append(masker is not None and masker.is_hard(_difficulty(row), row.get("hard")))

    batch = build_video_inputs(processor, texts, videos, padding_side="left")
    grid = batch["video_grid_thw"]
    if grid.size(0) != len(texts):
        raise ValueError(f"expected one video per prompt, the processor returned {grid.size(0)} for {len(texts)}")
    pixels = torch.split(batch["pixel_values_videos"], grid.prod(-1).tolist(), dim=0)
    spg = torch.as_tensor(batch["second_per_grid_ts"], dtype=torch.float32).reshape(-1)
    ids = [batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist() for i in range(len(texts))]

    index = {key: i for i, key in enumerate(unique)}
    order = [index[k] for k in keys]
    order_t = torch.tensor(order)
    if device is not None:  # once per unique video: the rows of a group share one tensor on the device
        pixels = [p.to(device) for p in pixels]
    video_rows = VideoRows(
        pixel_values_videos=[pixels[i] for i in order],
        video_grid_thw=grid[order_t].to(device) if device is not None else grid[order_t],
        second_per_grid_ts=spg[order_t].to(device) if device is not None else spg[order_t],
        keys=[vkeys[i] for i in order],
    )
    return RolloutVideo(prompt_ids=[list(ids[i]) for i in order], rows=video_rows,
                        mask_fraction=[fractions[i] for i in order], masked=[masked[i] for i in order],
                        videos=[videos[i] for i in order])


def mm_token_type_ids(processor, input_ids: torch.Tensor) -> torch.Tensor:
    """The processor's modality rule (0 text, 1 image, 2 video) applied to token ids, on their device.

    Deriving it from the ids (rather than carrying the processor's prompt-only tensor) covers the
    completion tokens and any padding layout TRL chooses. Without it Qwen2.5-VL silently falls back to
    1-D positions (DESIGN §7)."""
    out = torch.zeros_like(input_ids)
    for value, ids in ((1, processor.image_token_ids), (2, processor.video_token_ids)):
        ids = [i for i in ids if i is not None]
        if ids:
            out[torch.isin(input_ids, torch.tensor(ids, device=input_ids.device))] = value
    return out
