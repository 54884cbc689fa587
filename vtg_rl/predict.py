"""``vtg-rl predict``: ground a query in one video with any model vtg-rl trains (see :mod:`vtg_rl.grounders`).

    vtg-rl predict --model runs/demo/grpo/checkpoint-final video.mp4 "when does the red circle appear?"
"""

from __future__ import annotations

import json

from vtg_rl.data.video import VideoDecodeError
from vtg_rl.grounders import Grounder, Span, vote_spans

__all__ = ["Grounder", "Span", "vote_spans", "add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (LLM, GIRL-DETR or R2-Tuning)")
    parser.add_argument("video", help="any file PyAV can read")
    parser.add_argument("query", help="the sentence to ground")
    parser.add_argument("--top-k", type=int, default=1, help="number of spans to print")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--trust_remote_code", "--trust-remote-code", action="store_true",
                        help="let a model folder whose config has an auto_map run its own Python code "
                             "(off by default: such folders are refused; use only for code you have read)")


def run(args) -> int:
    import sys

    if args.top_k < 1:
        print("vtg-rl predict: --top-k must be >= 1", file=sys.stderr)
        return 2
    try:
        grounder = Grounder.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
        spans = grounder.predict(args.video, args.query, top_k=args.top_k)
    except (VideoDecodeError, FileNotFoundError, ValueError) as err:
        print(f"vtg-rl predict: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"video": args.video, "query": args.query, "spans": [s.as_list() for s in spans]},
                         allow_nan=False))
        return 0
    print(f"{args.query!r} in {args.video}:")
    if not spans:
        print("  (the model gave no well-formed span)")
    for rank, s in enumerate(spans, 1):
        print(f"  {rank}. {s.start:7.2f} s -> {s.end:7.2f} s   score {s.score:.3f}")
    return 0
