"""`vtg-rl infer`: predictions of any vtg-rl model (or an off-the-shelf video LLM) on a whole benchmark split.

    vtg-rl infer --model DIR --data test.jsonl --out preds.jsonl [--format F] [--batch-size N]
    vtg-rl eval --pred preds.jsonl --gt test.jsonl

``--out`` is a QVHighlights-style submission (``{qid, query, vid, pred_relevant_windows: [[s, e, score], ...],
pred_saliency_scores?}`` per line, in the data's order) that ``vtg-rl eval`` scores as it is. Predictions are
made exactly as the recipes' own held-out evaluation makes them (:mod:`vtg_rl.infer.backends`), so with the
recipe's batch size and video settings the numbers are the recipe's. The run is batched, resumable after
any interruption and data-parallel under ``torchrun`` / ``accelerate launch`` (:mod:`vtg_rl.infer.shards`).
See docs/inference.md.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Optional

from vtg_rl.infer.backends import LLM, HeadBackend, LLMBackend, model_kind, resolve_model, weights_fingerprint
from vtg_rl.infer.shards import (Processes, check_settings, done_elsewhere, merged_records, partial_path,
                                 remove_partials, shard)

logger = logging.getLogger("vtg_rl.infer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vtg_rl.data.loaders import FORMATS

    parser.add_argument("--model", required=True, type=Path,
                        help="checkpoint folder: a video LLM (config.json; also an off-the-shelf one, zero-shot) "
                             "or a GIRL-DETR / R2-Tuning head (head_config.json)")
    parser.add_argument("--data", required=True, type=Path, help="the split to predict on")
    parser.add_argument("--out", required=True, type=Path, help="submission jsonl to write")
    parser.add_argument("--format", default="unified", choices=sorted(FORMATS),
                        help="format of --data (default: unified jsonl)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per batch (default 16 for LLMs, 8 for heads: the recipes' eval defaults; "
                             "use the recipe's eval batch size to reproduce its numbers exactly)")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="predict only the first N samples (the recipes' --max_eval_samples)")
    data = parser.add_argument_group("data loading (as vtg-rl data check)")
    data.add_argument("--video-dir", default=None, help="folder of <vid>.mp4 files for formats without video paths")
    data.add_argument("--durations", default=None, help="durations file (charades)")
    data.add_argument("--gsub", default=None, help="NExT-GQA gsub_*.json")
    data.add_argument("--data-policy", choices=["strict", "drop"], default="strict",
                      help="invalid rows: strict refuses the file, drop leaves them out (default strict)")
    data.add_argument("--on-bad-video", choices=["error", "skip"], default="error",
                      help="rows whose video cannot be used: error refuses to start, skip leaves them out")
    data.add_argument("--no-probe", action="store_true", help="do not open every video before starting")
    llm = parser.add_argument_group("video LLMs (defaults: the recipes')")
    llm.add_argument("--video-fps", type=float, default=2.0)
    llm.add_argument("--video-min-frames", type=int, default=4)
    llm.add_argument("--video-max-frames", type=int, default=64)
    llm.add_argument("--video-max-pixels", type=int, default=None)
    llm.add_argument("--frame-cache-dir", default=None, help="disk cache of decoded frames")
    llm.add_argument("--max-new-tokens", type=int, default=160)
    llm.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                     help="auto: float32 on CPU, bfloat16 on GPU")
    llm.add_argument("--attn-implementation", default="sdpa")
    llm.add_argument("--vllm", action="store_true", help="generate with vLLM (pip install -e '.[vllm]', GPU)")
    llm.add_argument("--vllm-gpu-memory-utilization", type=float, default=0.9)
    head = parser.add_argument_group("GIRL-DETR / R2-Tuning heads")
    head.add_argument("--feature-root", type=Path, default=None,
                      help="feature folder to reuse and fill (e.g. the recipe's runs/features/...); default: a "
                           "folder next to --out, removed when the run completes")
    head.add_argument("--top-k", type=int, default=10, help="GIRL-DETR windows per query (mAP uses 10)")
    parser.add_argument("--device", default=None, help="default: cuda:<LOCAL_RANK> when a GPU is visible, else cpu")
    parser.add_argument("--allow-missing", action="store_true",
                        help="write --out even when some samples could not be predicted (unreadable video)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--trust_remote_code", "--trust-remote-code", action="store_true",
                        help="let a model folder whose config has an auto_map run its own Python code "
                             "(off by default: such folders are refused; use only for code you have read)")


def _load_data(args) -> list:
    from vtg_rl.data.loaders import load_samples
    from vtg_rl.data.probe import preflight_loaded

    kw = {k: v for k, v in (("durations", args.durations), ("gsub", args.gsub)) if v is not None}
    samples, report = load_samples(args.data, args.format, video_dir=args.video_dir, policy=args.data_policy, **kw)
    logger.info("%s: %s", args.data, report)
    if args.max_samples is not None:
        samples = samples[:args.max_samples]
    if not samples:
        raise ValueError(f"{args.data}: no samples to predict")
    return preflight_loaded(samples, str(args.data), args.format, what=f"inference data ({args.data})",
                            probe=not args.no_probe, on_bad_video=args.on_bad_video, parse_kwargs=kw)


def _backend(args, kind: str, procs: Processes):
    device = args.device
    if device is None:
        from vtg_rl.infer.backends import default_device

        device = default_device(procs.local_rank)
    if kind == LLM:
        from vtg_rl.mllm.video_source import VideoSampling

        sampling = VideoSampling(fps=args.video_fps, min_frames=args.video_min_frames,
                                 max_frames=args.video_max_frames, max_pixels=args.video_max_pixels,
                                 cache_dir=args.frame_cache_dir)
        return LLMBackend(args.model, sampling, max_new_tokens=args.max_new_tokens, dtype=args.dtype, device=device,
                          attn_implementation=args.attn_implementation, trust_remote_code=args.trust_remote_code,
                          use_vllm=args.vllm, vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                          world_size=procs.world_size)
    if args.vllm:
        raise ValueError("--vllm is for video LLMs; this is a head checkpoint")
    return HeadBackend(args.model, kind, args.feature_root, top_k=args.top_k, device=device,
                       trust_remote_code=args.trust_remote_code)


def infer(args, procs: Optional[Processes] = None) -> dict:
    """Run inference as ``args`` (the CLI's namespace) says; returns a summary. Rank 0 writes ``args.out``."""
    from vtg_rl.agents.runner import ResumableRunner, output_lock

    procs = procs or Processes()
    out: Path = args.out
    args.model = resolve_model(args.model)
    kind = model_kind(args.model)
    batch_size = args.batch_size or (16 if kind == LLM else 8)
    default_features = args.feature_root is None
    if default_features:
        args.feature_root = out.with_name(f"{out.stem}.features")
    samples = _load_data(args)
    backend = _backend(args, kind, procs)
    config = {"model": str(args.model), "model_kind": kind, "model_weights": weights_fingerprint(args.model),
              "data": str(args.data.resolve()), "format": args.format, "max_samples": args.max_samples,
              "video_dir": args.video_dir, "batch_size": batch_size, **backend.settings()}
    check_settings(out, config)
    mine = partial_path(out, procs.rank, procs.world_size)
    elsewhere = done_elsewhere(out, mine)
    todo = [s for s in shard(samples, batch_size, procs.rank, procs.world_size) if s.qid not in elsewhere]
    desc = "infer" if procs.world_size == 1 else f"infer [{procs.rank}/{procs.world_size}]"
    with output_lock(mine):
        runner = ResumableRunner(mine, config, batch_size=batch_size, desc=desc, progress=not args.no_progress)
        if any(s.qid not in _done(mine) for s in todo):  # a process with nothing left to do loads no model
            backend.load()
        report = runner.run(todo, backend.predict)
        logger.info("process %d of %d: %d predicted, %d resumed, %d skipped", procs.rank, procs.world_size,
                    report.processed, report.resumed, len(report.skipped))
    procs.barrier()
    summary = {"out": str(out), "samples": len(samples), "kind": kind}
    if procs.rank != 0:
        return summary
    records = merged_records(out)
    missing = [s for s in samples if s.qid not in records]
    summary["missing"] = [s.qid for s in missing]
    if missing and not args.allow_missing:
        raise IncompleteError(f"{len(missing)} of {len(samples)} sample(s) have no prediction (their video could "
                              f"not be read: qid {', '.join(s.qid for s in missing[:10])}"
                              f"{' ...' if len(missing) > 10 else ''}); fix the videos and rerun (the "
                              f"{len(records)} done are kept), or pass --allow-missing to write {out} without them")
    from vtg_rl.metrics import write_submission

    write_submission(out, [records[s.qid] for s in samples if s.qid in records])
    remove_partials(out, [partial_path(out, r, procs.world_size) for r in range(procs.world_size)])
    if default_features and kind != LLM:
        shutil.rmtree(args.feature_root, ignore_errors=True)
    return summary


def _done(partial: Path) -> set[str]:
    from vtg_rl.agents.runner import read_partial

    return set(read_partial(partial)[0])


class IncompleteError(RuntimeError):
    """Some samples could not be predicted (their partial results are kept for a rerun)."""


def run(args: argparse.Namespace) -> int:
    from vtg_rl.agents.runner import OutputLockedError
    from vtg_rl.data.video import VideoDecodeError
    from vtg_rl.infer.backends import MissingDependency

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.batch_size is not None and args.batch_size < 1:
        print("vtg-rl infer: --batch-size must be >= 1", file=sys.stderr)
        return 2
    procs = Processes.from_env()
    try:
        summary = infer(args, procs)
    except IncompleteError as err:
        print(f"vtg-rl infer: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, MissingDependency, OutputLockedError, VideoDecodeError) as err:
        print(f"vtg-rl infer: error: {err}", file=sys.stderr)
        return 2
    finally:
        procs.close()
    if procs.rank == 0:
        n = summary["samples"] - len(summary.get("missing", []))
        print(f"{n} prediction(s) written to {summary['out']}\nscore them with: vtg-rl eval --pred {summary['out']} "
              f"--gt {args.data}")
    return 0
