"""`vtg-rl data split`: split a unified-schema jsonl into parts by video, so no video is in two parts.

A head post-trained with RL (TPRL) needs queries its supervised stage never saw, or it has little left to
learn; splitting by *video* rather than by query keeps a video's other queries from leaking its content
into the other part. Videos are sorted by id and dealt to the parts in turn, so the split is the same on
every run and every machine::

    vtg-rl data split runs/demo/world/train.jsonl --names sup,rl
    # -> runs/demo/world/train_sup.jsonl, runs/demo/world/train_rl.jsonl

Rows are copied byte for byte (relative video paths stay valid when the parts sit beside the input).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from vtg_rl.data.schema import atomic_write_text, iter_rows

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def split_by_video(path: str | Path, n_parts: int) -> list[list[str]]:
    """The lines of ``path`` (a jsonl with a ``vid`` in every row) dealt into ``n_parts`` lists by video:
    the i-th video in sorted id order goes to part ``i % n_parts``. Blank lines are dropped; a row that is
    not JSON or has no ``vid`` is an error naming ``file:line``.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "t.jsonl")
    >>> _ = open(f, "w").write('{"qid": "1", "vid": "b"}\\n{"qid": "2", "vid": "a"}\\n{"qid": "3", "vid": "b"}\\n')
    >>> [[json.loads(r)["qid"] for r in part] for part in split_by_video(f, 2)]
    [['2'], ['1', '3']]
    """
    if n_parts < 2:
        raise ValueError(f"a split needs at least 2 parts, got {n_parts}")
    rows: list[tuple[str, str]] = []
    for lineno, line in iter_rows(path):
        try:
            vid = json.loads(line)["vid"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{lineno}: a row needs a JSON object with a 'vid' ({type(err).__name__}: {err})") from err
        rows.append((str(vid), line if line.endswith("\n") else line + "\n"))
    part_of = {vid: i % n_parts for i, vid in enumerate(sorted({vid for vid, _ in rows}))}
    parts: list[list[str]] = [[] for _ in range(n_parts)]
    for vid, line in rows:
        parts[part_of[vid]].append(line)
    return parts


def part_paths(path: str | Path, names: list[str], out_dir: str | Path | None = None) -> list[Path]:
    """Where each part goes: ``{out_dir or the input's folder}/{input stem}_{name}.jsonl``."""
    path = Path(path)
    folder = Path(out_dir) if out_dir is not None else path.parent
    return [folder / f"{path.stem}_{name}.jsonl" for name in names]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="unified-schema jsonl (every row has a 'vid')")
    parser.add_argument("--names", default="a,b", help="comma-separated part names (default a,b): "
                        "FILE_STEM_NAME.jsonl each")
    parser.add_argument("--out-dir", default=None, metavar="DIR", help="where the parts go (default: beside FILE)")


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    bad = [n for n in names if not _SAFE_NAME.match(n)]
    if bad or len(set(names)) != len(names) or len(names) < 2:
        print(f"vtg-rl data split: --names needs two or more distinct names of letters, digits, '_', '-' or '.' "
              f"(got {args.names!r})", file=sys.stderr)
        return 2
    try:
        parts = split_by_video(args.file, len(names))
    except (OSError, ValueError) as err:
        print(f"vtg-rl data split: {err}", file=sys.stderr)
        return 2
    outs = part_paths(args.file, names, args.out_dir)
    if any(out.resolve() == Path(args.file).resolve() for out in outs):
        print(f"vtg-rl data split: a part would overwrite {args.file}", file=sys.stderr)
        return 2
    for name, out, rows in zip(names, outs, parts):
        atomic_write_text(out, "".join(rows))
        print(f"{out}: {len(rows)} queries of {len({json.loads(r)['vid'] for r in rows})} videos ({name})")
    return 0
