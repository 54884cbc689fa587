"""ReXTime (reasoning-across-time grounded QA). Two public shapes are read:

* the released annotations ``rextime_{train,val}.json`` / ``rextime_test_release.json`` (a json array,
  or the same objects as jsonl)::

      {"qid": "qvh_val241", "vid": "2I9-kvemtSU_510.0_660.0", "duration": 150,
       "question": "What were ... before ...?", "options": ["...", "...", "...", "..."],
       "answer": "From <s0> to <e0>, <option>.", "ans": "A", "span": [0, 28],
       "category": "sequential", "source": "qvhighlights_val"}

  the options live in ``options`` (4 texts, letters ``"A".."D"``); ``answer`` is only the sentence
  template, the correct letter is ``ans``; the evidence window is ``span`` (one ``[s, e]``);
* the ground-truth jsonl of the GitHub repo (``data/rextime_val.jsonl``), lighthouse style::

      {"qid": "anet_val92", "query": "...", "duration": 100.5, "vid": "v_ZMTi498qnPc",
       "relevant_windows": [[5, 8]], "ans": "A"}

  it has no options: samples keep the letter with ``options = None``.

``question`` or ``query`` becomes the query. Rows without ``span`` / ``relevant_windows`` (the test
release) are unlabeled (``meta["unlabeled"] = True``). A missing duration may come from ``durations=``.
"""

from __future__ import annotations

from vtg_rl.data.formats.common import (DurationsSpec, ParsedRows, PathLike, RowError, as_text, as_windows,
                                        check_file, get, load_durations, parse_json_objects, row_duration)
from vtg_rl.data.schema import VTGSample
from vtg_rl.data.validate import BAD_ANSWER, PARSE_ERROR


def parse(path: PathLike, *, durations: DurationsSpec = None, **_) -> ParsedRows:
    path = check_file(path)
    dur = load_durations(durations)
    out = ParsedRows(files=[str(path)])
    return parse_json_objects(path, out, lambda rec: as_text(get(rec, "qid"), "qid"),
                              lambda rec, qid: _record_to_sample(rec, qid, dur))


def _record_to_sample(rec: dict, qid: str, durations) -> VTGSample:
    vid = as_text(get(rec, "vid"), "vid")
    duration = row_duration(rec, vid, durations)
    query = get(rec, "question", "query")
    if not isinstance(query, str):
        raise RowError(PARSE_ERROR, f"question must be a string, got {query!r}")
    meta = {"dataset": "rextime"}
    for key in ("category", "source"):
        if rec.get(key) is not None:
            meta[key] = rec[key]
    if rec.get("span") is not None:
        span = rec["span"]
        # the release stores one flat [s, e]; accept a nested [[s, e]] too
        nested = isinstance(span, list) and bool(span) and isinstance(span[0], list)
        windows = as_windows(span if nested else [span], "span")
    elif rec.get("relevant_windows") is not None:
        windows = as_windows(rec["relevant_windows"])
    else:
        windows = []
        meta["unlabeled"] = True
    options = rec.get("options")
    if options is not None and not isinstance(options, list):
        raise RowError(BAD_ANSWER, f"options must be a list, got {options!r}")
    answer = rec.get("ans")
    return VTGSample(qid=qid, vid=vid, duration=duration, query=query, windows=windows,
                     answer=answer, options=options, meta=meta)
