"""ActivityNet Captions for moment retrieval. Two public layouts are read; :func:`detect_layout`
tells them apart from the file's content (not its name):

* ``jsonl``: the lighthouse / Moment-DETR-style release ``activitynet_{train,val}_release.jsonl``,
  one query per line::

      {"qid": 0, "query": "A man is seen ...", "duration": 82.73, "vid": "v_QOlSCBRmfWY",
       "relevant_windows": [[0.83, 19.86]]}

* ``captions``: the original ActivityNet Captions json (``train.json``, ``val_1.json``,
  ``val_2.json``), one object keyed by video id::

      {"v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81]],
                         "sentences": ["A young woman ...", " The girl ..."]}, ...}

  every sentence is one sample: ``qid = "<vid>_<index>"`` (index of the sentence in the video's
  list), its window the timestamp of the same index; the sentence is stripped of the surrounding
  whitespace the release carries. Problems are located by json path
  (``file:$["v_QOlSCBRmfWY"].sentences[1]``) since the file is one document.

The release's timestamps sometimes end a little after the rounded ``duration`` (accepted within the
loader's ``tolerance``) and a few are reversed (``start > end``): those are reported as
``start_ge_end``, never swapped. A video whose ``timestamps`` and ``sentences`` differ in length has
each unmatched entry reported (``parse_error``); its matched pairs are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from vtg_rl.data.formats import lighthouse
from vtg_rl.data.formats.common import (DurationsSpec, ParsedRows, PathLike, RowError, as_windows,
                                        check_file, load_durations, row_duration)
from vtg_rl.data.schema import VTGSample
from vtg_rl.data.validate import MISSING_FIELD, PARSE_ERROR, Location

LAYOUTS = ("jsonl", "captions")


def detect_layout(path: Path) -> str:
    """``"captions"`` when the whole file is one json object of ``{vid: {timestamps, sentences, ...}}``,
    ``"jsonl"`` when it holds one object per line (a one-line jsonl file has a ``qid``)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if first == "{" or (err.lineno == 1 and "\n" not in text.strip()):
            # one document (the captions json, pretty-printed or on one line) that is not valid JSON
            raise ValueError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
        return "jsonl"  # several documents per line (a broken line is reported by the jsonl parser)
    if isinstance(data, dict) and "qid" not in data and any(
            isinstance(v, dict) and ("timestamps" in v or "sentences" in v) for v in data.values()):
        return "captions"
    if isinstance(data, dict) and "qid" not in data and data:
        raise ValueError(f"{path}: neither the ActivityNet Captions json ({{vid: {{duration, timestamps, "
                         f"sentences}}}}) nor the lighthouse jsonl ({{qid, query, duration, vid, relevant_windows}})")
    return "jsonl"


def parse(path: PathLike, *, durations: DurationsSpec = None, **_) -> ParsedRows:
    path = check_file(path)
    if detect_layout(path) == "jsonl":
        out = lighthouse.parse(path, dataset="activitynet", allow_unlabeled=False, durations=durations)
        for s in out.samples:
            s.meta["layout"] = "jsonl"
        return out
    return _parse_captions(path, load_durations(durations))


def _parse_captions(path: Path, durations) -> ParsedRows:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = ParsedRows(files=[str(path)], require_windows=True)
    for vid, entry in data.items():
        vpath = f"$[{json.dumps(vid)}]"
        if not isinstance(entry, dict):
            out.reject(RowError(PARSE_ERROR, f"video {vid!r}: expected an object, got {type(entry).__name__}"),
                       Location(str(path), json_path=vpath))
            continue
        stamps, sentences = entry.get("timestamps"), entry.get("sentences")
        problem = None
        if not isinstance(stamps, list):
            problem = RowError(MISSING_FIELD if stamps is None else PARSE_ERROR,
                               f"video {vid!r}: 'timestamps' must be a list of [start, end], got {stamps!r}")
        elif not isinstance(sentences, list):
            problem = RowError(MISSING_FIELD if sentences is None else PARSE_ERROR,
                               f"video {vid!r}: 'sentences' must be a list of strings, got {sentences!r}")
        if problem is not None:
            out.reject(problem, Location(str(path), json_path=vpath))
            continue
        try:
            duration = row_duration(entry, vid, durations)
        except RowError as err:
            for i in range(max(len(stamps), len(sentences))):  # every sentence of the video is a lost row
                out.reject(err, Location(str(path), json_path=f"{vpath}.sentences[{i}]"), f"{vid}_{i}")
            continue
        for i in range(max(len(stamps), len(sentences))):
            qid = f"{vid}_{i}"
            loc = Location(str(path), json_path=f"{vpath}.sentences[{i}]")
            try:
                if i >= len(stamps):
                    raise RowError(PARSE_ERROR, f"sentence {i} has no timestamp ({len(stamps)} timestamps, "
                                                f"{len(sentences)} sentences)")
                if i >= len(sentences):
                    raise RowError(PARSE_ERROR, f"timestamp {i} has no sentence ({len(stamps)} timestamps, "
                                                f"{len(sentences)} sentences)")
                sentence = sentences[i]
                if not isinstance(sentence, str):
                    raise RowError(PARSE_ERROR, f"sentence must be a string, got {sentence!r}")
                windows = as_windows([stamps[i]], f"timestamps[{i}]")
            except RowError as err:
                out.reject(err, loc, qid)
                continue
            out.add(VTGSample(qid=qid, vid=vid, duration=duration, query=sentence.strip(), windows=windows,
                              meta={"dataset": "activitynet", "layout": "captions", "sentence_index": i}), loc)
    return out

