"""`vtg-rl view DATA.jsonl [--pred NAME=FILE ...] [--flagged FILE] [--out page.html] [--title T]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vtg_rl.view.page import write_view


def _pred_arg(text: str) -> tuple[str, str]:
    """``NAME=FILE``, or a bare ``FILE`` named after its stem."""
    name, sep, path = text.partition("=")
    if not sep:
        return Path(text).stem, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--pred {text!r}: expected NAME=FILE")
    return name, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="dataset jsonl (unified schema)")
    parser.add_argument("--pred", action="append", default=[], type=_pred_arg, metavar="NAME=FILE",
                        help="a QVHighlights-style prediction jsonl; repeat for several (one colour each)")
    parser.add_argument("--flagged", default=None, metavar="FILE",
                        help="a *.flagged.jsonl from the reflection agent: its qids are marked flagged")
    parser.add_argument("--out", default=None,
                        help="output HTML file (default: DATA with .view.html next to it); video links are "
                             "relative to its folder")
    parser.add_argument("--title", default=None, help="page title (default: the dataset's file name)")


def run(args: argparse.Namespace) -> int:
    names = [name for name, _ in args.pred]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SystemExit(f"vtg-rl view: prediction names must differ, repeated: {', '.join(dupes)}")
    data = Path(args.data)
    out = Path(args.out) if args.out else data.with_name(data.name.removesuffix(".jsonl") + ".view.html")
    t0 = time.perf_counter()
    write_view(data, dict(args.pred), out, flagged=args.flagged, title=args.title)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.2f} s; "
          f"open it in a browser")
    return 0
