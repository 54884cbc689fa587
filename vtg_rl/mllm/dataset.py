"""Unified-schema samples -> the HF datasets the LLM trainers consume.

Columns (one row per sample):
    prompt       chat messages with a payload-free ``{"type": "video"}`` block
    video_path   the video file, decoded on the fly by the collator / trainer
    windows, duration, qid, answer, options   ground truth, passed to reward functions as columns
    difficulty   float in [0, 1] or NaN when unknown (difficulty agent / synthetic truth)
    hard         bool, the world's (or the user's) hard flag
    meta_json    the sample's ``meta`` as a JSON string
    completion   (SFT only) the target text, ``<think>...</think><answer>S to E</answer>``
"""

from __future__ import annotations

import json
import math
from typing import Callable, Optional

from vtg_rl.data.schema import VTGSample
from vtg_rl.prompts import grounding_messages


def sample_difficulty(sample: VTGSample) -> float:
    """The sample's difficulty: the difficulty agent's estimate if present, else NaN."""
    value = sample.meta.get("difficulty")
    return float(value) if value is not None else math.nan


def samples_to_rows(samples: list[VTGSample], target_fn: Optional[Callable[[VTGSample], Optional[str]]] = None
                    ) -> list[dict]:
    """Rows for :func:`samples_to_hf`. With ``target_fn``, samples whose target is ``None`` (e.g. a
    reasoning trace that failed the quality filter) are left out."""
    rows = []
    for s in samples:
        if not s.video_path:
            raise ValueError(f"sample {s.qid}: no video_path; the LLM trainers need the video file")
        row = {
            "qid": s.qid,
            "prompt": grounding_messages(s),
            "video_path": s.video_path,
            "windows": [list(map(float, w)) for w in s.windows],
            "duration": float(s.duration),
            "answer": s.answer or "",
            "options": list(s.options or []),
            "difficulty": sample_difficulty(s),
            "hard": bool(s.meta.get("hard", False)),
            "meta_json": json.dumps(s.meta, allow_nan=False),
        }
        if target_fn is not None:
            target = target_fn(s)
            if target is None:
                continue
            row["completion"] = target
        rows.append(row)
    return rows


def samples_to_hf(samples: list[VTGSample], target_fn: Optional[Callable[[VTGSample], Optional[str]]] = None):
    """An HF ``datasets.Dataset`` of :func:`samples_to_rows`."""
    import datasets

    rows = samples_to_rows(samples, target_fn)
    if not rows:
        raise ValueError("no samples left to build a dataset from")
    return datasets.Dataset.from_list(rows)
