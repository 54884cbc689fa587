"""The unified schema itself (:mod:`vtg_rl.data.schema`): jsonl, one ``VTGSample.to_dict()`` per line.

Relative ``video_path`` values are resolved against the jsonl's folder, as :func:`read_jsonl` does.
Unlike ``read_jsonl`` (which stops at the first bad line) every line is checked and reported.
"""

from __future__ import annotations

import os

from vtg_rl.data.formats.common import ParsedRows, PathLike, RowError, check_file, parse_json_objects
from vtg_rl.data.schema import VTGSample, resolve_video_path
from vtg_rl.data.validate import MISSING_FIELD, PARSE_ERROR, VIDEO_OUTSIDE_ROOT

REQUIRED = ("qid", "vid", "duration", "query")


def parse(path: PathLike, **_) -> ParsedRows:
    path = check_file(path)
    out = ParsedRows(files=[str(path)])
    escaping: dict[int, str] = {}  # id(sample) -> its relative video_path that leaves the dataset folder

    def to_sample(rec: dict, qid) -> VTGSample:
        missing = [k for k in REQUIRED if rec.get(k) is None]
        if missing:
            raise RowError(MISSING_FIELD, f"missing field(s) {missing}")
        if isinstance(rec["duration"], bool) or not isinstance(rec["duration"], (int, float)):
            raise RowError(PARSE_ERROR, f"duration must be a number, got {rec['duration']!r}")
        try:
            sample = VTGSample.from_dict(rec)
        except (ValueError, TypeError) as err:
            raise RowError(PARSE_ERROR, f"not a unified-schema sample: {err}") from err
        if sample.video_path and not os.path.isabs(sample.video_path):
            if os.path.normpath(sample.video_path).split(os.sep)[0] == os.pardir:
                escaping[id(sample)] = sample.video_path
            sample.video_path = resolve_video_path(path.parent, sample.video_path)  # never raises on a loop
        return sample

    parse_json_objects(path, out, lambda rec: str(rec["qid"]) if rec.get("qid") is not None else None, to_sample)
    for i, s in enumerate(out.samples):
        if id(s) in escaping:
            out.flag(i, VIDEO_OUTSIDE_ROOT, f"video_path {escaping[id(s)]!r} leads outside the dataset's folder "
                                            f"{path.parent} (to {s.video_path}); allow with --allow-outside-videos")
    return out
