"""`vtg-rl eval`: score a QVHighlights-style submission, print a table, write the metrics JSON.

    vtg-rl eval --pred preds.jsonl --gt val.jsonl
                [--protocol qvhighlights|charades|tacos|gqa|ego4d-nlq|activitynet|tvsum|youtube_highlight]
                [--out metrics.json] [--allow-missing]

The JSON is :func:`vtg_rl.metrics.evaluate`'s nested dict; for the qvhighlights protocol its
``brief`` block carries the reference's own key names (``MR-full-mAP``, ``HL-min-VeryGood-Hit1``, ...)
so it can be diffed against published ``*_metrics.json`` files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from vtg_rl.data.schema import atomic_write_text
from vtg_rl.metrics import PROTOCOLS, SubmissionError, evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, type=Path,
                        help="submission jsonl: {qid, pred_relevant_windows: [[s, e, score], ...], "
                             "pred_saliency_scores?, pred_answer?} per line")
    parser.add_argument("--gt", required=True, type=Path,
                        help="ground truth: unified-schema jsonl or raw QVHighlights-style jsonl (relevant_windows); "
                             "for ego4d-nlq / activitynet / tvsum / youtube_highlight also the release file itself")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="qvhighlights",
                        help="metric set (default: qvhighlights)")
    parser.add_argument("--out", type=Path, default=None,
                        help="metrics JSON to write (default: <pred>_metrics.json next to the predictions)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score ground-truth queries without a prediction as 0 instead of failing")
    parser.add_argument("--clip-length", type=float, default=2.0, help="saliency clip length in seconds (default 2)")


def _cell(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def format_report(result: dict) -> str:
    """A human-readable summary of :func:`vtg_rl.metrics.evaluate`'s result."""
    meta = result["meta"]
    parts = [f"protocol {meta['protocol']}: {meta['num_queries']} queries"
             + (f" ({meta['num_missing']} missing, scored 0)" if meta["num_missing"] else "")]
    if "QA" in result:
        qa = result["QA"]
        keys = [k for k in qa if k != "num_queries"]
        parts.append(_table(["grounded QA"] + keys, [["all"] + [_cell(qa[k]) for k in keys]]))
    splits = [s for s in ("full", "short", "middle", "long") if s in result]
    if splits:
        header = ["moment retrieval", "queries", "mAP", "mAP@0.5", "mAP@0.75", "R1@0.3", "R1@0.5", "R1@0.7",
                  "R5@0.5", "R5@0.7", "mIoU"]
        rows = []
        for s in splits:
            b = result[s]
            rows.append([s, str(b["num_queries"]), _cell(b["MR-mAP"]["average"]), _cell(b["MR-mAP"]["0.5"]),
                         _cell(b["MR-mAP"]["0.75"]), _cell(b["MR-R1"]["0.3"]), _cell(b["MR-R1"]["0.5"]),
                         _cell(b["MR-R1"]["0.7"]), _cell(b["MR-R5"]["0.5"]), _cell(b["MR-R5"]["0.7"]),
                         _cell(b["MR-mIoU"])])
        parts.append(_table(header, rows))
        if meta["protocol"] in ("ego4d-nlq", "activitynet"):
            brief = result["brief"]
            parts.append(_table([f"{meta['protocol']} (reported)"] + list(brief),
                                [["full"] + [_cell(v) for v in brief.values()]]))
    if "domains" in result:
        rows = [[d, str(b["num_videos"]), _cell(b["mAP"])] for d, b in result["domains"].items()]
        rows.append(["mean over domains", str(meta["num_queries"]), _cell(result["brief"]["mAP"])])
        what = "top-5 mAP" if meta["protocol"] == "tvsum" else "mAP"
        parts.append(_table([f"{meta['protocol']} domain", "videos", what], rows))
    levels = [k for k in result if k.startswith("HL-min-")]
    if levels:
        rows = [[k[len("HL-min-"):], _cell(result[k]["HL-mAP"]), _cell(result[k]["HL-Hit1"])] for k in levels]
        parts.append(_table(["highlights (min agreement)", "mAP", "HIT@1"], rows))
    parts.extend(f"note: {n}" for n in meta["notes"])
    return "\n\n".join(parts)


def default_out(pred: Path) -> Path:
    return pred.with_name(pred.stem + "_metrics.json")


def run(args: argparse.Namespace) -> int:
    try:
        result = evaluate(args.pred, args.gt, protocol=args.protocol, allow_missing=args.allow_missing,
                          clip_length=args.clip_length)
    except (SubmissionError, FileNotFoundError, ValueError) as err:
        print(f"vtg-rl eval: error: {err}", file=sys.stderr)
        return 2
    out: Optional[Path] = args.out or default_out(args.pred)
    atomic_write_text(out, json.dumps(result, indent=4, allow_nan=False) + "\n")
    print(format_report(result))
    print(f"\nmetrics written to {out}")
    return 0
