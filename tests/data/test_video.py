"""PyAV sampler: timestamps, metadata, frame-count policy, resizing, errors naming the file, and the cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

import vtg_rl.data.video as video_mod
from vtg_rl.data.video import FrameCache, VideoDecodeError, choose_indices, sample_frames, write_video


def _ramp_video(path, seconds=5.0, fps=24, size=(48, 64)):
    """Frame i has brightness proportional to i, so a decoded frame tells which source frame it was."""
    n = int(round(seconds * fps))
    levels = np.linspace(0, 250, n).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (n, *size, 3)).copy()
    return write_video(path, frames, fps), levels


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    return _ramp_video(tmp_path_factory.mktemp("video") / "ramp.mp4")


def test_timestamps_and_metadata(ramp):
    path, levels = ramp
    v = sample_frames(path, fps=2.0)
    assert v.frames.dtype == np.uint8 and v.frames.shape == (10, 48, 64, 3)
    assert np.allclose(v.timestamps, np.arange(10) * 0.5)
    m = v.metadata
    assert (m.total_num_frames, m.fps, m.width, m.height) == (120, 24.0, 64, 48)
    assert m.duration == pytest.approx(5.0)
    assert m.frames_indices == list(range(0, 120, 12))
    assert m.sampled_fps == pytest.approx(2.0)
    assert np.allclose(m.timestamps, v.timestamps)
    # the pixels are the frames the indices name (brightness ramp, codec error of a few levels)
    assert np.abs(v.frames.mean((1, 2, 3)) - levels[m.frames_indices]).max() < 6


def test_frame_count_policy(ramp):
    path, _ = ramp
    assert len(sample_frames(path, fps=0.5).frames) == 4  # 2.5 frames -> min_frames 4
    assert len(sample_frames(path, fps=2.0, max_frames=6).frames) == 6
    assert len(sample_frames(path, fps=1.0).frames) == 4  # 5 frames -> a multiple of 2
    # qwen-vl-utils' count, spread uniformly: index k at k * total / n
    assert choose_indices(300, 25.0, 2.0, 4, 64).tolist() == [int(k * 12.5) for k in range(24)]


def test_resizing(ramp):
    path, _ = ramp
    assert sample_frames(path, frame_size=28).frames.shape[1:] == (28, 28, 3)
    assert sample_frames(path, frame_size=(28, 56)).frames.shape[1:] == (28, 56, 3)
    small = sample_frames(path, max_pixels=28 * 28 * 2)  # smart_resize: multiples of 28 within budget
    h, w = small.frames.shape[1:3]
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 28 * 28 * 2
    assert sample_frames(path, max_pixels=10**6).frames.shape[1:3] == (48, 64)  # never upscaled


def test_errors_name_the_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing.mp4.*no such"):
        sample_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.mp4.*empty"):
        sample_frames(tmp_path / "empty.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(4096))
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        sample_frames(tmp_path / "corrupt.mp4")
    good, _ = _ramp_video(tmp_path / "good.mp4", seconds=2.0)
    (tmp_path / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(VideoDecodeError, match="truncated.mp4"):
        sample_frames(tmp_path / "truncated.mp4")
    one, _ = _ramp_video(tmp_path / "one.mp4", seconds=1 / 24)
    with pytest.raises(VideoDecodeError, match="one.mp4.*frame") as info:
        sample_frames(one)
    assert info.value.path == str(one)
    # callers re-raise with their own context (a sample id) in front of the message
    assert str(VideoDecodeError(f"sample q7: {info.value}")).startswith("sample q7: ")


def test_cache_second_epoch_decodes_nothing(tmp_path, ramp, monkeypatch):
    path, _ = ramp
    opened = []
    real_open = video_mod.av.open
    monkeypatch.setattr(video_mod.av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    cache = FrameCache(tmp_path / "cache")
    first = cache.get(path, fps=2.0)
    assert opened and cache.misses == 1
    opened.clear()
    again = FrameCache(tmp_path / "cache").get(path, fps=2.0)  # a new process / epoch, same directory
    assert opened == []
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.timestamps, again.timestamps)
    assert again.metadata.frames_indices == first.metadata.frames_indices
    assert again.metadata.sampled_fps == pytest.approx(first.metadata.sampled_fps)
    assert all(p.suffix == ".npz" for p in (tmp_path / "cache").iterdir())
    # other sampling params, or an edited file, are new keys and decode again
    cache.get(path, fps=1.0)
    assert len(opened) > 0 and cache.misses == 2
    opened.clear()
    edited, _ = _ramp_video(tmp_path / "edited.mp4")
    cache.get(edited)
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    n_before = len(opened)
    cache.get(edited)
    assert len(opened) > n_before
    with pytest.raises(VideoDecodeError, match="nope.mp4"):
        cache.get(tmp_path / "nope.mp4")
