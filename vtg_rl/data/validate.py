"""Validation of :class:`~vtg_rl.data.schema.VTGSample` lists.

Every problem names the file and line it came from, the qid, a *kind* (for counting) and a message.
Two policies:

* ``strict`` (default): any problem raises one :class:`DataValidationError` that lists the problems
  (the first :data:`MAX_LISTED` with ``file:line``) and carries the full :class:`ValidationReport`.
* ``drop``: samples with a problem are dropped; the report counts problems per kind.

A sample is never silently fixed: no clamping of windows to the duration, no re-ordering of
``start``/``end``, no guessing of missing values. ``end`` may exceed ``duration`` by at most
``tolerance`` seconds (default :data:`DEFAULT_TOLERANCE` = 0.5 s) because public releases store
durations rounded (NExT-GQA: whole seconds; QVHighlights: 2 s-clip multiples) while windows come from
the annotators' players; anything beyond that is reported.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from vtg_rl.data.schema import CLIP_LABEL_TASKS, TASKS, VTGSample

#: seconds by which a window's end may exceed the video duration (rounded durations in releases)
DEFAULT_TOLERANCE = 0.5
#: how many problems a strict-mode error lists before "... and N more"
MAX_LISTED = 20
#: QVHighlights-style saliency clips are 2 s long
SALIENCY_CLIP_SECONDS = 2.0
POLICIES = ("strict", "drop")

# Problem kinds (the keys of ValidationReport.counts).
PARSE_ERROR = "parse_error"              # the row is not valid json / csv / txt of its format
MISSING_FIELD = "missing_field"          # a required field is absent
EMPTY_QUERY = "empty_query"
BAD_DURATION = "bad_duration"            # duration <= 0 or not a finite number
UNKNOWN_DURATION = "unknown_duration"    # the durations file has no entry for the video
NON_FINITE = "non_finite"                # a window bound is NaN / inf / not a number
NEGATIVE_START = "negative_start"
START_GE_END = "start_ge_end"
END_BEYOND_DURATION = "end_beyond_duration"
NO_WINDOWS = "no_windows"                # labels are required (or promised by the source) but absent
BAD_SALIENCY = "bad_saliency"            # clip ids / scores of inconsistent shape or values
BAD_ANSWER = "bad_answer"                # answer letter not among the options, malformed options
UNKNOWN_VIDEO = "unknown_video"          # the video file does not exist
DUPLICATE_QID = "duplicate_qid"
VIDEO_OUTSIDE_ROOT = "video_outside_root"  # a relative video_path that climbs out of the dataset's folder
BAD_TASK = "bad_task"                    # ``task`` is not one of schema.TASKS
BAD_CLIP_LABELS = "bad_clip_labels"      # clip_labels / clip_length missing or of bad shape / values
UNEXPECTED_WINDOWS = "unexpected_windows"  # a highlight/summarization sample carries spans

PROBLEM_KINDS = (
    PARSE_ERROR, MISSING_FIELD, EMPTY_QUERY, BAD_DURATION, UNKNOWN_DURATION, NON_FINITE, NEGATIVE_START,
    START_GE_END, END_BEYOND_DURATION, NO_WINDOWS, BAD_SALIENCY, BAD_ANSWER, UNKNOWN_VIDEO, DUPLICATE_QID,
    BAD_TASK, BAD_CLIP_LABELS, UNEXPECTED_WINDOWS, VIDEO_OUTSIDE_ROOT,
)


@dataclass(frozen=True)
class Location:
    """Where a sample came from: a file and a 1-based line number (``None`` when not line-based),
    or, for a single json document (Ego4D-NLQ, ActivityNet Captions), the json path of the record,
    e.g. ``$.videos[0].clips[1].annotations[0].language_queries[2]`` (shown as ``file:<json path>``)."""

    file: str
    line: Optional[int] = None
    json_path: Optional[str] = None

    def __str__(self) -> str:
        if self.json_path is not None:
            return f"{self.file}:{self.json_path}"
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    location: Location
    qid: Optional[str] = None

    def __str__(self) -> str:
        qid = f" qid={self.qid}" if self.qid is not None else ""
        return f"{self.location}: [{self.kind}]{qid} {self.message}"


@dataclass
class ValidationReport:
    """What a load/validation found. ``counts`` is per problem kind; a sample with two problems is
    dropped once (``n_dropped``) but counted under both kinds."""

    policy: str
    files: list[str]
    format: Optional[str] = None
    n_rows: int = 0                 # rows read (samples built + rows that could not be parsed)
    n_bad_rows: int = 0             # rows with at least one problem
    n_samples: int = 0              # valid samples (the ones returned; under strict only if n_bad_rows == 0)
    n_dropped: int = 0              # rows removed under policy "drop" (== n_bad_rows), 0 under strict
    n_videos: int = 0               # distinct vids among the valid samples
    n_labeled: int = 0              # valid samples with at least one window (or, highlight-only, clip labels)
    n_unlabeled: int = 0            # valid samples without windows or clip labels (label-free releases)
    problems: list[Problem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, max_listed: int = MAX_LISTED) -> str:
        """Multi-line human-readable summary (used by ``vtg-rl data check`` and the strict error)."""
        lines = [
            f"files: {', '.join(self.files)}" + (f" (format {self.format})" if self.format else ""),
            f"rows: {self.n_rows}  with problems: {self.n_bad_rows}  dropped: {self.n_dropped}",
            f"samples: {self.n_samples}  videos: {self.n_videos}  labeled: {self.n_labeled}  "
            f"unlabeled: {self.n_unlabeled}" + ("  (valid rows)" if self.n_bad_rows and not self.n_dropped else ""),
            f"problems: {len(self.problems)}"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items())) + ")" if self.problems else ""),
        ]
        lines += [f"  {p}" for p in self.problems[:max_listed]]
        if len(self.problems) > max_listed:
            lines.append(f"  ... and {len(self.problems) - max_listed} more")
        return "\n".join(lines)


class DataValidationError(ValueError):
    """Raised under policy ``strict``; ``.report`` holds every problem."""

    def __init__(self, report: ValidationReport):
        self.report = report
        listed = "\n".join(f"  {p}" for p in report.problems[:MAX_LISTED])
        more = len(report.problems) - MAX_LISTED
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(report.counts.items()))
        super().__init__(
            f"{len(report.problems)} problem(s) in {', '.join(report.files)} ({counts}):\n{listed}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\n(policy 'strict'; use policy 'drop' to drop the bad samples and count them)"
        )


# --------------------------------------------------------------------------- per-sample checks
def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def window_problems(windows, duration: Optional[float], tolerance: float) -> list[tuple[str, str]]:
    """``(kind, message)`` for each bad window; ``duration=None`` skips the end-vs-duration check."""
    out = []
    for i, w in enumerate(windows):
        if not isinstance(w, (list, tuple)) or len(w) != 2:
            out.append((PARSE_ERROR, f"window {i} {w!r} is not a [start, end] pair"))
            continue
        s, e = w
        if not (_is_number(s) and _is_number(e)) or not (math.isfinite(s) and math.isfinite(e)):
            out.append((NON_FINITE, f"window {i} [{s!r}, {e!r}] has a non-finite bound"))
            continue
        if s < 0:
            out.append((NEGATIVE_START, f"window {i} start {s} is negative"))
        if s >= e:
            out.append((START_GE_END, f"window {i} start {s} >= end {e}"))
        if duration is not None and e > duration + tolerance:
            out.append((END_BEYOND_DURATION,
                        f"window {i} end {e} is beyond the duration {duration} (+ tolerance {tolerance} s)"))
    return out


def saliency_problems(sample: VTGSample, tolerance: float) -> list[tuple[str, str]]:
    ids, scores = sample.relevant_clip_ids, sample.saliency_scores
    if ids is None and scores is None:
        return []
    if ids is None or scores is None:
        missing = "relevant_clip_ids" if ids is None else "saliency_scores"
        return [(BAD_SALIENCY, f"{missing} is missing while the other saliency field is given")]
    if not isinstance(ids, list) or not isinstance(scores, list):
        return [(BAD_SALIENCY, "relevant_clip_ids and saliency_scores must be lists")]
    out = []
    if len(ids) != len(scores):
        out.append((BAD_SALIENCY, f"{len(ids)} relevant_clip_ids but {len(scores)} saliency_scores rows"))
    bad_ids = [c for c in ids if not (isinstance(c, int) and not isinstance(c, bool) and c >= 0)]
    if bad_ids:
        out.append((BAD_SALIENCY, f"clip ids must be non-negative integers, got {bad_ids[:5]}"))
    elif len(set(ids)) != len(ids):
        out.append((BAD_SALIENCY, "relevant_clip_ids has duplicates"))
    elif ids and _is_number(sample.duration) and max(ids) * SALIENCY_CLIP_SECONDS >= sample.duration + tolerance:
        out.append((BAD_SALIENCY, f"clip id {max(ids)} starts at {max(ids) * SALIENCY_CLIP_SECONDS:g} s, "
                                  f"beyond the duration {sample.duration}"))
    widths = {len(r) if isinstance(r, list) else -1 for r in scores}
    if -1 in widths or 0 in widths:
        out.append((BAD_SALIENCY, "each saliency_scores row must be a non-empty list (one score per annotator)"))
    elif len(widths) > 1:
        out.append((BAD_SALIENCY, f"saliency_scores rows have different annotator counts {sorted(widths)}"))
    elif not all(_is_number(x) and math.isfinite(x) and x >= 0 for r in scores for x in r):
        out.append((BAD_SALIENCY, "saliency scores must be finite non-negative numbers"))
    return out


def clip_label_problems(sample: VTGSample, tolerance: float) -> list[tuple[str, str]]:
    """Problems of ``task`` / ``clip_length`` / ``clip_labels``.

    ``"highlight"`` / ``"summarization"`` samples need ``clip_length > 0`` and a non-empty
    ``clip_labels`` (rows of equal, non-zero annotator count; finite numbers, booleans rejected) and
    must have ``windows == []``; the clips may not start beyond ``duration + tolerance``.
    ``"grounding"`` samples need none of them, but clip labels given there are checked the same way.
    """
    task = sample.task
    if task not in TASKS:
        return [(BAD_TASK, f"task {task!r} is not one of {list(TASKS)}")]
    out: list[tuple[str, str]] = []
    labels, length = sample.clip_labels, sample.clip_length
    if task in CLIP_LABEL_TASKS:
        if sample.windows:
            out.append((UNEXPECTED_WINDOWS, f"a {task!r} sample must have windows == [] (it has no spans), "
                                            f"got {len(sample.windows)} window(s)"))
        if labels is None:
            out.append((BAD_CLIP_LABELS, f"a {task!r} sample needs clip_labels"))
        if length is None:
            out.append((BAD_CLIP_LABELS, f"a {task!r} sample needs clip_length"))
    elif labels is None and length is None:
        return out
    if length is not None and not (_is_number(length) and math.isfinite(length) and length > 0):
        out.append((BAD_CLIP_LABELS, f"clip_length {length!r} is not a positive finite number"))
        length = None
    if labels is None:
        return out
    if not isinstance(labels, list) or not labels:
        out.append((BAD_CLIP_LABELS, "clip_labels must be a non-empty list of rows (one per clip)"))
        return out
    widths = {len(r) if isinstance(r, list) else -1 for r in labels}
    if -1 in widths or 0 in widths:
        out.append((BAD_CLIP_LABELS, "each clip_labels row must be a non-empty list (one score per annotator)"))
        return out
    if len(widths) > 1:
        out.append((BAD_CLIP_LABELS, f"clip_labels rows have different annotator counts {sorted(widths)}"))
    bad = [(i, x) for i, r in enumerate(labels) for x in r if not (_is_number(x) and math.isfinite(x))]
    if bad:
        i, x = bad[0]
        out.append((BAD_CLIP_LABELS, f"clip_labels must be finite numbers (booleans are not labels): "
                                     f"clip {i} has {x!r} ({len(bad)} bad value(s))"))
    duration = sample.duration
    if (length is not None and _is_number(duration) and math.isfinite(duration)
            and (len(labels) - 1) * length >= duration + tolerance):
        out.append((BAD_CLIP_LABELS, f"{len(labels)} clips of {length:g} s: clip {len(labels) - 1} starts at "
                                     f"{(len(labels) - 1) * length:g} s, beyond the duration {duration}"))
    return out


def answer_problems(sample: VTGSample) -> list[tuple[str, str]]:
    opts, ans = sample.options, sample.answer
    out = []
    if opts is not None:
        if not isinstance(opts, list) or not opts or not all(isinstance(o, str) and o.strip() for o in opts):
            out.append((BAD_ANSWER, f"options must be a non-empty list of non-empty strings, got {opts!r}"))
            return out
    if ans is None:
        return out
    if not (isinstance(ans, str) and len(ans) == 1 and "A" <= ans <= "Z"):
        out.append((BAD_ANSWER, f"answer {ans!r} is not an option letter 'A'..'Z'"))
    elif opts is not None and ord(ans) - ord("A") >= len(opts):
        out.append((BAD_ANSWER, f"answer {ans!r} is not among the {len(opts)} options "
                                f"({'A'}..{chr(ord('A') + len(opts) - 1)})"))
    return out


def sample_problems(sample: VTGSample, *, tolerance: float = DEFAULT_TOLERANCE, check_videos: bool = True,
                    require_windows: bool = False) -> list[tuple[str, str]]:
    """All ``(kind, message)`` problems of one sample (location-free; see :func:`validate_samples`)."""
    out: list[tuple[str, str]] = []
    if not isinstance(sample.query, str) or not sample.query.strip():
        out.append((EMPTY_QUERY, "query is empty"))
    duration = sample.duration
    if not _is_number(duration) or not math.isfinite(duration) or duration <= 0:
        out.append((BAD_DURATION, f"duration {duration!r} is not a positive finite number"))
        duration = None
    out += window_problems(sample.windows or [], duration, tolerance)
    if require_windows and not sample.windows and sample.task not in CLIP_LABEL_TASKS:
        out.append((NO_WINDOWS, "no ground-truth windows"))
    out += saliency_problems(sample, tolerance)
    out += clip_label_problems(sample, tolerance)
    out += answer_problems(sample)
    if check_videos and sample.video_path and not os.path.isfile(sample.video_path):
        out.append((UNKNOWN_VIDEO, f"video file {sample.video_path} does not exist"))
    return out


# --------------------------------------------------------------------------- whole-list validation
def _location_order(p: Problem):
    """Sort key: file, then line, then json path with its indices compared as numbers
    (``clips[2]`` before ``clips[10]``)."""
    path = p.location.json_path or ""
    parts = tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"(\d+)", path) if x)
    return p.location.file, p.location.line or 0, parts


def validate_samples(
    samples: Sequence[VTGSample],
    locations: Optional[Sequence[Location]] = None,
    *,
    policy: str = "strict",
    tolerance: float = DEFAULT_TOLERANCE,
    check_videos: bool = True,
    require_windows: bool = False,
    prior_problems: Iterable[Problem] = (),
    sample_prior_problems: Optional[Mapping[int, list[Problem]]] = None,
    files: Optional[list[str]] = None,
    format: Optional[str] = None,
    n_unparsed_rows: int = 0,
) -> tuple[list[VTGSample], ValidationReport]:
    """Validate samples and apply ``policy``.

    Args:
        samples, locations: the samples and where each came from (same length; default ``<memory>:i``).
        prior_problems: problems of rows that could not become samples (parse errors); they count as
            ``n_unparsed_rows`` dropped rows.
        sample_prior_problems: problems a loader found for sample ``i`` (e.g. unknown video).
        require_windows: report samples without windows (formats whose release always has labels).
    Returns:
        ``(kept samples, report)``. Under ``strict`` any problem raises :class:`DataValidationError`.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown validation policy {policy!r} (choose from {POLICIES})")
    if locations is None:
        locations = [Location("<memory>", i + 1) for i in range(len(samples))]
    if len(locations) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(locations)} locations")
    problems: list[Problem] = list(prior_problems)
    bad: set[int] = set()
    first_seen: dict[str, Location] = {}
    for i, (s, loc) in enumerate(zip(samples, locations)):
        mine = list((sample_prior_problems or {}).get(i, []))
        mine += [Problem(k, m, loc, s.qid) for k, m in sample_problems(
            s, tolerance=tolerance, check_videos=check_videos, require_windows=require_windows)]
        if s.qid in first_seen:  # the first occurrence is kept, later ones are the problem
            mine.append(Problem(DUPLICATE_QID, f"qid already used at {first_seen[s.qid]}", loc, s.qid))
        else:
            first_seen[s.qid] = loc
        if mine:
            bad.add(i)
            problems += mine
    problems.sort(key=_location_order)
    # under strict any problem raises below, so what is returned is always the valid samples
    kept = [s for i, s in enumerate(samples) if i not in bad]
    n_bad_rows = len(bad) + n_unparsed_rows
    report = ValidationReport(
        policy=policy, files=files or sorted({loc.file for loc in locations}), format=format,
        n_rows=len(samples) + n_unparsed_rows, n_bad_rows=n_bad_rows, n_samples=len(kept),
        n_dropped=n_bad_rows if policy == "drop" else 0,
        n_videos=len({s.vid for s in kept}), n_labeled=sum(1 for s in kept if s.windows or s.clip_labels),
        n_unlabeled=sum(1 for s in kept if not (s.windows or s.clip_labels)), problems=problems,
    )
    if policy == "strict" and problems:
        raise DataValidationError(report)
    return kept, report
