"""How the LLM trainers get frames: one sampling policy + an optional disk cache, shared by SFT,
GRPO, inference and the data agents so that every stage sees a video the same way."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from vtg_rl.data.video import PIXEL_FACTOR, FrameCache, SampledVideo, VideoDecodeError, sample_frames


@dataclass
class VideoSampling:
    """Frame-sampling policy (seconds-true: frames carry their presentation timestamps).

    Attributes:
        fps: frames per second to sample (Qwen2.5-VL was trained at 2 fps).
        min_frames / max_frames: bounds on the number of sampled frames (rounded to the temporal patch).
        max_pixels: pixel budget per frame (``None`` = the processor's own policy).
        cache_dir: where decoded frames are cached (``None`` = no cache).
        time_grid: ``"native"`` or ``"even"``: how frames of a variable-frame-rate video are chosen
            (:func:`vtg_rl.data.video.sample_frames`); set from the model family by :meth:`for_family`.
        pixel_factor: frame sides are multiples of it when ``max_pixels`` resizes (the family's patch x merge).
    """

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 64
    max_pixels: Optional[int] = None
    cache_dir: Optional[str] = None
    time_grid: str = "native"
    pixel_factor: int = PIXEL_FACTOR

    def __post_init__(self):
        self._cache = FrameCache(self.cache_dir) if self.cache_dir else None

    def for_family(self, adapter) -> "VideoSampling":
        """This policy with the model family's time grid and pixel factor (the same object when they agree)."""
        if self.time_grid == adapter.time_grid and self.pixel_factor == adapter.pixel_factor:
            return self
        return replace(self, time_grid=adapter.time_grid, pixel_factor=adapter.pixel_factor)

    def _kwargs(self) -> dict:
        return dict(fps=self.fps, min_frames=self.min_frames, max_frames=self.max_frames, max_pixels=self.max_pixels,
                    time_grid=self.time_grid, pixel_factor=self.pixel_factor)

    def load(self, path: str, qid: Optional[str] = None) -> SampledVideo:
        try:
            if self._cache is not None:
                return self._cache.get(path, **self._kwargs())
            return sample_frames(path, **self._kwargs())
        except VideoDecodeError as err:
            if qid is None:
                raise
            raise VideoDecodeError(f"sample {qid}: {err}") from err


@dataclass
class VideoTrainingArguments:
    """The video options every LLM trainer config shares (mixed into ``VideoSFTConfig`` and
    ``VideoGRPOConfig``, so ``--video_fps`` and friends mean the same in every recipe)."""

    video_fps: float = field(default=2.0, metadata={"help": "frames per second sampled from each video"})
    video_min_frames: int = field(default=4, metadata={"help": "minimum sampled frames per video"})
    video_max_frames: int = field(default=64, metadata={"help": "maximum sampled frames per video"})
    video_max_pixels: Optional[int] = field(default=None, metadata={"help": "pixel budget per frame"})
    frame_cache_dir: Optional[str] = field(default=None, metadata={"help": "disk cache of decoded frames"})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "train the language model only"})

    def video_sampling(self) -> VideoSampling:
        return VideoSampling(fps=self.video_fps, min_frames=self.video_min_frames, max_frames=self.video_max_frames,
                             max_pixels=self.video_max_pixels, cache_dir=self.frame_cache_dir)
