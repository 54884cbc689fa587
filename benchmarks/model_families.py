"""Every video-LLM family through the same cold-start SFT on the synthetic world: which ones learn to ground?

    OMP_NUM_THREADS=1 python benchmarks/model_families.py        # full measurement (all five, hours on CPU)
    python benchmarks/model_families.py --families qwen3_vl,qwen3_5
    python benchmarks/model_families.py --steps 105 --batch-size 8  # a twentieth of the compute (~1 h)
    python benchmarks/model_families.py --quick                   # plumbing only: 2 families, a few steps
    python benchmarks/model_families.py --merge a.json b.json     # one result from runs split across processes

Families are independent, so on a machine with idle cores the run can be split: one process per group of
families (``--families ... --out part.json``), each with one thread, then ``--merge`` joins the parts into the
result file, refusing parts measured with different budgets, worlds or baselines.

Each family's tiny random checkpoint (``vtg_rl.models.tiny_families.build_tiny``, seed 0) is trained from
scratch with the same budget: the same world (runs/bench/world, as benchmarks/sft_synthetic.py: 4,000 samples,
600 held out), the same steps, batch, learning-rate schedule and trace targets. The training settings are those
of recipes/configs/sft_synthetic.yaml (lr 1e-3, warmup-stable-decay, bf16 autocast, easy-first pacing, 2 fps,
<= 64 frames), and by default its size too: 1,050 steps of batch 16, with which the recipe's Qwen2.5-VL reaches
mIoU ~0.5. Smaller ``--steps`` scale the warm-up and decay to the same fractions of the run (100 and 400 of
1,050 steps). At a twentieth of that compute (105 steps of batch 8) no family learns to ground: each settles on
a near-constant span.

Per family it reports:

* held-out mIoU, R1@0.5, R1@0.7 and format rate on ``--n-eval`` (>= 500) test samples after training, against the
  better of two answer-free baselines on the same samples (the train set's mean normalised span, the whole
  video; ``baselines`` of benchmarks/sft_synthetic.py); ``learns_grounding`` = mIoU >= better baseline + 0.10;
* a learning curve: mIoU on the first ``--n-curve`` of those samples at 1/3, 2/3 and 3/3 of the steps (the last
  point is read off the final evaluation, not generated again), its mean (area under the curve) and the first
  point that clears the better baseline + 0.10 on that subset;
* whether the answers follow the video at all: the correlation of predicted and true window centres, given the
  duration (``time_reading``; the predictions are kept in ``--work``/FAMILY/eval_predictions.jsonl);
* SFT seconds per step (training only: the curve evaluations are timed apart and taken out), tokens per training
  sample (non-padding tokens of the collator's batches: prompt with the video tokens + target);
* one GRPO step (rollout + loss + AdamW, as benchmarks/grpo_step.py: G completions per prompt, beta 0.04, frozen
  vision tower, float32) naive vs shared prefix on the SFT-trained model with the SFT video sampling:
  ``shared_prefix_step_ratio`` = shared / naive median step time, null (with the reason) where the library
  refuses shared prefix for the family;
* the family's time representation (``adapter.time_representation``), wall time, threads, load before / after.

Writes ``benchmarks/results/model_families.json`` (after every family, so a run cut short keeps what it
finished) and prints a table. Checkpoints stay under ``--work`` (runs/bench/model_families).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import time
import traceback
from pathlib import Path

from harness import RESULTS, ROOT, machine_record  # noqa: E402  (offline settings, the repository on sys.path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from grpo_step import constant_reward, one_step  # noqa: E402
from sft_synthetic import BENCH_WORLD_DIR, MIN_EVAL_SAMPLES, baselines  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from vtg_rl.data.schema import read_jsonl  # noqa: E402
from vtg_rl.mllm.collator import VideoSFTCollator  # noqa: E402
from vtg_rl.mllm.dataset import samples_to_hf  # noqa: E402
from vtg_rl.mllm.families import FAMILIES, UnsupportedFamilyFeature, adapter_for_model  # noqa: E402
from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer  # noqa: E402
from vtg_rl.mllm.inference import completion_to_window, generate_answers, score_completions  # noqa: E402
from vtg_rl.mllm.reasoning import target_for_sample  # noqa: E402
from vtg_rl.training.world import DEFAULT_WORLD_N, ensure_synthetic_world  # noqa: E402
from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer  # noqa: E402
from vtg_rl.models.tiny_families import TINY_FAMILIES, build_tiny  # noqa: E402
from vtg_rl.models.tiny_qwen import load_qwen_vl  # noqa: E402

RECIPE = ROOT / "recipes/configs/sft_synthetic.yaml"
RECIPE_STEPS, RECIPE_WARMUP, RECIPE_DECAY = 1050, 100, 400  # the recipe's schedule, scaled to --steps
DEFAULT_STEPS = RECIPE_STEPS
DEFAULT_BATCH = 16  # the recipe's
MARGIN = 0.10  # learns_grounding: mIoU at least this far above the better answer-free baseline
FULL = dict(families=list(TINY_FAMILIES), steps=DEFAULT_STEPS, n_eval=MIN_EVAL_SAMPLES, n_curve=64,
            batch_size=DEFAULT_BATCH, world_n=DEFAULT_WORLD_N, grpo_reps=2, grpo_prompts=2, grpo_generations=4,
            grpo_max_completion=64, eval_batch_size=None)
QUICK = dict(steps=4, n_eval=8, n_curve=4, batch_size=2, world_n=60, families=["qwen2_5_vl", "qwen3_vl"],
             grpo_reps=1, grpo_prompts=1, grpo_generations=2, grpo_max_completion=4, eval_batch_size=8)

logger = logging.getLogger("model_families")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=None, help="comma-separated (default: all five; --quick: two)")
    p.add_argument("--steps", type=int, default=None, help=f"SFT steps, the same for every family ({DEFAULT_STEPS})")
    p.add_argument("--batch-size", type=int, default=None, help=f"per-step batch ({DEFAULT_BATCH}, the recipe's)")
    p.add_argument("--n-eval", type=int, default=None, help=f"held-out samples of the final eval ({MIN_EVAL_SAMPLES})")
    p.add_argument("--n-curve", type=int, default=None, help="held-out samples of the 1/3 and 2/3 evals (64)")
    p.add_argument("--eval-batch-size", type=int, default=None, help="generation batch (default: the recipe's)")
    p.add_argument("--world", default=None, help=f"synthetic world folder, generated if missing ({BENCH_WORLD_DIR})")
    p.add_argument("--world-n", type=int, default=None, help="samples when the world is generated (4,000)")
    p.add_argument("--work", default="runs/bench/model_families", help="tiny checkpoints and SFT outputs")
    p.add_argument("--frame-cache", default=None, help="decoded-frame cache (default: the recipe's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine has 2 shared cores)")
    p.add_argument("--grpo-reps", type=int, default=None, help="timed GRPO steps per arm after one warm-up (2)")
    p.add_argument("--grpo-prompts", type=int, default=None, help="prompts per GRPO step (2)")
    p.add_argument("--grpo-generations", type=int, default=None, help="completions per prompt (4)")
    p.add_argument("--grpo-max-completion", type=int, default=None, help="completion tokens at most (64)")
    p.add_argument("--quick", action="store_true", help="smoke: 2 families, 4 steps, 8 eval samples, tiny world")
    p.add_argument("--merge", nargs="+", default=None, metavar="PART",
                   help="join result files of the same budget (each from a --families subset) into --out")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/model_families.json, "
                                                "model_families_quick.json with --quick)")
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else FULL).items():  # flags given on the command line win
        if getattr(args, k) is None:
            setattr(args, k, v)
    if isinstance(args.families, str):
        args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    if args.world is None:
        args.world = str(Path(args.work) / "world_quick") if args.quick else BENCH_WORLD_DIR
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        p.error(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {sorted(FAMILIES)}")
    if args.out is None:
        args.out = str(RESULTS / ("model_families_quick.json" if args.quick
                                                        else "model_families.json"))
    return args


def sft_config(args, out_dir: Path) -> VideoSFTConfig:
    """recipes/configs/sft_synthetic.yaml's training settings, with the schedule scaled to ``args.steps``."""
    recipe = yaml.safe_load(RECIPE.read_text())
    fields = set(VideoSFTConfig.__dataclass_fields__)
    kwargs = {k: v for k, v in recipe.items() if k in fields}
    warmup = max(1, round(args.steps * RECIPE_WARMUP / RECIPE_STEPS))
    decay = max(1, round(args.steps * RECIPE_DECAY / RECIPE_STEPS))
    kwargs.update(output_dir=str(out_dir), max_steps=args.steps, warmup_steps=warmup,
                  lr_scheduler_kwargs={**recipe.get("lr_scheduler_kwargs", {}), "num_decay_steps": decay},
                  save_strategy="no", report_to=[], logging_steps=max(1, args.steps // 12), disable_tqdm=True)
    if args.batch_size is not None:
        kwargs["per_device_train_batch_size"] = args.batch_size
    if args.frame_cache is not None:
        kwargs["frame_cache_dir"] = args.frame_cache
    return VideoSFTConfig(**kwargs)


class CountingCollator:
    """The SFT collator, counting the non-padding tokens of every training sample it builds."""

    def __init__(self, collator: VideoSFTCollator):
        self.collator, self.tokens = collator, []

    def __call__(self, rows):
        batch = self.collator(rows)
        self.tokens.extend(batch["attention_mask"].sum(1).tolist())
        return batch


class CurveCallback(TrainerCallback):
    """Greedy held-out eval on a subset at the given steps; its time is kept apart from the training time."""

    def __init__(self, at_steps, model, processor, samples, sampling, batch_size):
        self.at, self.model, self.processor = set(at_steps), model, processor
        self.samples, self.sampling, self.batch_size = samples, sampling, batch_size
        self.points, self.eval_s = [], 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.at:
            t0 = time.time()
            completions = generate_answers(self.model, self.processor, self.samples, sampling=self.sampling,
                                           batch_size=self.batch_size, progress=False, desc="curve")
            metrics = score_completions(self.samples, [c[0] for c in completions])
            self.eval_s += time.time() - t0
            self.points.append({"step": state.global_step, **rounded(metrics)})
            logger.info("step %d: curve mIoU %.4f (format %.3f) on %d samples", state.global_step,
                        metrics["miou"], metrics["format_rate"], len(self.samples))


def time_reading(samples, completions) -> dict:
    """Do the answers follow the video? Over the well-formed answers: the partial correlation, given the video's
    duration, of the predicted and the true window centre (seconds). Answers that depend on the duration only (one
    typical span, or the mean-span baseline) score ~0 whatever their mIoU; 1 is a perfect reading of time."""
    pred, true, dur = [], [], []
    for s, text in zip(samples, completions):
        w = completion_to_window(text, s.duration)
        if w is not None and s.windows:
            pred.append((w[0] + w[1]) / 2)
            true.append((s.windows[0][0] + s.windows[0][1]) / 2)
            dur.append(s.duration)
    out = {"answers": len(pred), "center_partial_corr": None, "pred_center_residual_std_s": None}
    if len(pred) < 5:
        return out
    x = np.stack([np.ones(len(dur)), np.asarray(dur)], 1)

    def residual(y):
        y = np.asarray(y, dtype=np.float64)
        return y - x @ np.linalg.lstsq(x, y, rcond=None)[0]

    rp, rt = residual(pred), residual(true)
    out["pred_center_residual_std_s"] = round(float(rp.std()), 4)
    if rp.std() > 1e-6 and rt.std() > 1e-6:
        out["center_partial_corr"] = round(float(np.corrcoef(rp, rt)[0, 1]), 4)
    return out


def rounded(d: dict, nd: int = 4) -> dict:
    return {k: round(v, nd) if isinstance(v, float) else v for k, v in d.items()}


def grpo_ratio(family: str, model_dir: Path, dataset, sft: VideoSFTConfig, args, work: Path) -> dict:
    """Median GRPO step time, shared prefix over naive, on the same batches (order alternating per rep)."""

    def trainer(shared: bool) -> VideoGRPOTrainer:
        model, processor = load_qwen_vl(model_dir)
        config = VideoGRPOConfig(
            output_dir=str(work / f"grpo_{'shared' if shared else 'naive'}"),
            per_device_train_batch_size=args.grpo_prompts * args.grpo_generations,
            num_generations=args.grpo_generations, max_completion_length=args.grpo_max_completion, temperature=1.0,
            beta=0.04, learning_rate=1e-6, bf16=False, use_cpu=True, report_to=[], save_strategy="no", seed=0,
            dataloader_num_workers=0, video_fps=sft.video_fps, video_max_frames=sft.video_max_frames,
            frame_cache_dir=sft.frame_cache_dir, freeze_vision_tower=True, shared_prefix=shared,
            reward_funcs=["constant_reward"])
        t = VideoGRPOTrainer(model=model, reward_funcs=[constant_reward], args=config, train_dataset=dataset,
                             processing_class=processor)
        t.model.train()
        t.current_gradient_accumulation_steps = 1
        t.bench_optimizer = torch.optim.AdamW([p for p in t.model.parameters() if p.requires_grad], lr=1e-6)
        return t

    try:
        shared = trainer(True)
    except UnsupportedFamilyFeature as e:  # the library refuses it at start-up: report why, time nothing
        return {"shared_prefix_step_ratio": None, "refused": str(e)}
    arms = {"naive": trainer(False), "shared": shared}
    rows = [dataset[i] for i in range(len(dataset))]
    g, p = args.grpo_generations, args.grpo_prompts
    times = {"naive": [], "shared": []}
    tokens = []
    for rep in range(args.grpo_reps + 1):  # rep 0 warms up
        batch = [rows[(rep * p + i) % len(rows)] for i in range(p) for _ in range(g)]
        for name in (("naive", "shared") if rep % 2 == 0 else ("shared", "naive")):
            torch.manual_seed(1000 + rep)
            r = one_step(arms[name], batch)
            if rep > 0:
                times[name].append(r["step_s"])
                tokens.append(r["completion_tokens"])
            logger.info("%s GRPO rep %d %s %.2f s (prompt %d tok, completion %.0f tok)", family, rep, name,
                        r["step_s"], r["prompt_tokens"], r["completion_tokens"])
    naive, shared_s = statistics.median(times["naive"]), statistics.median(times["shared"])
    return {"shared_prefix_step_ratio": round(shared_s / naive, 4), "naive_step_s": round(naive, 3),
            "shared_step_s": round(shared_s, 3), "naive_step_s_all": [round(x, 3) for x in times["naive"]],
            "shared_step_s_all": [round(x, 3) for x in times["shared"]],
            "completion_tokens_mean": round(statistics.mean(tokens), 1), "prompts": p, "generations": g,
            "max_completion_length": args.grpo_max_completion}


def run_family(family: str, args, train, test, curve_samples, floor: float) -> dict:
    work = Path(args.work) / family
    load_before = os.getloadavg()
    t_start = time.time()
    model_dir = build_tiny(family, Path(args.work) / f"tiny_{family}", seed=0)
    model, processor = load_qwen_vl(model_dir)
    adapter = adapter_for_model(model, processor)
    config = sft_config(args, work / "sft")
    eval_batch = args.eval_batch_size or yaml.safe_load(RECIPE.read_text()).get("eval_batch_size", 16)
    train_ds = samples_to_hf(train, target_fn=lambda s: target_for_sample(s, None))
    sampling = config.video_sampling()
    # decode every video once before the clock starts (the cache key is the family's sampling: families that
    # share a time grid and pixel factor share the entries), so no family's s/step pays for decoding
    t0 = time.time()
    family_sampling = sampling.for_family(adapter)
    if family_sampling.cache_dir:
        for s in train + test:
            family_sampling.load(s.video_path, qid=s.qid)
    frames_s = time.time() - t0
    collator = CountingCollator(VideoSFTCollator(processor, sampling=sampling,
                                                 max_completion_tokens=config.max_completion_tokens))
    at = sorted({max(1, round(args.steps * k / 3)) for k in (1, 2)} - {args.steps})
    curve = CurveCallback(at, model, processor, curve_samples, sampling, eval_batch)
    trainer = VideoSFTTrainer(model=model, args=config, train_dataset=train_ds, processing_class=processor,
                              data_collator=collator, callbacks=[curve])
    t0 = time.time()
    trainer.train()
    train_s = time.time() - t0 - curve.eval_s
    final = work / "sft" / "checkpoint-final"
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))

    t0 = time.time()
    completions = generate_answers(trainer.model, processor, test, sampling=sampling, batch_size=eval_batch,
                                   progress=False, desc="eval")
    top1 = [c[0] for c in completions]
    after = score_completions(test, top1)
    eval_s = time.time() - t0
    with open(work / "eval_predictions.jsonl", "w") as fh:
        for smp, text in zip(test, top1):
            fh.write(json.dumps({"qid": smp.qid, "duration": smp.duration, "windows": smp.windows,
                                 "completion": text}) + "\n")
    end_curve = score_completions(curve_samples, top1[: len(curve_samples)])
    points = curve.points + [{"step": args.steps, **rounded(end_curve)}]
    curve_floor = max(baselines(train, curve_samples).values())
    crossing = next((pt["step"] for pt in points if pt["miou"] >= curve_floor + MARGIN), None)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    del trainer, model

    t0 = time.time()
    grpo_rows = samples_to_hf(train[: max(args.grpo_prompts * (args.grpo_reps + 1), 1)])
    grpo = grpo_ratio(family, final, grpo_rows, config, args, work)
    grpo_s = time.time() - t0
    return {
        "family": family,
        "time_representation": adapter.time_representation,
        "miou": round(after["miou"], 4), "r1_05": round(after["r1_05"], 4), "r1_07": round(after["r1_07"], 4),
        "r1_03": round(after["r1_03"], 4), "format_rate": round(after["format_rate"], 4), "eval_samples": len(test),
        "better_baseline_miou": round(floor, 4),
        "margin_over_better_baseline": round(after["miou"] - floor, 4),
        "learns_grounding": bool(after["miou"] >= floor + MARGIN),
        "time_reading": time_reading(test, top1),
        "learning_curve": points,
        "curve_samples": len(curve_samples),
        "curve_better_baseline_miou": round(curve_floor, 4),
        "curve_area": round(statistics.mean(pt["miou"] for pt in points), 4),
        "first_step_over_baseline_plus_margin": crossing,
        "train_loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
        "sft_s_per_step": round(train_s / args.steps, 4),
        "tokens_per_sample": round(statistics.mean(collator.tokens), 1),
        "tokens_per_sample_min_max": [int(min(collator.tokens)), int(max(collator.tokens))],
        "grpo": grpo,
        "shared_prefix_step_ratio": grpo["shared_prefix_step_ratio"],
        "wall_s": round(time.time() - t_start, 1),
        "wall_s_parts": {"frame_cache": round(frames_s, 1), "train": round(train_s, 1),
                         "curve_evals": round(curve.eval_s, 1), "final_eval": round(eval_s, 1),
                         "grpo": round(grpo_s, 1)},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def fastest(families: list[dict]) -> dict | None:
    """The family whose held-out mIoU rose fastest: the largest area under its learning curve."""
    done = [f for f in families if "curve_area" in f]
    if not done:
        return None
    best = max(done, key=lambda f: f["curve_area"])
    return {"family": best["family"], "time_representation": best["time_representation"],
            "criterion": "largest mean curve mIoU over the 1/3, 2/3 and 3/3 points",
            "curve_area": best["curve_area"]}


def print_table(result: dict) -> None:
    head = (f"{'family':16s} {'time representation':20s} {'mIoU':>6s} {'R1@.5':>6s} {'R1@.7':>6s} {'fmt':>5s} "
            f"{'base':>6s} {'learns':>6s} {'s/step':>7s} {'tok/smp':>8s} {'SP ratio':>8s} {'curve mIoU':>20s}")
    print("\n" + head)
    for f in result["families"]:
        if "error" in f:
            print(f"{f['family']:16s} ERROR {f['error']}")
            continue
        ratio = f["shared_prefix_step_ratio"]
        curve = " ".join(f"{pt['miou']:.2f}" for pt in f["learning_curve"])
        print(f"{f['family']:16s} {f['time_representation']:20s} {f['miou']:6.3f} {f['r1_05']:6.3f} "
              f"{f['r1_07']:6.3f} {f['format_rate']:5.2f} {f['better_baseline_miou']:6.3f} "
              f"{str(f['learns_grounding']):>6s} {f['sft_s_per_step']:7.3f} {f['tokens_per_sample']:8.1f} "
              f"{'null' if ratio is None else f'{ratio:.3f}':>8s} {curve:>20s}")
    if result.get("fastest_learner"):
        print(f"fastest learner: {result['fastest_learner']['family']} "
              f"({result['fastest_learner']['time_representation']})")


#: what must be equal for two partial runs to form one measurement
SAME_IN_EVERY_PART = ("quick", "budget", "world", "baselines", "better_baseline_miou", "margin")


def merge_parts(parts: list[dict], names: list[str]) -> dict:
    """One result from runs of the same budget over disjoint family subsets (``--merge``).

    Families come out in the library's order; ``wall_s`` is the longest part's (they ran side by side), and
    ``parts`` keeps each part's command, wall time and load so the side-by-side run stays visible."""
    if not parts:
        raise ValueError("--merge needs at least one result file")
    first = parts[0]
    for part, name in zip(parts[1:], names[1:]):
        for key in SAME_IN_EVERY_PART:
            if part.get(key) != first.get(key):
                raise ValueError(f"{name}: {key!r} differs from {names[0]}'s ({part.get(key)!r} vs "
                                 f"{first.get(key)!r}); only runs of the same measurement can be merged")
    rows, seen = [], {}
    for part, name in zip(parts, names):
        for row in part["families"]:
            if row["family"] in seen:
                raise ValueError(f"{name}: family {row['family']!r} is also in {seen[row['family']]}")
            seen[row["family"]] = name
            rows.append(row)
    order = {f: i for i, f in enumerate(TINY_FAMILIES)}
    rows.sort(key=lambda r: order.get(r["family"], len(order)))
    merged = {k: v for k, v in first.items() if k not in ("families", "parts")}
    merged.update(
        families=rows, fastest_learner=fastest(rows),
        date=min(p["date"] for p in parts),
        wall_s=max(p["wall_s"] for p in parts),
        peak_rss_mb=max(p.get("peak_rss_mb", 0) for p in parts),
        loadavg_1_5_15_before=first["loadavg_1_5_15_before"],
        loadavg_1_5_15_after=parts[-1]["loadavg_1_5_15_after"],
        parts=[{"file": name, "command": p["command"], "families": [r["family"] for r in p["families"]],
                "wall_s": p["wall_s"], "loadavg_1_5_15_before": p["loadavg_1_5_15_before"],
                "loadavg_1_5_15_after": p["loadavg_1_5_15_after"]} for p, name in zip(parts, names)],
    )
    merged["command"] = " ; ".join(p["command"] for p in parts)
    return merged


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        result = merge_parts([json.loads(Path(f).read_text()) for f in args.merge], list(args.merge))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        print_table(result)
        print(f"\nmerged {len(args.merge)} parts; wrote {args.out}")
        return result
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t_world = time.time()
    paths = ensure_synthetic_world(args.world, args.world_n, 0)
    world_gen_s = time.time() - t_world
    train, test = read_jsonl(paths["train"]), read_jsonl(paths["test"])[: args.n_eval]
    if len(test) < MIN_EVAL_SAMPLES and not args.quick:
        logger.warning("only %d held-out samples (>= %d asked for): the mIoU is noisier", len(test),
                       MIN_EVAL_SAMPLES)
    curve_samples = test[: args.n_curve]
    base = baselines(train, test)
    floor = max(base.values())
    config = sft_config(args, Path(args.work) / "_")
    result = {
        **machine_record(),  # command, date, machine, python, torch threads, load before
        "torch": torch.__version__, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "quick": args.quick,
        "budget": {"steps": args.steps, "per_device_train_batch_size": config.per_device_train_batch_size,
                   "learning_rate": config.learning_rate,
                   "lr_scheduler_type": getattr(config.lr_scheduler_type, "value", str(config.lr_scheduler_type)),
                   "warmup_steps": config.warmup_steps, "lr_scheduler_kwargs": config.lr_scheduler_kwargs,
                   "bf16": config.bf16, "video_fps": config.video_fps, "video_max_frames": config.video_max_frames,
                   "pacing_start_fraction": config.pacing_start_fraction, "seed": config.seed,
                   "targets": "vtg_rl.mllm.reasoning.target_for_sample (faithful synthetic traces)",
                   "recipe": str(RECIPE.relative_to(ROOT))},
        "world": {"dir": args.world, "train_samples": len(train), "eval_samples": len(test),
                  "curve_samples": len(curve_samples), "world_gen_s": round(world_gen_s, 1)},
        "baselines": rounded(base), "better_baseline_miou": round(floor, 4), "margin": MARGIN,
        "families": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for family in args.families:
        logger.info("=== %s: %d steps, %d held-out samples", family, args.steps, len(test))
        try:
            row = run_family(family, args, train, test, curve_samples, floor)
        except Exception as e:  # one family failing must not hide the others' numbers
            traceback.print_exc()
            row = {"family": family, "error": f"{type(e).__name__}: {e}"}
        result["families"].append(row)
        result["fastest_learner"] = fastest(result["families"])
        result.update(wall_s=round(time.time() - t0, 1), loadavg_1_5_15_after=[round(x, 2) for x in os.getloadavg()],
                      peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print_table(result)
    print(f"\nwall {result['wall_s']:.0f} s, load {result['loadavg_1_5_15_before']} -> "
          f"{result['loadavg_1_5_15_after']}; wrote {out}")
    return result


if __name__ == "__main__":
    main()
