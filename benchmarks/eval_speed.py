"""How long `vtg_rl.metrics.evaluate` takes on a QVHighlights-val-sized submission.

A synthetic submission of 1,550 queries, 10 scored windows and 75 saliency scores each (150 s
videos, 1-3 ground-truth windows on the 2 s grid, 3 annotators), scored with the full
qvhighlights protocol (MR with length splits + HL at three levels). Target: under 1 s on 2 cores.

    python benchmarks/eval_speed.py            # full measurement
    python benchmarks/eval_speed.py --repeats 3

Writes ``benchmarks/results/eval_speed.json`` with ``evaluate_s_median``, ``evaluate_s_min``,
``read_and_evaluate_s`` (files on disk, as `vtg-rl eval` runs), ``num_queries``,
``windows_per_query``, ``saliency_per_query``, ``repeats``, ``target_s``, ``meets_target``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vtg_rl.metrics import evaluate, write_submission  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "eval_speed.json"
TARGET_S = 1.0


def synthetic_submission(num_queries: int = 1550, windows: int = 10, clips: int = 75, seed: int = 0):
    """(predictions, raw QVHighlights-style ground truth) of the sizes of QVHighlights val."""
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for qid in range(num_queries):
        gt_windows = []
        for _ in range(int(rng.integers(1, 4))):
            start = 2 * int(rng.integers(0, clips - 5))
            gt_windows.append([start, min(2 * clips, start + 2 * int(rng.integers(1, 30)))])
        clip_ids = sorted({c for s, e in gt_windows for c in range(s // 2, e // 2)})
        gt.append({"qid": qid, "query": f"query {qid}", "duration": 2 * clips, "vid": f"v{qid}",
                   "relevant_windows": gt_windows, "relevant_clip_ids": clip_ids,
                   "saliency_scores": rng.integers(0, 5, size=(len(clip_ids), 3)).tolist()})
        starts = rng.uniform(0, 2 * clips - 10, size=windows)
        spans = np.stack([starts, starts + rng.uniform(2, 60, size=windows), rng.random(windows)], 1)
        spans = spans[np.argsort(-spans[:, 2], kind="stable")]
        pred.append({"qid": qid, "pred_relevant_windows": np.round(spans, 4).tolist(),
                     "pred_saliency_scores": np.round(rng.normal(size=clips), 4).tolist()})
    return pred, gt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--queries", type=int, default=1550)
    args = parser.parse_args(argv)

    pred, gt = synthetic_submission(args.queries)
    evaluate(pred, gt)  # warm-up: imports, allocator
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = evaluate(pred, gt)
        times.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        pred_path = write_submission(Path(tmp) / "preds.jsonl", pred)
        gt_path = Path(tmp) / "gt.jsonl"
        gt_path.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in gt))
        t0 = time.perf_counter()
        evaluate(pred_path, gt_path)
        read_and_evaluate = time.perf_counter() - t0

    report = {
        "num_queries": args.queries, "windows_per_query": 10, "saliency_per_query": 75,
        "repeats": args.repeats, "evaluate_s_median": round(statistics.median(times), 4),
        "evaluate_s_min": round(min(times), 4), "read_and_evaluate_s": round(read_and_evaluate, 4),
        "target_s": TARGET_S, "meets_target": statistics.median(times) < TARGET_S,
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "brief": result["brief"],
    }
    rows = [("queries x windows x saliency", f"{args.queries} x 10 x 75"),
            ("evaluate() median [s]", f"{report['evaluate_s_median']:.3f}"),
            ("evaluate() min [s]", f"{report['evaluate_s_min']:.3f}"),
            ("read files + evaluate() [s]", f"{report['read_and_evaluate_s']:.3f}"),
            ("target [s]", f"< {TARGET_S:.1f}"), ("meets target", str(report["meets_target"]))]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
