"""Curriculum masking (VideoTG-R1) and difficulty control: pure numpy / datasets, no model."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
from transformers.video_utils import VideoMetadata

from vtg_rl.data.video import SampledVideo
from vtg_rl.mllm.curriculum import CurriculumConfig, CurriculumMasker
from vtg_rl.mllm.difficulty_filter import filter_by_difficulty, reweight_by_difficulty, uniform_groups


def make_video(duration=20.0, fps=2.0, size=8):
    n = int(duration * fps)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(n, size, size, 3), dtype=np.uint8)
    ts = np.arange(n) / fps
    meta = VideoMetadata(total_num_frames=n, fps=fps, duration=duration, frames_indices=list(range(n)))
    return SampledVideo(frames=frames, timestamps=ts, metadata=meta, path="/nowhere.mp4")


def test_mask_fraction_decays_linearly_to_zero_at_configured_fraction():
    masker = CurriculumMasker(CurriculumConfig(full_visible_at=0.4, temporal_patch_size=1))
    video = make_video()
    windows = [[9.0, 11.0]]
    fractions = [masker.apply(video, windows, 20.0, p, hard=True)[1] for p in np.linspace(0, 0.6, 13)]
    assert fractions[0] == pytest.approx(0.9, abs=0.03)  # only the 2 s span is visible at the start
    assert all(a >= b for a, b in zip(fractions, fractions[1:])), fractions
    progress = np.linspace(0, 0.6, 13)
    assert all(f == 0.0 for f, p in zip(fractions, progress) if p >= 0.4)
    assert all(f > 0.0 for f, p in zip(fractions, progress) if p < 0.35)
    # halfway through the ramp about half of the outside is visible
    half = masker.apply(video, windows, 20.0, 0.2, hard=True)[1]
    assert half == pytest.approx(0.45, abs=0.05)


def test_annotated_span_is_never_blanked_and_far_frames_go_first():
    masker = CurriculumMasker(CurriculumConfig(full_visible_at=0.5))
    video = make_video()
    windows = [[12.5, 15.0]]
    for p in (0.0, 0.1, 0.3):
        masked, _ = masker.apply(video, windows, 20.0, p, hard=True)
        span = (video.timestamps >= 12.5) & (video.timestamps < 15.0)
        assert np.array_equal(masked.frames[span], video.frames[span])
    masked, frac = masker.apply(video, windows, 20.0, 0.25, hard=True)
    blank = np.all(masked.frames == masked.frames[0:1, :1, :1], axis=(1, 2, 3))
    assert blank[0] and blank[1]  # the far start is blank
    assert not blank[np.searchsorted(video.timestamps, 12.0)]  # next to the span is visible
    assert 0 < frac < 1


def test_timestamps_metadata_and_frame_count_unchanged():
    masker = CurriculumMasker()
    video = make_video(duration=13.0)
    masked, frac = masker.apply(video, [[3.0, 5.0]], 13.0, 0.0, hard=True)
    assert frac > 0.5
    assert masked.frames.shape == video.frames.shape and masked.frames.dtype == np.uint8
    assert np.array_equal(masked.timestamps, video.timestamps)
    assert masked.metadata is video.metadata
    assert masked.path == video.path
    assert not np.array_equal(masked.frames, video.frames)
    # the input is not modified in place
    assert not np.shares_memory(masked.frames, video.frames)


def test_blanks_whole_temporal_patches():
    masker = CurriculumMasker(CurriculumConfig(temporal_patch_size=2))
    video = make_video()
    masked, _ = masker.apply(video, [[9.25, 10.75]], 20.0, 0.0, hard=True)
    fill = masker.blank_value(video.frames)
    blank = np.all(masked.frames == fill, axis=(1, 2, 3))
    pairs = blank.reshape(-1, 2)
    assert np.all(pairs[:, 0] == pairs[:, 1])


def test_only_hard_samples_are_masked():
    masker = CurriculumMasker(CurriculumConfig(difficulty_threshold=0.6))
    video = make_video()
    w = [[5.0, 6.0]]
    assert masker.apply(video, w, 20.0, 0.0, difficulty=0.3)[1] == 0.0
    assert masker.apply(video, w, 20.0, 0.0, difficulty=0.3, hard=True)[1] == 0.0  # known difficulty decides
    assert masker.apply(video, w, 20.0, 0.0, difficulty=0.9)[1] > 0.5
    assert masker.apply(video, w, 20.0, 0.0, difficulty=math.nan, hard=True)[1] > 0.5
    assert masker.apply(video, w, 20.0, 0.0, difficulty=None, hard=False)[1] == 0.0
    easy_video, _ = masker.apply(video, w, 20.0, 0.0, difficulty=0.1)
    assert easy_video is video
    no_flag = CurriculumMasker(CurriculumConfig(use_hard_flag=False))
    assert no_flag.apply(video, w, 20.0, 0.0, hard=True)[1] == 0.0


def test_grey_fill_and_initial_context():
    masker = CurriculumMasker(CurriculumConfig(fill="grey", initial_context=0.5, temporal_patch_size=1))
    video = make_video()
    masked, frac = masker.apply(video, [[10.0, 12.0]], 20.0, 0.0, hard=True)
    assert frac == pytest.approx(0.45, abs=0.05)
    assert (masked.frames[0] == 128).all()


@pytest.mark.parametrize("kwargs", [dict(full_visible_at=0.0), dict(full_visible_at=1.5), dict(fill="black"),
                                    dict(initial_context=-0.1), dict(temporal_patch_size=0)])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        CurriculumConfig(**kwargs)


def test_masking_without_windows_is_a_clear_error():
    with pytest.raises(ValueError, match="windows"):
        CurriculumMasker().apply(make_video(), [], 20.0, 0.0, hard=True)


# ---------------------------------------------------------------------------------------------- difficulty
def _ds(difficulties):
    return datasets.Dataset.from_dict({"qid": [f"q{i}" for i in range(len(difficulties))],
                                       "difficulty": list(difficulties)})


def test_filter_by_difficulty_band_and_unknown():
    ds = _ds([0.0, 0.02, 0.3, 0.5, 0.97, 1.0, math.nan])
    kept, report = filter_by_difficulty(ds, min_difficulty=0.05, max_difficulty=0.95)
    assert kept["qid"] == ["q2", "q3", "q6"]
    assert report == {"kept": 3, "dropped_easy": 2, "dropped_hard": 2, "unknown": 1}
    kept, _ = filter_by_difficulty(ds, min_difficulty=0.05, max_difficulty=0.95, keep_unknown=False)
    assert kept["qid"] == ["q2", "q3"]


def test_filter_errors_name_the_problem():
    with pytest.raises(ValueError, match="difficulty' column"):
        filter_by_difficulty(datasets.Dataset.from_dict({"qid": ["a"]}), 0.1, 0.9)
    with pytest.raises(ValueError, match="q1: difficulty 1.5"):
        filter_by_difficulty(_ds([0.5, 1.5]), 0.1, 0.9)
    with pytest.raises(ValueError, match="dropped every sample"):
        filter_by_difficulty(_ds([0.0, 1.0]), 0.1, 0.9)


def test_reweight_by_difficulty_favours_the_chosen_band():
    ds = _ds([0.0] * 50 + [0.5] * 50)
    mid = reweight_by_difficulty(ds, mode="mid", seed=0, size=2000)
    share_mid = np.mean(np.array(mid["difficulty"]) == 0.5)
    assert share_mid > 0.85  # weights 1.1 vs 0.1
    assert reweight_by_difficulty(ds, mode="mid", seed=0, size=50)["qid"] == \
        reweight_by_difficulty(ds, mode="mid", seed=0, size=50)["qid"]
    assert reweight_by_difficulty(ds, mode="none") is ds
    with pytest.raises(ValueError, match="unknown difficulty reweighting"):
        reweight_by_difficulty(ds, mode="easy")


def test_uniform_groups():
    rewards = [0.0, 0.01, 0.0, 0.0,   0.2, 0.0, 0.9, 0.4,   1.0, 0.97, 0.99, 1.0,   math.nan, 0.0, 0.0, 0.0]
    low, high = uniform_groups(rewards, 4)
    assert low.tolist() == [True, False, False, True]
    assert high.tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="groups of 3"):
        uniform_groups(rewards, 3)


def test_grpo_recipe_applies_the_difficulty_band_from_sample_meta(tmp_path):
    from vtg_rl.data.schema import VTGSample
    from vtg_rl.mllm.grpo import VideoGRPOConfig
    from vtg_rl.mllm.grpo_recipe import prepare_train_dataset

    samples = [VTGSample(qid=f"q{i}", vid=f"v{i}", duration=10.0, query="when?", windows=[[1.0, 2.0]],
                         video_path=f"/videos/v{i}.mp4", meta={"difficulty": d})
               for i, d in enumerate([0.0, 0.4, 0.6, 1.0])]
    args = VideoGRPOConfig(output_dir=str(tmp_path), min_difficulty=0.05, max_difficulty=0.95, use_cpu=True,
                           bf16=False, report_to=[], per_device_train_batch_size=8)
    ds, report = prepare_train_dataset(samples, args)
    assert ds["qid"] == ["q1", "q2"]
    assert report["difficulty_filter"] == {"kept": 2, "dropped_easy": 1, "dropped_hard": 1, "unknown": 0}
