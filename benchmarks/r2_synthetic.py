"""R2-Tuning on the synthetic world: moment retrieval + highlight detection, before and after TPRL, against a
random-score baseline, with the trainable share of the parameters.

    python benchmarks/r2_synthetic.py              # full measurement (recipes/configs/r2_tuning_synthetic.yaml)
    python benchmarks/r2_synthetic.py --smoke      # plumbing only: a few steps

Writes ``benchmarks/results/r2_synthetic.json`` with ``r1_05, r1_07, map_avg, hd_hit1, hd_map`` (percent; HD at
the VeryGood level, the QVHighlights headline), the same after TPRL (``*_tprl``), the random-score baseline
(``random_*``: 10 uniformly random windows with random scores and random per-clip saliency, mean of 5 draws),
``trainable_params``, ``frozen_params`` (the frozen CLIP), ``peak_rss_mb``, and what the same adapter would be
on a ViT-B/32 CLIP (``trainable_fraction_clip_b32``, counted on the meta device: nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "recipes" / "configs" / "r2_tuning_synthetic.yaml"
RESULT = ROOT / "benchmarks" / "results" / "r2_synthetic.json"
KEYS = {"r1_05": "MR-full-R1@0.5", "r1_07": "MR-full-R1@0.7", "map_avg": "MR-full-mAP", "miou": "mIoU",
        "hd_hit1": "HL-min-VeryGood-Hit1", "hd_map": "HL-min-VeryGood-mAP"}


def random_rows(samples, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for s in samples:
        ends = np.sort(rng.uniform(0, s.duration, size=(10, 2)), axis=1)
        windows = [[float(a), float(b), float(c)] for (a, b), c in zip(ends, rng.uniform(size=10)) if b > a]
        n_clips = max(1, math.ceil(s.duration / 2.0 - 1e-6))
        rows.append({"qid": s.qid, "pred_relevant_windows": sorted(windows, key=lambda w: -w[2]),
                     "pred_saliency_scores": rng.uniform(size=n_clips).round(4).tolist()})
    return rows


def random_baseline(samples, draws: int = 5) -> dict:
    from vtg_rl.heads.predictions import score_predictions

    scores = [score_predictions(random_rows(samples, seed), samples) for seed in range(draws)]
    return {f"random_{k}": round(float(np.mean([s[v] for s in scores])), 2) for k, v in KEYS.items()}


def clip_b32_share(hidden_size: int = 256, num_clip_layers: int = 4) -> dict:
    """Trainable share of the adapter at the paper's scale (CLIP ViT-B/32, D = 256), counted without weights."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from vtg_rl.heads.r2_tuning.model import R2ModelConfig, R2Tuning

    with torch.device("meta"):
        clip = CLIPModel(CLIPConfig())  # CLIPConfig's defaults are ViT-B/32
        adapter = R2Tuning(R2ModelConfig(vision_dim=768, text_dim=512, hidden_size=hidden_size,
                                         num_clip_layers=num_clip_layers, num_heads=8))
    n_clip = sum(p.numel() for p in clip.parameters())
    n_adapter = sum(p.numel() for p in adapter.parameters())
    return {"trainable_params_clip_b32": n_adapter, "frozen_params_clip_b32": n_clip,
            "trainable_fraction_clip_b32": round(n_adapter / (n_adapter + n_clip), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few steps, to check the plumbing")
    ap.add_argument("--max_steps", type=int, default=None, help="supervised steps (default: the recipe's)")
    ap.add_argument("--tprl_steps", type=int, default=None, help="TPRL steps (default: the recipe's)")
    ap.add_argument("--output_dir", default="runs/bench/r2_synthetic")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = ap.parse_args(argv)

    import torch
    from trl import TrlParser

    from vtg_rl.heads.r2_tuning.recipe import build_r2_datasets, run_r2_tuning
    from vtg_rl.heads.r2_tuning.trainer import R2TuningConfig

    torch.set_num_threads(args.threads)
    overrides = ["--output_dir", args.output_dir, "--disable_tqdm", "true", "--save_strategy", "no"]
    if args.smoke:
        overrides += ["--max_steps", "10", "--tprl_max_steps", "4", "--eval_strategy", "no"]
    if args.max_steps is not None:
        overrides += ["--max_steps", str(args.max_steps)]
    if args.tprl_steps is not None:
        overrides += ["--tprl_max_steps", str(args.tprl_steps)]
    (cfg,) = TrlParser((R2TuningConfig,)).parse_args_and_config(["--config", str(CONFIG), *overrides])

    t0 = time.perf_counter()
    datasets = build_r2_datasets(cfg)
    t_features = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = run_r2_tuning(cfg, datasets)
    t_train = time.perf_counter() - t1
    eval_ds = datasets[1]

    result = {k: metrics["eval"][v] for k, v in KEYS.items()}
    if "tprl" in metrics:
        result.update({f"{k}_tprl": metrics["tprl"]["eval"][v] for k, v in KEYS.items()})
    result.update(random_baseline(eval_ds.samples))
    result.update({
        "trainable_params": metrics["trainable_params"], "frozen_params": metrics["frozen_params"],
        "trainable_fraction": round(metrics["trainable_fraction"], 4),
        "tprl_trainable_params": metrics.get("tprl", {}).get("trainable_params"),
        **clip_b32_share(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "num_train": len(datasets[0]), "num_eval": len(eval_ds), "eval_split": cfg.eval_split,
        "max_steps": cfg.max_steps, "tprl_max_steps": cfg.tprl_max_steps, "batch_size": cfg.per_device_train_batch_size,
        "hidden_size": cfg.hidden_size, "clip_len": cfg.clip_len, "threads": args.threads,
        "feature_seconds": round(t_features, 1), "train_and_eval_seconds": round(t_train, 1), "smoke": args.smoke,
    })
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")

    print(f"R2-Tuning on the synthetic world ({len(eval_ds)} held-out queries, {cfg.eval_split}); percent")
    print(f"{'metric':<10}{'random':>9}{'R2':>9}{'R2+TPRL':>10}")
    for k in KEYS:
        print(f"{k:<10}{result[f'random_{k}']:>9.2f}{result[k]:>9.2f}{result.get(f'{k}_tprl', float('nan')):>10.2f}")
    print(f"trainable {result['trainable_params']} / frozen {result['frozen_params']} "
          f"({100 * result['trainable_fraction']:.2f}%; on ViT-B/32 with D=256: "
          f"{100 * result['trainable_fraction_clip_b32']:.2f}%), peak RSS {result['peak_rss_mb']} MB, "
          f"features {result['feature_seconds']} s, train+eval {result['train_and_eval_seconds']} s")
    print(f"wrote {RESULT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
