"""Cold-start SFT: the video reaches the loss, targets are faithful, the recipe runs and resumes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from vtg_rl.data.schema import read_jsonl
from vtg_rl.mllm.dataset import samples_to_hf
from vtg_rl.mllm.reasoning import TraceBank, synthetic_trace, target_for_sample, trace_agrees
from vtg_rl.spans import is_well_formed, parse_answer


@pytest.fixture(scope="module")
def world_samples(synthetic_world):
    return read_jsonl(synthetic_world["train"])


@pytest.fixture(scope="module")
def model_and_processor(tiny_qwen_dir):
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    return load_qwen_vl(tiny_qwen_dir, dtype=torch.float32)


def _trainer(model, processor, samples, tmp_path, **overrides):
    from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer

    args = VideoSFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=2, max_steps=2,
                          learning_rate=1e-3, report_to=[], logging_steps=1, save_strategy="no",
                          use_cpu=True, bf16=False, **overrides)
    ds = samples_to_hf(samples, target_fn=synthetic_trace)
    return VideoSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor), ds


def test_synthetic_traces_are_faithful(world_samples):
    for s in world_samples:
        trace = synthetic_trace(s)
        assert is_well_formed(trace), trace
        start, end = parse_answer(trace)
        assert [round(start, 2), round(end, 2)] == [round(v, 2) for v in s.windows[0]]


def test_synthetic_traces_list_every_shape_in_order(world_samples):
    import re

    for s in world_samples:
        think = synthetic_trace(s).split("</think>")[0]
        listed = [(float(a), float(b), d) for a, b, d in re.findall(r"([\d.]+) s to ([\d.]+) s: ([a-z ]+)\.", think)]
        truth = [(s.windows[0][0], s.windows[0][1], s.meta["target"]["description"])]
        truth += [(d["span"][0], d["span"][1], d["description"]) for d in s.meta["distractors"]]
        assert sorted(listed) == sorted(truth), (s.qid, think)
        assert [x[:2] for x in listed] == sorted(x[:2] for x in listed)  # in the order they appear
        assert think.endswith(f"the query names the {s.meta['target']['description']}.")


def test_prompt_puts_only_fixed_text_after_the_video(tiny_qwen_dir, world_samples):
    # the rotary phase between the answer and the video depends on the tokens in between (prompts.py)
    from transformers import AutoProcessor

    from vtg_rl.prompts import grounding_messages
    from vtg_rl.mllm.video_inputs import render_prompt

    processor = AutoProcessor.from_pretrained(tiny_qwen_dir)
    rendered = [render_prompt(processor, grounding_messages(s), add_generation_prompt=True) for s in world_samples[:6]]
    assert len({r.split("<|vision_end|>")[1] for r in rendered}) == 1
    for s, r in zip(world_samples, rendered):
        assert r.count("<|video_pad|>") == 1 and s.query.strip() in r.split("<|vision_start|>")[0]


def test_trace_quality_filter(world_samples):
    s = world_samples[0]
    start, end = s.windows[0]
    good = f"<think>seen.</think><answer>{start:.2f} to {end:.2f}</answer>"
    far = s.duration - 0.5
    bad = f"<think>seen.</think><answer>{far - 0.1:.2f} to {far:.2f}</answer>"
    assert trace_agrees(s, good, 0.5) and not trace_agrees(s, bad, 0.5)
    bank = TraceBank({s.qid: bad})
    assert target_for_sample(s, bank) is None  # disagreeing trace -> sample dropped, never silently fixed
    assert target_for_sample(s, TraceBank({s.qid: good})) == good


def test_collator_carries_video_and_masks_prompt(model_and_processor, world_samples):
    from vtg_rl.mllm.collator import IGNORE_INDEX, VideoSFTCollator

    _, processor = model_and_processor
    ds = samples_to_hf(world_samples[:3], target_fn=synthetic_trace)
    batch = VideoSFTCollator(processor)(list(ds))
    for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "mm_token_type_ids"):
        assert key in batch, key
    video_id = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    n_video_tokens = int((batch["input_ids"] == video_id).sum())
    merge = processor.video_processor.merge_size ** 2
    assert n_video_tokens == int(batch["video_grid_thw"].prod(-1).sum()) // merge
    # the loss covers exactly the completion tokens: decoding the labelled positions gives the target back
    for i, row in enumerate(ds):
        labelled = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        text = processor.tokenizer.decode(labelled, skip_special_tokens=True)
        assert text.strip() == row["completion"].strip()
        assert not (batch["labels"][i][batch["input_ids"][i] == video_id] != IGNORE_INDEX).any()


def test_length_estimate_matches_the_collated_sequence(model_and_processor, world_samples):
    """group_by_length sorts on estimate_lengths: it must count what the collator really builds."""
    from vtg_rl.mllm.collator import VideoSFTCollator

    _, processor = model_and_processor
    rows = list(samples_to_hf(world_samples[:6], target_fn=synthetic_trace))
    collator = VideoSFTCollator(processor)
    assert collator.estimate_lengths(rows) == [int(collator([r])["attention_mask"].sum()) for r in rows]


def test_group_by_length_gets_a_length_column(model_and_processor, world_samples, tmp_path):
    model, processor = model_and_processor
    trainer, _ = _trainer(model, processor, world_samples[:4], tmp_path, train_sampling_strategy="group_by_length")
    assert "length" in trainer.train_dataset.column_names
    assert min(trainer.train_dataset["length"]) > 0
    batch = next(iter(trainer.get_train_dataloader()))  # the collator ignores the extra column
    assert batch["input_ids"].shape[0] == 2


def test_sft_loss_sees_the_video(model_and_processor, world_samples, tmp_path):
    """Stock TRL is video-blind: this must fail if the vision tower gets no gradient or if
    the loss the trainer optimises does not depend on the video."""
    from vtg_rl.mllm.sft import vision_tower

    model, processor = model_and_processor
    trainer, ds = _trainer(model, processor, world_samples[:4], tmp_path)
    batch = trainer.data_collator(list(ds)[:2])
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    grads = [p.grad for p in vision_tower(model).parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0, "vision tower received no gradient"
    with torch.no_grad():
        shuffled = dict(batch)
        shuffled["pixel_values_videos"] = torch.flip(batch["pixel_values_videos"], dims=[0])
        other = trainer.compute_loss(model, shuffled)
    assert abs(float(other) - float(loss)) > 1e-6, "the loss does not depend on the video"
    model.zero_grad()


def test_freeze_vision_tower(model_and_processor, world_samples, tmp_path):
    from vtg_rl.mllm.sft import vision_tower

    model, processor = model_and_processor
    try:
        _trainer(model, processor, world_samples[:4], tmp_path, freeze_vision_tower=True)
        assert not any(p.requires_grad for p in vision_tower(model).parameters())
    finally:
        for p in vision_tower(model).parameters():
            p.requires_grad_(True)


@pytest.mark.slow
def test_sft_recipe_end_to_end_and_resume(tiny_qwen_dir, synthetic_world, tmp_path):
    from vtg_rl.mllm.sft import VideoSFTConfig
    from vtg_rl.mllm.sft_recipe import SFTScriptArguments, run_sft

    world_dir = str(synthetic_world["train"].parent)
    script = SFTScriptArguments(synthetic_dir=world_dir, max_train_samples=8, max_eval_samples=4, eval_batch_size=4)
    model_args = SimpleNamespace(model_name_or_path=str(tiny_qwen_dir), dtype="float32", attn_implementation=None,
                                 trust_remote_code=False, use_peft=False)
    out = tmp_path / "run"
    args = VideoSFTConfig(output_dir=str(out), per_device_train_batch_size=2, max_steps=4, save_steps=2,
                          logging_steps=1, report_to=["tensorboard"], use_cpu=True, learning_rate=1e-3)
    result = run_sft(script, args, model_args)
    assert (out / "checkpoint-final" / "config.json").is_file()
    assert (out / "checkpoint-final" / "preprocessor_config.json").is_file() or \
        (out / "checkpoint-final" / "processor_config.json").is_file()
    assert (out / "training_curves.png").stat().st_size > 1000
    assert set(result["after"]) >= {"miou", "r1_05", "format_rate"}
    after = json.loads((out / "eval_after.json").read_text())
    assert after["n"] == 4
    assert list((out / "runs").rglob("events.out.tfevents.*")), "no TensorBoard logs"
    # resume: continue from the step-2 checkpoint up to step 6
    args2 = VideoSFTConfig(output_dir=str(out), per_device_train_batch_size=2, max_steps=6, save_steps=2,
                           logging_steps=1, report_to=[], use_cpu=True, learning_rate=1e-3,
                           resume_from_checkpoint=str(out / "checkpoint-4"))
    script.eval_before = False
    run_sft(script, args2, model_args)
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_a_video_that_fails_at_run_time_is_skipped_and_counted_or_named(tiny_qwen_dir, synthetic_world, tmp_path):
    from vtg_rl.data.video import VideoDecodeError
    from vtg_rl.mllm.collator import VideoSFTCollator
    from vtg_rl.mllm.dataset import samples_to_hf
    from vtg_rl.mllm.reasoning import target_for_sample
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    _, processor = load_qwen_vl(tiny_qwen_dir)
    samples = read_jsonl(synthetic_world["train"])[:3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # an mp4 header and nothing else
    samples[1].video_path = str(broken)
    rows = [r for r in samples_to_hf(samples, target_fn=target_for_sample)]
    with pytest.raises(VideoDecodeError, match=f"sample {samples[1].qid}"):
        VideoSFTCollator(processor)(rows)
    skipping = VideoSFTCollator(processor, on_bad_video="skip")
    batch = skipping(rows)
    assert batch["input_ids"].size(0) == 2 and skipping.skipped == [samples[1].qid]
    assert int(batch["video_grid_thw"].size(0)) == 2


def test_the_after_eval_scores_the_model_the_checkpoint_holds(tiny_qwen_dir, synthetic_world, tmp_path):
    """Under bf16 accelerate wraps the forward in autocast; the eval must run the float32 model a user loads."""
    from vtg_rl.mllm.recipe_common import saved_model
    from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    model, processor = load_qwen_vl(tiny_qwen_dir)
    ds = samples_to_hf(read_jsonl(synthetic_world["train"])[:4], target_fn=target_for_sample)
    args = VideoSFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, report_to=[],
                          use_cpu=True, bf16=True, save_strategy="no")
    trainer = VideoSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
    trainer.train()
    assert hasattr(trainer.model.forward, "__wrapped__") or trainer.accelerator.mixed_precision == "no"
    plain = saved_model(trainer)
    assert not hasattr(plain.forward, "__wrapped__")
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert plain(input_ids=ids).logits.dtype == torch.float32
