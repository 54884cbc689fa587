"""Submission and ground-truth files for :mod:`vtg_rl.metrics`.

* :func:`write_submission` / :func:`read_submission`: QVHighlights submission jsonl, one row per
  query: ``{"qid", "pred_relevant_windows": [[s, e, score], ...], "pred_saliency_scores"?,
  "pred_answer"?}``. Trainers and ``vtg-rl predict`` write predictions with it.
* :func:`load_ground_truth`: the unified schema (``windows``), or a raw QVHighlights /
  lighthouse-style jsonl (``relevant_windows``, integer ``qid``; ReXTime's ``ans``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

from vtg_rl.data.schema import VTGSample, atomic_write_text, read_jsonl


class SubmissionError(ValueError):
    """A prediction (or ground-truth) row that cannot be scored; the message names the qid."""


def read_submission(path: str | os.PathLike, what: str = "prediction") -> list[dict]:
    """Read a submission jsonl (rows as written; qids are not converted), or any jsonl of rows that carry a
    ``qid`` (``what`` names them in errors: "flagged" for an agent's flagged file). Errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    from vtg_rl.data.schema import NotUtf8Error, iter_lines

    rows = []
    for lineno, line in iter_lines(path):
        if isinstance(line, NotUtf8Error):  # named by file:line, like every other bad row
            raise SubmissionError(str(line))
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SubmissionError(f"{path}:{lineno}: not valid JSON: {err}") from err
        if not isinstance(row, dict) or "qid" not in row:
            raise SubmissionError(f"{path}:{lineno}: a {what} row must be an object with a 'qid'")
        rows.append(row)
    return rows


def _plain(x: Any) -> Any:
    """numpy / torch values -> JSON-able Python values."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def write_submission(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Atomically write prediction rows as a QVHighlights submission jsonl.

    Windows are re-listed by decreasing score (stable), so that the first listed window, which
    R1 and mIoU use, is the best-scored one. numpy / torch values are converted. A non-finite value
    or a window that is not ``[start, end, score]`` raises :class:`SubmissionError` naming the qid.
    """
    lines = []
    for i, row in enumerate(rows):
        row = _plain(dict(row))
        if "qid" not in row:
            raise SubmissionError(f"prediction row {i} has no 'qid'")
        qid = row["qid"]
        windows = row.get("pred_relevant_windows")
        if windows is not None:
            for w in windows:
                if not (isinstance(w, list) and len(w) == 3):
                    raise SubmissionError(f"qid {qid}: window {w!r} is not [start, end, score]")
            row["pred_relevant_windows"] = sorted(windows, key=lambda w: -w[2])
        try:
            lines.append(json.dumps(row, allow_nan=False))
        except (ValueError, TypeError) as err:
            raise SubmissionError(f"qid {qid}: cannot be written ({err}; NaN/inf are not allowed)") from err
    path = Path(path)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def _sample_from_raw(d: dict) -> VTGSample:
    """A raw QVHighlights / lighthouse-style row (``relevant_windows``; ReXTime's ``ans``) as a sample."""
    known = {"qid", "vid", "duration", "query", "relevant_windows", "relevant_clip_ids", "saliency_scores",
             "answer", "ans", "options"}
    windows = d.get("relevant_windows") or []
    if windows and not isinstance(windows[0], (list, tuple)):
        windows = [windows]  # a single [s, e] pair
    return VTGSample(
        qid=str(d["qid"]), vid=str(d.get("vid", "")), duration=float(d["duration"]), query=str(d.get("query", "")),
        windows=[[float(s), float(e)] for s, e in windows],
        relevant_clip_ids=d.get("relevant_clip_ids"), saliency_scores=d.get("saliency_scores"),
        answer=d.get("answer", d.get("ans")), options=d.get("options"),
        meta={k: v for k, v in d.items() if k not in known})


def as_samples(rows: Sequence[Union[VTGSample, dict]], source: str = "ground truth") -> list[VTGSample]:
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, VTGSample):
            out.append(r)
            continue
        try:
            out.append(_sample_from_raw(r) if "windows" not in r else VTGSample.from_dict(r))
        except (KeyError, TypeError, ValueError) as err:
            raise SubmissionError(f"{source} row {i} (qid {r.get('qid')!r}): cannot be read: {err!r}") from err
    return out


def load_ground_truth(path: str | os.PathLike) -> list[VTGSample]:
    """Ground truth from a unified-schema jsonl, or from a raw QVHighlights-style one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ground-truth file")
    with path.open() as f:
        first = next((line for line in f if line.strip()), None)
    if first is None:
        raise SubmissionError(f"{path}: empty ground-truth file")
    if "windows" in json.loads(first):
        return read_jsonl(path, resolve_paths=False)
    rows = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(_sample_from_raw(json.loads(line)))
                except (KeyError, TypeError, ValueError) as err:
                    raise SubmissionError(f"{path}:{lineno}: not a ground-truth row: {err!r}") from err
    return rows
