"""What the LLM recipes (``recipes/sft.py``, ``recipes/grpo.py``) share: where the data and the model come
from. The recipes stay thin; this is the logic behind them. What every recipe (LLM or head) shares lives in
:mod:`vtg_rl.training`."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vtg_rl.data.loaders import GROUNDING_FORMATS
from vtg_rl.data.schema import VTGSample, read_jsonl
from vtg_rl.training.artifacts import write_json
from vtg_rl.training.world import DEFAULT_WORLD_DIR, DEFAULT_WORLD_N, ensure_synthetic_world

logger = logging.getLogger(__name__)

DEFAULT_TINY_QWEN_DIR = "runs/models/tiny_qwen"

#: --dataset values of a real dataset -> loader format
DATASET_FORMATS = GROUNDING_FORMATS


@dataclass
class DataArguments:
    """Which data a recipe trains and evaluates on."""

    dataset: str = field(default="synthetic", metadata={
        "help": "'synthetic' (generated if missing) or a format: " + ", ".join(sorted(DATASET_FORMATS))})
    dataset_path: Optional[str] = field(default=None, metadata={"help": "training file of a real dataset"})
    eval_path: Optional[str] = field(default=None, metadata={"help": "held-out file of a real dataset"})
    durations: Optional[str] = field(default=None, metadata={"help": "Charades-STA durations file"})
    gsub: Optional[str] = field(default=None, metadata={"help": "NExT-GQA gsub_*.json"})
    video_dir: Optional[str] = field(default=None, metadata={"help": "folder of <vid>.mp4 files"})
    data_policy: str = field(default="strict", metadata={"help": "bad rows: 'strict' (raise) or 'drop'"})
    synthetic_dir: str = field(default=DEFAULT_WORLD_DIR, metadata={"help": "where the synthetic world lives"})
    synthetic_n: int = field(default=DEFAULT_WORLD_N, metadata={"help": "samples to generate when the world is missing"})
    synthetic_seed: int = field(default=0)
    synthetic_partial_rate: float = field(default=0.0)
    eval_split: str = field(default="test", metadata={"help": "synthetic split used for held-out eval"})
    max_train_samples: Optional[int] = field(default=None)
    max_eval_samples: Optional[int] = field(default=500)
    probe_videos: bool = field(default=True, metadata={
        "help": "open every video before training (cached; vtg_rl/data/probe.py); false skips the check"})
    on_bad_video: str = field(default="error", metadata={
        "help": "rows whose video is unusable or not of the stated duration: 'error' refuses to start, 'skip' drops"})


def load_split(data: DataArguments, split: str) -> list[VTGSample]:
    """Samples of one split ("train" or "eval") as the arguments describe."""
    if data.dataset == "synthetic":
        paths = ensure_synthetic_world(data.synthetic_dir, data.synthetic_n, data.synthetic_seed,
                                       data.synthetic_partial_rate)
        samples = read_jsonl(paths["train" if split == "train" else data.eval_split])
    else:
        fmt = DATASET_FORMATS.get(data.dataset)
        if fmt is None:
            raise ValueError(f"unknown --dataset {data.dataset!r}; choose 'synthetic' or one of {sorted(DATASET_FORMATS)}")
        path = data.dataset_path if split == "train" else data.eval_path
        if path is None:
            if split == "train":
                raise ValueError(f"--dataset {data.dataset} needs --dataset_path (the training file)")
            return []
        from vtg_rl.data.loaders import load_samples

        samples, report = load_samples(path, fmt, durations=data.durations, gsub=data.gsub,
                                       video_dir=data.video_dir, policy=data.data_policy)
        logger.info("%s: %s", path, report)
        spanless = [s.qid for s in samples if getattr(s, "task", "grounding") != "grounding"]
        if spanless:
            raise ValueError(f"{path}: {len(spanless)} highlight-only sample(s) (e.g. qid {spanless[0]}) have no span "
                             "to ground; the LLM recipes train moment retrieval (use recipes/r2_tuning.py for "
                             "highlight detection and summarisation)")
    limit = data.max_train_samples if split == "train" else data.max_eval_samples
    if limit is not None and len(samples) > limit:
        samples = random.Random(0).sample(samples, limit) if split == "train" else samples[:limit]
    from vtg_rl.data.probe import preflight_split

    return preflight_split(samples, data, split)  # unusable videos are found before the run starts


def ensure_model(model_name_or_path: str, seed: int = 0) -> str:
    """The default model is the tiny local Qwen2.5-VL: build it if its folder is missing. Any other
    value is passed to ``from_pretrained`` as it is (a local folder or a hub id the user downloaded)."""
    if os.path.normpath(model_name_or_path) == os.path.normpath(DEFAULT_TINY_QWEN_DIR) and not Path(
            model_name_or_path, "config.json").is_file():
        from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

        logger.info("building the tiny local Qwen2.5-VL into %s", model_name_or_path)
        build_tiny_qwen2_5_vl(model_name_or_path, seed=seed)
    return model_name_or_path




def evaluate_and_record(model, processor, samples: list[VTGSample], sampling, batch_size: int, out: Path,
                        when: str, stage: str) -> dict:
    """Greedy held-out eval of ``model``; writes ``out/eval_{when}.json`` and the submission
    ``out/eval_{when}_submission.jsonl`` (scored as is by ``vtg-rl eval``). ``when``: "before" / "after"."""
    from vtg_rl.mllm.inference import evaluate_model

    metrics = evaluate_model(model, processor, samples, sampling=sampling, batch_size=batch_size,
                             submission_path=str(out / f"eval_{when}_submission.jsonl"))
    write_json(out / f"eval_{when}.json", metrics)
    logger.info("%s %s: %s", when, stage, metrics)
    return metrics


def saved_model(trainer):
    """The trained model as ``checkpoint-final`` holds it: unwrapped from DDP / DeepSpeed and from the mixed-
    precision forward wrapper accelerate adds under ``bf16``, so the held-out eval scores what a user loading
    the checkpoint gets (greedy answers under bf16 autocast drift from the float32 ones after ~20 tokens)."""
    return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
