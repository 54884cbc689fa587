"""Difficulty control for GRPO (VTG-R1 / VideoTG-R1).

Two levels:

* **Dataset level**, from a ``difficulty`` column in [0, 1] (the difficulty agent's 1 - zero-shot IoU, or
  the synthetic world's truth): :func:`filter_by_difficulty` keeps samples inside a difficulty band, and
  :func:`reweight_by_difficulty` resamples the dataset with difficulty-dependent weights.
* **Group level, on the fly**: :func:`uniform_groups` finds the GRPO groups whose rewards are all ~0 (too
  hard: no preference signal) or all ~1 (too easy: nothing to learn); the trainer drops them from the
  loss and logs how many it dropped.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

#: reweighting modes: weight of a sample of difficulty d in [0, 1]
REWEIGHT_MODES = {
    "none": lambda d: np.ones_like(d),
    # favour samples of middle difficulty, which give the most varied rewards within a group
    "mid": lambda d: 1.0 - np.abs(2.0 * d - 1.0) + 0.1,
    # favour hard samples (use with the curriculum, which makes them learnable)
    "hard": lambda d: 0.25 + d,
}


def _difficulties(dataset) -> np.ndarray:
    if "difficulty" not in dataset.column_names:
        raise ValueError("difficulty control needs a 'difficulty' column (run data_agents/difficulty.py first, "
                         f"or use a dataset that carries one); columns are {dataset.column_names}")
    values = np.array([np.nan if v is None else float(v) for v in dataset["difficulty"]], dtype=np.float64)
    bad = np.isfinite(values) & ((values < 0) | (values > 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        qid = dataset[i]["qid"] if "qid" in dataset.column_names else i
        raise ValueError(f"sample {qid}: difficulty {values[i]} is outside [0, 1]")
    return values


def filter_by_difficulty(dataset, min_difficulty: Optional[float] = None, max_difficulty: Optional[float] = None,
                         keep_unknown: bool = True):
    """Keep the rows with ``min_difficulty <= difficulty <= max_difficulty``.

    Rows with unknown (NaN) difficulty are kept when ``keep_unknown``. Returns ``(dataset, report)`` where
    report counts ``kept``, ``dropped_easy``, ``dropped_hard`` and ``unknown``.
    """
    d = _difficulties(dataset)
    known = np.isfinite(d)
    too_easy = known & (d < min_difficulty) if min_difficulty is not None else np.zeros(len(d), bool)
    too_hard = known & (d > max_difficulty) if max_difficulty is not None else np.zeros(len(d), bool)
    keep = ~(too_easy | too_hard) & (known | keep_unknown)
    report = {"kept": int(keep.sum()), "dropped_easy": int(too_easy.sum()), "dropped_hard": int(too_hard.sum()),
              "unknown": int((~known).sum())}
    if not keep.any():
        raise ValueError(f"the difficulty filter [{min_difficulty}, {max_difficulty}] dropped every sample: {report}")
    return dataset.select(np.flatnonzero(keep).tolist()), report


def reweight_by_difficulty(dataset, mode: str = "mid", seed: int = 0, size: Optional[int] = None):
    """Resample rows with replacement, with probability proportional to ``REWEIGHT_MODES[mode](difficulty)``.

    Rows of unknown difficulty get the mean weight. Deterministic for a seed. ``size`` defaults to the
    dataset's length.
    """
    if mode not in REWEIGHT_MODES:
        raise ValueError(f"unknown difficulty reweighting mode {mode!r}; choose from {sorted(REWEIGHT_MODES)}")
    if mode == "none":
        return dataset
    d = _difficulties(dataset)
    w = np.zeros(len(d))
    known = np.isfinite(d)
    w[known] = REWEIGHT_MODES[mode](d[known])
    w[~known] = w[known].mean() if known.any() else 1.0
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d), size=size or len(d), replace=True, p=w / w.sum())
    return dataset.select(idx.tolist())


def uniform_groups(rewards, num_generations: int, low: float = 0.05, high: float = 0.95) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """Groups (consecutive ``num_generations`` rewards) whose rewards are all ``<= low`` or all ``>= high``.

    Returns two boolean arrays over groups: ``(all_low, all_high)``. NaN rewards (unscorable) are ignored
    within a group; a group of only NaN is neither.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.size % num_generations:
        raise ValueError(f"{r.size} rewards do not split into groups of {num_generations}")
    g = r.reshape(-1, num_generations)
    valid = np.isfinite(g)
    any_valid = valid.any(axis=1)
    all_low = np.where(valid, g <= low, True).all(axis=1) & any_valid
    all_high = np.where(valid, g >= high, True).all(axis=1) & any_valid
    return all_low, all_high


def check_band(low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"uniform-group thresholds must satisfy low < high, got low={low}, high={high}")
