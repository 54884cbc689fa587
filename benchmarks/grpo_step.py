"""One GRPO step, naive vs shared prefix (vtg_rl.mllm.shared_prefix), on the same model and batches.

    OMP_NUM_THREADS=1 python benchmarks/grpo_step.py          # full measurement (a few minutes on one core)
    python benchmarks/grpo_step.py --smoke                     # plumbing only

A step = rollout (generation of G completions per prompt + reference log-probs, beta 0.04) + GRPO loss
forward/backward + AdamW update, timed with ``time.perf_counter``; naive and shared repetitions are
interleaved (the order alternates) on the same batches, and every repetition takes fresh prompts so no
video is seen twice (the frozen-tower cache gets no cross-step hits: a conservative count).

Shapes: G = 8, completions of at most 64 tokens (the untrained model stops early now and then: ~57 on
average; both arms sample the same tokens), prompts of
1,024 video tokens + ~60 text tokens: the tiny Qwen2.5-VL (``vtg-rl models build-tiny``) built with a 224x224 pixel budget
(min = max = 224*224, so each 56x56 synthetic frame is upscaled to 16x16 patches -> 64 tokens per
temporal patch after the 2x2 merge) and 32 frames sampled at 4 fps (16 temporal patches).

Writes ``benchmarks/results/grpo_step.json``: ``{"prompts_per_step": P, "naive": {"vision_forwards_per_step",
"step_s"}, "shared": {...}}`` for the frozen vision tower (``freeze_vision_tower=True``, where the feature
cache lets the shared path encode each video once per step), plus the same under
``"trainable_vision_tower"`` (there the shared path encodes each video once per forward: generation,
reference and policy). ``vision_forwards_per_step`` counts videos encoded by the vision towers (policy +
reference) in one step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vtg_rl.data.schema import read_jsonl  # noqa: E402
from vtg_rl.data.synthetic import generate_world  # noqa: E402
from vtg_rl.mllm.dataset import samples_to_hf  # noqa: E402
from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer  # noqa: E402
from vtg_rl.mllm.shared_prefix import count_vision_videos  # noqa: E402
from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl, load_qwen_vl  # noqa: E402

PIXELS = 224 * 224
FRAMES = 32


def constant_reward(completions, **kwargs):
    # rewards do not change the work of a step; distinct values keep every advantage non-zero
    return [float(i % 7) / 7 for i in range(len(completions))]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repetition: checks the script only")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per arm (after one warm-up)")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step (P)")
    p.add_argument("--num_generations", type=int, default=8)
    p.add_argument("--max_completion_length", type=int, default=64)
    p.add_argument("--work", default="runs/bench/grpo_step")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/grpo_step.json"))
    return p.parse_args()


def make_trainer(model_dir, dataset, args, shared: bool, frozen: bool, out_dir: str) -> VideoGRPOTrainer:
    model, processor = load_qwen_vl(model_dir)
    config = VideoGRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=args.prompts * args.num_generations,
        num_generations=args.num_generations, max_completion_length=args.max_completion_length, temperature=1.0,
        beta=0.04, learning_rate=1e-6, bf16=False, use_cpu=True, report_to=[], save_strategy="no", seed=0,
        dataloader_num_workers=0, video_fps=4.0, video_min_frames=FRAMES, video_max_frames=FRAMES,
        freeze_vision_tower=frozen, shared_prefix=shared, reward_funcs=["constant_reward"])
    trainer = VideoGRPOTrainer(model=model, reward_funcs=[constant_reward], args=config, train_dataset=dataset,
                               processing_class=processor)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    trainer.bench_optimizer = torch.optim.AdamW([p for p in trainer.model.parameters() if p.requires_grad], lr=1e-6)
    return trainer


def one_step(trainer: VideoGRPOTrainer, rows: list[dict]) -> dict:
    towers = [trainer.model] + ([trainer.ref_model] if trainer.ref_model is not None else [])
    with count_vision_videos(towers[0]) as policy, count_vision_videos(towers[-1]) as ref:
        t0 = time.perf_counter()
        out = trainer._generate_and_score_completions(rows)
        loss = trainer.compute_loss(trainer.model, out)
        loss.backward()
        trainer.bench_optimizer.step()
        trainer.bench_optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - t0
    videos = policy[0] + (ref[0] if len(towers) > 1 else 0)
    return {"step_s": seconds, "vision_forwards": videos, "prompt_tokens": int(out["prompt_mask"].sum(1).max()),
            "completion_tokens": float(out["completion_mask"].sum(1).float().mean())}


def measure(model_dir, dataset, samples, args, frozen: bool, work: Path) -> dict:
    arms = {name: make_trainer(model_dir, dataset, args, shared=name == "shared", frozen=frozen,
                               out_dir=str(work / f"out_{name}")) for name in ("naive", "shared")}
    g, p = args.num_generations, args.prompts
    results = {name: [] for name in arms}
    for rep in range(args.reps + 1):  # repetition 0 warms up (allocator, lazy imports) and is not kept
        batch = [samples[(rep * p + i) % len(samples)] for i in range(p) for _ in range(g)]
        order = ("naive", "shared") if rep % 2 == 0 else ("shared", "naive")
        for name in order:
            torch.manual_seed(1000 + rep)
            r = one_step(arms[name], batch)
            if rep > 0:
                results[name].append(r)
            print(f"  {'frozen' if frozen else 'trainable'} tower  rep {rep}  {name:6s}  {r['step_s']:7.2f} s  "
                  f"videos {r['vision_forwards']:3d}  prompt {r['prompt_tokens']} tok  "
                  f"completion {r['completion_tokens']:.0f} tok", flush=True)
    summary = {}
    for name, rs in results.items():
        summary[name] = {"vision_forwards_per_step": statistics.mean(r["vision_forwards"] for r in rs),
                         "step_s": statistics.median(r["step_s"] for r in rs),
                         "step_s_all": [round(r["step_s"], 3) for r in rs],
                         "prompt_tokens_max": max(r["prompt_tokens"] for r in rs),
                         "completion_tokens_mean": statistics.mean(r["completion_tokens"] for r in rs)}
    summary["shared_over_naive_step_time"] = summary["shared"]["step_s"] / summary["naive"]["step_s"]
    return summary


def main() -> int:
    args = parse_args()
    if args.smoke:
        args.reps, args.prompts, args.num_generations, args.max_completion_length = 1, 1, 2, 4
    work = Path(args.work)
    model_dir = build_tiny_qwen2_5_vl(work / "tiny_qwen_224", seed=0, min_pixels=PIXELS, max_pixels=PIXELS)
    world = generate_world(work / "world", n=40, seed=0)
    samples = [s for s in read_jsonl(world["train"]) if s.duration >= FRAMES / 4.0]  # >= 32 frames at 4 fps
    dataset = samples_to_hf(samples)
    rows = [dataset[i] for i in range(len(dataset))]
    needed = (args.reps + 1) * args.prompts
    if len(rows) < needed:
        raise SystemExit(f"need {needed} distinct samples of >= 8 s, the world has {len(rows)}")
    load_before = os.getloadavg()
    t0 = time.time()
    print(f"GRPO step, P={args.prompts} prompts x G={args.num_generations}, completions <= "
          f"{args.max_completion_length} tokens, torch threads {torch.get_num_threads()}, load {load_before}")
    frozen = measure(model_dir, dataset, rows, args, frozen=True, work=work)
    trainable = measure(model_dir, dataset, rows, args, frozen=False, work=work)
    result = {"prompts_per_step": args.prompts, "num_generations": args.num_generations,
              "max_completion_length": args.max_completion_length,
              "setting": "freeze_vision_tower=True, beta=0.04, float32, CPU; step = rollout + loss fwd/bwd + AdamW",
              "naive": frozen["naive"], "shared": frozen["shared"],
              "shared_over_naive_step_time": frozen["shared_over_naive_step_time"],
              "trainable_vision_tower": trainable,
              "video_tokens_per_prompt": FRAMES // 2 * (PIXELS // (14 * 14)) // 4,
              "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count(),
              "wall_s": time.time() - t0, "smoke": args.smoke}
    print(f"\n{'setting':22s} {'arm':7s} {'videos/step':>11s} {'step s':>8s}")
    for label, block in (("frozen tower", frozen), ("trainable tower", trainable)):
        for name in ("naive", "shared"):
            print(f"{label:22s} {name:7s} {block[name]['vision_forwards_per_step']:11.1f} {block[name]['step_s']:8.2f}")
        print(f"{label:22s} shared/naive step time {block['shared_over_naive_step_time']:.3f}")
    out = Path(args.out if not args.smoke else str(args.out).replace(".json", "_smoke.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
