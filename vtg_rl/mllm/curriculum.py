"""Curriculum masking of hard samples for GRPO (VideoTG-R1).

A *hard* sample (zero-shot IoU ~0 over all rollouts) gives a GRPO group identical, near-zero rewards and
so no preference to learn from. Early in training, :class:`CurriculumMasker` therefore blanks the part of
a hard sample's video that lies *far* from the annotated span, which makes the span easier to find; the
visible context around the span grows linearly with the training step until the whole video is visible
at ``full_visible_at`` (a fraction of the run). Easy samples are never masked.

How timestamps stay truthful
----------------------------
Masking **blanks** frames, it never drops them: a masked frame is replaced by a flat frame (the video's
mean colour by default) and keeps its presentation timestamp, and the video's metadata (fps, frame count,
duration) is untouched. The processor therefore produces the same number of video tokens, the same
``video_grid_thw`` and the same ``second_per_grid_ts``, so Qwen2.5-VL's mRoPE time positions of every
visible frame are exactly those of the unmasked video, and an answer in seconds means the same thing with
and without the mask. (Dropping frames would need re-timed metadata and would change the positions.)

Frames are blanked in whole temporal patches (``temporal_patch_size`` consecutive frames, 2 for
Qwen2.5-VL), so every video token is either fully visible or fully blank, never a blend.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from vtg_rl.data.video import frames_overlapping


@dataclass
class CurriculumConfig:
    """Settings of :class:`CurriculumMasker`.

    Attributes:
        difficulty_threshold: a sample is hard when its ``difficulty`` (in [0, 1]) is above this.
        use_hard_flag: when a sample's difficulty is unknown (NaN), fall back to its ``hard`` flag.
        full_visible_at: fraction of training (0, 1] at which the whole video becomes visible.
        initial_context: fraction of the out-of-span part of the video visible at step 0 (next to the span).
        fill: ``"video_mean"`` (each channel's mean over the video) or ``"grey"`` (128).
        temporal_patch_size: frames per temporal patch; frames are blanked in whole patches.
    """

    difficulty_threshold: float = 0.5
    use_hard_flag: bool = True
    full_visible_at: float = 0.5
    initial_context: float = 0.0
    fill: str = "video_mean"
    temporal_patch_size: int = 2

    def __post_init__(self):
        if not 0.0 < self.full_visible_at <= 1.0:
            raise ValueError(f"full_visible_at must be in (0, 1], got {self.full_visible_at}")
        if not 0.0 <= self.initial_context <= 1.0:
            raise ValueError(f"initial_context must be in [0, 1], got {self.initial_context}")
        if self.fill not in ("video_mean", "grey"):
            raise ValueError(f"fill must be 'video_mean' or 'grey', got {self.fill!r}")
        if self.temporal_patch_size < 1:
            raise ValueError(f"temporal_patch_size must be >= 1, got {self.temporal_patch_size}")


class CurriculumMasker:
    """Blank the video of hard samples away from the annotated span, less and less as training advances."""

    def __init__(self, config: Optional[CurriculumConfig] = None):
        self.config = config or CurriculumConfig()

    # ------------------------------------------------------------------ schedule
    def context_fraction(self, progress: float) -> float:
        """Fraction of the out-of-span video visible at ``progress`` (training fraction in [0, 1])."""
        c = self.config
        ramp = min(max(progress, 0.0) / c.full_visible_at, 1.0)
        return c.initial_context + (1.0 - c.initial_context) * ramp

    def is_hard(self, difficulty: Optional[float], hard: Optional[bool] = None) -> bool:
        """Hard when ``difficulty > difficulty_threshold``; with no known difficulty, the ``hard`` flag decides."""
        if difficulty is not None and not (isinstance(difficulty, float) and math.isnan(difficulty)):
            return float(difficulty) > self.config.difficulty_threshold
        return bool(hard) if self.config.use_hard_flag else False

    def visible_window(self, windows: Sequence[Sequence[float]], duration: float, progress: float
                       ) -> tuple[float, float]:
        """The visible ``(lo, hi)`` seconds: the hull of the annotated windows widened on each side by
        ``context_fraction(progress)`` of the video on that side."""
        if not windows:
            raise ValueError("curriculum masking needs the annotated windows of a sample; got none")
        start = min(float(w[0]) for w in windows)
        end = max(float(w[1]) for w in windows)
        keep = self.context_fraction(progress)
        lo = start - keep * max(start, 0.0)
        hi = end + keep * max(float(duration) - end, 0.0)
        return lo, hi

    # ------------------------------------------------------------------ frames
    def visible_frames(self, timestamps: np.ndarray, window: tuple[float, float]) -> np.ndarray:
        """Boolean per frame: whole temporal patches are visible when any of their frames' time intervals
        ``[t_i, t_{i+1})`` overlaps the window (so the annotated span itself is never blanked)."""
        return frames_overlapping(timestamps, [window], self.config.temporal_patch_size)

    def blank_value(self, frames: np.ndarray) -> np.ndarray:
        if self.config.fill == "grey":
            return np.full((frames.shape[-1],), 128, dtype=frames.dtype)
        return frames.reshape(-1, frames.shape[-1]).mean(axis=0).round().astype(frames.dtype)

    def mask_frames(self, frames: np.ndarray, timestamps: np.ndarray, windows, duration: float,
                    progress: float) -> tuple[np.ndarray, float]:
        """Return ``(frames with blanked patches, fraction of frames blanked)``; the input is not modified."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or len(frames) != len(timestamps):
            raise ValueError(f"frames must be (T, H, W, C) with one timestamp per frame; got {frames.shape} "
                             f"and {len(timestamps)} timestamps")
        visible = self.visible_frames(timestamps, self.visible_window(windows, duration, progress))
        if visible.all():
            return frames, 0.0
        out = frames.copy()
        out[~visible] = self.blank_value(frames)
        return out, float((~visible).mean())

    def apply(self, video, windows, duration: float, progress: float, difficulty: Optional[float] = None,
              hard: Optional[bool] = None):
        """Mask a :class:`~vtg_rl.data.video.SampledVideo` (or any dataclass with ``frames`` and
        ``timestamps``) if the sample is hard. Returns ``(video, mask_fraction)``; timestamps and metadata
        are carried over unchanged."""
        if not self.is_hard(difficulty, hard):
            return video, 0.0
        frames, fraction = self.mask_frames(video.frames, video.timestamps, windows, duration, progress)
        if fraction == 0.0:
            return video, 0.0
        return dataclasses.replace(video, frames=frames), fraction
