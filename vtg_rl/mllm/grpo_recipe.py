"""The logic behind ``recipes/grpo.py``: SFT checkpoint -> difficulty control -> VideoGRPOTrainer -> eval.

Writes into ``output_dir``: Trainer checkpoints (``checkpoint-N``, resumable with
``--resume_from_checkpoint``), the final model + processor in ``checkpoint-final``, TensorBoard logs in
``runs/`` (rewards per function, IoU, format rate, malformed answers, mask fraction, dropped groups, KL),
``eval_before.json`` / ``eval_after.json`` (+ submission jsonl scored by ``vtg-rl eval``),
``metrics.json`` and ``reward_curves.png``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vtg_rl.mllm.dataset import samples_to_hf
from vtg_rl.mllm.difficulty_filter import filter_by_difficulty, reweight_by_difficulty
from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer
from vtg_rl.mllm.recipe_common import DataArguments, evaluate_and_record, load_split, saved_model
from vtg_rl.training.artifacts import plot_curves, write_json

logger = logging.getLogger(__name__)

DEFAULT_SFT_CHECKPOINT = "runs/sft/checkpoint-final"
FINAL_DIR = "checkpoint-final"

#: the series drawn in reward_curves.png (those that were logged)
CURVE_KEYS = ["reward", "answers/iou_mean", "answers/format_rate", "answers/malformed_rate", "curriculum/mask_fraction",
              "difficulty/dropped_group_fraction", "kl", "entropy"]


@dataclass
class GRPOScriptArguments(DataArguments):
    """Data + evaluation options of the GRPO recipe."""

    eval_before: bool = field(default=True, metadata={"help": "evaluate the starting (SFT) model too"})
    eval_batch_size: int = field(default=16)


class MissingCheckpointError(FileNotFoundError):
    pass


def check_start_checkpoint(path: str) -> None:
    """GRPO starts from a cold-start SFT model: say how to make one when it is missing."""
    local = Path(path)
    if (local / "config.json").is_file():
        return
    if os.path.normpath(path) == os.path.normpath(DEFAULT_SFT_CHECKPOINT):
        raise MissingCheckpointError(
            f"no SFT checkpoint at {path}: GRPO starts from the cold-start model. Run "
            "`accelerate launch recipes/sft.py` first (it writes runs/sft/checkpoint-final), or pass "
            "--model_name_or_path DIR")
    if local.exists() or path.startswith(("./", "/", "runs/")):
        raise MissingCheckpointError(f"{path}: no config.json, not a model folder")
    # otherwise a hub id the user downloaded into the HF cache; from_pretrained reports it if absent


def reward_functions(names: list[str]) -> list:
    from vtg_rl.rewards import REWARD_FUNCS

    unknown = [n for n in names if n not in REWARD_FUNCS]
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; choose from {sorted(REWARD_FUNCS)}")
    return [REWARD_FUNCS[n] for n in names]


def prepare_train_dataset(samples, args: VideoGRPOConfig):
    """Samples -> HF dataset, with the dataset-level difficulty control of ``args`` applied."""
    ds = samples_to_hf(samples)
    report = {"samples": len(ds)}
    if args.min_difficulty is not None or args.max_difficulty is not None:
        ds, filt = filter_by_difficulty(ds, args.min_difficulty, args.max_difficulty)
        report["difficulty_filter"] = filt
        logger.info("difficulty filter [%s, %s]: %s", args.min_difficulty, args.max_difficulty, filt)
    if args.difficulty_reweight != "none":
        ds = reweight_by_difficulty(ds, mode=args.difficulty_reweight, seed=args.seed)
        report["difficulty_reweight"] = args.difficulty_reweight
    report["train_rows"] = len(ds)
    return ds, report


def load_policy(model_args, training_args: VideoGRPOConfig):
    from vtg_rl.mllm.sft_recipe import load_model_and_processor

    check_start_checkpoint(model_args.model_name_or_path)
    return load_model_and_processor(model_args, training_args)


def run_grpo(script_args: GRPOScriptArguments, training_args: VideoGRPOConfig, model_args) -> dict:
    if not model_args.model_name_or_path:
        model_args.model_name_or_path = DEFAULT_SFT_CHECKPOINT
    model, processor = load_policy(model_args, training_args)
    out = Path(training_args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_ds, data_report = prepare_train_dataset(load_split(script_args, "train"), training_args)
    eval_samples = load_split(script_args, "eval")
    rewards = reward_functions(training_args.reward_funcs)
    peft_config = None
    if getattr(model_args, "use_peft", False):
        from trl import get_peft_config

        peft_config = get_peft_config(model_args)
    logger.info("GRPO from %s on %d rows (curriculum %s), eval on %d", model_args.model_name_or_path,
                len(train_ds), "on" if training_args.curriculum else "off", len(eval_samples))

    sampling = training_args.video_sampling()
    result = {"start_model": model_args.model_name_or_path, "data": data_report, "eval_samples": len(eval_samples),
              "curriculum": training_args.curriculum, "reward_funcs": list(training_args.reward_funcs)}
    if eval_samples and script_args.eval_before and not training_args.resume_from_checkpoint:
        result["before"] = evaluate_and_record(model, processor, eval_samples, sampling, script_args.eval_batch_size,
                                               out, "before", "GRPO")

    trainer = VideoGRPOTrainer(model=model, reward_funcs=rewards, args=training_args, train_dataset=train_ds,
                               processing_class=processor, peft_config=peft_config)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    result["train_wall_s"] = time.time() - t0
    result["steps"] = trainer.state.global_step

    final = out / FINAL_DIR
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    keys = CURVE_KEYS + [f"rewards/{name}/mean" for name in trainer.reward_func_names]
    result["curves_png"] = plot_curves(trainer.state.log_history, keys, out / "reward_curves.png",
                                       title="GRPO" + (" + curriculum" if training_args.curriculum else ""))
    write_json(out / "log_history.json", trainer.state.log_history)

    if eval_samples:
        result["after"] = evaluate_and_record(saved_model(trainer), processor, eval_samples, sampling,
                                              script_args.eval_batch_size, out, "after", "GRPO")
    write_json(out / "metrics.json", result)
    return result
