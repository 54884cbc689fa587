"""The unified VTG sample schema.

One sample = one (video, query) pair. Every loader produces :class:`VTGSample` objects; every
trainer, agent and metric consumes them. On disk a dataset is a jsonl file with one
``VTGSample.to_dict()`` per line; in memory it is a list of samples or an HF ``datasets.Dataset``.

``video_path`` may be relative: it is then relative to the directory of the jsonl file it was read
from (so a generated world can be moved as a folder). :func:`read_jsonl` resolves it to an absolute
path; :func:`write_jsonl` writes paths relative to the output file when they live below it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

#: Columns of the unified schema, in order.
SCHEMA_FIELDS = (
    "qid", "vid", "duration", "query", "windows", "video_path", "feature_keys",
    "relevant_clip_ids", "saliency_scores", "answer", "options", "meta",
    "task", "clip_length", "clip_labels",
)

#: Values of :attr:`VTGSample.task`.
TASK_GROUNDING = "grounding"
TASK_HIGHLIGHT = "highlight"
TASK_SUMMARIZATION = "summarization"
TASKS = (TASK_GROUNDING, TASK_HIGHLIGHT, TASK_SUMMARIZATION)
#: tasks whose samples carry per-clip labels instead of spans
CLIP_LABEL_TASKS = (TASK_HIGHLIGHT, TASK_SUMMARIZATION)


def _number(x: Any, name: str) -> float:
    """``float(x)`` for a number; a boolean is refused (``true`` must not become 1.0 silently)."""
    if isinstance(x, bool):
        raise ValueError(f"{name} must be a number, got {json.dumps(x)}")
    return float(x)


@dataclass
class VTGSample:
    """One (video, query) grounding sample.

    Attributes:
        qid: unique query id (string; QVHighlights' integer ids are stored as strings).
        vid: video id (several queries may share a video).
        duration: video duration in seconds.
        query: the sentence (or question, for grounded QA).
        windows: ground-truth spans ``[[start, end], ...]`` in seconds, ``start < end <= duration``.
            Empty for label-free releases (QVHighlights test).
        video_path: path of the video file, or ``None`` for feature-only datasets.
        feature_keys: keys of precomputed features (DETR heads), e.g. ``{"video": vid, "text": qid}``.
        relevant_clip_ids: indices of the 2 s clips that carry saliency labels (QVHighlights).
        saliency_scores: per relevant clip, one 0-4 score per annotator.
        answer: grounded QA: the correct option letter ("A".."E").
        options: grounded QA: the option texts.
        meta: free-form extra information (the synthetic world stores its ground truth here).
            Highlight/summarisation benchmarks keep the video's domain/category in ``meta["domain"]``.
        task: what the labels are. ``"grounding"`` (default): moment retrieval, ``windows`` are the
            labels. ``"highlight"``: highlight-only (YouTube Highlights), ``windows == []`` and
            ``clip_labels`` holds one 0/1 label per clip. ``"summarization"``: video summarisation
            (TVSum), ``windows == []`` and ``clip_labels`` holds several annotators' per-clip
            importance scores.
        clip_length: seconds per labelled clip of ``clip_labels`` (``None`` when there are none).
        clip_labels: one row per clip, clip ``i`` covering ``[i * clip_length, (i + 1) * clip_length)``
            seconds; each row holds one score per annotator (YouTube Highlights: ``[label]`` with
            label 0/1; TVSum: 20 annotators' 1-5 scores). Every row has the same annotator count.
    """

    qid: str
    vid: str
    duration: float
    query: str
    windows: list[list[float]] = field(default_factory=list)
    video_path: Optional[str] = None
    feature_keys: Optional[dict[str, str]] = None
    relevant_clip_ids: Optional[list[int]] = None
    saliency_scores: Optional[list[list[int]]] = None
    answer: Optional[str] = None
    options: Optional[list[str]] = None
    meta: dict[str, Any] = field(default_factory=dict)
    task: str = TASK_GROUNDING
    clip_length: Optional[float] = None
    clip_labels: Optional[list[list[float]]] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VTGSample":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown sample keys {sorted(unknown)} (schema keys: {sorted(known)})")
        kw = dict(d)
        kw["qid"] = str(kw["qid"])
        kw["vid"] = str(kw["vid"])
        kw["duration"] = _number(kw["duration"], "duration")
        kw["windows"] = [[_number(s, f"windows[{i}][0]"), _number(e, f"windows[{i}][1]")]
                         for i, (s, e) in enumerate(kw.get("windows") or [])]
        if kw.get("meta") is None:
            kw["meta"] = {}
        return cls(**kw)


class NotUtf8Error(ValueError):
    """A line of a text file that is not UTF-8; ``problem`` names the byte and its column, the message
    adds ``file:line``."""

    def __init__(self, path, lineno: int, problem: str):
        self.problem = problem
        super().__init__(f"{path}:{lineno}: {problem}")


def utf8_problem(raw: bytes) -> Optional[str]:
    """Why ``raw`` is not UTF-8 text (the first bad byte and its 1-based column), or ``None``."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
    return None


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, "str | NotUtf8Error"]]:
    """``(line number, text)`` of each line (newline kept); a line that is not UTF-8 comes as a
    :class:`NotUtf8Error` naming ``file:line``, so one bad byte costs one row, not the file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            problem = utf8_problem(raw)
            yield lineno, (NotUtf8Error(path, lineno, problem) if problem else raw.decode("utf-8"))


def iter_rows(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line of a strict text file: a line that is not UTF-8
    raises :class:`NotUtf8Error` (naming ``file:line``) instead of costing only its row."""
    for lineno, line in iter_lines(path):
        if isinstance(line, NotUtf8Error):
            raise line
        if line.strip():
            yield lineno, line


def resolve_video_path(base: Path, video_path: str) -> str:
    """``video_path`` made absolute against ``base`` with symlinks resolved; never raises (a symlink loop
    stays as it is and is reported by whoever opens it)."""
    return os.path.realpath(base / video_path)


def read_jsonl(path: str | os.PathLike, resolve_paths: bool = True) -> list[VTGSample]:
    """Read a unified-schema jsonl file. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset file")
    samples = []
    for lineno, line in iter_rows(path):
        try:
            sample = VTGSample.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{lineno}: not a unified-schema sample: {err}") from err
        if resolve_paths and sample.video_path and not os.path.isabs(sample.video_path):
            sample.video_path = resolve_video_path(path.parent, sample.video_path)
        samples.append(sample)
    return samples


def iter_dicts(samples: Iterable[VTGSample], relative_to: Optional[Path] = None) -> Iterator[dict[str, Any]]:
    for s in samples:
        d = s.to_dict()
        if relative_to is not None and d.get("video_path"):
            p = Path(d["video_path"])
            if p.is_absolute():
                try:
                    d["video_path"] = str(Path(os.path.realpath(p)).relative_to(os.path.realpath(relative_to)))
                except ValueError:
                    pass  # outside the dataset folder: keep the absolute path
        yield d


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it races with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers see either the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a file written in place gets 0666 - umask
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_jsonl(samples: Iterable[VTGSample], path: str | os.PathLike) -> None:
    """Atomically write samples as jsonl; video paths below the file's folder become relative."""
    path = Path(path)
    # allow_nan=False: JSON has no NaN; a non-finite number is an error here, never a literal NaN on disk
    lines = [json.dumps(d, sort_keys=False, allow_nan=False) for d in iter_dicts(samples, relative_to=path.parent)]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def to_hf_dataset(samples: list[VTGSample]):
    """Convert to an HF ``datasets.Dataset``. ``meta`` is stored as a JSON string so that samples
    with different meta keys do not get unified into ``None``-filled structs."""
    import datasets

    rows = [s.to_dict() for s in samples]
    for r in rows:
        r["meta"] = json.dumps(r["meta"])
        r["feature_keys"] = json.dumps(r["feature_keys"]) if r["feature_keys"] is not None else None
        # one arrow type for every row: integer labels (YouTube Highlights' 0/1) become floats
        if r["clip_labels"] is not None:
            r["clip_labels"] = [[float(x) for x in row] for row in r["clip_labels"]]
        if r["clip_length"] is not None:
            r["clip_length"] = float(r["clip_length"])
    return datasets.Dataset.from_list(rows)


def from_hf_row(row: dict[str, Any]) -> VTGSample:
    """Inverse of :func:`to_hf_dataset` for one row (extra columns, e.g. ``difficulty``, go to meta)."""
    d = {k: row.get(k) for k in SCHEMA_FIELDS if k in row}
    meta = d.get("meta")
    d["meta"] = json.loads(meta) if isinstance(meta, str) else (meta or {})
    fk = d.get("feature_keys")
    d["feature_keys"] = json.loads(fk) if isinstance(fk, str) else fk
    if d.get("task") is None:  # a dataset written before the column existed
        d.pop("task", None)
    for k, v in row.items():
        if k not in SCHEMA_FIELDS:
            d["meta"][k] = v
    return VTGSample.from_dict(d)
