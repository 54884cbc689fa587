"""The logic behind ``recipes/sft.py``: data -> cold-start targets -> VideoSFTTrainer -> held-out eval.

Writes into ``output_dir``: Trainer checkpoints (``checkpoint-N``, resumable with
``--resume_from_checkpoint``), the final model + processor in ``checkpoint-final``, TensorBoard logs
in ``runs/``, ``eval_before.json`` / ``eval_after.json`` (+ submission jsonl scored by ``vtg-rl eval``),
``metrics.json`` and ``training_curves.png``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from vtg_rl.mllm.dataset import samples_to_hf
from vtg_rl.mllm.collator import VideoSFTCollator
from vtg_rl.mllm.reasoning import TraceBank, target_for_sample
from vtg_rl.mllm.recipe_common import DataArguments, ensure_model, evaluate_and_record, load_split, saved_model
from vtg_rl.training.artifacts import plot_curves, write_json
from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer

logger = logging.getLogger(__name__)

FINAL_DIR = "checkpoint-final"


@dataclass
class SFTScriptArguments(DataArguments):
    """Data + cold-start target options of the SFT recipe."""

    reasoning_traces: Optional[str] = field(default=None, metadata={
        "help": "jsonl of {qid, completion} reasoning traces for real data (think + answer)"})
    trace_min_iou: float = field(default=0.5, metadata={
        "help": "quality filter: drop traces whose own answer has IoU below this with the annotation"})
    eval_before: bool = field(default=True, metadata={"help": "evaluate the starting model too"})
    eval_batch_size: int = field(default=16)


def load_model_and_processor(model_args, training_args):
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    path = ensure_model(model_args.model_name_or_path, seed=training_args.seed)
    dtype = model_args.dtype if getattr(model_args, "dtype", None) not in (None, "auto") else torch.float32
    if getattr(model_args, "trust_remote_code", False):
        raise ValueError("trust_remote_code is not supported: vtg-rl loads Qwen2.5-VL-style models with "
                         "transformers' own classes")
    model, processor = load_qwen_vl(path, dtype=dtype, attn_implementation=model_args.attn_implementation or "sdpa")
    return model, processor


def run_sft(script_args: SFTScriptArguments, training_args: VideoSFTConfig, model_args) -> dict:
    out = Path(training_args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_samples = load_split(script_args, "train")
    eval_samples = load_split(script_args, "eval")
    bank = TraceBank.from_jsonl(script_args.reasoning_traces) if script_args.reasoning_traces else None
    target_fn = lambda s: target_for_sample(s, bank, min_iou=script_args.trace_min_iou)  # noqa: E731
    train_ds = samples_to_hf(train_samples, target_fn=target_fn)
    logger.info("SFT on %d samples (%d dropped by the trace quality filter), eval on %d",
                len(train_ds), len(train_samples) - len(train_ds), len(eval_samples))

    model, processor = load_model_and_processor(model_args, training_args)
    peft_config = None
    if getattr(model_args, "use_peft", False):
        from trl import get_peft_config

        peft_config = get_peft_config(model_args)

    sampling = training_args.video_sampling()
    result = {"train_samples": len(train_ds), "eval_samples": len(eval_samples)}
    before_file = out / "eval_before.json"
    if before_file.is_file():  # a rerun in the same output_dir reuses the finished starting-point eval
        result["before"] = json.loads(before_file.read_text())
        logger.info("before SFT (reused %s): %s", before_file, result["before"])
    elif eval_samples and script_args.eval_before and not training_args.resume_from_checkpoint:
        result["before"] = evaluate_and_record(model, processor, eval_samples, sampling, script_args.eval_batch_size,
                                               out, "before", "SFT")

    collator = VideoSFTCollator(processor, sampling=training_args.video_sampling(),
                                max_completion_tokens=training_args.max_completion_tokens,
                                on_bad_video=script_args.on_bad_video)
    trainer = VideoSFTTrainer(model=model, args=training_args, train_dataset=train_ds, processing_class=processor,
                              peft_config=peft_config, data_collator=collator)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    result["train_wall_s"] = time.time() - t0

    final = out / FINAL_DIR
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    plot_curves(trainer.state.log_history, ["loss", "mean_token_accuracy", "learning_rate", "grad_norm"],
                out / "training_curves.png", title="cold-start SFT")

    if eval_samples:
        result["after"] = evaluate_and_record(saved_model(trainer), processor, eval_samples, sampling,
                                              script_args.eval_batch_size, out, "after", "SFT")
    write_json(out / "metrics.json", result)
    return result
