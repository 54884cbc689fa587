"""Does GRPO (and its curriculum) improve a cold-start grounding model on the synthetic world?

    python benchmarks/grpo_synthetic.py            # full measurement (1-2 h on 2 idle CPU cores)
    python benchmarks/grpo_synthetic.py --smoke    # a few steps on a small world: checks the pipeline only

Arms, all from the same cold-start SFT checkpoint and evaluated (greedy) on the same >= 500 held-out
samples (test + val splits of the world) and on their hard split (the world's ``meta.hard``: look-alike
distractors and short, faint events):

* ``miou_sft``               the cold-start checkpoint itself;
* ``miou_grpo``              GRPO (IoU + 0.1 format reward, G = 8) for ``--grpo_steps`` steps;
* ``miou_grpo_curriculum``   the same with ``--curriculum`` (hard samples' videos masked early);
* ``miou_sft_continued``     the GRPO arm's training wall time spent on more SFT instead.

The start is deliberately an *early* SFT checkpoint (``--sft_steps`` 600 of the recipe's 2000, ~0.55 mIoU
in a 2-core CPU trial): GRPO from a near-converged one added only +0.01. Pass ``--sft_checkpoint DIR`` to
start elsewhere. Writes ``benchmarks/results/grpo_synthetic.json`` (``_smoke`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from harness import ROOT, print_metrics, write_result  # noqa: E402  (puts the repository on sys.path)

from trl import ModelConfig, TrlParser  # noqa: E402

from vtg_rl.data.schema import read_jsonl  # noqa: E402
from vtg_rl.mllm.grpo import VideoGRPOConfig  # noqa: E402
from vtg_rl.mllm.grpo_recipe import GRPOScriptArguments, run_grpo  # noqa: E402
from vtg_rl.mllm.inference import completion_to_window, generate_answers  # noqa: E402
from vtg_rl.mllm.recipe_common import ensure_model  # noqa: E402
from vtg_rl.training.world import ensure_synthetic_world  # noqa: E402
from vtg_rl.mllm.sft import VideoSFTConfig  # noqa: E402
from vtg_rl.mllm.sft_recipe import SFTScriptArguments, run_sft  # noqa: E402
from vtg_rl.spans import temporal_iou  # noqa: E402

logger = logging.getLogger("grpo_synthetic")

SMOKE = dict(world_n=60, sft_steps=20, grpo_steps=3, eval_samples=12, num_generations=4, prompts_per_step=2,
             out="runs/bench/grpo_synthetic_smoke", world="runs/bench/grpo_synthetic_smoke/world")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline, measures nothing")
    p.add_argument("--world", default="runs/data/synthetic", help="synthetic world folder (generated if missing)")
    p.add_argument("--world_n", type=int, default=4000)
    p.add_argument("--out", default="runs/bench/grpo_synthetic")
    p.add_argument("--model", default="runs/models/tiny_qwen", help="model the cold-start SFT starts from")
    p.add_argument("--sft_checkpoint", default=None, help="start GRPO here instead of a fresh early SFT")
    p.add_argument("--sft_steps", type=int, default=600, help="cold-start SFT steps (leaves RL room)")
    p.add_argument("--sft_seconds_per_step", type=float, default=None,
                   help="with --sft_checkpoint: measured SFT step time, so the SFT-continued arm gets equal time")
    p.add_argument("--grpo_steps", type=int, default=300)
    p.add_argument("--num_generations", type=int, default=8)
    p.add_argument("--prompts_per_step", type=int, default=4)
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--loss_type", default="dapo")
    p.add_argument("--eval_samples", type=int, default=800)
    p.add_argument("--eval_batch_size", type=int, default=32)
    args = p.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    return args


def parse_recipe(types, config: str, overrides: dict):
    argv = ["--config", str(ROOT / config)]
    for k, v in overrides.items():
        argv += [f"--{k}", *(map(str, v) if isinstance(v, list) else [str(v)])]
    return TrlParser(types).parse_args_and_config(args=argv)


def cold_start_sft(a, world: str) -> tuple[str, float]:
    """An early SFT checkpoint (and its seconds per step, to give continued SFT the GRPO wall time)."""
    out = Path(a.out) / "sft_cold"
    meta = out / "bench_sft.json"
    if (out / "checkpoint-final" / "config.json").is_file() and meta.is_file():
        return str(out / "checkpoint-final"), json.loads(meta.read_text())["s_per_step"]
    script, train, model = parse_recipe((SFTScriptArguments, VideoSFTConfig, ModelConfig),
                                        "recipes/configs/sft_synthetic.yaml", {
                                            "model_name_or_path": ensure_model(a.model), "synthetic_dir": world,
                                            "synthetic_n": a.world_n, "output_dir": out, "max_steps": a.sft_steps,
                                            "warmup_steps": min(100, a.sft_steps // 5), "eval_before": False,
                                            "max_eval_samples": 0, "save_steps": 10 ** 6, "report_to": "none"})
    result = run_sft(script, train, model)
    s_per_step = result["train_wall_s"] / a.sft_steps
    meta.write_text(json.dumps({"s_per_step": s_per_step}, allow_nan=False))
    return str(out / "checkpoint-final"), s_per_step


def continued_sft(a, world: str, start: str, steps: int) -> tuple[str, float]:
    out = Path(a.out) / "sft_continued"
    script, train, model = parse_recipe((SFTScriptArguments, VideoSFTConfig, ModelConfig),
                                        "recipes/configs/sft_synthetic.yaml", {
                                            "model_name_or_path": start, "synthetic_dir": world,
                                            "synthetic_n": a.world_n, "output_dir": out, "max_steps": steps,
                                            "lr_scheduler_type": "constant", "learning_rate": 1e-4,
                                            "warmup_steps": 0, "eval_before": False, "max_eval_samples": 0,
                                            "save_steps": 10 ** 6, "report_to": "none"})
    result = run_sft(script, train, model)
    return str(out / "checkpoint-final"), result["train_wall_s"]


def grpo(a, world: str, start: str, curriculum: bool) -> tuple[str, dict]:
    out = Path(a.out) / ("grpo_curriculum" if curriculum else "grpo")
    overrides = {"model_name_or_path": start, "synthetic_dir": world, "synthetic_n": a.world_n, "output_dir": out,
                 "max_steps": a.grpo_steps, "num_generations": a.num_generations,
                 "per_device_train_batch_size": a.num_generations * a.prompts_per_step,
                 "learning_rate": a.learning_rate, "beta": a.beta, "loss_type": a.loss_type,
                 "eval_before": False, "max_eval_samples": 0, "save_steps": 10 ** 6,
                 "logging_steps": max(1, min(5, a.grpo_steps)), "curriculum": curriculum}
    script, train, model = parse_recipe((GRPOScriptArguments, VideoGRPOConfig, ModelConfig),
                                        "recipes/configs/grpo_synthetic.yaml", overrides)
    result = run_grpo(script, train, model)
    return str(out / "checkpoint-final"), result


def per_sample_iou(model_dir: str, samples, batch_size: int) -> np.ndarray:
    from vtg_rl.mllm.video_source import VideoSampling
    from vtg_rl.models.tiny_qwen import load_qwen_vl

    model, processor = load_qwen_vl(model_dir)
    outs = generate_answers(model, processor, samples, sampling=VideoSampling(cache_dir="runs/cache/frames"),
                            batch_size=batch_size, desc=f"eval {Path(model_dir).parent.name}")
    ious = np.zeros(len(samples))
    for i, (s, texts) in enumerate(zip(samples, outs)):
        w = completion_to_window(texts[0], s.duration)
        if w is not None and s.windows:
            ious[i] = float(np.max(temporal_iou(np.array(w)[None], np.array(s.windows))))
    return ious


def main() -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    a = parse_args()
    t0 = time.time()
    paths = ensure_synthetic_world(a.world, a.world_n, seed=0)
    held_out = (read_jsonl(paths["test"]) + read_jsonl(paths["val"]))[: a.eval_samples]
    hard = np.array([bool(s.meta.get("hard")) for s in held_out])
    if not a.smoke and len(held_out) < 500:
        raise SystemExit(f"only {len(held_out)} held-out samples in {a.world}; the measurement needs >= 500")

    if a.sft_checkpoint:
        start, s_per_sft_step = a.sft_checkpoint, a.sft_seconds_per_step
    else:
        start, s_per_sft_step = cold_start_sft(a, a.world)
    grpo_dir, grpo_result = grpo(a, a.world, start, curriculum=False)
    cur_dir, cur_result = grpo(a, a.world, start, curriculum=True)
    arms = {"sft": start, "grpo": grpo_dir, "grpo_curriculum": cur_dir}
    if s_per_sft_step:
        steps = max(1, round(grpo_result["train_wall_s"] / s_per_sft_step))
        arms["sft_continued"], continued_wall = continued_sft(a, a.world, start, steps)
    ious = {name: per_sample_iou(path, held_out, a.eval_batch_size) for name, path in arms.items()}

    def se(x):
        return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")

    out = {"start_checkpoint": start, "start": "fresh early SFT" if not a.sft_checkpoint else "given",
           "sft_steps": None if a.sft_checkpoint else a.sft_steps, "grpo_steps": a.grpo_steps,
           "num_generations": a.num_generations, "prompts_per_step": a.prompts_per_step,
           "learning_rate": a.learning_rate, "beta": a.beta, "loss_type": a.loss_type,
           "eval_samples": len(held_out), "hard_eval_samples": int(hard.sum()), "smoke": a.smoke}
    for name, x in ious.items():
        out[f"miou_{name}"] = float(x.mean())
        out[f"hard_split_miou_{name}"] = float(x[hard].mean()) if hard.any() else None
        out[f"se_miou_{name}"] = se(x)
    out["grpo_lift"] = out["miou_grpo"] - out["miou_sft"]
    out["se_grpo_lift_paired"] = se(ious["grpo"] - ious["sft"])
    if hard.any():
        diff = ious["grpo_curriculum"][hard] - ious["grpo"][hard]
        out["hard_split_curriculum_minus_grpo"] = float(diff.mean())
        out["se_hard_split_curriculum_minus_grpo_paired"] = se(diff)
    out["grpo_train_wall_s"] = grpo_result["train_wall_s"]
    out["grpo_curriculum_train_wall_s"] = cur_result["train_wall_s"]
    if "sft_continued" in arms:
        out["sft_continued_steps"] = steps
        out["sft_continued_train_wall_s"] = continued_wall
    out["targets"] = {"grpo_lift_ge_0.03": out["grpo_lift"] >= 0.03,
                      "curriculum_beats_grpo_on_hard": bool(out.get("hard_split_curriculum_minus_grpo", 0) > 0)}
    out["wall_s"] = time.time() - t0

    dest = write_result("grpo_synthetic_smoke" if a.smoke else "grpo_synthetic", out)
    print_metrics(out)
    print(f"\nwrote {dest}")
    return out


if __name__ == "__main__":
    main()
