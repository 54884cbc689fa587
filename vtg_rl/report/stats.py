"""Per-sample top-1 IoUs, the trivial baselines and standard errors for the demo report.

Conventions are those of ``vtg-rl eval`` and the viewer: a prediction row's top-1 window is its first
listed window (vtg-rl writes windows by decreasing score), its IoU is the best IoU against any annotated
window, and a held-out query with no row (or a malformed answer, written as ``[0, 0]``) scores 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from vtg_rl.data.schema import VTGSample, read_jsonl
from vtg_rl.metrics.submission import read_submission
from vtg_rl.spans import temporal_iou

#: a difference smaller than this many standard errors is reported as within noise
NOISE_SE = 2.0
#: random-span draws per query for the random baseline (its per-query IoU is the mean over draws)
RANDOM_DRAWS = 20


def best_iou(window, sample: VTGSample) -> float:
    if not sample.windows or window is None:
        return 0.0
    s, e = float(window[0]), float(window[1])
    if not e > s:
        return 0.0
    return float(np.max(temporal_iou(np.array([s, e])[None], np.array(sample.windows, dtype=float))))


def submission_ious(path: str | Path, samples: list[VTGSample]) -> tuple[np.ndarray, int]:
    """Top-1 IoU per held-out sample (in ``samples`` order) and how many samples had no row."""
    rows = {str(r["qid"]): r for r in read_submission(path)}
    ious, missing = [], 0
    for s in samples:
        row = rows.get(str(s.qid))
        windows = (row or {}).get("pred_relevant_windows") or []
        if row is None:
            missing += 1
        ious.append(best_iou(windows[0] if windows else None, s))
    return np.array(ious), missing


def baseline_ious(train: list[VTGSample], heldout: list[VTGSample], seed: int = 0) -> dict[str, np.ndarray]:
    """Answer-free baselines, per held-out sample: the train split's mean normalised span (first window of
    each sample, as benchmarks/sft_synthetic.py), the whole video, and a uniformly random span."""
    frac = np.array([[w[0] / s.duration, w[1] / s.duration] for s in train for w in s.windows[:1]])
    mean_start, mean_end = frac.mean(0) if len(frac) else (0.0, 1.0)
    rng = np.random.default_rng(seed)
    rand = []
    for s in heldout:
        draws = np.sort(rng.uniform(0.0, s.duration, size=(RANDOM_DRAWS, 2)), axis=1)
        rand.append(float(np.mean([best_iou(d, s) for d in draws])))
    return {
        "mean span": np.array([best_iou([mean_start * s.duration, mean_end * s.duration], s) for s in heldout]),
        "whole video": np.array([best_iou([0.0, s.duration], s) for s in heldout]),
        "random span": np.array(rand),
    }


def se(values: np.ndarray) -> float:
    """Standard error of the mean: sample std / sqrt(n) (0 for fewer than two values)."""
    n = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def summary(ious: np.ndarray) -> dict[str, float]:
    return {"miou": float(np.mean(ious)) if len(ious) else float("nan"), "miou_se": se(ious),
            "r1_03": float(np.mean(ious >= 0.3)), "r1_05": float(np.mean(ious >= 0.5)),
            "r1_07": float(np.mean(ious >= 0.7)), "n": len(ious)}


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of ``a - b`` over the same samples and its paired standard error."""
    d = np.asarray(a) - np.asarray(b)
    return float(np.mean(d)), se(d)


def describe_gain(diff: float, err: float) -> str:
    """``+0.153 ± 0.012`` and, when ``|diff| < NOISE_SE * err``, that it is within noise."""
    text = f"{diff:+.3f} ± {err:.3f}"
    if abs(diff) < NOISE_SE * err or (err == 0 and diff == 0):
        return text + " (within noise)"
    return text


def load_split(path: str | Path) -> Optional[list[VTGSample]]:
    path = Path(path)
    return read_jsonl(path) if path.is_file() else None
