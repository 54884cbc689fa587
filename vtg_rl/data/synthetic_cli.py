"""`vtg-rl synth`: generate the synthetic VTG world (mp4 files + train/val/test jsonl + world.json).

Example::

    vtg-rl synth --out data/synth --n 1000 --seed 0 --partial-rate 0.2 --hard-rate 0.25
    vtg-rl synth --out data/synth_tvsum --n 500 --task summarization   # TVSum-like (vtg_rl.data.synthetic_highlight)
    vtg-rl synth --out data/synth_yth --n 600 --task highlight         # YouTube Highlights-like
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 1]")
    return value


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three non-negative numbers summing to 1")
    return parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vtg_rl.data.synthetic import DEFAULT_FPS, DEFAULT_HARD_RATE

    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--task", choices=("grounding", "summarization", "highlight"), default="grounding",
                        help="grounding (moment retrieval, default); summarization (TVSum-like per-clip importance "
                             "from 20 annotators) or highlight (YouTube Highlights-like 0/1 clip labels)")
    parser.add_argument("--n", type=int, default=1000, help="number of samples / videos (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--partial-rate", type=_rate, default=0.0,
                        help="fraction of samples whose target occurs twice, one occurrence annotated")
    parser.add_argument("--qa", action="store_true", help="grounded-QA samples (question, 4 options, evidence span)")
    parser.add_argument("--hard-rate", type=_rate, default=DEFAULT_HARD_RATE,
                        help=f"fraction of hard samples (look-alike distractor and/or short faint event; "
                             f"default {DEFAULT_HARD_RATE})")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS, help=f"frames per second written (default {DEFAULT_FPS})")
    parser.add_argument("--splits", type=_fractions, default=(0.8, 0.1, 0.1),
                        help="train,val,test fractions (default 0.8,0.1,0.1)")
    parser.add_argument("--workers", type=int, default=None, help="rendering processes (default min(2, CPUs))")
    parser.add_argument("--codec", choices=("auto", "libx264", "mpeg4"), default="auto")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even if OUT already holds a world with the same parameters")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from vtg_rl.data.synthetic import DEFAULT_HARD_RATE, generate_world
    from vtg_rl.data.synthetic_highlight import generate_task_world

    world_file = Path(args.out) / "world.json"
    before = world_file.stat().st_mtime_ns if world_file.is_file() else None
    t0 = time.perf_counter()
    common = dict(n=args.n, seed=args.seed, fps=args.fps, split_fractions=args.splits, workers=args.workers,
                  codec=args.codec, overwrite=args.force, progress=not args.quiet)
    try:
        if args.task == "grounding":
            paths = generate_world(args.out, partial_rate=args.partial_rate, qa=args.qa, hard_rate=args.hard_rate,
                                   **common)
        else:
            if args.partial_rate or args.qa or args.hard_rate != DEFAULT_HARD_RATE:
                raise ValueError(f"--partial-rate / --qa / --hard-rate shape the grounding world, "
                                 f"not --task {args.task}")
            paths = generate_task_world(args.out, task=args.task, **common)
    except (ValueError, RuntimeError) as err:
        print(f"vtg-rl synth: error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    world = json.loads(world_file.read_text())
    reused = before is not None and world_file.stat().st_mtime_ns == before
    print(f"{'reused' if reused else 'wrote'} synthetic world in {args.out} ({elapsed:.1f} s, "
          f"codec {world['params']['codec']}, {world['params']['fps']} fps)")
    for split, path in paths.items():
        print(f"  {split:5s} {world['splits'][split]:6d} samples  {path}")
    if args.task == "grounding":
        print(f"  hard fraction {world['hard_fraction']:.3f}, partially annotated fraction "
              f"{world['partial_fraction']:.3f}")
    else:
        print(f"  task {args.task}, domains {world['domains']}, {world['clips']} labelled 2 s clips")
    return 0
