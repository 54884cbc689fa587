"""Cold-start SFT from scratch on the synthetic world: does the tiny Qwen2.5-VL learn to ground?

    python benchmarks/sft_synthetic.py                 # full measurement (recipe defaults, >= 500 held-out)
    python benchmarks/sft_synthetic.py --max_steps 50  # any recipe flag overrides

The world is its own (runs/bench/world: 4,000 samples, 600 held-out; override with --synthetic_dir), generated
before the clock starts: ``wall_s`` is training plus the before/after evals, ``world_gen_s`` is reported apart.

Writes benchmarks/results/sft_synthetic.json with miou_before, miou_after, r1_05_after,
format_rate_after, baseline_mean_span_miou, baseline_whole_video_miou, wall_s, peak_rss_mb, and keeps
the checkpoint (runs/sft/checkpoint-final by default) for the GRPO benchmark.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from harness import ROOT, print_metrics, write_result  # noqa: E402  (puts the repository on sys.path)

from trl import ModelConfig  # noqa: E402

from vtg_rl.training.world import ensure_synthetic_world  # noqa: E402
from vtg_rl.mllm.recipe_common import load_split  # noqa: E402
from vtg_rl.training.config import parse_recipe_args  # noqa: E402
from vtg_rl.mllm.sft import VideoSFTConfig  # noqa: E402
from vtg_rl.mllm.sft_recipe import SFTScriptArguments, run_sft  # noqa: E402
from vtg_rl.spans import temporal_iou  # noqa: E402


def baselines(train, test) -> dict[str, float]:
    """Answer-free baselines: the train set's mean normalised span, and the whole video."""
    frac = np.array([[w[0] / s.duration, w[1] / s.duration] for s in train for w in s.windows[:1]])
    mean_start, mean_end = frac.mean(0)

    def miou(pred_fn):
        return float(np.mean([np.max(temporal_iou(np.array(pred_fn(s))[None], np.array(s.windows))) for s in test]))

    return {
        "baseline_mean_span_miou": miou(lambda s: [mean_start * s.duration, mean_end * s.duration]),
        "baseline_whole_video_miou": miou(lambda s: [0.0, s.duration]),
    }


BENCH_WORLD_DIR = "runs/bench/world"
MIN_EVAL_SAMPLES = 500  # 100 held-out samples give +-0.035 mIoU (standard error)


def main() -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if script_uses_default_world(sys.argv[1:]):
        sys.argv[1:1] = ["--synthetic_dir", BENCH_WORLD_DIR]
    script_args, training_args, model_args = parse_recipe_args(
        (SFTScriptArguments, VideoSFTConfig, ModelConfig), str(ROOT / "recipes/configs/sft_synthetic.yaml"))
    t_world = time.time()
    if script_args.dataset == "synthetic":
        ensure_synthetic_world(script_args.synthetic_dir, script_args.synthetic_n, script_args.synthetic_seed,
                               script_args.synthetic_partial_rate)
    world_gen_s = time.time() - t_world
    test = load_split(script_args, "eval")
    if len(test) < MIN_EVAL_SAMPLES:
        logging.warning("only %d held-out samples in %s (500 or more give a standard error near 0.015; this needs >= %d): the mIoU is noisier",
                        len(test), script_args.synthetic_dir, MIN_EVAL_SAMPLES)
    load_before = os.getloadavg()
    t0 = time.time()
    result = run_sft(script_args, training_args, model_args)
    wall = time.time() - t0
    load_after = os.getloadavg()
    train = load_split(script_args, "train")
    out = {
        "miou_before": result.get("before", {}).get("miou"),
        "miou_after": result["after"]["miou"],
        "r1_05_after": result["after"]["r1_05"],
        "r1_07_after": result["after"]["r1_07"],
        "format_rate_after": result["after"]["format_rate"],
        "format_rate_before": result.get("before", {}).get("format_rate"),
        **baselines(train, test),
        "eval_samples": result["after"]["n"],
        "train_samples": result["train_samples"],
        "max_steps": training_args.max_steps,
        "checkpoint": str(Path(training_args.output_dir) / "checkpoint-final"),
        "wall_s": wall,
        "world_gen_s": world_gen_s,
        "train_wall_s": result["train_wall_s"],
        "train_s_per_step": result["train_wall_s"] / training_args.max_steps,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        # the machine is shared: wall times mean little without the load they were measured under
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in load_after],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    better = max(out["baseline_mean_span_miou"], out["baseline_whole_video_miou"])
    out["margin_over_best_baseline"] = out["miou_after"] - better
    dest = write_result("sft_synthetic", out)
    print_metrics(out)
    print(f"\nwrote {dest}")
    return out


def script_uses_default_world(argv: list[str]) -> bool:
    """True unless the command line names a world, a dataset or a config of its own."""
    return not any(a.split("=")[0] in ("--synthetic_dir", "--dataset", "--config") for a in argv)


if __name__ == "__main__":
    main()
