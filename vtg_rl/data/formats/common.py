"""Shared helpers of the format parsers: located records, json/jsonl reading with line numbers,
durations files, and strict field access that turns bad values into problems instead of exceptions.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from vtg_rl.data.schema import VTGSample
from vtg_rl.data.validate import MISSING_FIELD, PARSE_ERROR, UNKNOWN_DURATION, Location, Problem

PathLike = Union[str, os.PathLike]
#: a durations source: a mapping vid -> seconds, one file, or several files (e.g. Charades train + test csv)
DurationsSpec = Union[Mapping[str, float], PathLike, Sequence[PathLike], None]


class RowError(Exception):
    """A row cannot become a sample; carries the problem kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class ParsedRows:
    """What a format parser read: the samples with their locations, and the rows it had to reject."""

    files: list[str]
    samples: list[VTGSample] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    row_problems: list[Problem] = field(default_factory=list)  # rows that did not become samples
    sample_problems: dict[int, list[Problem]] = field(default_factory=dict)  # index -> problems
    require_windows: bool = False

    def add(self, sample: VTGSample, loc: Location) -> int:
        self.samples.append(sample)
        self.locations.append(loc)
        return len(self.samples) - 1

    def reject(self, err: RowError, loc: Location, qid: Optional[str] = None) -> None:
        self.row_problems.append(Problem(err.kind, str(err), loc, qid))

    def flag(self, index: int, kind: str, message: str) -> None:
        """A problem with a sample that was built (kept for counting; dropped under 'drop')."""
        s = self.samples[index]
        self.sample_problems.setdefault(index, []).append(Problem(kind, message, self.locations[index], s.qid))

    @property
    def n_unparsed(self) -> int:
        return len({p.location for p in self.row_problems})


def check_file(path: PathLike, what: str = "dataset file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


# --------------------------------------------------------------------------- field access
def get(obj: Mapping[str, Any], key: str, *alternatives: str) -> Any:
    """``obj[key]`` (or the first present alternative key); a missing field is a RowError."""
    for k in (key, *alternatives):
        if k in obj and obj[k] is not None:
            return obj[k]
    names = " / ".join(repr(k) for k in (key, *alternatives))
    raise RowError(MISSING_FIELD, f"missing field {names}")


def as_text(value: Any, name: str) -> str:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise RowError(PARSE_ERROR, f"{name} must be a string, got {value!r}")


def as_number(value: Any, name: str) -> float:
    """A JSON number (or a numeric string, as in csv/txt releases). NaN/inf pass through on purpose:
    the validator reports them with their kind instead of a parse error."""
    if isinstance(value, bool):
        raise RowError(PARSE_ERROR, f"{name} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise RowError(PARSE_ERROR, f"{name} must be a number, got {value!r}")


def as_windows(value: Any, name: str = "relevant_windows") -> list[list[float]]:
    """``[[s, e], ...]`` of numbers; a single flat ``[s, e]`` (ReXTime's ``span``) is not accepted here."""
    if not isinstance(value, list):
        raise RowError(PARSE_ERROR, f"{name} must be a list of [start, end] pairs, got {value!r}")
    out = []
    for i, w in enumerate(value):
        if not isinstance(w, (list, tuple)) or len(w) != 2:
            raise RowError(PARSE_ERROR, f"{name}[{i}] = {w!r} is not a [start, end] pair")
        out.append([as_number(w[0], f"{name}[{i}][0]"), as_number(w[1], f"{name}[{i}][1]")])
    return out


# --------------------------------------------------------------------------- json / jsonl records
def iter_json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, record)`` from a jsonl file (one object per line) or a json file holding an
    array of objects (line = where each element starts). A malformed jsonl line yields a RowError
    as its record, so the caller can report it and go on."""
    from vtg_rl.data.schema import iter_lines

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:  # one bad byte costs its row (jsonl) or names where it is (json array)
        if raw.lstrip().startswith(b"["):
            line = raw.count(b"\n", 0, err.start) + 1
            col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
            raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {col})") from None
        for lineno, line in iter_lines(path):
            if isinstance(line, str) and not line.strip():
                continue
            if not isinstance(line, str):
                yield lineno, RowError(PARSE_ERROR, line.problem)
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err2:
                yield lineno, RowError(PARSE_ERROR, f"not valid JSON: {err2.msg} (column {err2.colno})")
        return
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _iter_json_array(path, text)
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as err:
            yield lineno, RowError(PARSE_ERROR, f"not valid JSON: {err.msg} (column {err.colno})")


def parse_json_objects(path: Path, out: "ParsedRows", qid_of: Callable[[dict], Optional[str]],
                       to_sample: Callable[[dict, Optional[str]], VTGSample]) -> "ParsedRows":
    """The loop every json/jsonl format shares: each record must be an object; ``qid_of(rec)`` names it
    for problem reports and ``to_sample(rec, qid)`` converts it. A RowError from either (or a malformed
    line) rejects that row with its file:line and goes on."""
    for lineno, rec in iter_json_records(path):
        loc = Location(str(path), lineno)
        qid = None
        try:
            if isinstance(rec, RowError):
                raise rec
            if not isinstance(rec, dict):
                raise RowError(PARSE_ERROR, f"expected a json object, got {type(rec).__name__}")
            qid = qid_of(rec)
            sample = to_sample(rec, qid)
        except RowError as err:
            out.reject(err, loc, qid)
            continue
        out.add(sample, loc)
    return out


def _iter_json_array(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    n = len(text)

    def skip_ws(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip_ws(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            # an array cannot be resynchronised after a syntax error: the whole file is unusable
            raise ValueError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from err
        yield line, obj
        pos = skip_ws(pos)
        if pos < n and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            return
        raise ValueError(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected ',' or ']' in the JSON array")


# --------------------------------------------------------------------------- durations
_ID_COLUMNS = ("id", "vid", "video_id", "video")
_DURATION_COLUMNS = ("length", "duration")


def load_durations(spec: DurationsSpec) -> Optional[dict[str, float]]:
    """Read video durations (seconds) keyed by vid.

    Accepted: a mapping; a ``.csv`` with a header holding an id column (``id`` as in Charades_v1_*.csv,
    or ``vid`` / ``video_id`` / ``video``) and a ``length`` or ``duration`` column; a ``.json`` object
    ``{vid: seconds}`` or ``{vid: {"duration": seconds}}``; any other file as ``vid seconds`` per line
    (whitespace or comma separated, ``#`` comments). Several files may be given (later ones win).
    Malformed entries raise ``ValueError`` naming ``file:line`` (a durations file is configuration).
    """
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return {str(k): float(v) for k, v in spec.items()}
    paths = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out: dict[str, float] = {}
    for p in paths:
        out.update(_durations_file(check_file(p, "durations file")))
    return out


def _durations_file(path: Path) -> dict[str, float]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheet exports start with a BOM
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            id_col = next((c for c in _ID_COLUMNS if c in header), None)
            dur_col = next((c for c in _DURATION_COLUMNS if c in header), None)
            if id_col is None or dur_col is None:
                raise ValueError(f"{path}:1: a durations csv needs an id column {_ID_COLUMNS} and a "
                                 f"duration column {_DURATION_COLUMNS}; header is {header}")
            out = {}
            for row in reader:
                out[row[id_col]] = _duration_value(row[dur_col], path, reader.line_num)
            return out
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a durations json must be an object {{vid: seconds}}")
        out = {}
        for vid, v in data.items():
            v = v.get("duration") if isinstance(v, dict) else v
            out[str(vid)] = _duration_value(v, path, None, vid)
        return out
    out = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.replace(",", " ").split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'vid duration', got {line!r}")
            out[parts[0]] = _duration_value(parts[1], path, lineno)
    return out


def _duration_value(v: Any, path: Path, lineno: Optional[int], vid: Optional[str] = None) -> float:
    where = f"{path}:{lineno}" if lineno is not None else f"{path} [{vid}]"
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: duration {v!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: duration {v!r} is not finite")
    return x


def row_duration(rec: dict, vid: str, durations) -> float:
    """A row's duration: its own ``duration``, else the durations file's entry for its video; a row with
    neither is a ``missing_field`` (or ``unknown_duration`` when a durations file was given)."""
    if rec.get("duration") is not None:
        return as_number(rec["duration"], "duration")
    if durations is not None:
        if vid not in durations:
            raise RowError(UNKNOWN_DURATION, f"no duration in the row and video {vid!r} is not in the durations file")
        return durations[vid]
    return as_number(get(rec, "duration"), "duration")  # raises missing_field
