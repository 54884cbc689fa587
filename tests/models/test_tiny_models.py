"""Tiny local models: built, saved, reloaded through from_pretrained, and usable on real video input."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vtg_rl.data.schema import VTGSample
from vtg_rl.data.video import sample_frames, write_video
from vtg_rl.prompts import grounding_messages
from vtg_rl.mllm.video_inputs import VIDEO_BLOCK, build_video_inputs, render_prompt

SAMPLE = VTGSample(qid="q1", vid="v1", duration=8.0, query="when does the red circle appear?",
                   windows=[[2.0, 5.5]])


@pytest.fixture(scope="module")
def qwen(tiny_qwen_dir):
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    return load_qwen_vl(tiny_qwen_dir)


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8 * 12, 56, 56, 3), dtype=np.uint8)
    return sample_frames(write_video(tmp_path_factory.mktemp("v") / "noise.mp4", frames, fps=12), fps=2.0)


def test_qwen_reloads_through_from_pretrained(qwen, tiny_qwen_dir):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    from vtg_rl.models.tiny_qwen import count_parameters

    model, processor = qwen
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    assert isinstance(processor, Qwen2_5_VLProcessor)
    counts = count_parameters(model)
    print(f"\ntiny Qwen2.5-VL parameters: {counts}")
    assert 300_000 < counts["total"] < 5_000_000
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads,
            text.intermediate_size) == (128, 4, 4, 2, 512)
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    assert (vision.hidden_size, vision.depth, vision.patch_size, vision.spatial_merge_size,
            vision.temporal_patch_size, vision.out_hidden_size) == (64, 2, 14, 2, 2, 128)
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    tok = processor.tokenizer
    for name, token in [("video_token_id", "<|video_pad|>"), ("image_token_id", "<|image_pad|>"),
                        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]:
        assert getattr(model.config, name) == tok.convert_tokens_to_ids(token)
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    # the build is idempotent: a second call reuses the directory without rewriting it
    from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

    stamp = (tiny_qwen_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_qwen2_5_vl(tiny_qwen_dir, seed=0) == tiny_qwen_dir
    assert (tiny_qwen_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_qwen_forward_and_backward_on_real_video(qwen, small_video):
    model, processor = qwen
    prompts = [render_prompt(processor, grounding_messages(SAMPLE, answer="<think>x</think><answer>2.00 to 5.50"
                                                                   "</answer>"), add_generation_prompt=False),
               render_prompt(processor, grounding_messages(SAMPLE))]
    batch = build_video_inputs(processor, prompts, [small_video, small_video], padding_side="right")
    assert batch["video_grid_thw"].tolist() == [[8, 4, 4], [8, 4, 4]]  # 16 frames of 56x56, not upscaled
    model.train()
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(**batch, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grad = model.model.visual.patch_embed.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0, "the vision tower must receive gradient"
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        model(**batch)
        start = time.perf_counter()
        logits = model(**batch).logits
        elapsed = time.perf_counter() - start
    print(f"\ntiny Qwen2.5-VL forward, batch 2 x {batch['input_ids'].shape[1]} tokens: {elapsed * 1000:.1f} ms")
    assert logits.shape == (*batch["input_ids"].shape, len(processor.tokenizer))
    # the video matters: other frames give other logits
    other = build_video_inputs(processor, prompts, [small_video, small_video], padding_side="right")
    other["pixel_values_videos"] = torch.flip(other["pixel_values_videos"], dims=[0])
    with torch.no_grad():
        assert not torch.allclose(model(**other).logits, logits)


def test_generation_runs_from_a_rendered_prompt(qwen, small_video):
    model, processor = qwen
    batch = build_video_inputs(processor, [render_prompt(processor, grounding_messages(SAMPLE))], [small_video])
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= batch["input_ids"].shape[1] + 5


def test_tokenizer_digits_and_specials(qwen):
    _, processor = qwen
    tok = processor.tokenizer
    assert 300 <= len(tok) <= 600
    for d in "0123456789":
        assert len(tok(d)["input_ids"]) == 1
    ids = tok("<answer>12.50 to 130.75</answer>")["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert [p for p in pieces if p.strip("Ġ").isdigit()] == list("1250") + list("13075")
    assert tok.decode(ids) == "<answer>12.50 to 130.75</answer>"
    for special in ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>",
                    "<|video_pad|>", "<|image_pad|>", "<|vision_pad|>"]:
        assert len(tok(special)["input_ids"]) == 1, special
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.decode(tok("the video is 8.00 seconds long. é ✓")["input_ids"]) == "the video is 8.00 seconds long. é ✓"


def test_chat_template_renders_one_video_block(qwen):
    _, processor = qwen
    text = render_prompt(processor, grounding_messages(SAMPLE))
    assert text.count(VIDEO_BLOCK) == 1 and text.count("<|video_pad|>") == 1
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    # rows from HF datasets give the text block a "video": None key; it must not render a second video
    unified = grounding_messages(SAMPLE)
    unified[0]["content"] = [{**b, "video": b.get("video"), "text": b.get("text")} for b in unified[0]["content"]]
    assert render_prompt(processor, unified) == text
    with_answer = render_prompt(processor, grounding_messages(SAMPLE, answer="<answer>2.00 to 5.50</answer>"),
                                add_generation_prompt=False)
    assert with_answer.endswith("<|im_start|>assistant\n<answer>2.00 to 5.50</answer><|im_end|>\n")


def test_qwen_overrides_and_seed(tmp_path, tiny_qwen_dir):
    from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl, make_spec

    with pytest.raises(TypeError, match="hidden_sise"):
        make_spec(hidden_sise=64)
    with pytest.raises(ValueError, match="mrope_section"):
        make_spec(mrope_section=[4, 4, 4]).resolved_mrope_section()
    again = build_tiny_qwen2_5_vl(tmp_path / "again", seed=0)
    a, b = load_file(again / "model.safetensors"), load_file(tiny_qwen_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "same seed, same weights"


def test_tiny_clip(tiny_clip_dir):
    from transformers import CLIPModel

    from vtg_rl.models.tiny_clip import load_clip

    model, processor = load_clip(tiny_clip_dir)
    assert isinstance(model, CLIPModel)
    n = sum(p.numel() for p in model.parameters())
    print(f"\ntiny CLIP parameters: {n:,}")
    assert 100_000 < n < 2_000_000
    assert model.config.vision_config.image_size == 56 and model.config.projection_dim == 64
    assert model.config.text_config.eos_token_id == processor.tokenizer.eos_token_id
    tok = processor.tokenizer
    assert tok.convert_ids_to_tokens(tok("when does the red circle appear?")["input_ids"]) == [
        "<|startoftext|>", "when</w>", "does</w>", "the</w>", "red</w>", "circle</w>", "appear</w>", "?</w>",
        "<|endoftext|>"]
    images = np.random.default_rng(0).integers(0, 255, (3, 56, 56, 3), dtype=np.uint8)
    batch = processor(text=["the red circle", "a blue square moves"], images=list(images), return_tensors="pt",
                      padding=True)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    assert out.logits_per_image.shape == (3, 2)
    assert out.vision_model_output.hidden_states[-1].shape == (3, 17, 64)  # 16 patches + CLS
    assert len(out.text_model_output.hidden_states) == 5  # embeddings + 4 layers


def test_cli_build_tiny(tmp_path, capsys):
    from vtg_rl.cli import main

    assert main(["models", "build-tiny", "--out", str(tmp_path / "clip"), "--kind", "clip", "--seed", "3"]) == 0
    assert (tmp_path / "clip" / "model.safetensors").is_file()
    assert "tiny CLIP" in capsys.readouterr().out
