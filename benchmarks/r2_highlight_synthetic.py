"""R2-Tuning on the synthetic summarisation (TVSum-like) and highlight-only (YouTube Highlights-like) worlds,
against a random-score baseline on the same held-out split.

    python benchmarks/r2_highlight_synthetic.py            # full measurement (the two synthetic_* R2 configs)
    python benchmarks/r2_highlight_synthetic.py --smoke    # plumbing only: small worlds, a few steps

For each task it trains one R2-Tuning adapter on all domains (the query names the category / target),
scores the test split with the task's protocol (``tvsum``: top-5 mAP, ``youtube_highlight``: mAP; both the
mean over domains, :mod:`vtg_rl.metrics.summarization`), and scores random per-clip saliency on the same
split (mean of ``--random_draws`` seeds). With ``--per_domain`` it also trains one adapter per domain
(the papers' protocol), each with the same number of steps.

Writes ``benchmarks/results/r2_highlight_synthetic.json``: ``summarization_top5_map``,
``summarization_top5_map_random``, ``highlight_map``, ``highlight_map_random`` (percent),
``summarization_per_domain`` / ``highlight_per_domain`` (``{domain: {"r2", "random", "num_videos"}}``),
the spread of the random baseline, wall time per stage, the whole run's wall and CPU time (rendering
workers included), threads, the load average before and after, and the run's sizes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"summarization": ROOT / "recipes" / "configs" / "r2_tuning_synthetic_summarization.yaml",
           "highlight": ROOT / "recipes" / "configs" / "r2_tuning_synthetic_highlight.yaml"}
RESULT = ROOT / "benchmarks" / "results" / "r2_highlight_synthetic.json"
#: result key of each task's headline number
HEADLINE = {"summarization": "summarization_top5_map", "highlight": "highlight_map"}


def random_rows(samples, seed: int) -> list[dict]:
    """Uniformly random saliency, one score per labelled clip."""
    rng = np.random.default_rng(seed)
    return [{"qid": s.qid, "pred_saliency_scores": rng.uniform(size=len(s.clip_labels)).round(6).tolist()}
            for s in samples]


def random_baseline(samples, protocol: str, draws: int) -> dict:
    """Mean (and spread) over ``draws`` random scorings of the overall and per-domain numbers."""
    from vtg_rl.metrics import evaluate

    briefs = [evaluate(random_rows(samples, seed), samples, protocol=protocol)["brief"] for seed in range(draws)]
    return {k: {"mean": round(float(np.mean([b[k] for b in briefs])), 2),
                "std": round(float(np.std([b[k] for b in briefs])), 2)} for k in briefs[0]}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the rendering workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def parse_config(task: str, args, extra: list[str]):
    from trl import TrlParser

    from vtg_rl.heads.r2_tuning.trainer import R2TuningConfig

    overrides = ["--output_dir", f"{args.output_dir}/{task}", "--disable_tqdm", "true", "--save_strategy", "no",
                 "--eval_strategy", "no", "--report_to", "none"]
    if args.smoke:
        overrides += ["--max_steps", "10", "--synthetic_n", "40",
                      "--synthetic_dir", f"{args.output_dir}/smoke_data/{task}",
                      "--feature_root", f"{args.output_dir}/smoke_features/{task}"]
    if args.max_steps is not None:
        overrides += ["--max_steps", str(args.max_steps)]
    (cfg,) = TrlParser((R2TuningConfig,)).parse_args_and_config(["--config", str(CONFIGS[task]), *overrides, *extra])
    return cfg


def run_task(task: str, args) -> dict:
    from vtg_rl.heads.r2_tuning.features import R2FeatureDataset
    from vtg_rl.heads.r2_tuning.recipe import build_r2_datasets, run_r2_tuning

    cfg = parse_config(task, args, [])
    t0 = time.perf_counter()
    train_ds, eval_ds, clip_params = build_r2_datasets(cfg)
    t_data = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = run_r2_tuning(cfg, (train_ds, eval_ds, clip_params))
    t_train = time.perf_counter() - t1
    brief = metrics["eval"]
    random = random_baseline(eval_ds.samples, cfg.eval_protocol, args.random_draws)
    counts = {}
    for s in eval_ds.samples:
        counts[s.meta["domain"]] = counts.get(s.meta["domain"], 0) + 1
    domains = sorted(counts)
    out = {
        HEADLINE[task]: brief["mAP"], f"{HEADLINE[task]}_random": random["mAP"]["mean"],
        f"{HEADLINE[task]}_random_std": random["mAP"]["std"],
        f"{task}_per_domain": {d: {"r2": brief[d], "random": random[d]["mean"], "num_videos": counts[d]}
                               for d in domains},
        f"{task}_protocol": cfg.eval_protocol, f"{task}_num_train": len(train_ds), f"{task}_num_eval": len(eval_ds),
        f"{task}_max_steps": cfg.max_steps, f"{task}_trainable_params": metrics["trainable_params"],
        f"{task}_trainable_fraction": round(metrics["trainable_fraction"], 4),
        f"{task}_data_seconds": round(t_data, 1), f"{task}_train_and_eval_seconds": round(t_train, 1),
    }
    if args.per_domain:
        t2 = time.perf_counter()
        per = {}
        for d in domains:
            dcfg = parse_config(task, args, ["--domain", d, "--output_dir", f"{args.output_dir}/{task}_{d}"])
            keep = [s for s in train_ds.samples if s.meta["domain"] == d]
            held = [s for s in eval_ds.samples if s.meta["domain"] == d]
            dm = run_r2_tuning(dcfg, (R2FeatureDataset(keep, train_ds.root), R2FeatureDataset(held, eval_ds.root),
                                      clip_params))
            per[d] = dm["eval"]["mAP"]
            out[f"{task}_per_domain"][d]["r2_domain_model"] = per[d]
        out[f"{HEADLINE[task]}_domain_models"] = round(float(np.mean(list(per.values()))), 2)
        out[f"{task}_domain_models_seconds"] = round(time.perf_counter() - t2, 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="small worlds and a few steps, to check the plumbing")
    ap.add_argument("--max_steps", type=int, default=None, help="supervised steps per model (default: the configs')")
    ap.add_argument("--tasks", default="summarization,highlight", help="comma-separated subset")
    ap.add_argument("--per_domain", action="store_true", help="also train one adapter per domain")
    ap.add_argument("--random_draws", type=int, default=10, help="seeds of the random-score baseline")
    ap.add_argument("--output_dir", default="runs/bench/r2_highlight_synthetic")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = ap.parse_args(argv)

    import importlib

    import torch

    # every module up front: a long run then never imports a file that is being edited meanwhile
    for module in ("vtg_rl.heads.r2_tuning.recipe", "vtg_rl.metrics"):
        importlib.import_module(module)

    torch.set_num_threads(args.threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    result: dict = {}
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for task in tasks:
        if task not in CONFIGS:
            ap.error(f"--tasks: {task!r} is not one of {sorted(CONFIGS)}")
        result.update(run_task(task, args))
    result.update({
        "wall_seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(cpu_seconds(), 1),
        "threads": args.threads, "cpus": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "random_draws": args.random_draws, "per_domain": args.per_domain, "smoke": args.smoke,
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.machine(),
    })
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")

    print("R2-Tuning on the synthetic clip-label worlds (test split; percent, mean over domains)")
    for task in tasks:
        key = HEADLINE[task]
        print(f"{key:<24} R2 {result[key]:6.2f}   random {result[f'{key}_random']:6.2f} "
              f"(+- {result[f'{key}_random_std']:.2f})" +
              (f"   one model per domain {result[f'{key}_domain_models']:6.2f}" if args.per_domain else ""))
        for d, v in result[f"{task}_per_domain"].items():
            print(f"  {d:<12} R2 {v['r2']:6.2f}   random {v['random']:6.2f}   ({v['num_videos']} videos)")
    print(f"wall {result['wall_seconds']} s (CPU {result['cpu_seconds']} s), {args.threads} thread(s), "
          f"load {load_before} -> {result['load_average_after']}; wrote {RESULT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
