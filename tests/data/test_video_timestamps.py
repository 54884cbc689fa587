"""Proof that real seconds reach the model (the silent 2/24 trap and ``mm_token_type_ids``).

A generated mp4 turns red during [6 s, 10 s) of 12 s. We find the event's video tokens from the *pixels* the
processor produced, read the temporal mRoPE position ids that actually reach the language model (hooked at
its rotary embedding), and check that (position - video start) / tokens_per_second is the event's real time.
The same measurement on the two known-wrong paths (frames without metadata; no mm_token_type_ids) must
give different positions, so this test fails if either trap reopens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtg_rl.data.video import SampledVideo, sample_frames, write_video
from vtg_rl.mllm.mrope import rotary_positions
from vtg_rl.mllm.video_inputs import build_video_inputs, render_prompt

EVENT = (6.0, 10.0)
DURATION = 12.0


def _event_video(path, fps):
    n = int(round(DURATION * fps))
    frames = np.full((n, 56, 56, 3), 40, np.uint8)
    for i in range(n):
        if EVENT[0] <= i / fps < EVENT[1]:
            frames[i] = (220, 30, 30)
    return write_video(path, frames, fps)


@pytest.fixture(scope="module")
def model_and_processor(tiny_qwen_dir):
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    model, processor = load_qwen_vl(tiny_qwen_dir)
    return model.eval(), processor


def _prompt(processor):
    messages = [{"role": "user", "content": [{"type": "video"},
                                             {"type": "text", "text": "when does the red circle appear?"}]}]
    return render_prompt(processor, messages)


def _red_tokens(batch, processor) -> np.ndarray:
    """Per merged video token: is it red? Read from the normalised patches the processor produced."""
    vp = processor.video_processor
    patches = batch["pixel_values_videos"].reshape(-1, 3, vp.temporal_patch_size, vp.patch_size, vp.patch_size)
    mean = torch.tensor(vp.image_mean).view(1, 3)
    std = torch.tensor(vp.image_std).view(1, 3)
    rgb = patches.mean(dim=(2, 3, 4)) * std + mean  # (n_patches, 3) in [0, 1]
    rgb = rgb.reshape(-1, vp.merge_size ** 2, 3).mean(1)  # merged tokens are consecutive groups of patches
    return ((rgb[:, 0] - rgb[:, 1]) > 0.5).numpy()


def _token_seconds(model, batch, positions) -> np.ndarray:
    """Model time (s) of each video token of sample 0: temporal position offset / tokens_per_second."""
    video_id = model.config.video_token_id
    is_video = batch["input_ids"][0] == video_id
    temporal = positions[0, 0][is_video].double()
    return ((temporal - temporal[0]) / model.config.vision_config.tokens_per_second).numpy()


@pytest.mark.parametrize("src_fps,sample_fps", [(24, 2.0), (10, 1.0)])
def test_event_seconds_reach_the_model(tmp_path, model_and_processor, src_fps, sample_fps):
    model, processor = model_and_processor
    video = sample_frames(_event_video(tmp_path / "event.mp4", src_fps), fps=sample_fps)
    assert video.metadata.fps == pytest.approx(src_fps)
    assert video.metadata.duration == pytest.approx(DURATION, abs=0.1)
    red_frames = (video.frames[..., 0].mean((1, 2)) > 150)
    assert video.timestamps[red_frames].min() == pytest.approx(EVENT[0])
    assert video.timestamps[red_frames].max() == pytest.approx(EVENT[1] - 1 / sample_fps)

    batch = build_video_inputs(processor, [_prompt(processor)], [video])
    # one temporal patch = 2 frames = 2 / sample_fps real seconds, and it equals the frames' true spacing
    spg = float(batch["second_per_grid_ts"][0])
    assert spg == pytest.approx(2.0 / sample_fps)
    assert spg == pytest.approx(video.timestamps[2] - video.timestamps[0])

    positions = rotary_positions(model, batch)
    rope, _ = model.model.get_rope_index(
        batch["input_ids"], batch["mm_token_type_ids"], video_grid_thw=batch["video_grid_thw"],
        second_per_grid_ts=batch["second_per_grid_ts"], attention_mask=batch["attention_mask"])
    assert torch.equal(positions, rope), "the forward must use the 3-D positions of get_rope_index"

    seconds = _token_seconds(model, batch, positions)
    red = _red_tokens(batch, processor)
    assert red.any() and not red.all()
    # the event's tokens sit exactly at the event's real seconds, and nothing else is red
    assert seconds[red].min() == pytest.approx(EVENT[0])
    assert seconds[red].max() == pytest.approx(EVENT[1] - spg)
    assert np.array_equal(red, (seconds >= EVENT[0]) & (seconds < EVENT[1]))
    # each temporal patch starts at the presentation time of its first frame
    grid_starts = video.timestamps[::2]
    assert np.allclose(np.unique(seconds), grid_starts)

    # wrong path 1: the same frames without video_metadata -> fallback 24 fps -> 2/24 s per patch
    no_meta = processor(text=[_prompt(processor)], videos=[video.frames], do_sample_frames=False,
                        return_tensors="pt")
    assert float(no_meta["second_per_grid_ts"][0]) == pytest.approx(2 / 24)
    wrong_seconds = _token_seconds(model, no_meta, rotary_positions(model, no_meta))
    assert not np.allclose(wrong_seconds[red], seconds[red])
    assert wrong_seconds[red].min() < EVENT[0] / 2

    # wrong path 2: no mm_token_type_ids -> Qwen2.5-VL silently uses 1-D positions
    no_types = {k: v for k, v in batch.items() if k != "mm_token_type_ids"}
    flat = rotary_positions(model, no_types)
    assert not torch.equal(flat, positions)
    assert torch.equal(flat[0], flat[1]) and torch.equal(flat[1], flat[2])  # 1-D: no time axis at all
    assert not np.allclose(_token_seconds(model, no_types, flat)[red], seconds[red])


def test_build_video_inputs_refuses_missing_metadata(tmp_path, model_and_processor):
    _, processor = model_and_processor
    video = sample_frames(_event_video(tmp_path / "event.mp4", 24))
    stripped = SampledVideo(frames=video.frames, timestamps=video.timestamps, metadata=None, path=video.path)
    with pytest.raises(ValueError, match="event.mp4.*metadata"):
        build_video_inputs(processor, [_prompt(processor)], [stripped])
    with pytest.raises(ValueError, match="1 video placeholder"):
        build_video_inputs(processor, [_prompt(processor)], [video, video])
