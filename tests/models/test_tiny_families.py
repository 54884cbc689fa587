"""Tiny checkpoints of the other video-LLM families: built offline, reloaded through the Auto classes only, and
driven by videos the project itself encodes and decodes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from vtg_rl.data.video import sample_frames, write_video

FAMILIES = ("qwen2_vl", "qwen3_vl", "qwen3_5", "llava_onevision")
MODEL_CLASSES = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen3_vl": "Qwen3VLForConditionalGeneration",
                 "qwen3_5": "Qwen3_5ForConditionalGeneration",
                 "llava_onevision": "LlavaOnevisionForConditionalGeneration"}
PROCESSOR_CLASSES = {"qwen2_vl": "Qwen2VLProcessor", "qwen3_vl": "Qwen3VLProcessor", "qwen3_5": "Qwen3VLProcessor",
                     "llava_onevision": "LlavaOnevisionProcessor"}
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "when does the red circle appear?\n"},
                                         {"type": "video"}, {"type": "text", "text": "answer as 'a to b'."}]}]


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request, tiny_family_dirs):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_family_dirs(request.param)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=False).eval()
    return request.param, path, model, processor


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two noise videos encoded and decoded by the project at 2 fps: 8 and 12 frames of 56x56."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("family_videos")
    return [sample_frames(write_video(folder / f"{seconds}s.mp4",
                                      rng.integers(0, 255, (seconds * 12, 56, 56, 3), dtype=np.uint8), fps=12), fps=2.0)
            for seconds in (4, 6)]


def _inputs(processor, clips, return_tensors="pt"):
    prompt = processor.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    return processor(text=[prompt] * len(clips), videos=[c.frames for c in clips],
                     video_metadata=[c.metadata for c in clips], do_sample_frames=False,
                     return_tensors=return_tensors, padding=True, padding_side="left")


def _video_tokens(family, processor, batch) -> list[int]:
    """Placeholder count per video implied by the processed pixels (the model checks the same equality)."""
    if family == "llava_onevision":  # 4x4 SigLIP patches pooled to 2x2 per frame, plus one newline per video
        return [batch["pixel_values_videos"].shape[1] * 4 + 1] * len(batch["input_ids"])
    return [int(g.prod()) // processor.video_processor.merge_size ** 2 for g in batch["video_grid_thw"]]


def test_builds_reload_through_auto_classes(tiny):
    from vtg_rl.models.tiny_families import build_tiny

    family, path, model, processor = tiny
    assert type(model).__name__ == MODEL_CLASSES[family]
    assert type(processor).__name__ == PROCESSOR_CLASSES[family]
    assert 500_000 < sum(p.numel() for p in model.parameters()) < 3_000_000
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads,
            text.intermediate_size) == (128, 4, 4, 2, 512)
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    tok = processor.tokenizer
    assert tok.tokenize("12.50") == ["1", "2", ".", "5", "0"]
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    # a payload-free video block renders as exactly one placeholder
    prompt = processor.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert prompt.count(processor.video_token) == 1 and prompt.endswith(("assistant\n", "</think>\n\n"))
    if family == "qwen3_5":
        assert set(text.layer_types) == {"linear_attention", "full_attention"}
    # idempotent: an identical second build reuses the folder without rewriting it
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny(family, path, seed=0) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_forward_sees_the_video_and_generate_runs(tiny, videos):
    family, _, model, processor = tiny
    batch = _inputs(processor, videos[:1])
    ids = batch["input_ids"]
    assert (ids == model.config.video_token_id).sum(dim=1).tolist() == _video_tokens(family, processor, batch)
    with torch.no_grad():
        logits = model(**batch).logits
        assert logits.shape == (*ids.shape, len(processor.tokenizer))
        blank = model(**{**batch, "pixel_values_videos": torch.zeros_like(batch["pixel_values_videos"])}).logits
        assert (logits - blank).abs().max() > 1e-4, "the video must change the logits"
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 1 and ids.shape[1] < out.shape[1] <= ids.shape[1] + 3


def test_videos_of_different_lengths_in_one_batch(tiny, videos):
    family, _, model, processor = tiny
    assert [len(v.frames) for v in videos] == [8, 12]
    if family == "llava_onevision":  # pixels are one (B, T, C, H, W) tensor, so T must agree across the batch
        with pytest.raises(ValueError, match="pixel_values_videos"):
            _inputs(processor, videos)
        return
    batch = _inputs(processor, videos)
    side = 4  # 56x56 frames -> 4x4 patches (Qwen2: 56 kept, patch 14; Qwen3: 64x64, patch 16)
    assert batch["video_grid_thw"].tolist() == [[4, side, side], [6, side, side]]
    assert batch["pixel_values_videos"].shape[0] == (4 + 6) * side * side
    assert (batch["input_ids"] == model.config.video_token_id).sum(dim=1).tolist() == [16, 24]
    with torch.no_grad():
        assert model(**batch).logits.shape[:2] == batch["input_ids"].shape


@pytest.mark.parametrize("tiny", ["qwen3_vl", "qwen3_5"], indirect=True)
def test_qwen3_prompt_carries_frame_timestamps(tiny, videos):
    _, _, _, processor = tiny
    clip = videos[1]
    batch = _inputs(processor, [clip])
    text = processor.tokenizer.decode(batch["input_ids"][0])
    stamps = [float(s) for s in re.findall(r"<(\d+\.\d) seconds>", text)]
    # one marker per temporal patch: the mean time of its 2 frames, from frames_indices / fps
    times = np.asarray(clip.metadata.frames_indices) / clip.metadata.fps
    assert stamps == [float(f"{t:.1f}") for t in times.reshape(-1, 2).mean(axis=1)]
    assert len(stamps) == 6 and stamps[-1] > stamps[0]


def test_cli_builds_a_family_into_out(tiny_family_dirs, capsys):
    import argparse

    from vtg_rl.models import cli
    from vtg_rl.models.tiny_families import TINY_FAMILIES

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    path = tiny_family_dirs("qwen3_vl")
    args = parser.parse_args(["--out", str(path), "--family", "qwen3_vl"])
    assert cli.run(args) == 0
    assert f"tiny qwen3_vl -> {path}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", str(path), "--family", "qwen9"])
    assert parser.parse_args(["--out", "x"]).family is None and set(FAMILIES) < set(TINY_FAMILIES)
