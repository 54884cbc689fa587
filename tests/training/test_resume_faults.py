"""Resume is exact: a run killed with SIGKILL right after it wrote a checkpoint and resumed from it ends
with the same weights and the same loss curve as the uninterrupted run of the same seed.

The stock ``Trainer._load_from_checkpoint`` loaded a transformers-5 checkpoint (original key layout:
``visual.*``, ``model.layers.*``) into a model whose keys are ``model.visual.*`` /
``model.language_model.*`` with ``strict=False`` and only logged the mismatch: the resumed run trained
from the initial weights with the checkpoint's step count and LR schedule. The fast tests below pin the
loading itself; the slow ones run the recipes as subprocesses, ``kill -9`` them and compare with an
uninterrupted run.

All training here runs on the CPU with one thread, where every kernel the tiny models use is
deterministic, so the comparisons are bit for bit (``torch.equal`` on every tensor, ``==`` on every
logged number); a difference is a bug in the resume, not noise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]

#: logged values that measure time, not training; and the end-of-run summary (a resumed run's
#: ``train_loss`` averages only the steps it ran itself)
TIMING_KEYS = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
               "total_flos")


# --------------------------------------------------------------------------- helpers
def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_to_end(argv: list[str], log: Path, timeout: float = 240) -> None:
    with open(log, "ab") as f:
        proc = subprocess.run(argv, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    assert proc.returncode == 0, f"{argv[:3]} failed (rc {proc.returncode}); log: {log.read_text()[-3000:]}"


def checkpoint_written(folder: Path) -> bool:
    try:
        return "global_step" in json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False


def run_and_kill_after(argv: list[str], checkpoint: Path, log: Path, timeout: float = 240) -> None:
    """Start ``argv`` and SIGKILL it as soon as ``checkpoint`` is completely written."""
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        try:
            while not checkpoint_written(checkpoint):
                assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {checkpoint} was written"
                assert time.time() < deadline, f"{checkpoint} not written within {timeout} s"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed (rc {proc.returncode}): it ended first"


def last_checkpoint(out: Path) -> Path:
    return max(out.glob("checkpoint-[0-9]*"), key=lambda p: int(p.name.split("-")[1]))


def log_curve(out: Path) -> list[dict]:
    """The logged training values of a finished run, per step (timing entries dropped)."""
    history = json.loads((last_checkpoint(out) / "trainer_state.json").read_text())["log_history"]
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history if "train_runtime" not in h]


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert set(a) == set(b), f"{what}: different tensor names {sorted(set(a) ^ set(b))[:5]}"
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    worst = max(((a[k].double() - b[k].double()).abs().max().item(), k) for k in differ) if differ else None
    assert not differ, f"{what}: {len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]} (max |diff| {worst})"


def assert_resume_matches(reference: Path, resumed: Path, final: str) -> None:
    """Final weights (``final`` and the last checkpoint) bit for bit, every logged value of every step equal."""
    for folder in (final, last_checkpoint(reference).name):
        assert_same_tensors(load_file(str(reference / folder / "model.safetensors")),
                            load_file(str(resumed / folder / "model.safetensors")),
                            f"{folder} weights, resumed vs uninterrupted")
    ref_curve, res_curve = log_curve(reference), log_curve(resumed)
    assert [h.get("step") for h in res_curve] == [h.get("step") for h in ref_curve]
    for r, s in zip(ref_curve, res_curve):
        assert r == s, f"step {r.get('step')}: uninterrupted {r} vs resumed {s}"
    assert any("loss" in h for h in ref_curve)


# --------------------------------------------------------------------------- fast: loading a checkpoint
@pytest.fixture(scope="module")
def sft_checkpoint(tiny_qwen_dir, synthetic_world, tmp_path_factory):
    """A real Trainer checkpoint: 2 SFT steps at a high learning rate (far from the initial weights)."""
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.mllm.dataset import samples_to_hf
    from vtg_rl.mllm.reasoning import synthetic_trace
    from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    out = tmp_path_factory.mktemp("sft_ckpt")
    model, processor = load_qwen_vl(tiny_qwen_dir)
    ds = samples_to_hf(read_jsonl(synthetic_world["train"])[:4], target_fn=synthetic_trace)
    args = VideoSFTConfig(output_dir=str(out), per_device_train_batch_size=2, max_steps=2, learning_rate=1e-2,
                          report_to=[], logging_steps=1, save_steps=2, use_cpu=True, bf16=False, disable_tqdm=True)
    VideoSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor).train()
    return out / "checkpoint-2", {k: v.clone() for k, v in model.state_dict().items()}, ds


def _fresh_sft_trainer(tiny_qwen_dir, ds, out, **overrides):
    from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    model, processor = load_qwen_vl(tiny_qwen_dir)
    args = VideoSFTConfig(output_dir=str(out), per_device_train_batch_size=2, max_steps=2, report_to=[],
                          use_cpu=True, bf16=False, disable_tqdm=True, **overrides)
    return VideoSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)


def test_loading_a_checkpoint_restores_the_trained_weights(tiny_qwen_dir, sft_checkpoint, tmp_path):
    """The bug: the checkpoint's keys (visual.*, model.layers.*) never reached the model's
    (model.visual.*, model.language_model.*) and the model kept its initial weights."""
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    checkpoint, trained, ds = sft_checkpoint
    saved_keys = set(load_file(str(checkpoint / "model.safetensors")))
    assert any(k.startswith("visual.") for k in saved_keys), "the checkpoint no longer uses the original layout"
    trainer = _fresh_sft_trainer(tiny_qwen_dir, ds, tmp_path, freeze_vision_tower=True)
    model = trainer.model
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    identity = {k: id(p) for k, p in model.named_parameters()}
    assert not torch.equal(initial["model.visual.patch_embed.proj.weight"], trained["model.visual.patch_embed.proj.weight"])

    trainer._load_from_checkpoint(str(checkpoint))

    assert_same_tensors(model.state_dict(), trained, "weights after loading vs the trained model")
    reference, _ = load_qwen_vl(checkpoint)  # from_pretrained: the reference loader
    assert_same_tensors(model.state_dict(), reference.state_dict(), "weights after loading vs from_pretrained")
    # loaded in place: the optimizer's references, the tied head and the frozen tower are intact
    assert identity == {k: id(p) for k, p in model.named_parameters()}
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    assert not any(p.requires_grad for p in model.model.visual.parameters())


def test_a_checkpoint_that_does_not_match_is_an_error_naming_it(tiny_qwen_dir, sft_checkpoint, tmp_path):
    from vtg_rl.training.checkpoints import CheckpointLoadError

    checkpoint, _, ds = sft_checkpoint
    broken = tmp_path / "checkpoint-2"
    broken.mkdir()
    for f in checkpoint.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    state = load_file(str(checkpoint / "model.safetensors"))
    state["visual.blocks.0.attn.qkv.weight_renamed"] = state.pop("visual.blocks.0.attn.qkv.weight")
    save_file(state, str(broken / "model.safetensors"))
    trainer = _fresh_sft_trainer(tiny_qwen_dir, ds, tmp_path / "out")
    with pytest.raises(CheckpointLoadError) as err:
        trainer._load_from_checkpoint(str(broken))
    message = str(err.value)
    assert str(broken) in message and "model.visual.blocks.0.attn.qkv.weight" in message and "_renamed" in message


def test_an_incomplete_checkpoint_is_refused_and_skipped(tiny_qwen_dir, sft_checkpoint, tmp_path):
    from vtg_rl.training.checkpoints import CheckpointLoadError, last_complete_checkpoint

    checkpoint, _, ds = sft_checkpoint
    out = tmp_path / "run"
    complete, partial = out / "checkpoint-2", out / "checkpoint-4"
    for folder in (complete, partial):
        folder.mkdir(parents=True)
        for f in checkpoint.iterdir():
            if f.is_file():
                (folder / f.name).write_bytes(f.read_bytes())
    (partial / "trainer_state.json").write_text('{"global_step": 4, "log_hi')  # killed while writing it
    assert last_complete_checkpoint(out) == str(complete)
    trainer = _fresh_sft_trainer(tiny_qwen_dir, ds, out)
    with pytest.raises(CheckpointLoadError, match="incomplete checkpoint"):
        trainer.train(resume_from_checkpoint=str(partial))


def test_a_lora_checkpoint_restores_the_adapter_and_checks_its_keys(tiny_qwen_dir, sft_checkpoint, tmp_path):
    """PEFT checkpoints hold only the adapter: it loads through PEFT (its own key conversion), trainable,
    and an adapter tensor that matches nothing is an error too."""
    from peft import LoraConfig

    from vtg_rl.training.checkpoints import CheckpointLoadError

    _, _, ds = sft_checkpoint
    lora = dict(peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))

    def trainer(out):
        from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer
        from vtg_rl.models.tiny_qwen import load_qwen_vl

        model, processor = load_qwen_vl(tiny_qwen_dir)
        args = VideoSFTConfig(output_dir=str(out), per_device_train_batch_size=2, max_steps=2, learning_rate=1e-2,
                              save_steps=2, report_to=[], use_cpu=True, bf16=False, disable_tqdm=True)
        return VideoSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor, **lora)

    first = trainer(tmp_path / "a")
    first.train()
    trained = {k: v.clone() for k, v in first.model.state_dict().items() if "lora_" in k}
    fresh = trainer(tmp_path / "b")
    fresh._load_from_checkpoint(str(tmp_path / "a" / "checkpoint-2"))
    assert_same_tensors({k: v for k, v in fresh.model.state_dict().items() if "lora_" in k}, trained, "adapter")
    assert all(p.requires_grad == ("lora_" in n) for n, p in fresh.model.named_parameters())

    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (tmp_path / "a" / "checkpoint-2").iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    state = load_file(str(broken / "adapter_model.safetensors"))
    key = sorted(state)[0]
    state[key + "_renamed"] = state.pop(key)
    save_file(state, str(broken / "adapter_model.safetensors"))
    with pytest.raises(CheckpointLoadError, match="_renamed") as err:
        fresh._load_from_checkpoint(str(broken))
    assert str(broken) in str(err.value)


def test_grpo_sampler_order_depends_on_the_epoch_not_on_the_history():
    """TRL's RepeatSampler drew each epoch's order from a generator seeded once: a run resumed in epoch 2
    replayed epoch 0's order. With set_epoch the order of epoch k is the uninterrupted run's."""
    from trl.trainer.utils import RepeatSampler

    from vtg_rl.training.resume import make_epoch_seeded

    def sampler():
        return make_epoch_seeded(RepeatSampler(list(range(12)), mini_repeat_count=2, batch_size=3, seed=7))

    uninterrupted = sampler()
    orders = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        orders.append(list(uninterrupted))
    plain = RepeatSampler(list(range(12)), mini_repeat_count=2, batch_size=3, seed=7)
    assert orders == [list(plain) for _ in range(3)]  # unchanged for the uninterrupted run
    resumed = sampler()
    resumed.set_epoch(2)
    assert list(resumed) == orders[2] != orders[0]


# --------------------------------------------------------------------------- slow: kill -9 and resume
def _sft_argv(tiny_qwen_dir, world_dir, out: Path, frames: Path) -> list[str]:
    return [sys.executable, "recipes/sft.py", "--model_name_or_path", str(tiny_qwen_dir), "--synthetic_dir", world_dir,
            "--max_train_samples", "8", "--max_eval_samples", "0", "--eval_before", "false", "--output_dir", str(out),
            "--max_steps", "18", "--save_steps", "6", "--logging_steps", "1", "--per_device_train_batch_size", "2",
            "--learning_rate", "1e-3", "--bf16", "false", "--use_cpu", "true", "--report_to", "none",
            "--frame_cache_dir", str(frames), "--disable_tqdm", "true", "--seed", "0"]


@pytest.mark.slow
def test_sft_killed_after_a_checkpoint_resumes_exactly(tiny_qwen_dir, synthetic_world, tmp_path):
    """8 samples, batch 2: checkpoint-6 is mid-epoch 1 under easy-first pacing (the data order depends on
    the epoch); the resumed run must reproduce steps 7-18 of the uninterrupted one."""
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    world = str(Path(synthetic_world["train"]).parent)
    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    run_to_end(_sft_argv(tiny_qwen_dir, world, reference, tmp_path / "frames"), tmp_path / "reference.log")
    argv = _sft_argv(tiny_qwen_dir, world, killed, tmp_path / "frames")
    run_and_kill_after(argv, killed / "checkpoint-6", tmp_path / "killed.log")
    assert not (killed / "checkpoint-final").exists()

    # (a) right after loading, the model holds the checkpoint's weights bit for bit
    trainer = _fresh_sft_trainer(tiny_qwen_dir, _sft_rows(synthetic_world), tmp_path / "probe")
    trainer._load_from_checkpoint(str(killed / "checkpoint-6"))
    saved, _ = load_qwen_vl(killed / "checkpoint-6")
    assert_same_tensors(trainer.model.state_dict(), saved.state_dict(), "weights right after loading checkpoint-6")
    initial, _ = load_qwen_vl(tiny_qwen_dir)
    assert not torch.equal(initial.lm_head.weight, trainer.model.lm_head.weight)

    # (b) resumed to the end: the uninterrupted run's weights and curve
    run_to_end(argv + ["--resume_from_checkpoint", str(killed / "checkpoint-6")], tmp_path / "resumed.log")
    assert_resume_matches(reference, killed, "checkpoint-final")


def _sft_rows(world):
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.mllm.dataset import samples_to_hf
    from vtg_rl.mllm.reasoning import synthetic_trace

    return samples_to_hf(read_jsonl(world["train"])[:4], target_fn=synthetic_trace)


#: the GRPO recipe with one extra reward: a deterministic hash of the completion, so every group has
#: non-zero advantages (the tiny random policy never writes a well-formed answer, so the recipe's IoU and
#: format rewards are all 0 and only the KL term would move the weights)
GRPO_BOOT = (
    "import hashlib, runpy, sys; import vtg_rl.rewards as r\n"
    "def varied_reward(completions, **kwargs):\n"
    "    return [int(hashlib.md5(c[0]['content'].encode()).hexdigest()[:6], 16) / 0xFFFFFF for c in completions]\n"
    "r.REWARD_FUNCS['varied_reward'] = varied_reward\n"
    "sys.argv = ['recipes/grpo.py'] + sys.argv[1:]\n"
    "runpy.run_path('recipes/grpo.py', run_name='__main__')\n")


def _grpo_argv(tiny_qwen_dir, world_dir, out: Path, frames: Path) -> list[str]:
    return [sys.executable, "-c", GRPO_BOOT, "--model_name_or_path", str(tiny_qwen_dir), "--synthetic_dir", world_dir,
            "--max_train_samples", "6", "--max_eval_samples", "0", "--eval_before", "false", "--output_dir", str(out),
            "--max_steps", "14", "--save_steps", "7", "--logging_steps", "1", "--per_device_train_batch_size", "4",
            "--num_generations", "2", "--max_completion_length", "8", "--learning_rate", "1e-3",
            "--beta", "0.04", "--num_iterations", "2", "--curriculum", "true",
            "--reward_funcs", "varied_reward", "format_reward", "--reward_weights", "1.0", "0.1",
            "--use_cpu", "true", "--report_to", "none", "--frame_cache_dir", str(frames), "--disable_tqdm", "true",
            "--seed", "0"]


@pytest.mark.slow
def test_grpo_killed_after_a_checkpoint_resumes_exactly(tiny_qwen_dir, synthetic_world, tmp_path):
    """beta > 0 (a reference model), 2 iterations per rollout batch (checkpoint-7 falls inside a
    generation cycle: its rollouts are reused after the resume), curriculum masking, 6 prompts, 2 per
    rollout batch, each used twice: 6 steps per epoch, so the resumed run starts in epoch 1 (the
    sampler's order must be epoch 1's, not a replay of epoch 0's)."""
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    world = str(Path(synthetic_world["train"]).parent)
    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    run_to_end(_grpo_argv(tiny_qwen_dir, world, reference, tmp_path / "frames"), tmp_path / "reference.log")
    argv = _grpo_argv(tiny_qwen_dir, world, killed, tmp_path / "frames")
    run_and_kill_after(argv, killed / "checkpoint-7", tmp_path / "killed.log")

    # (a) the policy holds the checkpoint's weights, the reference model the initial policy's
    trainer = _probe_grpo_trainer(tiny_qwen_dir, synthetic_world, tmp_path / "probe")
    trainer._load_from_checkpoint(str(killed / "checkpoint-7"))
    saved, _ = load_qwen_vl(killed / "checkpoint-7")
    initial, _ = load_qwen_vl(tiny_qwen_dir)
    assert_same_tensors(trainer.model.state_dict(), saved.state_dict(), "policy right after loading checkpoint-7")
    assert_same_tensors(trainer.ref_model.state_dict(), initial.state_dict(), "reference model after loading")
    assert not torch.equal(saved.lm_head.weight, initial.lm_head.weight)

    # (b) resumed to the end
    run_to_end(argv + ["--resume_from_checkpoint", str(killed / "checkpoint-7")], tmp_path / "resumed.log")
    assert_resume_matches(reference, killed, "checkpoint-final")
    assert any(h.get("kl", 0) > 0 for h in log_curve(reference)), "the KL term never acted"


def _probe_grpo_trainer(tiny_qwen_dir, world, out):
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.mllm.dataset import samples_to_hf
    from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer
    from vtg_rl.models.tiny_qwen import load_qwen_vl
    from vtg_rl.rewards import format_reward

    model, processor = load_qwen_vl(tiny_qwen_dir)
    args = VideoGRPOConfig(output_dir=str(out), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                           max_completion_length=8, beta=0.04, report_to=[], use_cpu=True, disable_tqdm=True,
                           reward_funcs=["format_reward"])
    return VideoGRPOTrainer(model=model, reward_funcs=[format_reward], args=args,
                            train_dataset=samples_to_hf(read_jsonl(world["train"])[:4]), processing_class=processor)


def _girl_detr_argv(clip_dir, world_dir, out: Path, features: Path) -> list[str]:
    return [sys.executable, "recipes/girl_detr.py", "--synthetic_dir", world_dir, "--clip_model", str(clip_dir),
            "--feature_root", str(features), "--clip_len", "1.0", "--patch_grid", "0", "--output_dir", str(out),
            "--hidden_dim", "32", "--num_heads", "4", "--ffn_dim", "64", "--max_steps", "30", "--save_steps", "10",
            "--warmup_steps", "3", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
            "--logging_steps", "1", "--eval_strategy", "no", "--report_to", "none", "--use_cpu", "true",
            "--disable_tqdm", "true", "--seed", "0"]


@pytest.mark.slow
def test_girl_detr_killed_after_a_checkpoint_resumes_exactly(tiny_clip_dir, synthetic_world, tmp_path):
    """Dropout on (torch RNG restored), 32 training rows at batch 8 (checkpoint-10 is mid-epoch 2),
    resumed with --resume_from_checkpoint auto (the last complete checkpoint)."""
    from vtg_rl.heads.girl_detr.model import GirlDetr, GirlDetrConfig
    from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainer, GirlDetrTrainingConfig

    world = str(Path(synthetic_world["train"]).parent)
    features = tmp_path / "features"
    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    run_to_end(_girl_detr_argv(tiny_clip_dir, world, reference, features), tmp_path / "reference.log")
    argv = _girl_detr_argv(tiny_clip_dir, world, killed, features)
    run_and_kill_after(argv, killed / "checkpoint-10", tmp_path / "killed.log")

    # (a) a fresh head loaded through the trainer holds the checkpoint's tensors bit for bit
    checkpoint = killed / "checkpoint-10"
    config = json.loads((checkpoint / "girl_detr_config.json").read_text())
    model = GirlDetr(GirlDetrConfig(**config))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = GirlDetrTrainer(model=model, args=GirlDetrTrainingConfig(output_dir=str(tmp_path / "probe"),
                                                                       report_to=[], use_cpu=True))
    trainer._load_from_checkpoint(str(checkpoint))
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert_same_tensors({k: v for k, v in model.state_dict().items() if k in saved}, saved, "head after loading")
    assert any(not torch.equal(initial[k], saved[k]) for k in saved)

    # (b) resumed to the end
    run_to_end(argv + ["--resume_from_checkpoint", "auto"], tmp_path / "resumed.log")
    assert_resume_matches(reference, killed, "final")
    assert f"from {killed / 'checkpoint-10'}" in (tmp_path / "resumed.log").read_text()  # auto found it
