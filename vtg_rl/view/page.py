"""Build the `vtg-rl view` page: dataset + prediction files -> one self-contained HTML file.

Everything the page shows is computed here once (top spans, top-1 IoU, flags) and embedded as a JSON
blob in a ``<script type="application/json">`` element; the page's own script draws one page of
samples at a time from it. Data never reaches the page as markup: the JSON is escaped so that no
``</script>`` (or any ``<``) inside a query can close the element, and the script only ever puts data
into the DOM with ``textContent``.

Conventions shared with ``vtg-rl eval``: the *top-1* window of a prediction row is its first listed
window (files written by vtg-rl list windows by decreasing score), and its IoU is the best IoU against
any annotated window.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import math
import os
import re
import tempfile
import time
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from vtg_rl.data.schema import VTGSample, current_umask, read_jsonl
from vtg_rl.metrics.submission import read_submission

log = logging.getLogger(__name__)

#: spans per prediction file shown on the timeline
TOP_K = 3
#: one colour per prediction file, in --pred order (cycled past the end); none is the found span's amber
PRED_COLOURS = ("#1f6fd1", "#d1333a", "#7d4cc2", "#11967f", "#c2549d", "#6b8e23", "#8c564b", "#17a2c4")
#: meta keys shown by name; other short scalar meta values are listed as extra facts
_KNOWN_META = {"difficulty", "zero_shot_iou_mean", "zero_shot_iou_std", "zero_shot_rollouts", "reflection"}
_MAX_EXTRA = 12
_MAX_EXTRA_TEXT = 60


def _num(x: Any, digits: int = 3) -> Optional[float]:
    """A finite float rounded for display, else None (NaN / inf / non-numbers are not shown)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, digits) if math.isfinite(v) else None


def _span(x: Any) -> Optional[list[float]]:
    if not isinstance(x, (list, tuple)) or len(x) < 2:
        return None
    s, e = _num(x[0]), _num(x[1])
    return None if s is None or e is None else [s, e]


def span_iou(a: Iterable[float], b: Iterable[float]) -> float:
    (s1, e1), (s2, e2) = list(a)[:2], list(b)[:2]
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = max(0.0, e1 - s1) + max(0.0, e2 - s2) - inter
    return inter / union if union > 0 else 0.0


def top1_iou(pred_windows: list, gt_windows: list) -> Optional[float]:
    """Best IoU of the first listed predicted window against the annotated ones (None: nothing to compare)."""
    if not pred_windows or not gt_windows:
        return None
    first = pred_windows[0]
    return max(span_iou(first[:2], g) for g in gt_windows)


def _top_windows(row: Mapping) -> list[list]:
    """The first ``TOP_K`` well-formed ``[start, end, score|None]`` windows of a prediction row."""
    out = []
    for w in row.get("pred_relevant_windows") or []:
        span = _span(w)
        if span is None:
            continue
        out.append(span + [_num(w[2]) if len(w) > 2 else None])
        if len(out) == TOP_K:
            break
    return out


@functools.lru_cache(maxsize=65536)  # queries share videos
def _video_src(video_path: Optional[str], out_dir: Path) -> Optional[str]:
    """URL of the video relative to the page's folder (so page and data can move together)."""
    if not video_path:
        return None
    rel = os.path.relpath(os.path.abspath(video_path), os.path.abspath(out_dir))
    return urllib.parse.quote(Path(rel).as_posix(), safe="/")


def _extra_meta(meta: Mapping) -> dict[str, Any]:
    extra = {}
    for k, v in meta.items():
        if k in _KNOWN_META or len(extra) >= _MAX_EXTRA:
            continue
        if isinstance(v, bool) or v is None:
            extra[k] = v
        elif isinstance(v, (int, float)):
            n = _num(v, 4)
            if n is not None:
                extra[k] = n
        elif isinstance(v, str) and len(v) <= _MAX_EXTRA_TEXT:
            extra[k] = v
    return extra


def read_flagged(path: str | os.PathLike) -> dict[str, dict]:
    """``{qid: row}`` of a ``*.flagged.jsonl`` file (any jsonl whose rows carry a ``qid``)."""
    return {str(row["qid"]): row for row in read_submission(path, what="flagged")}


def _sample_from_flagged(row: dict, flagged_path: Path) -> Optional[VTGSample]:
    """A flagged row whose sample is not in the dataset (the reflection agent's cleaned output drops
    flagged samples) still carries enough to be shown; its video path is relative to the flagged file."""
    try:
        video = row.get("video_path")
        if video and not os.path.isabs(video):
            video = str((flagged_path.parent / video).resolve())
        return VTGSample(qid=str(row["qid"]), vid=str(row.get("vid", "")), duration=float(row["duration"]),
                         query=str(row.get("query", "")), windows=[[float(s), float(e)] for s, e in row.get("windows") or []],
                         video_path=video)
    except (KeyError, TypeError, ValueError):
        return None


def _sample_record(s: VTGSample, out_dir: Path, preds: list[dict[str, dict]], flag_row: Optional[dict],
                   from_flagged: bool) -> dict:
    meta = s.meta or {}
    refl = meta.get("reflection") if isinstance(meta.get("reflection"), dict) else {}
    verdict = None
    if "flagged" in refl:
        verdict = "flagged" if refl["flagged"] else "clean"
    found = _span(refl.get("found_span"))
    verification = _num(refl.get("verification"))
    agreement = _num(refl.get("agreement"))
    if flag_row is not None:
        found = found or _span(flag_row.get("found_span"))
        verification = verification if verification is not None else _num(flag_row.get("verification"))
        agreement = agreement if agreement is not None else _num(flag_row.get("agreement"))
    windows = [w for w in (_span(w) for w in s.windows) if w is not None]
    pred_tops, ious = [], []
    for table in preds:
        row = table.get(s.qid)
        if row is None:
            pred_tops.append(None)
            ious.append(None)
            continue
        top = _top_windows(row)
        pred_tops.append(top)
        iou = top1_iou(top, windows)
        ious.append(None if iou is None else round(iou, 4))
    rec = {
        "qid": s.qid, "vid": s.vid, "query": s.query, "duration": _num(s.duration) or 0.0,
        "windows": windows, "src": _video_src(s.video_path, out_dir),
        "difficulty": _num(meta.get("difficulty")), "zero_shot_iou": _num(meta.get("zero_shot_iou_mean")),
        "verdict": verdict, "found": found, "verification": verification, "agreement": agreement,
        "flagged": flag_row is not None or verdict == "flagged",
        "preds": pred_tops, "iou": ious, "extra": _extra_meta(meta),
    }
    if from_flagged:
        rec["from_flagged_file"] = True
    return rec


def collect_view_data(samples_path: str | os.PathLike, predictions: Optional[Mapping[str, str | os.PathLike]] = None,
                      out: str | os.PathLike = "view.html", flagged: Optional[str | os.PathLike] = None,
                      title: Optional[str] = None) -> dict:
    """Everything the page embeds, as a JSON-able dict (video sources relative to ``out``'s folder)."""
    samples_path = Path(samples_path)
    out_dir = Path(out).parent
    samples = read_jsonl(samples_path)
    pred_items = list((predictions or {}).items())
    pred_tables: list[dict[str, dict]] = []
    unmatched: dict[str, int] = {}
    qids = {s.qid for s in samples}
    flag_rows = read_flagged(flagged) if flagged is not None else {}
    extra_samples = []
    for qid, row in flag_rows.items():
        if qid not in qids:
            s = _sample_from_flagged(row, Path(flagged))
            if s is not None:
                extra_samples.append(s)
                qids.add(qid)
    if extra_samples:
        log.info("%d flagged samples are not in %s; shown from the flagged file", len(extra_samples), samples_path)
    for name, path in pred_items:
        table: dict[str, dict] = {}
        for row in read_submission(path):
            table.setdefault(str(row["qid"]), row)
        pred_tables.append(table)
        unmatched[name] = sum(1 for q in table if q not in qids)
        if unmatched[name]:
            log.warning("%s: %d predicted qids are not in %s", path, unmatched[name], samples_path)
    records = [_sample_record(s, out_dir, pred_tables, flag_rows.get(s.qid), False) for s in samples]
    records += [_sample_record(s, out_dir, pred_tables, flag_rows.get(s.qid), True) for s in extra_samples]
    return {
        "title": title or f"vtg-rl view: {samples_path.name}",
        "source": {"dataset": samples_path.name, "flagged": Path(flagged).name if flagged is not None else None,
                   "predictions": {name: Path(p).name for name, p in pred_items}},
        "preds": [{"name": str(name), "colour": PRED_COLOURS[i % len(PRED_COLOURS)],
                   "unmatched": unmatched[name]} for i, (name, _) in enumerate(pred_items)],
        "has_flagged_file": flagged is not None,
        "top_k": TOP_K,
        "samples": records,
    }


def embed_json(data: Any) -> str:
    """JSON that is safe as the text of a ``<script type="application/json">`` element: no ``<``, ``>``
    or ``&`` appears literally (so neither ``</script>`` nor ``<!--`` can end or alter the element), and
    ``JSON.parse`` of the element's text gives ``data`` back."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _template() -> str:
    return resources.files("vtg_rl.view").joinpath("template.html").read_text(encoding="utf-8")


def build_page(data: dict) -> str:
    """The HTML page for :func:`collect_view_data`'s output (one file, inline CSS and JS)."""
    values = {"TITLE": html.escape(str(data.get("title", "vtg-rl view"))), "DATA": embed_json(data)}
    # one pass, so a title that contains a placeholder is not substituted again
    return re.sub(r"\{\{(TITLE|DATA)\}\}", lambda m: values[m.group(1)], _template())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Readers see the old page or the new one, never half of it (UTF-8 whatever the locale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())  # as a file written in place: the process umask decides
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_view(samples_path: str | os.PathLike, predictions: Optional[Mapping[str, str | os.PathLike]] = None,
               out: str | os.PathLike = "view.html", flagged: Optional[str | os.PathLike] = None,
               title: Optional[str] = None) -> Path:
    """Write the viewer page for ``samples_path`` (unified-schema jsonl) and ``predictions``
    (``{name: submission jsonl}``, shown in that order) to ``out``; returns ``out``.

    ``flagged``: a ``*.flagged.jsonl`` file; its qids are marked flagged, and its found span /
    verification score are shown. Flagged samples missing from the dataset are added from it.
    Video sources are written relative to ``out``'s folder: move the page together with the videos.
    """
    out = Path(out)
    t0 = time.perf_counter()
    data = collect_view_data(samples_path, predictions, out, flagged, title)
    page = build_page(data).encode("utf-8")
    _atomic_write_bytes(out, page)
    log.info("wrote %s: %d samples, %d prediction files, %.1f MB in %.2f s", out, len(data["samples"]),
             len(data["preds"]), len(page) / 1e6, time.perf_counter() - t0)
    return out
