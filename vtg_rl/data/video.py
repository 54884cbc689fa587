"""PyAV frame sampling with true timestamps, and a disk cache of sampled frames.

Why we decode ourselves: handing a path to a video processor needs torchcodec (system FFmpeg libraries), and
handing it bare frames without ``video_metadata`` makes the processor assume a fallback fps (Qwen2.5-VL's
``second_per_grid_ts`` silently becomes 2/24 s instead of the real seconds). :func:`sample_frames` returns frames *with* a ``VideoMetadata`` carrying the stream's
real fps, duration and the chosen frame indices, which :mod:`vtg_rl.mllm.video_inputs` passes on.

Sampling policy: the frame count follows qwen-vl-utils' ``smart_nframes`` (target fps, min/max frames, a
multiple of 2 for temporal patches); the indices are uniform ``floor(k * total / n)`` (as transformers'
``Qwen2VLVideoProcessor.sample_frames``) rather than qwen-vl-utils' ``linspace(0, total - 1, n)``, so frame k
is shown at ``k / sampled_fps`` seconds and the model's mRoPE time of each temporal patch equals the
presentation time of its first frame. Resizing (when a pixel budget is given) follows ``smart_resize``.

Variable frame rate (frames not evenly spaced in time): ``time_grid="native"`` keeps the uniformly chosen
frames and reports their real presentation times (for families told time as text, which can say any
time); ``time_grid="even"`` picks, for each point ``k / sampled_fps`` of an even time grid, the frame on
screen at that moment and reports the grid times (for families whose time is a fixed rate in the rotary
positions, which can only express evenly spaced frames). On a constant-rate video both give the same frames.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import av
import numpy as np
from transformers.video_utils import VideoMetadata

FRAME_FACTOR = 2  # frame counts are multiples of 2 (the Qwen families' temporal patch)
PIXEL_FACTOR = 28  # Qwen2/2.5-VL: patch 14 x spatial merge 2 (Qwen3-VL: 32); callers pass their family's
CACHE_VERSION = 2
TIME_GRIDS = ("native", "even")
#: frame intervals further than this fraction of the median interval from it make a video variable-rate
VFR_TOLERANCE = 0.25

FrameSize = Union[int, tuple[int, int], None]


class VideoDecodeError(RuntimeError):
    """A video that cannot be sampled (missing, empty, corrupt, no video stream, too few frames)."""

    def __init__(self, path, reason: Optional[str] = None):
        # VideoDecodeError(path, reason) names the file; VideoDecodeError(message) re-raises with more
        # context (e.g. "sample q12: <original message>") and keeps no path.
        self.path = str(path) if reason is not None else None
        super().__init__(f"{path}: {reason}" if reason is not None else str(path))


@dataclass
class SampledVideo:
    """Frames chosen from one video, with when they are shown."""

    frames: np.ndarray  # (T, H, W, 3) uint8, T a multiple of FRAME_FACTOR
    timestamps: np.ndarray  # (T,) float64, presentation time of each frame in seconds from the stream start
    metadata: VideoMetadata  # true fps, duration, total_num_frames and the chosen frames_indices
    path: str

    @property
    def sampled_fps(self) -> float:
        return float(self.metadata.sampled_fps)

    @property
    def duration(self) -> float:
        return float(self.metadata.duration)


def _target_size(height: int, width: int, max_pixels: Optional[int], frame_size: FrameSize,
                 pixel_factor: int = PIXEL_FACTOR) -> tuple[int, int]:
    if frame_size is not None:
        h, w = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
        return int(h), int(w)
    if max_pixels is None or height * width <= max_pixels:
        return height, width  # never upscale here; the processor applies the model's own minimum
    from qwen_vl_utils.vision_process import smart_resize

    return smart_resize(height, width, factor=pixel_factor, min_pixels=pixel_factor ** 2, max_pixels=max_pixels)


def choose_indices(total_frames: int, video_fps: float, fps: float, min_frames: int, max_frames: int) -> np.ndarray:
    """Which frames to keep: qwen-vl-utils' frame count, uniformly spread (see the module docstring)."""
    from qwen_vl_utils.vision_process import smart_nframes

    n = smart_nframes({"fps": fps, "min_frames": min_frames, "max_frames": max_frames},
                      total_frames=total_frames, video_fps=video_fps)
    return np.floor(np.arange(n) * (total_frames / n)).astype(np.int64)


def _stream_facts(path: Path, stream) -> tuple[float, int, float, float]:
    """(fps, total frames from the container header or 0, duration s or nan, start time s)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise VideoDecodeError(path, "the video stream has no frame rate")
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    duration = float(stream.duration * stream.time_base) if stream.duration else float("nan")
    return float(rate), int(stream.frames or 0), duration, start


def _decode(path: Path, wanted: Optional[set], size: tuple[int, int] | None, frame_size: FrameSize,
            max_pixels: Optional[int], pixel_factor: int = PIXEL_FACTOR, all_times: Optional[list] = None):
    """One decoding pass: returns (kept frames by index, pts of kept frames, frames decoded, native h, w).
    ``all_times``, when given, receives the presentation time of every decoded frame."""
    kept, times = {}, {}
    count, native = 0, (0, 0)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if count == 0:
                native = (frame.height, frame.width)
                if size is None:
                    size = _target_size(frame.height, frame.width, max_pixels, frame_size, pixel_factor)
            if all_times is not None:
                all_times.append(float(frame.time) if frame.time is not None else float("nan"))
            if wanted is None or count in wanted:
                h, w = size
                kept[count] = frame.to_ndarray(format="rgb24", width=w, height=h)
                times[count] = float(frame.time) if frame.time is not None else float("nan")
            count += 1
    return kept, times, count, native


def is_variable_rate(times) -> bool:
    """Whether presentation times are unevenly spaced (beyond ``VFR_TOLERANCE`` of the median interval)."""
    t = np.asarray(times, dtype=np.float64)
    if len(t) < 3 or not np.all(np.isfinite(t)):
        return False
    d = np.diff(t)
    med = float(np.median(d))
    return med > 0 and bool(np.max(np.abs(d - med)) > VFR_TOLERANCE * med)


def even_grid_indices(times, n: int, sampled_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """For each grid time ``k / sampled_fps`` (k < n, from the first frame), the index of the frame on screen
    then (the last one presented at or before it). Returns ``(indices, grid times)``."""
    t = np.asarray(times, dtype=np.float64) - float(times[0])
    grid = np.arange(n) / float(sampled_fps)
    idx = np.searchsorted(t, grid + 1e-9, side="right") - 1
    return np.clip(idx, 0, len(t) - 1).astype(np.int64), grid


def sample_frames(path, fps: float = 2.0, min_frames: int = 4, max_frames: int = 64,
                  max_pixels: Optional[int] = None, frame_size: FrameSize = None, time_grid: str = "native",
                  pixel_factor: int = PIXEL_FACTOR) -> SampledVideo:
    """Decode ``path`` with PyAV and keep ~``fps`` frames per second (see the module docstring for the policy
    and for ``time_grid`` on variable-frame-rate videos).

    ``frame_size`` (int or (H, W)) resizes every frame exactly; otherwise ``max_pixels`` bounds H*W with
    qwen-vl-utils' ``smart_resize`` to multiples of ``pixel_factor`` (frames already within budget keep
    their size). Raises :class:`VideoDecodeError` naming the file when it is missing, empty, corrupt or too
    short.
    """
    if time_grid not in TIME_GRIDS:
        raise ValueError(f"time_grid must be one of {TIME_GRIDS}, got {time_grid!r}")
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "no such video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the video file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "the file has no video stream")
            video_fps, header_total, duration, start = _stream_facts(path, container.streams.video[0])
            if math.isnan(duration) and container.duration:
                duration = container.duration / av.time_base
        total = -1
        every = []  # presentation time of every decoded frame (of the last pass)
        decode = dict(frame_size=frame_size, max_pixels=max_pixels, pixel_factor=pixel_factor)
        if header_total >= FRAME_FACTOR:
            wanted = choose_indices(header_total, video_fps, fps, min_frames, max_frames)
            kept, times, total, native = _decode(path, set(wanted.tolist()), None, all_times=every, **decode)
        elif header_total == 0:  # the header has no frame count: count by decoding first
            _, _, total, _ = _decode(path, set(), (1, 1), **decode)
        if total < FRAME_FACTOR:
            raise VideoDecodeError(path, f"only {max(total, header_total)} decodable frame(s); "
                                         f"need at least {FRAME_FACTOR}")
        if total != header_total:  # the header was wrong or silent: pick from the true count
            wanted = choose_indices(total, video_fps, fps, min_frames, max_frames)
            every = []
            kept, times, total, native = _decode(path, set(wanted.tolist()), None, all_times=every, **decode)
        grid = None
        if time_grid == "even" and is_variable_rate(every):
            # frames unevenly spaced in time: take the frame on screen at each point of an even grid
            wanted, grid = even_grid_indices(every, len(wanted), len(wanted) / total * video_fps)
            kept, times, total, native = _decode(path, set(wanted.tolist()), None, **decode)
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:  # corrupt container or stream
        raise VideoDecodeError(path, f"cannot decode video ({type(err).__name__}: {err})") from err
    missing = [int(i) for i in wanted if int(i) not in kept]
    if missing:
        raise VideoDecodeError(path, f"frames {missing[:5]} of {total} could not be decoded")
    if math.isnan(duration):
        duration = total / video_fps
    frames = np.stack([kept[int(i)] for i in wanted])
    timestamps = np.array([times[int(i)] - start for i in wanted], dtype=np.float64)
    if grid is not None:  # each frame stands for its grid time (it is the one on screen then)
        timestamps = grid + timestamps[0]
    metadata = VideoMetadata(total_num_frames=total, fps=video_fps, width=native[1], height=native[0],
                             duration=duration, video_backend="pyav", frames_indices=[int(i) for i in wanted])
    return SampledVideo(frames=frames, timestamps=timestamps, metadata=metadata, path=str(path))


def frames_overlapping(timestamps, windows, temporal_patch_size: int = 1) -> np.ndarray:
    """Boolean per frame: whether the time the frame is on screen overlaps any ``(start, end)`` window.

    Frame i is shown during ``[t_i, t_{i+1})`` (the last one for the median frame interval); with
    ``temporal_patch_size`` p, a patch of p consecutive frames counts as a whole when any of its frames does
    (a model's video token never half-covers a window).

    >>> frames_overlapping([0.0, 0.5, 1.0, 1.5], [(0.6, 0.9)]).tolist()
    [False, True, False, False]
    >>> frames_overlapping([0.0, 0.5, 1.0, 1.5], [(0.6, 0.9)], temporal_patch_size=2).tolist()
    [True, True, False, False]
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    step = float(np.median(np.diff(ts))) if n > 1 else 1.0
    ends = np.append(ts[1:], ts[-1] + step)
    hit = np.zeros(n, dtype=bool)
    for lo, hi in windows:
        hit |= (ends > float(lo)) & (ts < float(hi))
    p = max(int(temporal_patch_size), 1)
    for first in range(0, n, p):
        hit[first:first + p] = hit[first:first + p].any()
    return hit


class FrameCache:
    """Disk cache of :func:`sample_frames` results, one ``.npz`` (no pickle) per (file, sampling params).

    The key holds the absolute path, size and mtime of the file, so an edited video is decoded again; a second
    epoch over the same videos decodes nothing. ``hits`` / ``misses`` count lookups of this instance.
    """

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def key(self, path, **params) -> str:
        path = Path(path).resolve()
        try:
            st = path.stat()
        except FileNotFoundError as err:
            raise VideoDecodeError(path, "no such video file") from err
        fs = params.get("frame_size")
        params["frame_size"] = list(fs) if isinstance(fs, tuple) else fs
        blob = json.dumps({"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                           "params": params, "version": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def get(self, path, fps: float = 2.0, min_frames: int = 4, max_frames: int = 64,
            max_pixels: Optional[int] = None, frame_size: FrameSize = None, time_grid: str = "native",
            pixel_factor: int = PIXEL_FACTOR) -> SampledVideo:
        params = dict(fps=float(fps), min_frames=int(min_frames), max_frames=int(max_frames),
                      max_pixels=max_pixels, frame_size=frame_size, time_grid=time_grid,
                      pixel_factor=int(pixel_factor))
        file = self.cache_dir / f"{self.key(path, **params)}.npz"
        if file.is_file():
            self.hits += 1
            return self._read(file, path)
        self.misses += 1
        video = sample_frames(path, **params)
        self._write(file, video)
        return video

    __call__ = get

    @staticmethod
    def _write(file: Path, video: SampledVideo) -> None:
        m = video.metadata
        tmp = file.with_name(f".{file.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, frames=video.frames, timestamps=video.timestamps,
                 frames_indices=np.asarray(m.frames_indices, dtype=np.int64),
                 numbers=np.array([m.total_num_frames, m.fps, m.width, m.height, m.duration], dtype=np.float64))
        os.replace(tmp, file)  # atomic: concurrent workers never read half a file

    @staticmethod
    def _read(file: Path, path) -> SampledVideo:
        with np.load(file, allow_pickle=False) as data:
            total, fps, width, height, duration = data["numbers"].tolist()
            metadata = VideoMetadata(total_num_frames=int(total), fps=fps, width=int(width), height=int(height),
                                     duration=duration, video_backend="pyav",
                                     frames_indices=data["frames_indices"].tolist())
            return SampledVideo(frames=data["frames"], timestamps=data["timestamps"], metadata=metadata,
                                path=str(path))


def write_video(path, frames: np.ndarray, fps: float, codec: str = "libx264",
                timestamps: Optional[np.ndarray] = None) -> Path:
    """Encode uint8 frames (T, H, W, 3) as an mp4 at constant ``fps`` (H and W even for yuv420p), or, with
    ``timestamps`` (seconds, increasing, one per frame), at those presentation times (a variable frame rate;
    ``fps`` is then the nominal rate written in the header)."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if timestamps is not None:
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if timestamps.shape != (len(frames),) or np.any(np.diff(timestamps) <= 0):
            raise ValueError(f"{path}: timestamps must be increasing, one per frame")
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if timestamps is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for k, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if timestamps is not None:
                frame.pts = int(round(timestamps[k] * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
