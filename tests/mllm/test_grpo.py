"""VideoGRPOTrainer: the video reaches generation and every log-prob forward, all TRL losses train,
curriculum masking and difficulty control act inside the trainer.

The parity tests are the guard against the silent failure of stock TRL 1.16: the
trainer's per-token log-probs must equal a plain forward of the model *with* the video, and differ
from a forward without it or with another video.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from vtg_rl.data.schema import read_jsonl
from vtg_rl.mllm.curriculum import CurriculumConfig, CurriculumMasker
from vtg_rl.mllm.dataset import samples_to_hf
from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer
from vtg_rl.mllm.grpo_video import VideoRows, build_rollout_video
from vtg_rl.mllm.inference import VISION_TOKENS
from vtg_rl.mllm.video_inputs import build_video_inputs, render_prompt
from vtg_rl.mllm.video_source import VideoSampling
from vtg_rl.models.tiny_qwen import load_qwen_vl

torch.set_num_threads(1)


def varied_reward(completions, **kwargs):
    """A deterministic reward that differs between completions, so every group has non-zero advantages."""
    return [int(hashlib.md5(c[0]["content"].encode()).hexdigest()[:6], 16) / 0xFFFFFF for c in completions]


@pytest.fixture(scope="module")
def train_rows(synthetic_world):
    samples = read_jsonl(synthetic_world["train"])
    hard = [s for s in samples if s.meta.get("hard")]
    easy = [s for s in samples if not s.meta.get("hard")]
    assert hard and easy, "the test world needs hard and easy samples"
    return samples_to_hf(hard[:2] + easy[:6])


def make_trainer(model_dir, dataset, reward_funcs=None, **overrides):
    model, processor = load_qwen_vl(model_dir)
    kwargs = dict(output_dir=str(overrides.pop("output_dir", "/tmp/vtg_rl_test_grpo")), max_steps=1,
                  per_device_train_batch_size=4, num_generations=2, max_completion_length=8, learning_rate=1e-2,
                  bf16=False, gradient_checkpointing=False, report_to=[], logging_steps=1, save_strategy="no",
                  use_cpu=True, dataloader_num_workers=0, seed=0, reward_funcs=["varied_reward"])
    kwargs.update(overrides)
    args = VideoGRPOConfig(**kwargs)
    return VideoGRPOTrainer(model=model, reward_funcs=reward_funcs or [varied_reward], args=args,
                            train_dataset=dataset, processing_class=processor)


def plain_logps(model, processor, row, completion_ids, temperature, video=None, with_video=True):
    """Log-probs of ``completion_ids`` after the row's prompt by a plain forward of the model."""
    sampling = VideoSampling()
    video = video or sampling.load(row["video_path"])
    batch = build_video_inputs(processor, [render_prompt(processor, row["prompt"])], [video], padding_side="right")
    ids = torch.cat([batch["input_ids"][0], completion_ids])[None]
    kwargs = {}
    if with_video:
        mm = torch.cat([batch["mm_token_type_ids"][0], torch.zeros_like(completion_ids)])[None]
        kwargs = dict(pixel_values_videos=batch["pixel_values_videos"], video_grid_thw=batch["video_grid_thw"],
                      second_per_grid_ts=batch["second_per_grid_ts"], mm_token_type_ids=mm)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).logits
    p = batch["input_ids"].size(1)
    logps = torch.log_softmax(logits[0, p - 1:-1].float() / temperature, dim=-1)
    return logps.gather(-1, completion_ids[:, None])[:, 0]


def test_logps_equal_plain_forward_with_video_for_policy_old_and_reference(tiny_qwen_dir, train_rows, tmp_path):
    # num_iterations=2 makes TRL compute the old log-probs; beta > 0 the reference ones
    trainer = make_trainer(tiny_qwen_dir, train_rows, beta=0.04, num_iterations=2, temperature=0.7,
                           max_completion_length=10, output_dir=tmp_path)
    rows = [train_rows[i] for i in (0, 0, 3, 3)]
    out = trainer._generate_and_score_completions(rows)
    assert {"old_per_token_logps", "ref_per_token_logps", "video_fields"} <= set(out)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with trainer._video_context(VideoRows.from_inputs(out)), torch.no_grad():
        policy, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask,
                                                                  out["completion_ids"].size(1))
    model = trainer.model
    for i, row in enumerate(rows):
        n = int(out["completion_mask"][i].sum())
        assert n > 0
        comp = out["completion_ids"][i, :n]
        with_video = plain_logps(model, trainer.processing_class, row, comp, 0.7)
        for name, got in (("policy", policy), ("old", out["old_per_token_logps"]),
                          ("reference", out["ref_per_token_logps"])):
            torch.testing.assert_close(got[i, :n], with_video, atol=2e-5, rtol=0, msg=f"{name} row {i}")
        blind = plain_logps(model, trainer.processing_class, row, comp, 0.7, with_video=False)
        assert (policy[i, :n] - blind).abs().max() > 1e-2
        # same length and timestamps, other content: the log-probs depend on what the frames show
        video = VideoSampling().load(row["video_path"])
        reversed_video = dataclasses.replace(video, frames=np.ascontiguousarray(video.frames[::-1]))
        swapped = plain_logps(model, trainer.processing_class, row, comp, 0.7, video=reversed_video)
        assert (policy[i, :n] - swapped).abs().max() > 1e-4


def test_generation_sees_the_video_and_never_emits_vision_tokens(tiny_qwen_dir, train_rows, tmp_path):
    trainer = make_trainer(tiny_qwen_dir, train_rows, output_dir=tmp_path)
    tok = trainer.processing_class.tokenizer
    vision_ids = {tok.convert_tokens_to_ids(t) for t in VISION_TOKENS} - {tok.unk_token_id, None}
    assert vision_ids <= set(trainer.generation_config.suppress_tokens)
    assert vision_ids <= set(trainer.generation_kwargs["suppress_tokens"])
    rows = [train_rows[i] for i in (1, 1, 2, 2)]
    rollout = build_rollout_video(trainer.processing_class, trainer.video_sampling, rows)
    video_pad = tok.convert_tokens_to_ids("<|video_pad|>")
    assert all(ids.count(video_pad) > 0 for ids in rollout.prompt_ids)
    # identical rows of a group share one decoded, processed video
    assert torch.equal(rollout.rows.pixel_values_videos[0], rollout.rows.pixel_values_videos[1])
    # even a model that prefers the vision tokens cannot sample them
    pad_id = tok.convert_tokens_to_ids("<|video_pad|>")

    class PreferVideoPad:
        def __call__(self, input_ids, scores):
            scores[:, sorted(vision_ids)] += 1e4
            return scores

    inputs = build_video_inputs(trainer.processing_class, [render_prompt(trainer.processing_class, rows[0]["prompt"])],
                                [trainer.video_sampling.load(rows[0]["video_path"])], padding_side="left")
    from transformers import LogitsProcessorList

    out = trainer.model.generate(**inputs, generation_config=trainer.generation_config, max_new_tokens=6,
                                 logits_processor=LogitsProcessorList([PreferVideoPad()]))
    new = out[0, inputs["input_ids"].size(1):].tolist()
    assert new and not set(new) & vision_ids
    assert pad_id not in new


LOSS_CASES = [(lt, 0.0) for lt in ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")] + [
    ("grpo", 0.04), ("dapo", 0.04), ("dr_grpo", 0.04)]


@pytest.mark.parametrize("loss_type,beta", LOSS_CASES)
def test_one_training_step_per_loss_type_updates_language_and_vision(tiny_qwen_dir, train_rows, tmp_path,
                                                                      loss_type, beta):
    trainer = make_trainer(tiny_qwen_dir, train_rows, loss_type=loss_type, beta=beta, output_dir=tmp_path)
    model = trainer.model
    vision = {n: p.detach().clone() for n, p in model.model.visual.named_parameters()}
    lm = {n: p.detach().clone() for n, p in model.model.language_model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs and np.isfinite(logs[0]["loss"])
    if beta:
        assert "kl" in logs[0] and np.isfinite(logs[0]["kl"])
    changed_vision = sum(not torch.equal(p, vision[n]) for n, p in model.model.visual.named_parameters())
    changed_lm = sum(not torch.equal(p, lm[n]) for n, p in model.model.language_model.named_parameters())
    assert changed_lm > 0
    assert changed_vision > 0, f"{loss_type}: the vision tower was not updated (video-blind loss?)"


def test_vision_tower_receives_gradient_from_the_grpo_loss(tiny_qwen_dir, train_rows, tmp_path):
    trainer = make_trainer(tiny_qwen_dir, train_rows, output_dir=tmp_path)
    trainer.model.train()
    out = trainer._generate_and_score_completions([train_rows[i] for i in (0, 0, 4, 4)])
    assert out["advantages"].abs().sum() > 0
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test bypasses
    loss = trainer.compute_loss(trainer.model, out)
    loss.backward()
    grads = [p.grad.abs().sum().item() for p in trainer.model.model.visual.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0
    # a loss batch without its video rows is refused, never computed blind
    blind = {k: v for k, v in out.items() if k not in ("video_fields", "video_keys")}
    with pytest.raises(RuntimeError, match="without its video"):
        trainer.compute_loss(trainer.model, blind)


def test_curriculum_masks_hard_rows_only_and_keeps_positions(tiny_qwen_dir, train_rows):
    model, processor = load_qwen_vl(tiny_qwen_dir)
    sampling = VideoSampling()
    rows = [train_rows[0], train_rows[0], train_rows[4], train_rows[4]]  # hard, hard, easy, easy
    assert rows[0]["hard"] and not rows[2]["hard"]
    masker = CurriculumMasker(CurriculumConfig(full_visible_at=0.5))
    plain = build_rollout_video(processor, sampling, rows)
    masked = build_rollout_video(processor, sampling, rows, masker=masker, progress=0.0)
    assert masked.masked == [True, True, False, False]
    assert masked.mask_fraction[0] > 0.3 and masked.mask_fraction[2] == 0.0
    assert masked.prompt_ids == plain.prompt_ids
    assert torch.equal(masked.rows.video_grid_thw, plain.rows.video_grid_thw)
    assert torch.equal(masked.rows.second_per_grid_ts, plain.rows.second_per_grid_ts)
    assert not torch.equal(masked.rows.pixel_values_videos[0], plain.rows.pixel_values_videos[0])
    assert torch.equal(masked.rows.pixel_values_videos[2], plain.rows.pixel_values_videos[2])
    # the model's 3-D (time, height, width) positions are those of the unmasked video
    ids = torch.tensor([masked.prompt_ids[0]])
    mm = torch.tensor(processor.create_mm_token_type_ids([masked.prompt_ids[0]]))
    pos_masked, _ = model.model.get_rope_index(ids, mm, video_grid_thw=masked.rows.video_grid_thw[:1],
                                               second_per_grid_ts=masked.rows.second_per_grid_ts[:1])
    pos_plain, _ = model.model.get_rope_index(ids, mm, video_grid_thw=plain.rows.video_grid_thw[:1],
                                              second_per_grid_ts=plain.rows.second_per_grid_ts[:1])
    assert torch.equal(pos_masked, pos_plain)
    late = build_rollout_video(processor, sampling, rows, masker=masker, progress=0.5)
    assert late.mask_fraction == [0.0] * 4
    assert torch.equal(late.rows.pixel_values_videos[0], plain.rows.pixel_values_videos[0])


def test_curriculum_mask_fraction_is_logged_and_reaches_zero(tiny_qwen_dir, train_rows, tmp_path):
    hard_only = train_rows.select([0, 1, 0, 1])
    trainer = make_trainer(tiny_qwen_dir, hard_only, curriculum=True, curriculum_full_visible_at=0.5, max_steps=3,
                           output_dir=tmp_path)
    trainer.train()
    fractions = [h["curriculum/mask_fraction"] for h in trainer.state.log_history if "curriculum/mask_fraction" in h]
    assert len(fractions) == 3
    assert fractions[0] > 0.3 and fractions[1] > 0.0  # progress 0 and 1/3 of training
    assert fractions[2] == 0.0  # progress 2/3 > 0.5: the whole video is visible


def test_drop_uniform_groups_removes_groups_without_preference(tiny_qwen_dir, train_rows, tmp_path):
    zero_qid = train_rows[2]["qid"]

    def iou_like(completions, qid, **kwargs):
        varied = varied_reward(completions)
        return [0.0 if q == zero_qid else r for q, r in zip(qid, varied)]

    iou_like.__name__ = "iou_reward"
    trainer = make_trainer(tiny_qwen_dir, train_rows, reward_funcs=[iou_like], drop_uniform_groups=True,
                           uniform_reward_func="iou_reward", output_dir=tmp_path)
    trainer.model.train()
    out = trainer._generate_and_score_completions([train_rows[i] for i in (2, 2, 5, 5)])
    assert out["completion_mask"][:2].sum() == 0 and out["completion_mask"][2:].sum() > 0
    assert out["advantages"][:2].abs().sum() == 0
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    assert trainer._metrics["train"]["difficulty/dropped_groups_low"] == [1.0]
    assert trainer._metrics["train"]["difficulty/dropped_groups_high"] == [0.0]


def test_rejects_datasets_without_video_and_vllm_when_it_is_not_installed(tiny_qwen_dir, train_rows, tmp_path):
    import importlib.util

    with pytest.raises(ValueError, match="video_path"):
        make_trainer(tiny_qwen_dir, train_rows.remove_columns("video_path"), output_dir=tmp_path)
    if importlib.util.find_spec("vllm") is None:  # the CPU machines: a clear error, not TRL's deep one
        with pytest.raises(ImportError, match="vLLM installed"):
            make_trainer(tiny_qwen_dir, train_rows, use_vllm=True, output_dir=tmp_path)
    with pytest.raises(ValueError, match="uniform_reward_func"):
        make_trainer(tiny_qwen_dir, train_rows, drop_uniform_groups=True, uniform_reward_func="nope",
                     output_dir=tmp_path)


def test_missing_sft_checkpoint_tells_the_user_to_run_sft_first(tmp_path, monkeypatch):
    from vtg_rl.mllm.grpo_recipe import DEFAULT_SFT_CHECKPOINT, MissingCheckpointError, check_start_checkpoint

    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingCheckpointError, match="accelerate launch recipes/sft.py"):
        check_start_checkpoint(DEFAULT_SFT_CHECKPOINT)
    with pytest.raises(MissingCheckpointError, match="no config.json"):
        check_start_checkpoint(str(tmp_path / "elsewhere"))


def test_recipe_end_to_end_writes_checkpoint_logs_plot_and_evals(tiny_qwen_dir, synthetic_world, tmp_path):
    from pathlib import Path

    from trl import ModelConfig, TrlParser

    from vtg_rl.mllm.grpo_recipe import GRPOScriptArguments, run_grpo

    root = Path(__file__).resolve().parents[2]
    argv = ["--config", str(root / "recipes/configs/grpo_synthetic.yaml"), "--model_name_or_path", str(tiny_qwen_dir),
            "--synthetic_dir", str(Path(synthetic_world["train"]).parent), "--output_dir", str(tmp_path / "grpo"),
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "2",
            "--max_completion_length", "8", "--max_eval_samples", "4", "--eval_batch_size", "4", "--logging_steps", "1",
            "--frame_cache_dir", str(tmp_path / "frames"), "--curriculum", "--use_cpu", "true"]
    script, train, model = TrlParser((GRPOScriptArguments, VideoGRPOConfig, ModelConfig)).parse_args_and_config(argv)
    assert train.curriculum and train.reward_funcs == ["iou_reward", "format_reward"]
    result = run_grpo(script, train, model)
    out = tmp_path / "grpo"
    assert (out / "checkpoint-final" / "config.json").is_file()
    assert (out / "checkpoint-final" / "model.safetensors").is_file()
    for name in ("eval_before.json", "eval_after.json", "metrics.json", "reward_curves.png", "log_history.json"):
        assert (out / name).is_file(), name
    assert list(out.glob("runs/**/events.out.tfevents.*")), "no TensorBoard log"
    assert result["before"]["n"] == 4 and result["after"]["n"] == 4
    logged = set().union(*[h.keys() for h in result_history(out)])
    for key in ("rewards/iou_reward/mean", "rewards/format_reward/mean", "curriculum/mask_fraction"):
        assert key in logged, key
    for key in ("answers/iou_mean", "answers/format_rate", "answers/malformed", "answers/start_after_end"):
        assert key in logged, key


def result_history(out):
    import json

    return json.loads((out / "log_history.json").read_text())
