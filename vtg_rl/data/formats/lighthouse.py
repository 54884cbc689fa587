"""Moment-DETR / lighthouse-style jsonl: Charades-STA, TACoS and QVHighlights.

One json object per line::

    {"qid": 8737, "query": "...", "duration": 126, "vid": "bP5KfdFJzC4_660.0_810.0",
     "relevant_windows": [[0, 16]],
     "relevant_clip_ids": [0, 1, ...], "saliency_scores": [[4, 1, 1], ...]}   # QVHighlights only

``relevant_clip_ids`` index 2 s clips and ``saliency_scores`` hold one 0-4 score per annotator for
each relevant clip. The QVHighlights test release (``highlight_test_release.jsonl``) has only
``qid, query, duration, vid``: such rows are allowed for ``qvhighlights`` and flagged
``meta["unlabeled"] = True``; for ``charades-jsonl`` / ``tacos`` a row without windows is a problem.
"""

from __future__ import annotations

from vtg_rl.data.formats.common import (DurationsSpec, ParsedRows, PathLike, RowError, as_text, as_windows,
                                        check_file, get, load_durations, parse_json_objects, row_duration)
from vtg_rl.data.schema import VTGSample
from vtg_rl.data.validate import BAD_SALIENCY, PARSE_ERROR

_LABEL_KEYS = ("relevant_windows", "relevant_clip_ids", "saliency_scores")


def parse(path: PathLike, *, dataset: str, allow_unlabeled: bool, durations: DurationsSpec = None,
          **_) -> ParsedRows:
    path = check_file(path)
    dur = load_durations(durations)
    out = ParsedRows(files=[str(path)], require_windows=not allow_unlabeled)
    return parse_json_objects(path, out, lambda rec: as_text(get(rec, "qid"), "qid"),
                              lambda rec, qid: record_to_sample(rec, qid, dataset, dur, allow_unlabeled))


def record_to_sample(rec: dict, qid: str, dataset: str, durations, allow_unlabeled: bool) -> VTGSample:
    vid = as_text(get(rec, "vid"), "vid")
    duration = row_duration(rec, vid, durations)
    query = get(rec, "query")
    if not isinstance(query, str):
        raise RowError(PARSE_ERROR, f"query must be a string, got {query!r}")
    labeled = any(k in rec for k in _LABEL_KEYS)
    windows = as_windows(get(rec, "relevant_windows")) if (labeled or not allow_unlabeled) else []
    clip_ids, scores = rec.get("relevant_clip_ids"), rec.get("saliency_scores")
    for name, value in (("relevant_clip_ids", clip_ids), ("saliency_scores", scores)):
        if value is not None and not isinstance(value, list):
            raise RowError(BAD_SALIENCY, f"{name} must be a list, got {value!r}")
    meta = {"dataset": dataset}
    if not labeled:
        meta["unlabeled"] = True
    return VTGSample(qid=qid, vid=vid, duration=duration, query=query, windows=windows,
                     relevant_clip_ids=clip_ids, saliency_scores=scores, meta=meta)
