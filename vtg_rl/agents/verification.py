"""Boundary Reflection's verification (:mod:`vtg_rl.agents.reflection`, module docstring "Verification"):
does a span found outside the annotation show what the annotated span shows, where it shows it?

Per-time-step features (the model's own vision tokens, or :func:`pixel_features`) of the unmasked video are
compared: :func:`span_appearance_scores` is about 1 for another occurrence of the annotated event and about
0 for background or an object elsewhere.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: the query's region: cells whose deviation from the background, at this quantile over the annotated
#: steps (i.e. nearly throughout the annotation) less their deviation next to it, is at least
#: REGION_FRACTION of the largest one
CONSISTENCY_QUANTILE = 0.1
REGION_FRACTION = 0.5
#: an answer's score: this quantile of its steps' projections (robust to answers that overshoot)
SCORE_QUANTILE = 0.75


def pixel_features(video, grid: int = 7):
    """Mean colour of each cell of a ``grid`` x ``grid`` partition of every frame: ``(features (T, grid*grid, C),
    starts (T,), ends (T,))``, frame i shown during ``[t_i, t_{i+1})``."""
    frames = np.asarray(video.frames, dtype=np.float32)
    t, h, w, c = frames.shape
    if h < grid or w < grid:
        raise ValueError(f"{video.path}: frames of {h}x{w} pixels are smaller than the {grid}x{grid} verify_grid")
    rows = np.array_split(np.arange(h), grid)
    cols = np.array_split(np.arange(w), grid)
    cells = np.stack([frames[:, r[0]:r[-1] + 1, k[0]:k[-1] + 1].mean(axis=(1, 2)) for r in rows for k in cols], axis=1)
    starts, ends = step_intervals(video.timestamps, 1)
    return cells, starts, ends


def step_intervals(timestamps, frames_per_step: int):
    """``(starts, ends)`` of consecutive groups of ``frames_per_step`` frames (a temporal patch, or one frame)."""
    ts = np.asarray(timestamps, dtype=np.float64)
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0
    frame_ends = np.append(ts[1:], ts[-1] + step)
    p = int(frames_per_step)
    starts = ts[::p]
    ends = frame_ends[np.minimum(np.arange(len(starts)) * p + p, len(ts)) - 1]
    return starts, ends


def _steps_in(starts, ends, span, min_fraction: float = 0.5) -> np.ndarray:
    """Steps at least ``min_fraction`` inside ``span``; if none, every step that touches it."""
    s, e = float(span[0]), float(span[1])
    inter = np.clip(np.minimum(ends, e) - np.maximum(starts, s), 0.0, None)
    inside = inter >= min_fraction * (ends - starts)
    return inside if inside.any() else inter > 0


def span_appearance_scores(features, starts, ends, annotated, spans) -> list[Optional[float]]:
    """How much each of ``spans`` shows what the ``annotated`` windows show, where they show it (module
    docstring, "Verification"): about 1 for another occurrence, about 0 for background or an object elsewhere.

    ``features`` is ``(T, L, D)`` (or ``(T, D)``: one cell) over time steps ``[starts[t], ends[t])``; ``None``
    for a span that is ``None``, has no step, or leaves no step outside itself and the annotation.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None, :]
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    if x.ndim != 3 or len(x) != len(starts) or len(starts) != len(ends):
        raise ValueError(f"features {x.shape} must be (T, L, D) with T = {len(starts)} step times")
    ann = np.zeros(len(x), dtype=bool)
    touched = np.zeros(len(x), dtype=bool)
    for w in annotated:
        ann |= _steps_in(starts, ends, w)
        touched |= (ends > float(w[0])) & (starts < float(w[1]))
    scores: list[Optional[float]] = []
    if not ann.any():
        return [None] * len(spans)
    # the steps right before and right after each annotated window (not touching any)
    adjacent = ~touched & (np.append(touched[1:], False) | np.insert(touched[:-1], 0, False))
    sig_all = np.median(x[ann], axis=0)
    for span in spans:
        if span is None:
            scores.append(None)
            continue
        cand = _steps_in(starts, ends, span)
        rest = ~(touched | ((ends > float(span[0])) & (starts < float(span[1]))))
        if not cand.any() or not rest.any():
            scores.append(None)
            continue
        background = np.median(x[rest], axis=0)
        signature = sig_all - background
        deviation = np.linalg.norm(x[ann] - background, axis=-1)  # (steps, L)
        weight = np.quantile(deviation, CONSISTENCY_QUANTILE, axis=0)
        if adjacent.any():  # what is still there right before / after the annotation is not the annotated event
            weight = np.clip(weight - np.linalg.norm(x[adjacent] - background, axis=-1).max(axis=0), 0.0, None)
        if not weight.max() > 0:
            scores.append(None)  # nothing specific to the annotation: nothing to compare
            continue
        region = weight >= REGION_FRACTION * weight.max()
        d = signature[region].ravel()
        proj = (x[cand][:, region] - background[region]).reshape(int(cand.sum()), -1) @ d / float(d @ d)
        scores.append(float(np.quantile(proj, SCORE_QUANTILE)))
    return scores
