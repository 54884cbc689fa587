"""Easy-first pacing of the SFT data (curriculum learning for the cold start).

The tiny model's cold start sits on a plateau (it answers the average span) until it discovers how
to read time off the video tokens. That readout is easiest to find on samples where nothing but the
target moves (no distractors, long bright events): :class:`DifficultyPacedSampler` draws each epoch
from the easiest part of the data, and widens that part epoch by epoch until it is all of it.

Difficulty per row (:func:`pacing_difficulty`): the difficulty agent's estimate when the sample has
one (``meta["difficulty"]``, 1 - mean zero-shot IoU), else the synthetic world's recorded
``meta["true_difficulty"]``. Rows with neither are an error: pacing without a difficulty is silent
shuffling.
"""

from __future__ import annotations

import json
import math
from typing import Iterator, Sequence

import numpy as np
import torch


def pacing_difficulty(meta: dict) -> float:
    """A row's difficulty for pacing, NaN when the sample carries none."""
    for key in ("difficulty", "true_difficulty"):
        value = meta.get(key)
        if value is not None:
            return float(value)
    return math.nan


def dataset_difficulties(dataset) -> list[float]:
    """Pacing difficulties of the rows of a :func:`vtg_rl.mllm.dataset.samples_to_hf` dataset.

    Raises a ``ValueError`` naming the first rows without a difficulty.
    """
    values, missing = [], []
    for qid, meta_json in zip(dataset["qid"], dataset["meta_json"]):
        value = pacing_difficulty(json.loads(meta_json))
        if math.isnan(value):
            missing.append(qid)
        values.append(value)
    if missing:
        raise ValueError(
            f"easy-first pacing needs a difficulty per sample; {len(missing)} have none (e.g. {missing[:3]}). "
            "Run the difficulty agent (python data_agents/difficulty.py) on the training data first, or turn "
            "pacing off (--pacing_start_fraction 1.0)")
    return values


class DifficultyPacedSampler(torch.utils.data.Sampler[int]):
    """Per epoch, ``len(difficulties)`` indices drawn from the easiest fraction of the rows.

    The fraction grows linearly from ``start_fraction`` at epoch 0 to 1 at ``full_at_epoch`` and stays
    there. Within the pool each row appears once per pass, in a fresh random order (the pool is cycled
    when it is smaller than an epoch). Ties in difficulty are broken at random, once. The order depends
    only on ``seed`` and the epoch the Trainer sets (``set_epoch``), so a resumed run sees the same data.

    >>> s = DifficultyPacedSampler([0.9, 0.1, 0.5, 0.2], start_fraction=0.5, full_at_epoch=1, seed=0)
    >>> sorted(set(s))  # epoch 0: the easiest half only
    [1, 3]
    >>> s.set_epoch(1); sorted(set(s))
    [0, 1, 2, 3]
    """

    def __init__(self, difficulties: Sequence[float], start_fraction: float = 0.3, full_at_epoch: float = 3.0,
                 seed: int = 0):
        if not 0.0 < start_fraction <= 1.0:
            raise ValueError(f"start_fraction must be in (0, 1], got {start_fraction}")
        if full_at_epoch < 0:
            raise ValueError(f"full_at_epoch must be >= 0, got {full_at_epoch}")
        values = np.asarray(difficulties, dtype=float)
        if values.size == 0 or np.isnan(values).any():
            raise ValueError("DifficultyPacedSampler needs a finite difficulty for every row")
        self.start_fraction = float(start_fraction)
        self.full_at_epoch = float(full_at_epoch)
        self.seed = int(seed)
        self.epoch = 0
        tie_break = np.random.default_rng(self.seed).random(values.size)
        self.order = np.lexsort((tie_break, values))  # easiest first

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def fraction(self, epoch: int) -> float:
        if self.full_at_epoch == 0 or epoch >= self.full_at_epoch:
            return 1.0
        return self.start_fraction + (1.0 - self.start_fraction) * epoch / self.full_at_epoch

    def pool(self, epoch: int) -> np.ndarray:
        size = max(1, int(round(self.fraction(epoch) * len(self.order))))
        return self.order[:size]

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        pool = self.pool(self.epoch)
        passes = [rng.permutation(pool) for _ in range(math.ceil(len(self.order) / len(pool)))]
        return iter(np.concatenate(passes)[: len(self.order)].tolist())

    def __len__(self) -> int:
        return len(self.order)
