"""Highlight-only benchmarks in the lighthouse (UniVTG-derived) jsonl releases: TVSum and YouTube
Highlights. One row per video (the "query" is the video's domain / category name)::

    tvsum_{train,val}.jsonl:
      {"qid": "...", "query": "changing Vehicle Tire", "duration": 194.0, "vid": "...",
       "domain": "VT", "label": [[1, 1, 2, ..., 1], [1, 2, 2, ..., 1], ...]}    # n_clips x 20
    youtube_{train,valid}.jsonl:
      {"qid": "...", "query": "dog", "duration": 92.0, "vid": "...", "domain": "dog",
       "label": [[0], [0], [1], ...]}                                            # n_clips x 1

``label`` is **clips x annotators**: one row per clip, each row one score per annotator (this is how
the release's own data code reads it: it sums / takes column 0 along the last axis and cuts the first
axis to the number of feature clips). TVSum: 20 annotators' importance scores 1-5; YouTube
Highlights: a single 0/1 highlight label. Any other row width is reported (``bad_clip_labels``), so a
file stored annotators x clips (20 rows of n_clips scores) is caught rather than read transposed; a
flat list of labels is reported too, not reshaped.

Samples: ``task`` "summarization" (TVSum) / "highlight" (YouTube Highlights), ``windows == []``,
``clip_labels = label`` (values kept as written), ``clip_length`` = the loader argument
``clip_length`` (default :data:`TVSUM_CLIP_LENGTH` = 2 s and :data:`YOUTUBE_CLIP_LENGTH` = 1 s, the
clip lengths of the lighthouse feature configs of these two datasets: clip ``i`` covers
``[i * clip_length, (i + 1) * clip_length)``), ``meta["domain"]`` = ``domain``; any other field of the
row (e.g. ``match``, ``clip``) is kept in ``meta`` under its own name. A row without ``duration``
may take it from ``durations=``.
"""

from __future__ import annotations

import math
from typing import Optional

from vtg_rl.data.formats.common import (DurationsSpec, ParsedRows, PathLike, RowError, as_text, check_file, get,
                                        load_durations, parse_json_objects, row_duration)
from vtg_rl.data.schema import TASK_HIGHLIGHT, TASK_SUMMARIZATION, VTGSample
from vtg_rl.data.validate import BAD_CLIP_LABELS, PARSE_ERROR

#: seconds per labelled clip of the lighthouse TVSum release (its features are 2 s clips)
TVSUM_CLIP_LENGTH = 2.0
#: seconds per labelled clip of the lighthouse YouTube Highlights release (1 s clips)
YOUTUBE_CLIP_LENGTH = 1.0
TVSUM_ANNOTATORS = 20
TVSUM_SCORE_RANGE = (1, 5)
TVSUM_DOMAINS = ("BK", "BT", "DS", "FM", "GA", "MS", "PK", "PR", "VT", "VU")
YOUTUBE_DOMAINS = ("dog", "gymnastics", "parkour", "skating", "skiing", "surfing")

_KNOWN = {"qid", "query", "duration", "vid", "domain", "label"}


def parse_tvsum(path: PathLike, *, clip_length: Optional[float] = None, durations: DurationsSpec = None,
                **_) -> ParsedRows:
    return _parse(path, "tvsum", TASK_SUMMARIZATION, TVSUM_CLIP_LENGTH if clip_length is None else clip_length,
                  durations)


def parse_youtube(path: PathLike, *, clip_length: Optional[float] = None, durations: DurationsSpec = None,
                  **_) -> ParsedRows:
    return _parse(path, "youtube_highlight", TASK_HIGHLIGHT,
                  YOUTUBE_CLIP_LENGTH if clip_length is None else clip_length, durations)


def _parse(path, dataset: str, task: str, clip_length: float, durations: DurationsSpec) -> ParsedRows:
    if not (isinstance(clip_length, (int, float)) and math.isfinite(clip_length) and clip_length > 0):
        raise ValueError(f"clip_length must be a positive number of seconds, got {clip_length!r}")
    path = check_file(path)
    dur = load_durations(durations)
    out = ParsedRows(files=[str(path)])
    parse_json_objects(path, out, lambda rec: as_text(get(rec, "qid"), "qid"),
                       lambda rec, qid: _record_to_sample(rec, qid, dataset, task, float(clip_length), dur))
    for i, s in enumerate(out.samples):  # dataset-specific label checks, on top of the schema's
        message = _label_problem(s.clip_labels, dataset)
        if message:
            out.flag(i, BAD_CLIP_LABELS, message)
    return out


def _record_to_sample(rec: dict, qid: str, dataset: str, task: str, clip_length: float, durations) -> VTGSample:
    vid = as_text(get(rec, "vid"), "vid")
    duration = row_duration(rec, vid, durations)
    query = get(rec, "query")
    if not isinstance(query, str):
        raise RowError(PARSE_ERROR, f"query must be a string, got {query!r}")
    domain = as_text(get(rec, "domain"), "domain")
    label = get(rec, "label")
    if not isinstance(label, list):
        raise RowError(BAD_CLIP_LABELS, f"label must be a list of per-clip rows, got {type(label).__name__}")
    meta = {"dataset": dataset, "domain": domain}
    meta.update({k: v for k, v in rec.items() if k not in _KNOWN})
    return VTGSample(qid=qid, vid=vid, duration=duration, query=query, windows=[], meta=meta, task=task,
                     clip_length=clip_length, clip_labels=label)


def _label_problem(labels: list, dataset: str) -> Optional[str]:
    """What is wrong with ``label`` for this release beyond the schema's generic checks (which report
    ragged rows, non-numbers and booleans): the annotator count and the value range."""
    if not labels or not all(isinstance(r, list) for r in labels):
        flat = bool(labels) and not any(isinstance(r, list) for r in labels)
        return ("label is a flat list; the release stores one row per clip ([[label], [label], ...])"
                if flat else None)  # other shapes: reported by the schema check
    widths = {len(r) for r in labels}
    numbers = [x for r in labels for x in r if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if dataset == "tvsum":
        if len(widths) == 1 and widths != {TVSUM_ANNOTATORS}:  # ragged rows: reported by the schema check
            (width,) = widths
            hint = (f"; {len(labels)} rows of {width} scores look like annotators x clips"
                    if len(labels) == TVSUM_ANNOTATORS else "")
            return (f"TVSum label rows must hold {TVSUM_ANNOTATORS} annotator scores (clips x annotators), "
                    f"got rows of {width}{hint}")
        lo, hi = TVSUM_SCORE_RANGE
        bad = [x for x in numbers if not lo <= x <= hi]
        if bad:
            return f"TVSum scores must be in [{lo}, {hi}], got {bad[:5]}"
    else:
        if len(widths) == 1 and widths != {1}:
            return f"YouTube Highlights label rows must hold one 0/1 label, got rows of {widths.pop()}"
        bad = [x for x in numbers if x not in (0, 1)]
        if bad:
            return f"YouTube Highlights labels must be 0 or 1, got {bad[:5]}"
    return None
