"""Loaders from the public release formats into :class:`~vtg_rl.data.schema.VTGSample`.

One front door::

    samples, report = load_samples("charades_sta_test.txt", "charades",
                                   durations="Charades_v1_test.csv", video_dir="Charades_v1_480")

Formats (:data:`FORMATS`): ``charades`` (raw ``##`` txt + durations file), ``charades-jsonl``,
``tacos``, ``qvhighlights`` (lighthouse-style jsonl), ``nextgqa`` (csv + gsub json), ``rextime``
(json array or jsonl), ``activitynet`` (lighthouse jsonl or the original Captions json),
``ego4d-nlq`` (the official ``nlq_*.json``), ``tvsum`` / ``youtube_highlight`` (lighthouse jsonl,
highlight-only samples with per-clip labels) and ``unified`` (our own jsonl). Each parser lives in
:mod:`vtg_rl.data.formats`; this module adds the video lookup and the validation policy
(:mod:`vtg_rl.data.validate`): ``strict`` raises on any problem, ``drop`` drops and counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

from vtg_rl.data.formats import activitynet, charades, ego4d_nlq, highlight_only, lighthouse, nextgqa, rextime, unified
from vtg_rl.data.formats.common import DurationsSpec, ParsedRows, PathLike
from vtg_rl.data.schema import VTGSample
from vtg_rl.data.validate import DEFAULT_TOLERANCE, UNKNOWN_VIDEO, ValidationReport, validate_samples

#: tried in order when ``video_dir`` is given and a sample has no ``video_path``
DEFAULT_VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclass(frozen=True)
class FormatSpec:
    name: str
    parse: Callable[..., ParsedRows]
    expects: str  # the files it reads, for --help and the README


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec for spec in [
        FormatSpec("charades", charades.parse,
                   "charades_sta_{train,test}.txt ('<vid> <start> <end>##<sentence>') + --durations "
                   "(Charades_v1_*.csv with id/length columns, a 'vid seconds' txt, or a {vid: seconds} json)"),
        FormatSpec("charades-jsonl", partial(lighthouse.parse, dataset="charades-sta", allow_unlabeled=False),
                   "jsonl {qid, query, duration, vid, relevant_windows}"),
        FormatSpec("tacos", partial(lighthouse.parse, dataset="tacos", allow_unlabeled=False),
                   "jsonl {qid, query, duration, vid, relevant_windows}"),
        FormatSpec("qvhighlights", partial(lighthouse.parse, dataset="qvhighlights", allow_unlabeled=True),
                   "highlight_{train,val,test}_release.jsonl {qid, query, duration, vid, relevant_windows, "
                   "relevant_clip_ids, saliency_scores}; the test release has no labels"),
        FormatSpec("nextgqa", nextgqa.parse,
                   "{val,test}.csv (video_id, ..., question, answer, qid, type, a0..a4) + --gsub gsub_*.json "
                   "(default: gsub_<csv stem>.json next to the csv)"),
        FormatSpec("rextime", rextime.parse,
                   "rextime_*.json array {qid, vid, duration, question, options, ans, span} "
                   "or the GT jsonl {qid, query, duration, vid, relevant_windows, ans}"),
        FormatSpec("activitynet", activitynet.parse,
                   "activitynet_{train,val}_release.jsonl {qid, query, duration, vid, relevant_windows}, or the "
                   "ActivityNet Captions json {vid: {duration, timestamps, sentences}} (qid <vid>_<index>)"),
        FormatSpec("ego4d-nlq", ego4d_nlq.parse,
                   "nlq_{train,val}.json {version, videos: [{video_uid, clips: [{clip_uid, clip_start_sec, "
                   "clip_end_sec, annotations: [{annotation_uid, language_queries: [...]}]}]}]}; "
                   "vid = clip_uid, clip-relative windows, qid <annotation_uid>_<index>"),
        FormatSpec("tvsum", highlight_only.parse_tvsum,
                   "tvsum_{train,val}.jsonl {qid, query, duration, vid, domain, label: clips x 20 scores 1-5}; "
                   "task summarization, clip_length 2 s unless --clip-length"),
        FormatSpec("youtube_highlight", highlight_only.parse_youtube,
                   "youtube_{train,valid}.jsonl {qid, query, duration, vid, domain, label: clips x [0/1]}; "
                   "task highlight, clip_length 1 s unless --clip-length"),
        FormatSpec("unified", unified.parse, "vtg-rl unified-schema jsonl (VTGSample.to_dict() per line)"),
    ]
}
#: formats whose samples carry per-clip labels; the only ones that take ``clip_length=``
CLIP_LABEL_FORMATS = ("tvsum", "youtube_highlight")
#: other names the recipes accept for a format
FORMAT_ALIASES = {"charades_sta": "charades", "ego4d_nlq": "ego4d-nlq"}
#: the formats of (video, query, span) samples, which the LLM recipes train on (name or alias -> format)
GROUNDING_FORMATS = {**{name: name for name in FORMATS if name not in CLIP_LABEL_FORMATS}, **FORMAT_ALIASES}


def load_samples(
    path: PathLike,
    format: str,
    *,
    durations: DurationsSpec = None,
    gsub: Optional[PathLike] = None,
    video_dir: Optional[PathLike] = None,
    policy: str = "strict",
    tolerance: float = DEFAULT_TOLERANCE,
    video_extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS,
    video_map: Union[PathLike, Mapping[str, str], None] = None,
    check_videos: bool = True,
    clip_length: Optional[float] = None,
    allow_outside_root: bool = False,
) -> tuple[list[VTGSample], ValidationReport]:
    """Read ``path`` in ``format``, fill video paths, validate, and apply ``policy``.

    Args:
        durations: durations source for formats whose rows lack them (required for ``charades``).
        gsub: NExT-GQA grounding json (default ``gsub_<csv stem>.json`` next to the csv).
        video_dir: folder of the videos; ``video_path`` becomes ``video_dir/<vid><ext>`` for the first
            existing extension of ``video_extensions`` (or ``video_dir/<video_map[vid]>[<ext>]``). A video
            that is not found is an ``unknown_video`` problem. Samples that already carry a
            ``video_path`` (``unified``) keep it, and it must exist when ``check_videos``.
        video_map: ``{vid: relative path}`` (a mapping or a json file), e.g. NExT-GQA's ``map_vid_vidorID.json``.
        tolerance: seconds a window's end may exceed the duration.
        clip_length: seconds per labelled clip for ``tvsum`` / ``youtube_highlight`` (default: the
            release's, 2 s / 1 s); other formats reject it.
        allow_outside_root: accept a relative ``video_path`` that climbs out of the dataset file's folder
            (``../../x.mp4``); by default it is a ``video_outside_root`` problem.
    Returns:
        ``(samples, report)``; under ``strict`` any problem raises ``DataValidationError`` instead.
    Raises:
        FileNotFoundError / ValueError for unusable inputs (missing file, unknown format, malformed
        durations or gsub file), always naming the file.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r} (choose from {', '.join(FORMATS)})")
    if gsub is not None and format != "nextgqa":
        raise ValueError(f"gsub= is the NExT-GQA grounding file; format {format!r} does not use it")
    if durations is not None and format == "unified":
        raise ValueError("durations= is not used by format 'unified' (its rows carry their duration)")
    if clip_length is not None and format not in CLIP_LABEL_FORMATS:
        raise ValueError(f"clip_length= is for the per-clip label formats {CLIP_LABEL_FORMATS}, not {format!r}")
    extra = {"clip_length": clip_length} if clip_length is not None else {}
    parsed = FORMATS[format].parse(path, durations=durations, gsub=gsub, **extra)
    if not parsed.samples and not parsed.row_problems:
        raise ValueError(f"{path}: the file holds no {format} rows")
    if allow_outside_root:
        _forget_outside_root(parsed)
    if video_dir is not None:
        _fill_video_paths(parsed, Path(video_dir), tuple(video_extensions), _read_video_map(video_map))
    return validate_samples(
        parsed.samples, parsed.locations, policy=policy, tolerance=tolerance, check_videos=check_videos,
        require_windows=parsed.require_windows, prior_problems=parsed.row_problems,
        sample_prior_problems=parsed.sample_problems, files=parsed.files, format=format,
        n_unparsed_rows=parsed.n_unparsed,
    )


def _forget_outside_root(parsed: ParsedRows) -> None:
    from vtg_rl.data.validate import VIDEO_OUTSIDE_ROOT

    for i in list(parsed.sample_problems):
        kept = [p for p in parsed.sample_problems[i] if p.kind != VIDEO_OUTSIDE_ROOT]
        if kept:
            parsed.sample_problems[i] = kept
        else:
            del parsed.sample_problems[i]


def _read_video_map(video_map) -> Optional[dict[str, str]]:
    if video_map is None or isinstance(video_map, Mapping):
        return None if video_map is None else {str(k): str(v) for k, v in video_map.items()}
    p = Path(video_map)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such video map file")
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a video map must be a json object {{vid: relative path}}")
    return {str(k): str(v) for k, v in data.items()}


def _fill_video_paths(parsed: ParsedRows, video_dir: Path, extensions: tuple[str, ...],
                      video_map: Optional[dict[str, str]]) -> None:
    if not video_dir.is_dir():
        raise FileNotFoundError(f"{video_dir}: video directory does not exist")
    # one listing of the folder instead of a stat per sample and extension (thousands of samples)
    listing = {entry.name for entry in os.scandir(video_dir) if entry.is_file()}
    found: dict[str, Optional[str]] = {}
    for i, sample in enumerate(parsed.samples):
        if sample.video_path:
            continue
        if sample.vid not in found:
            found[sample.vid] = _find_video(sample.vid, video_dir, extensions, video_map, listing)
        path = found[sample.vid]
        if path is None:
            rel = video_map.get(sample.vid, sample.vid) if video_map else sample.vid
            parsed.flag(i, UNKNOWN_VIDEO, f"no video {rel}{{{','.join(extensions)}}} in {video_dir}")
        else:
            sample.video_path = path


def _find_video(vid: str, video_dir: Path, extensions: tuple[str, ...], video_map, listing: set[str]):
    if video_map is not None:
        if vid not in video_map:
            return None
        rel = video_map[vid]
        candidates = [rel] + [rel + ext for ext in extensions]
        hit = next((c for c in candidates if (video_dir / c).is_file()), None)
        return str((video_dir / hit).resolve()) if hit else None
    hit = next((vid + ext for ext in extensions if vid + ext in listing), None)
    return str((video_dir / hit).resolve()) if hit else None
