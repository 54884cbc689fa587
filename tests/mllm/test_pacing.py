"""Easy-first pacing of the SFT data: the sampler's pools, its determinism, and the trainer wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vtg_rl.mllm.pacing import DifficultyPacedSampler, dataset_difficulties, pacing_difficulty


def test_pool_grows_from_the_easiest_rows_to_all():
    rng = np.random.default_rng(0)
    difficulty = rng.random(100)
    sampler = DifficultyPacedSampler(difficulty, start_fraction=0.2, full_at_epoch=4, seed=1)
    easiest = set(np.argsort(difficulty)[:20].tolist())
    epoch0 = list(sampler)
    assert len(epoch0) == 100  # an epoch keeps its length: the Trainer counts steps from it
    assert set(epoch0) == easiest
    assert max(np.bincount(epoch0)) == 5 and min(np.bincount(epoch0, minlength=100)[list(easiest)]) == 5
    sizes = []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        pool = set(sampler)
        sizes.append(len(pool))
        assert max(difficulty[list(pool)]) <= np.sort(difficulty)[len(pool) - 1]  # always a prefix by difficulty
    assert sizes == [20, 40, 60, 80, 100, 100]


def test_same_seed_and_epoch_same_order_for_resume():
    d = np.linspace(0, 1, 50)
    a = DifficultyPacedSampler(d, start_fraction=0.5, full_at_epoch=2, seed=3)
    b = DifficultyPacedSampler(d, start_fraction=0.5, full_at_epoch=2, seed=3)
    a.set_epoch(1), b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="start_fraction"):
        DifficultyPacedSampler([0.1, 0.2], start_fraction=0.0)
    with pytest.raises(ValueError, match="finite difficulty"):
        DifficultyPacedSampler([0.1, float("nan")])


def test_difficulty_prefers_the_agent_estimate_and_names_rows_without_one():
    assert pacing_difficulty({"difficulty": 0.7, "true_difficulty": 0.1}) == 0.7
    assert pacing_difficulty({"true_difficulty": 0.1}) == 0.1
    rows = {"qid": ["a", "b"], "meta_json": [json.dumps({"true_difficulty": 0.2}), json.dumps({})]}
    with pytest.raises(ValueError, match=r"\['b'\]"):
        dataset_difficulties(rows)


def test_sft_trainer_uses_the_paced_sampler(tiny_qwen_dir, synthetic_world, tmp_path):
    import torch

    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.mllm.dataset import samples_to_hf
    from vtg_rl.mllm.reasoning import synthetic_trace
    from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    samples = read_jsonl(synthetic_world["train"])[:8]
    model, processor = load_qwen_vl(tiny_qwen_dir, dtype=torch.float32)
    ds = samples_to_hf(samples, target_fn=synthetic_trace)
    args = VideoSFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=2, max_steps=1,
                          report_to=[], save_strategy="no", use_cpu=True, bf16=False,
                          pacing_start_fraction=0.25, pacing_full_at_epoch=2)
    trainer = VideoSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, DifficultyPacedSampler)
    easiest = {int(np.argmin([s.meta["true_difficulty"] for s in samples]))}
    assert set(sampler) <= set(np.argsort([s.meta["true_difficulty"] for s in samples])[:2].tolist())
    assert easiest <= set(sampler)
    trainer.train()  # one step through the paced dataloader

    with pytest.raises(ValueError, match="group_by_length"):
        VideoSFTTrainer(model=model, args=VideoSFTConfig(
            output_dir=str(tmp_path / "sft2"), max_steps=1, report_to=[], use_cpu=True, bf16=False,
            pacing_start_fraction=0.5, train_sampling_strategy="group_by_length"),
            train_dataset=ds, processing_class=processor)._get_train_sampler()
