"""`vtg-rl models build-tiny --out DIR [--kind qwen|clip|all | --family NAME] [--seed S]`: build the tiny local models.

With ``--kind all`` the models go to ``DIR/qwen2_5_vl`` and ``DIR/clip``; with one kind, to ``DIR`` itself.
``--family`` (qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_5, llava_onevision) builds that family's tiny model into ``DIR``.
Each directory then loads with ``from_pretrained(dir)`` like a hub checkpoint.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vtg_rl.models.tiny_families import TINY_FAMILIES

    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--kind", choices=["qwen", "clip", "all"], default="all",
                        help="which model to build (default: all, into DIR/qwen2_5_vl and DIR/clip)")
    parser.add_argument("--family", default=None, choices=TINY_FAMILIES,
                        help="build this video-LLM family's tiny model into --out (instead of --kind)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")


def _report(kind: str, path: Path, seconds: float) -> None:
    if kind == "qwen":
        from vtg_rl.models.tiny_qwen import count_parameters, load_qwen_vl

        model, processor = load_qwen_vl(path)
        counts = count_parameters(model)
        print(f"tiny Qwen2.5-VL -> {path}  ({counts['total']:,} parameters: vision {counts['vision']:,}, "
              f"language {counts['language']:,}; vocab {len(processor.tokenizer)}; {seconds:.1f} s)")
    else:
        from vtg_rl.models.tiny_clip import load_clip

        model, processor = load_clip(path)
        total = sum(p.numel() for p in model.parameters())
        print(f"tiny CLIP -> {path}  ({total:,} parameters; vocab {len(processor.tokenizer)}; {seconds:.1f} s)")


def _build_family(args: argparse.Namespace) -> int:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg_rl.models.tiny_families import build_tiny

    start = time.perf_counter()
    path = build_tiny(args.family, args.out, seed=args.seed)
    seconds = time.perf_counter() - start
    model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=False)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    total = sum(p.numel() for p in model.parameters())
    print(f"tiny {args.family} -> {path}  ({total:,} parameters; vocab {len(processor.tokenizer)}; {seconds:.1f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.family is not None:
        return _build_family(args)
    from vtg_rl.models.tiny_clip import build_tiny_clip
    from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

    kinds = ["qwen", "clip"] if args.kind == "all" else [args.kind]
    for kind in kinds:
        out = args.out / {"qwen": "qwen2_5_vl", "clip": "clip"}[kind] if args.kind == "all" else args.out
        start = time.perf_counter()
        path = (build_tiny_qwen2_5_vl if kind == "qwen" else build_tiny_clip)(out, seed=args.seed)
        _report(kind, path, time.perf_counter() - start)
    return 0
