"""Data agents on a synthetic world with planted partial annotations.

    python benchmarks/agents_synthetic.py            # full: SFT checkpoint, 500-sample world, K=8
    python benchmarks/agents_synthetic.py --smoke    # plumbing only: tiny untrained model, 24 samples, K=2

The world (seed 1 by default, so its videos are not the SFT training videos) has ``partial_rate`` 0.2: a
fifth of the samples show their target twice with one occurrence annotated; the generator's truth says
which. Both agents run over the same samples with the same model:

* reflection: precision / recall of the flags against ``meta.partially_annotated``, at the chosen
  thresholds and, from the stored per-answer verification scores (no new rollouts), over a grid of
  ``min_verification`` x ``min_verified`` (``reflection_tradeoff``), next to agreement alone (``verify none``
  at each ``min_agreement``);
* difficulty: Spearman correlation of the estimated difficulty with the generator's ``true_difficulty``
  (over all samples, and over the fully annotated ones, where a second occurrence cannot confuse the IoU);
* samples_per_s: samples through *both* agents per wall second (K rollouts each).

Writes ``benchmarks/results/agents_synthetic.json`` (``--smoke``: ``agents_synthetic_smoke.json``) with
``reflection_precision``, ``reflection_recall``, ``difficulty_spearman``, ``samples_per_s`` and details.
Targets: precision and recall >= 0.8, Spearman >= 0.5.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from harness import RESULTS, ROOT as REPO  # noqa: E402  (offline settings, the repository on sys.path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runs/sft/checkpoint-final", help="grounding model (default: the SFT checkpoint)")
    p.add_argument("--world-dir", default="runs/data/synthetic_partial")
    p.add_argument("--n", type=int, default=500, help="world size (all splits are used)")
    p.add_argument("--seed", type=int, default=1, help="world seed (the SFT world is seed 0)")
    p.add_argument("--partial-rate", type=float, default=0.2)
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--num-rollouts", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--min-agreement", type=float, default=0.5)
    p.add_argument("--agreement-iou", type=float, default=0.5)
    p.add_argument("--max-overlap", type=float, default=0.2)
    p.add_argument("--verify", default="appearance", choices=["appearance", "none"])
    p.add_argument("--verify-features", default="vision", choices=["vision", "pixels"])
    p.add_argument("--min-verification", type=float, default=0.4)
    p.add_argument("--min-verified", type=float, default=0.3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out-dir", default="runs/bench/agents_synthetic")
    p.add_argument("--results", default=None,
                   help="result JSON (default benchmarks/results/agents_synthetic.json, _smoke.json with --smoke)")
    p.add_argument("--resume", action="store_true", help="keep earlier partial results (default: start fresh)")
    p.add_argument("--smoke", action="store_true", help="tiny untrained model, 24 samples, K=2 (plumbing only)")
    args = p.parse_args(argv)
    if args.smoke:
        args.n, args.num_rollouts, args.max_new_tokens = 24, 2, 32
        args.world_dir, args.out_dir = "runs/bench/agents_smoke/world", "runs/bench/agents_smoke/out"
        if not Path(args.model, "config.json").is_file():
            args.model = "runs/models/tiny_qwen"
    return args


def world_samples(args):
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.data.synthetic import SPLITS, generate_world

    paths = generate_world(args.world_dir, n=args.n, seed=args.seed, partial_rate=args.partial_rate, progress=True)
    samples = [s for split in SPLITS for s in read_jsonl(paths[split])]
    return samples[: args.max_samples] if args.max_samples else samples


def resolve_model(path: str) -> str:
    if Path(path, "config.json").is_file():
        return path
    if os.path.normpath(path) == os.path.normpath("runs/models/tiny_qwen"):
        from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

        return str(build_tiny_qwen2_5_vl(path, seed=0))
    sys.exit(f"error: {path}: no model checkpoint (config.json). Train it with `accelerate launch recipes/sft.py`, "
             f"pass --model DIR, or run with --smoke")


def reflection_tradeoff(samples, partial_path, config) -> dict:
    """Precision / recall of the reflection flags over threshold grids, recomputed from the per-answer
    records of the run (the K windows, outside flags and verification scores), without new rollouts."""
    import dataclasses

    from vtg_rl.agents.reflection import reflect_on_predictions, reflection_truth_metrics
    from vtg_rl.agents.runner import read_partial

    records, _ = read_partial(partial_path)
    done = [s for s in samples if s.qid in records]
    k = config.num_rollouts

    def point(cfg, **extra):
        flagged = {s.qid for s in done
                   if reflect_on_predictions(records[s.qid]["windows"], s.windows, cfg,
                                             records[s.qid].get("verification_scores"))["flagged"]}
        m = reflection_truth_metrics(done, flagged)
        return {**extra, "precision": m["precision"], "recall": m["recall"], "tp": m["tp"], "fp": m["fp"]}

    out = {"agreement_only": [point(dataclasses.replace(config, verify="none", min_agreement=j / k),
                                    min_agreement=round(j / k, 4)) for j in range(1, k + 1)]}
    if config.verify != "none":
        out["verified"] = [point(dataclasses.replace(config, min_verification=t, min_verified=j / k),
                                 min_verification=t, min_verified=round(j / k, 4))
                           for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7) for j in range(1, k + 1)]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    from vtg_rl.agents.common import finite_or_none, load_generator, spearman, write_json_atomic
    from vtg_rl.agents.difficulty import DifficultyConfig, DifficultyEstimationAgent
    from vtg_rl.agents.reflection import BoundaryReflectionAgent, ReflectionConfig

    model = resolve_model(args.model)
    samples = world_samples(args)
    out = Path(args.out_dir)
    if out.exists() and not args.resume:
        shutil.rmtree(out)
    common = dict(num_rollouts=args.num_rollouts, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    rcfg = ReflectionConfig(agreement_iou=args.agreement_iou, min_agreement=args.min_agreement,
                            max_overlap=args.max_overlap, verify=args.verify, verify_features=args.verify_features,
                            min_verification=args.min_verification, min_verified=args.min_verified, **common)
    dcfg = DifficultyConfig(**common)

    gen = load_generator(model, rcfg, device=args.device)
    t0 = time.perf_counter()
    refl = BoundaryReflectionAgent(gen, rcfg, model_name=model).run(samples, out / "reflect" / "data.clean.jsonl")
    t_refl = time.perf_counter() - t0
    dgen = gen.with_config(dcfg)  # the same loaded model with the difficulty agent's settings
    t0 = time.perf_counter()
    diff = DifficultyEstimationAgent(dgen, dcfg, model_name=model).run(samples, out / "difficulty" / "data.jsonl")
    t_diff = time.perf_counter() - t0

    from vtg_rl.data.schema import read_jsonl

    from vtg_rl.agents.runner import partial_path_for

    tradeoff = reflection_tradeoff(samples, partial_path_for(out / "reflect" / "data.clean.jsonl"), rcfg)
    scored = read_jsonl(out / "difficulty" / "data.jsonl")
    clean = [s for s in scored if not s.meta["partially_annotated"]]
    truth = refl.get("truth") or {}
    result = {
        "reflection_precision": truth.get("precision"),
        "reflection_recall": truth.get("recall"),
        "difficulty_spearman": diff.get("spearman_vs_true_difficulty"),
        "difficulty_spearman_fully_annotated": finite_or_none(spearman([s.meta["difficulty"] for s in clean],
                                                        [s.meta["true_difficulty"] for s in clean])),
        "samples_per_s": len(samples) / (t_refl + t_diff),
        "reflection_samples_per_s": len(samples) / t_refl, "difficulty_samples_per_s": len(samples) / t_diff,
        "reflection_truth": truth, "reflection_flagged_rate": refl["flagged_rate"],
        "reflection_flagged_by_agreement": refl["n_flagged_by_agreement"], "reflection_tradeoff": tradeoff,
        "difficulty_mean": diff["difficulty_mean"], "zero_shot_iou_mean": diff["zero_shot_iou_mean"],
        "all_miss_fraction": diff["all_miss_fraction"], "malformed_rate": diff["malformed_rate"],
        "n_samples": len(samples), "n_partial": truth.get("partial"), "skipped": refl["n_skipped"] + diff["n_skipped"],
        "generations": gen.generations + dgen.generations, "wall_s": t_refl + t_diff,
        "model": model, "world": {"dir": args.world_dir, "n": args.n, "seed": args.seed,
                                  "partial_rate": args.partial_rate},
        "config": {"reflection": rcfg.results_key(), "difficulty": dcfg.results_key()},
        "device": str(gen.model.device), "torch_threads": __import__("torch").get_num_threads(),
        "machine": platform.machine(), "smoke": args.smoke,
    }
    results = Path(args.results or RESULTS / ("agents_synthetic_smoke.json" if args.smoke else "agents_synthetic.json"))
    write_json_atomic(results, result)
    rows = [("reflection precision", result["reflection_precision"], ">= 0.8"),
            ("reflection recall", result["reflection_recall"], ">= 0.8"),
            ("difficulty Spearman (all)", result["difficulty_spearman"], ">= 0.5"),
            ("difficulty Spearman (fully annotated)", result["difficulty_spearman_fully_annotated"], ""),
            ("samples / s (both agents)", result["samples_per_s"], ""),
            ("flagged rate", result["reflection_flagged_rate"], f"planted {args.partial_rate}"),
            ("zero-shot mIoU (K rollouts)", result["zero_shot_iou_mean"], "")]
    print(f"\nagents on {len(samples)} synthetic samples ({result['n_partial']} partially annotated), "
          f"K={args.num_rollouts}, model {model}")
    for label, value, target in rows:
        shown = "n/a" if value is None or value != value else f"{value:.3f}"
        print(f"  {label:<40} {shown:>8}  {target}")
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    print("reflection trade-off, agreement alone (min_agreement: precision / recall): " + ", ".join(
        f"{p['min_agreement']:.2f}: {fmt(p['precision'])}/{fmt(p['recall'])}" for p in tradeoff["agreement_only"]))
    for t in sorted({p["min_verification"] for p in tradeoff.get("verified", [])}):
        print(f"  verified, min_verification {t:.1f} (min_verified: precision / recall): " + ", ".join(
            f"{p['min_verified']:.2f}: {fmt(p['precision'])}/{fmt(p['recall'])}"
            for p in tradeoff["verified"] if p["min_verification"] == t))
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
