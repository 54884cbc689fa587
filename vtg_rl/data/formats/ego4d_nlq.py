"""Ego4D Natural Language Queries (episodic memory): the official ``nlq_{train,val}.json``.

One json document::

    {"version": "v1", "date": "...", "description": "...", "manifest": "...",
     "videos": [{"video_uid": "...", "split": "val",
                 "clips": [{"clip_uid": "...", "video_start_sec": 27.0, "video_end_sec": 507.0,
                            "clip_start_sec": 0.0, "clip_end_sec": 480.0, ...,
                            "annotations": [{"annotation_uid": "...",
                                             "language_queries": [{"clip_start_sec": 12.1,
                                                                   "clip_end_sec": 15.4,
                                                                   "video_start_sec": 39.1,
                                                                   "video_end_sec": 42.4,
                                                                   "template": "Objects: Where is object X ...?",
                                                                   "query": "where was the phone?",
                                                                   "slot_x": "...", "verb_x": "..."}]}]}]}]}

The *clip* is the grounding unit (as in the benchmark's baselines): ``vid = clip_uid``,
``duration = clip_end_sec - clip_start_sec`` of the clip, and each language query is one sample whose
window is its ``[clip_start_sec, clip_end_sec]`` (seconds from the start of the clip).
``qid = "<annotation_uid>_<index>"`` with ``index`` the query's position in ``language_queries``.
``meta`` keeps ``video_uid``, the query's ``video_start_sec`` / ``video_end_sec`` and ``template``.

Some official rows have no ``query`` (absent or ``null``): they are reported as ``empty_query``,
never given a made-up text. Zero-length windows (``clip_start_sec == clip_end_sec``, present in the
release) are ``start_ge_end`` problems: drop them with policy ``drop``. Problems are located by json
path, ``file:$.videos[0].clips[1].annotations[0].language_queries[2]``.
"""

from __future__ import annotations

import json

from vtg_rl.data.formats.common import (ParsedRows, PathLike, RowError, as_number, as_text, check_file, get)
from vtg_rl.data.schema import VTGSample
from vtg_rl.data.validate import EMPTY_QUERY, PARSE_ERROR, Location


def parse(path: PathLike, **_) -> ParsedRows:
    path = check_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from err
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise ValueError(f"{path}: not an Ego4D NLQ file: expected {{'version', 'videos': [...]}}")
    out = ParsedRows(files=[str(path)], require_windows=True)

    def reject(err: RowError, json_path: str, qid=None) -> None:
        out.reject(err, Location(str(path), json_path=json_path), qid)

    for vi, video in enumerate(data["videos"]):
        vpath = f"$.videos[{vi}]"
        if not isinstance(video, dict) or not isinstance(video.get("clips"), list):
            reject(RowError(PARSE_ERROR, "a video must be an object with a 'clips' list"), vpath)
            continue
        video_uid = video.get("video_uid")
        for ci, clip in enumerate(video["clips"]):
            cpath = f"{vpath}.clips[{ci}]"
            try:
                if not isinstance(clip, dict):
                    raise RowError(PARSE_ERROR, "a clip must be an object")
                clip_uid = as_text(get(clip, "clip_uid"), "clip_uid")
                duration = (as_number(get(clip, "clip_end_sec"), "clip_end_sec")
                            - as_number(get(clip, "clip_start_sec"), "clip_start_sec"))
                annotations = get(clip, "annotations")
                if not isinstance(annotations, list):
                    raise RowError(PARSE_ERROR, f"'annotations' must be a list, got {annotations!r}")
            except RowError as err:
                reject(err, cpath)
                continue
            for ai, ann in enumerate(annotations):
                apath = f"{cpath}.annotations[{ai}]"
                try:
                    if not isinstance(ann, dict):
                        raise RowError(PARSE_ERROR, "an annotation must be an object")
                    ann_uid = as_text(get(ann, "annotation_uid"), "annotation_uid")
                    queries = get(ann, "language_queries")
                    if not isinstance(queries, list):
                        raise RowError(PARSE_ERROR, f"'language_queries' must be a list, got {queries!r}")
                except RowError as err:
                    reject(err, apath)
                    continue
                for qi, q in enumerate(queries):
                    qpath = f"{apath}.language_queries[{qi}]"
                    qid = f"{ann_uid}_{qi}"
                    try:
                        sample = _query_to_sample(q, qid, clip_uid, duration, video_uid)
                    except RowError as err:
                        reject(err, qpath, qid)
                        continue
                    out.add(sample, Location(str(path), json_path=qpath))
    return out


def _query_to_sample(q, qid: str, clip_uid: str, duration: float, video_uid) -> VTGSample:
    if not isinstance(q, dict):
        raise RowError(PARSE_ERROR, "a language query must be an object")
    text = q.get("query")
    if text is None:
        raise RowError(EMPTY_QUERY, "the language query has no 'query' text (absent or null)")
    if not isinstance(text, str):
        raise RowError(PARSE_ERROR, f"query must be a string, got {text!r}")
    start = as_number(get(q, "clip_start_sec"), "clip_start_sec")
    end = as_number(get(q, "clip_end_sec"), "clip_end_sec")
    meta = {"dataset": "ego4d-nlq", "video_uid": video_uid}
    for key in ("video_start_sec", "video_end_sec", "template"):
        if q.get(key) is not None:
            meta[key] = q[key]
    return VTGSample(qid=qid, vid=clip_uid, duration=duration, query=text, windows=[[start, end]], meta=meta)
