"""Shared-prefix GRPO (vtg_rl.mllm.shared_prefix) changes how VideoGRPOTrainer computes, never what.

Guards: per-token log-probs, entropies and the parameter gradients of one GRPO loss equal the naive
path's (float32) for shuffled, left-padded rows of different prompt and completion lengths; the vision
tower encodes each unique prompt's video once per forward (and, frozen, once across steps); generation
with the same seed samples the same tokens; unsupported models are refused with what to do; the switch
off runs the naive path.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from vtg_rl.data.schema import read_jsonl
from vtg_rl.mllm import shared_prefix
from vtg_rl.mllm.curriculum import CurriculumConfig, CurriculumMasker
from vtg_rl.mllm.dataset import samples_to_hf
from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer
from vtg_rl.mllm.grpo_video import VideoRows, build_rollout_video
from vtg_rl.mllm.shared_prefix import (SharedPrefixUnsupported, VisionFeatureCache, check_supported,
                                       count_vision_videos)
from vtg_rl.mllm.video_source import VideoSampling
from vtg_rl.models.tiny_qwen import load_qwen_vl

torch.set_num_threads(1)

#: rows of the test batches: three prompts, repeated unevenly and interleaved (TRL shuffles the rows)
ORDER = (0, 1, 2, 1, 0, 2, 0, 1)


def varied_reward(completions, **kwargs):
    return [int(hashlib.md5(c[0]["content"].encode()).hexdigest()[:6], 16) / 0xFFFFFF for c in completions]


@pytest.fixture(scope="module")
def rows(synthetic_world):
    """Three samples whose videos differ in length, so their prompts differ in length (left padding)."""
    samples = read_jsonl(synthetic_world["train"])
    by_duration = {}
    for s in samples:
        by_duration.setdefault(round(s.duration / 4), s)
    picked = [by_duration[k] for k in sorted(by_duration)][:3]
    assert len({s.duration for s in picked}) == 3
    return samples_to_hf(picked)


def make_trainer(model_dir, dataset, attn_implementation="sdpa", **overrides):
    model, processor = load_qwen_vl(model_dir, attn_implementation=attn_implementation)
    kwargs = dict(output_dir="/tmp/vtg_rl_test_shared_prefix", max_steps=1, per_device_train_batch_size=len(ORDER),
                  num_generations=2, max_completion_length=10, learning_rate=1e-2, bf16=False, report_to=[],
                  save_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0, reward_funcs=["varied_reward"],
                  temperature=0.8)
    kwargs.update(overrides)
    return VideoGRPOTrainer(model=model, reward_funcs=[varied_reward], args=VideoGRPOConfig(**kwargs),
                            train_dataset=dataset, processing_class=processor)


@pytest.fixture(scope="module")
def trainer(tiny_qwen_dir, rows):
    return make_trainer(tiny_qwen_dir, rows, beta=0.04, num_iterations=2)


def batch_rows(dataset):
    return [dataset[i] for i in ORDER]


def vary_completion_lengths(out, pad_id):
    """Cut the completions to different lengths (1 token up to all of them), as EOS would."""
    out = dict(out)
    n = out["completion_ids"].size(1)
    lengths = [1, n, 3, n - 2, 5, 2, n, 4][: out["completion_ids"].size(0)]
    keep = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    out["completion_mask"] = out["completion_mask"] * keep
    out["completion_ids"] = out["completion_ids"].masked_fill(~keep, pad_id)
    return out


@pytest.fixture(scope="module")
def rollout(trainer, rows):
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(batch_rows(rows))
    out = vary_completion_lengths(out, trainer._tokenizer.pad_token_id)
    # the test batch really is left-padded with different prompt and completion lengths
    assert len(set(out["prompt_mask"].sum(1).tolist())) == 3
    assert len(set(out["completion_mask"].sum(1).tolist())) >= 4
    return out


def logps_of(trainer, model, out, shared: bool, batch_size=None, entropy=False):
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    trainer.args.shared_prefix = shared
    try:
        with trainer._video_context(VideoRows.from_inputs(out)):
            return trainer._get_per_token_logps_and_entropies(model, ids, mask, out["completion_ids"].size(1),
                                                              batch_size=batch_size, compute_entropy=entropy)
    finally:
        trainer.args.shared_prefix = True


@pytest.mark.parametrize("batch_size", [None, 4])
def test_logps_and_entropies_equal_the_naive_forward(trainer, rollout, batch_size):
    # batch_size=4 splits the groups across TRL's chunks
    with torch.no_grad():
        for model in (trainer.model, trainer.ref_model):
            naive, naive_ent, _ = logps_of(trainer, model, rollout, False, batch_size, entropy=model is trainer.model)
            shared, shared_ent, _ = logps_of(trainer, model, rollout, True, batch_size, entropy=model is trainer.model)
            torch.testing.assert_close(shared, naive, atol=1e-5, rtol=0)
            if model is trainer.model:
                torch.testing.assert_close(shared_ent, naive_ent, atol=1e-5, rtol=0)
            mask = rollout["completion_mask"].bool()
            assert (shared[~mask] == 0).all() and (shared[mask] < 0).all()


def test_old_and_reference_logps_of_a_rollout_equal_the_naive_ones(trainer, rows):
    outs = {}
    for shared in (False, True):
        trainer.args.shared_prefix = shared
        torch.manual_seed(0)
        outs[shared] = trainer._generate_and_score_completions(batch_rows(rows))
    trainer.args.shared_prefix = True
    assert torch.equal(outs[True]["completion_ids"], outs[False]["completion_ids"])
    for key in ("old_per_token_logps", "ref_per_token_logps"):
        torch.testing.assert_close(outs[True][key], outs[False][key], atol=1e-5, rtol=0)


def grpo_grads(trainer, out, shared: bool) -> dict[str, torch.Tensor]:
    trainer.args.shared_prefix = shared
    trainer.model.zero_grad(set_to_none=True)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which the tests bypass
    try:
        loss = trainer.compute_loss(trainer.model, out)
        loss.backward()
    finally:
        trainer.args.shared_prefix = True
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_grpo_loss_gradients_equal_the_naive_ones(trainer, rollout, loss_type):
    previous = trainer.loss_type
    trainer.loss_type = loss_type
    trainer.model.train()
    try:
        naive = grpo_grads(trainer, rollout, shared=False)
        shared = grpo_grads(trainer, rollout, shared=True)
    finally:
        trainer.loss_type = previous
    assert naive.keys() == shared.keys()
    assert any(n.startswith("model.visual.") for n in naive), "the vision tower got no gradient"
    scale = max(g.abs().max().item() for g in naive.values())
    assert scale > 0
    for name, grad in naive.items():
        torch.testing.assert_close(shared[name], grad, rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_gradient_checkpointing_and_eager_attention_keep_parity(tiny_qwen_dir, rows, rollout):
    trainer = make_trainer(tiny_qwen_dir, rows, attn_implementation="eager", gradient_checkpointing=True)
    trainer.model.train()
    naive = grpo_grads(trainer, rollout, shared=False)
    shared = grpo_grads(trainer, rollout, shared=True)
    scale = max(g.abs().max().item() for g in naive.values())
    for name, grad in naive.items():
        torch.testing.assert_close(shared[name], grad, rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_vision_tower_encodes_each_unique_prompt_once_per_forward(trainer, rows):
    counts = {}
    for shared in (False, True):
        trainer.args.shared_prefix = shared
        with count_vision_videos(trainer.model) as policy, count_vision_videos(trainer.ref_model) as ref:
            torch.manual_seed(0)
            out = trainer._generate_and_score_completions(batch_rows(rows))  # generation + old log-probs
            after_rollout = policy[0]
            trainer.current_gradient_accumulation_steps = 1
            trainer.compute_loss(trainer.model, out)
        counts[shared] = (after_rollout, ref[0], policy[0] - after_rollout)
    trainer.args.shared_prefix = True
    unique, n = len(set(ORDER)), len(ORDER)
    assert counts[False] == (2 * n, n, n)
    assert counts[True] == (2 * unique, unique, unique)


def test_frozen_vision_tower_features_are_cached_across_steps(tiny_qwen_dir, rows):
    trainer = make_trainer(tiny_qwen_dir, rows, freeze_vision_tower=True, num_iterations=2, beta=0.04)
    assert isinstance(trainer.vision_cache, VisionFeatureCache)
    unique = len(set(ORDER))
    with count_vision_videos(trainer.model) as seen, count_vision_videos(trainer.ref_model) as ref_seen:
        torch.manual_seed(0)
        first = trainer._generate_and_score_completions(batch_rows(rows))
        # generation computed them; the old and the reference log-probs (the reference's copy of the frozen
        # tower has the same weights) reused them
        assert seen[0] == unique and ref_seen[0] == 0
        trainer._generate_and_score_completions(batch_rows(rows))
        assert seen[0] == unique and ref_seen[0] == 0  # the next step (or epoch) computes no video again
    assert trainer.vision_cache.hits >= 5 * unique
    # cached features give the log-probs of the uncached forward
    with torch.no_grad():
        cached, _, _ = logps_of(trainer, trainer.model, first, True)
        trainer.vision_cache, cache = None, trainer.vision_cache
        plain, _, _ = logps_of(trainer, trainer.model, first, True)
        trainer.vision_cache = cache
    torch.testing.assert_close(cached, plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(cached, first["old_per_token_logps"], atol=1e-5, rtol=0)


def test_video_keys_follow_the_pixels(tiny_qwen_dir, rows):
    _, processor = load_qwen_vl(tiny_qwen_dir)
    sampling = VideoSampling()
    hard = dict(rows[0])
    hard["hard"], hard["difficulty"] = True, None
    other_query = {**hard, "qid": "another", "query": "when does something else happen?"}
    masker = CurriculumMasker(CurriculumConfig(full_visible_at=0.5))
    plain = build_rollout_video(processor, sampling, [hard, other_query, dict(rows[1])])
    early = build_rollout_video(processor, sampling, [hard], masker=masker, progress=0.0)
    late = build_rollout_video(processor, sampling, [hard], masker=masker, progress=0.9)
    keys = plain.rows.keys
    assert keys[0] == keys[1] != keys[2]  # same video file and sampling, another query: same pixels
    assert early.mask_fraction[0] > 0 and early.rows.keys[0] != keys[0]
    assert late.mask_fraction[0] == 0 and late.rows.keys[0] == keys[0]
    inputs = plain.rows.as_inputs()
    assert VideoRows.from_inputs(inputs).keys == keys and VideoRows.from_inputs(inputs).select(1, 3).keys == keys[1:]


def test_vision_cache_is_lru_with_a_capacity(tiny_qwen_dir, rows):
    model, processor = load_qwen_vl(tiny_qwen_dir)
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    video = build_rollout_video(processor, VideoSampling(), [rows[i] for i in range(3)]).rows
    cache = VisionFeatureCache(capacity=2)
    core = model.model
    with count_vision_videos(model) as n:
        a = cache.features(core, video.keys[:2], video.pixel_values_videos[:2], video.video_grid_thw[:2])
        cache.features(core, video.keys[2:], video.pixel_values_videos[2:], video.video_grid_thw[2:])  # evicts 0
        assert n[0] == 3 and len(cache) == 2
        b = cache.features(core, video.keys[1:2], video.pixel_values_videos[1:2], video.video_grid_thw[1:2])
        assert n[0] == 3
        cache.features(core, video.keys[:1], video.pixel_values_videos[:1], video.video_grid_thw[:1])
        assert n[0] == 4
    assert torch.equal(a[1], b[0])
    with torch.no_grad():
        direct = core.get_video_features(video.pixel_values_videos[0], video.video_grid_thw[:1]).pooler_output[0]
    torch.testing.assert_close(a[0], direct)


def test_generation_samples_the_naive_tokens_with_the_same_seed(trainer, rows):
    from trl.trainer.utils import pad

    rollout = build_rollout_video(trainer.processing_class, trainer.video_sampling, batch_rows(rows))
    results = {}
    for shared in (False, True):
        trainer.args.shared_prefix = shared
        with trainer._video_context(rollout.rows):
            trainer._pending_rollout = rollout
            ids, _, fields = trainer._tokenize_prompts([r["prompt"] for r in batch_rows(rows)])
            torch.manual_seed(123)
            results[shared], _ = trainer._generate_single_turn(ids, None, fields, 2)
            trainer._pending_rollout = None
    trainer.args.shared_prefix = True
    assert results[True] == results[False]
    assert len({tuple(c) for c in results[True]}) > 1  # sampled, not all the same
    assert pad([torch.tensor(c) for c in results[True]], padding_value=0).size(0) == len(ORDER)


def test_switch_off_runs_the_naive_path(tiny_qwen_dir, rows, monkeypatch):
    import dataclasses

    # unset by default, which turns it on for Qwen2.5-VL
    assert {f.name: f.default for f in dataclasses.fields(VideoGRPOConfig)}["shared_prefix"] is None
    assert make_trainer(tiny_qwen_dir, rows, shared_prefix=None).args.shared_prefix is True
    trainer = make_trainer(tiny_qwen_dir, rows, shared_prefix=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the shared-prefix path ran with shared_prefix=False")

    monkeypatch.setattr(shared_prefix, "shared_prefix_logps", refuse)
    monkeypatch.setattr(shared_prefix, "generate_single_turn", refuse)
    with count_vision_videos(trainer.model) as n:
        out = trainer._generate_and_score_completions(batch_rows(rows))
        trainer.current_gradient_accumulation_steps = 1
        trainer.compute_loss(trainer.model, out)
    assert n[0] == 2 * len(ORDER)  # generation + loss, every row its own video


def test_unsupported_models_are_refused_with_what_to_do(tiny_qwen_dir, rows):
    with pytest.raises(SharedPrefixUnsupported, match="shared_prefix=False"):
        check_supported(torch.nn.Linear(2, 2))
    model, processor = load_qwen_vl(tiny_qwen_dir)
    model.model.language_model.config._attn_implementation = "flex_attention"
    with pytest.raises(SharedPrefixUnsupported, match="attn_implementation"):
        check_supported(model)
    args = VideoGRPOConfig(output_dir="/tmp/vtg_rl_test_shared_prefix", use_cpu=True, report_to=[],
                           per_device_train_batch_size=2, num_generations=2)
    with pytest.raises(SharedPrefixUnsupported, match="shared_prefix=False"):
        VideoGRPOTrainer(model=model, reward_funcs=[varied_reward], args=args, train_dataset=rows,
                         processing_class=processor)


def test_training_with_a_frozen_tower_uses_the_cache_and_keeps_the_tower(tiny_qwen_dir, rows):
    trainer = make_trainer(tiny_qwen_dir, rows.select([0, 1, 2, 0]), freeze_vision_tower=True, max_steps=2,
                           per_device_train_batch_size=4, num_generations=2, steps_per_generation=2, beta=0.04)
    tower = {n: p.detach().clone() for n, p in trainer.model.model.visual.named_parameters()}
    lm = {n: p.detach().clone() for n, p in trainer.model.model.language_model.named_parameters()}
    trainer.train()
    assert all(torch.equal(p, tower[n]) for n, p in trainer.model.model.visual.named_parameters())
    assert any(not torch.equal(p, lm[n]) for n, p in trainer.model.model.language_model.named_parameters())
    assert trainer.vision_cache.misses <= 3 and trainer.vision_cache.hits > 0


def test_completions_end_at_the_first_eos():
    eos = 9
    tokens = torch.tensor([[5, eos, 7, eos], [5, 6, 7, 8], [eos, 1, 1, 1]])
    assert shared_prefix.completion_lists(tokens, [eos]) == [[5, eos], [5, 6, 7, 8], [eos]]
