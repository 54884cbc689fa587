"""VideoTG-R1's headline on the synthetic world: full-data GRPO vs agents + curriculum on a 10% subset.

    python benchmarks/data_efficiency.py                 # full measurement (long on CPU: see --agent-pool)
    python benchmarks/data_efficiency.py --smoke         # plumbing only: 40 samples, a few steps

VideoTG-R1 reports that with 10% of the training samples and 21% of the compute, GRPO on data cleaned by the
Boundary Reflection Agent, chosen with the Difficulty Estimation Agent and trained with the curriculum,
beats GRPO on the full data. Both arms start from the same cold-start SFT checkpoint:

* **full**: ``recipes/grpo.py`` on the whole (uncleaned, 20% partially annotated) train split, ``--full-steps``
  optimizer steps, no curriculum;
* **videotg**: reflection (with its default appearance verification) over the train split (or a random
  ``--agent-pool`` fraction of it) drops flagged samples, the difficulty agent scores the rest, :func:`select_training_subset` draws 10% of the train size
  (leaving out the too-easy ones), and ``recipes/grpo.py --curriculum`` trains on that subset for
  ``--subset-step-fraction`` of the full arm's steps;
* **control** (``random_subset``): a random subset of the same size, same steps, no agents, no curriculum,
  which says whether the agents matter or any small subset does as well.

Held-out evaluation (greedy, ``--max-eval-samples`` test samples) is against the generator's *whole* truth:
the test windows are every true occurrence (so a partially annotated test sample does not punish a correct
answer). Compute is reported as optimizer steps x generations (GRPO), the agents' generations separately,
and wall seconds. Writes ``benchmarks/results/data_efficiency.json`` (``--smoke``: ``data_efficiency_smoke.json``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import RESULTS, ROOT as REPO  # noqa: E402  (offline settings, the repository on sys.path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runs/sft/checkpoint-final", help="cold-start SFT checkpoint both arms start from")
    p.add_argument("--world-dir", default="runs/data/synthetic_efficiency")
    p.add_argument("--n", type=int, default=2000, help="world size: 70%% train, 5%% val, 25%% test")
    p.add_argument("--seed", type=int, default=2, help="world seed (the SFT world is seed 0)")
    p.add_argument("--partial-rate", type=float, default=0.2)
    p.add_argument("--full-steps", type=int, default=350, help="GRPO steps of the full-data arm (~1 epoch)")
    p.add_argument("--subset-fraction", type=float, default=0.1, help="subset size / train size")
    p.add_argument("--subset-step-fraction", type=float, default=0.21,
                   help="GRPO steps of the subset arm / steps of the full arm (the claim's compute share)")
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--agent-pool", type=float, default=1.0,
                   help="fraction of the train split the agents scan (1.0 = all, as in the paper)")
    p.add_argument("--num-rollouts", type=int, default=8, help="K of both agents")
    p.add_argument("--agent-batch-size", type=int, default=4)
    p.add_argument("--min-difficulty", type=float, default=0.1)
    p.add_argument("--max-eval-samples", type=int, default=500)
    p.add_argument("--grpo-config", default="recipes/configs/grpo_synthetic.yaml")
    p.add_argument("--out-dir", default="runs/bench/data_efficiency")
    p.add_argument("--no-random-control", dest="random_control", action="store_false",
                   help="skip the control arm (a random subset of the same size and steps, no agents, no curriculum)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--grpo-args", nargs=argparse.REMAINDER, default=[],
                   help="extra flags passed to both recipes/grpo.py runs (put last)")
    args = p.parse_args(argv)
    if args.smoke:
        args.n, args.full_steps, args.num_rollouts, args.max_eval_samples = 40, 4, 2, 8
        args.prompts_per_step, args.num_generations = 2, 2
        args.world_dir, args.out_dir = "runs/bench/efficiency_smoke/world", "runs/bench/efficiency_smoke/out"
        args.grpo_args = ["--max_completion_length", "32", "--logging_steps", "1", *args.grpo_args]
        if not Path(args.model, "config.json").is_file():
            args.model = "runs/models/tiny_qwen"
    return args


def make_world(args):
    """The world, and a held-out file whose windows are every true occurrence."""
    from vtg_rl.data.schema import read_jsonl, write_jsonl
    from vtg_rl.data.synthetic import generate_world

    paths = generate_world(args.world_dir, n=args.n, seed=args.seed, partial_rate=args.partial_rate,
                           split_fractions=(0.7, 0.05, 0.25), progress=True)
    test = read_jsonl(paths["test"])[: args.max_eval_samples]
    for s in test:
        s.windows = [list(map(float, o)) for o in s.meta["occurrences"]]
    truth = Path(args.world_dir) / "test.all_occurrences.jsonl"
    write_jsonl(test, truth)
    return paths["train"], truth, len(test)


def run_grpo(args, name: str, train: Path, heldout: Path, steps: int, curriculum: bool, eval_before: bool) -> dict:
    """One ``recipes/grpo.py`` run in a subprocess (as a user runs it); returns its metrics.json."""
    import json

    out = Path(args.out_dir) / name
    cmd = [sys.executable, "recipes/grpo.py", "--config", args.grpo_config, "--model_name_or_path", args.model,
           "--dataset", "unified", "--dataset_path", str(train), "--eval_path", str(heldout),
           "--max_eval_samples", str(args.max_eval_samples), "--output_dir", str(out),
           "--max_steps", str(steps), "--num_generations", str(args.num_generations),
           "--per_device_train_batch_size", str(args.prompts_per_step * args.num_generations),
           "--curriculum", str(curriculum).lower(), "--eval_before", str(eval_before).lower(),
           "--save_steps", str(10 ** 6), *args.grpo_args]
    log = Path(args.out_dir) / f"{name}.log"
    print(f"[{name}] {' '.join(cmd)}\n    log: {log}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"[{name}] recipes/grpo.py failed (exit {rc}); last lines of {log}:\n{tail}")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["process_wall_s"] = time.perf_counter() - t0
    return metrics


def random_subset(args, train: Path, n: int) -> Path:
    """The control: ``n`` samples drawn at random from the raw train split (no agents)."""
    import numpy as np

    from vtg_rl.data.schema import read_jsonl, write_jsonl

    samples = read_jsonl(train)
    idx = sorted(np.random.default_rng(args.seed + 1).choice(len(samples), size=n, replace=False).tolist())
    path = Path(args.out_dir) / "random_subset.jsonl"
    write_jsonl([samples[i] for i in idx], path)
    return path


def run_agents(args, train: Path) -> tuple[Path, dict]:
    """Reflection -> difficulty -> subset on the train split; returns (subset jsonl, report)."""
    import numpy as np

    from vtg_rl.agents.common import load_generator
    from vtg_rl.agents.difficulty import DifficultyConfig, DifficultyEstimationAgent, select_training_subset
    from vtg_rl.agents.reflection import BoundaryReflectionAgent, ReflectionConfig
    from vtg_rl.data.schema import read_jsonl, write_jsonl

    samples = read_jsonl(train)
    n_subset = max(1, round(args.subset_fraction * len(samples)))
    if args.agent_pool < 1.0:
        rng = np.random.default_rng(args.seed)
        keep = sorted(rng.choice(len(samples), size=max(n_subset, round(args.agent_pool * len(samples))),
                                 replace=False).tolist())
        samples = [samples[i] for i in keep]
    out = Path(args.out_dir) / "agents"
    common = dict(num_rollouts=args.num_rollouts, batch_size=args.agent_batch_size)
    rcfg, dcfg = ReflectionConfig(**common), DifficultyConfig(**common)
    gen = load_generator(args.model, rcfg)
    t0 = time.perf_counter()
    refl = BoundaryReflectionAgent(gen, rcfg, model_name=args.model).run(samples, out / "train.clean.jsonl")
    dgen = gen.with_config(dcfg)
    diff = DifficultyEstimationAgent(dgen, dcfg, model_name=args.model).run(
        read_jsonl(out / "train.clean.jsonl"), out / "train.difficulty.jsonl")
    subset, report = select_training_subset(read_jsonl(out / "train.difficulty.jsonl"), n_subset,
                                            min_difficulty=args.min_difficulty, seed=args.seed)
    wall = time.perf_counter() - t0
    path = out / "train.subset.jsonl"
    write_jsonl(subset, path)
    partial_left = sum(bool(s.meta.get("partially_annotated")) for s in subset)
    return path, {"agent_wall_s": wall, "agent_generations": gen.generations + dgen.generations,
                  "scanned": len(samples), "flagged": refl["n_flagged"], "reflection_truth": refl.get("truth"),
                  "flagged_by_agreement": refl["n_flagged_by_agreement"], "reflection_config": rcfg.results_key(),
                  "difficulty_spearman": diff.get("spearman_vs_true_difficulty"), "subset": report,
                  "subset_partial_fraction": partial_left / max(len(subset), 1)}


def paired_difference(heldout: Path, sub_a: Path, sub_b: Path) -> dict:
    """Mean and paired standard error of per-sample top-1 IoU differences (b - a) on the held-out set."""
    import json

    import numpy as np

    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.spans import temporal_iou

    truth = {s.qid: np.asarray(s.windows, dtype=np.float64) for s in read_jsonl(heldout)}

    def ious(path: Path) -> dict:
        out = {}
        for line in path.read_text().splitlines():
            row = json.loads(line)
            top = np.asarray(row["pred_relevant_windows"][0][:2], dtype=np.float64)
            out[str(row["qid"])] = float(np.max(temporal_iou(top[None], truth[str(row["qid"])])))
        return out

    a, b = ious(sub_a), ious(sub_b)
    diff = np.array([b[q] - a[q] for q in a if q in b])
    return {"mean": float(diff.mean()), "se_paired": float(diff.std(ddof=1) / np.sqrt(len(diff))), "n": len(diff)}


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    from vtg_rl.agents.common import write_json_atomic

    if not Path(args.model, "config.json").is_file():
        if os.path.normpath(args.model) != os.path.normpath("runs/models/tiny_qwen"):
            sys.exit(f"error: {args.model}: no SFT checkpoint. Run `accelerate launch recipes/sft.py` first, "
                     f"pass --model DIR, or use --smoke")
        from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

        build_tiny_qwen2_5_vl(args.model, seed=0)
    if Path(args.out_dir).exists():
        shutil.rmtree(args.out_dir)
    Path(args.out_dir).mkdir(parents=True)
    train, heldout, n_eval = make_world(args)
    subset_path, agents = run_agents(args, train)
    subset_steps = max(1, round(args.subset_step_fraction * args.full_steps))
    full = run_grpo(args, "full", train, heldout, args.full_steps, curriculum=False, eval_before=True)
    sub = run_grpo(args, "videotg_subset", subset_path, heldout, subset_steps, curriculum=True, eval_before=False)
    control = None
    if args.random_control:
        control = run_grpo(args, "random_subset", random_subset(args, train, agents["subset"]["selected"]), heldout,
                           subset_steps, curriculum=False, eval_before=False)

    per_step = args.prompts_per_step * args.num_generations
    gen_full, gen_sub = full["steps"] * per_step, sub["steps"] * per_step
    result = {
        "miou_sft": full["before"]["miou"], "miou_full_grpo": full["after"]["miou"],
        "miou_videotg_subset": sub["after"]["miou"],
        "r1_05_full_grpo": full["after"]["r1_05"], "r1_05_videotg_subset": sub["after"]["r1_05"],
        "subset_beats_full": sub["after"]["miou"] > full["after"]["miou"],
        "miou_subset_minus_full": paired_difference(
            heldout, Path(args.out_dir) / "full" / "eval_after_submission.jsonl",
            Path(args.out_dir) / "videotg_subset" / "eval_after_submission.jsonl"),
        "train_samples_full": full["data"]["train_rows"], "train_samples_subset": sub["data"]["train_rows"],
        "steps_full": full["steps"], "steps_subset": sub["steps"],
        "compute_full_generations": gen_full, "compute_subset_generations": gen_sub,
        "compute_agent_generations": agents["agent_generations"],
        "compute_ratio_training": gen_sub / gen_full,
        "compute_ratio_with_agents": (gen_sub + agents["agent_generations"]) / gen_full,
        "wall_s_full": full["train_wall_s"], "wall_s_subset": sub["train_wall_s"],
        "wall_s_agents": agents["agent_wall_s"],
        "wall_ratio_training": sub["train_wall_s"] / full["train_wall_s"],
        "wall_ratio_with_agents": (sub["train_wall_s"] + agents["agent_wall_s"]) / full["train_wall_s"],
        "eval_samples": n_eval, "agents": agents, "model": args.model,
        "settings": {k: v for k, v in vars(args).items()}, "smoke": args.smoke,
        "eval_full": full["after"], "eval_subset": sub["after"], "eval_sft": full["before"],
    }
    if control is not None:
        result["miou_random_subset"] = control["after"]["miou"]
        result["eval_random_subset"] = control["after"]
        result["wall_s_random_subset"] = control["train_wall_s"]
        result["miou_subset_minus_random"] = paired_difference(
            heldout, Path(args.out_dir) / "random_subset" / "eval_after_submission.jsonl",
            Path(args.out_dir) / "videotg_subset" / "eval_after_submission.jsonl")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "data_efficiency_smoke.json" if args.smoke else "data_efficiency.json"
    write_json_atomic(RESULTS / name, result)
    print(f"\nheld-out mIoU on {n_eval} test samples (windows = every true occurrence), start {args.model}")
    print(f"  {'arm':<34}{'mIoU':>7}{'R1@0.5':>8}{'samples':>9}{'steps':>7}{'gens':>9}{'wall s':>9}")
    print(f"  {'SFT start':<34}{result['miou_sft']:>7.3f}{full['before']['r1_05']:>8.3f}")
    for label, ev, n, steps, gens, wall in (
            ("GRPO, full data", full["after"], result["train_samples_full"], full["steps"], gen_full,
             full["train_wall_s"]),
            ("agents + curriculum, 10% subset", sub["after"], result["train_samples_subset"], sub["steps"], gen_sub,
             sub["train_wall_s"])):
        print(f"  {label:<34}{ev['miou']:>7.3f}{ev['r1_05']:>8.3f}{n:>9}{steps:>7}{gens:>9}{wall:>9.0f}")
    if control is not None:
        print(f"  {'control: random subset, no agents':<34}{control['after']['miou']:>7.3f}"
              f"{control['after']['r1_05']:>8.3f}{control['data']['train_rows']:>9}{control['steps']:>7}"
              f"{control['steps'] * per_step:>9}{control['train_wall_s']:>9.0f}")
    print(f"  agents: {agents['agent_generations']} generations, {agents['agent_wall_s']:.0f} s over "
          f"{agents['scanned']} samples ({agents['flagged']} flagged)")
    d = result["miou_subset_minus_full"]
    print(f"  subset - full mIoU: {d['mean']:+.3f} (paired SE {d['se_paired']:.3f}, n={d['n']})")
    print(f"  compute share of the subset arm: {result['compute_ratio_training']:.2f} (training), "
          f"{result['compute_ratio_with_agents']:.2f} (with the agents' rollouts); claim: 0.21")
    print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
