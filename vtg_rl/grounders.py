"""Raw video + query -> spans for any model vtg-rl trains, through one registry of model kinds.

    from vtg_rl import Grounder
    grounder = Grounder.from_pretrained("runs/demo/grpo/checkpoint-final")
    print(grounder.predict("video.mp4", "when does the red circle appear?", top_k=3))

A saved folder says what it is: a head folder's ``head_config.json`` names its ``kind`` (written by
``recipes/girl_detr.py``, ``recipes/tprl.py``, ``recipes/r2_tuning.py``), and a folder with only a
transformers ``config.json`` is a video LLM (written by ``recipes/sft.py`` / ``recipes/grpo.py``, or any
checkpoint of a supported family). :data:`GROUNDERS` maps each kind to its grounder class, imported only
when a folder of that kind is loaded; :func:`register_grounder` adds a kind.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vtg_rl.spans import temporal_iou

#: the file in which a head folder names its kind
HEAD_CONFIG = "head_config.json"
#: the kind of a folder holding a transformers video-LLM checkpoint
VIDEO_LLM = "video_llm"

#: kind -> "module:class" of its grounder (the class has ``from_pretrained(folder, **kwargs)`` and
#: ``predict(video, query, top_k)``)
GROUNDERS: dict[str, str] = {
    VIDEO_LLM: "vtg_rl.mllm.grounder:LLMGrounder",
    "girl_detr": "vtg_rl.heads.girl_detr.grounder:GirlDetrGrounder",
    "r2_tuning": "vtg_rl.heads.r2_tuning.grounder:R2Grounder",
}


@dataclass
class Span:
    """One predicted span, in seconds, with its score."""

    start: float
    end: float
    score: float

    def as_list(self) -> list[float]:
        return [round(self.start, 2), round(self.end, 2), round(self.score, 4)]


def vote_spans(windows: list[list[float]], top_k: int, merge_iou: float = 0.7) -> list[Span]:
    """Rank sampled spans by agreement: spans with IoU >= ``merge_iou`` vote together; the first
    (greedy) span leads its cluster, so the greedy answer wins ties.

    >>> [s.as_list() for s in vote_spans([[1, 3], [5, 9], [5.1, 9], [12, 13]], top_k=2)]
    [[5.0, 9.0, 0.5], [1.0, 3.0, 0.25]]
    """
    clusters: list[tuple[list[float], int]] = []
    for w in windows:
        for i, (rep, votes) in enumerate(clusters):
            if float(temporal_iou(np.array(rep), np.array(w))) >= merge_iou:
                clusters[i] = (rep, votes + 1)
                break
        else:
            clusters.append((w, 1))
    total = max(len(windows), 1)
    order = sorted(range(len(clusters)), key=lambda i: (-clusters[i][1], i))
    return [Span(float(clusters[i][0][0]), float(clusters[i][0][1]), clusters[i][1] / total) for i in order[:top_k]]


def register_grounder(kind: str, target: str) -> None:
    """Map folders of ``kind`` to the grounder class at ``target`` (``"package.module:Class"``)."""
    if ":" not in target:
        raise ValueError(f"grounder target {target!r} must be 'package.module:Class'")
    GROUNDERS[kind] = target


def folder_kind(folder: str | os.PathLike) -> str:
    """What a saved model folder holds (a key of :data:`GROUNDERS`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    head = folder / HEAD_CONFIG
    if head.is_file():
        kind = json.loads(head.read_text()).get("kind")
        if kind not in GROUNDERS:
            raise ValueError(f"{head}: unknown head kind {kind!r} (known model kinds: {', '.join(sorted(GROUNDERS))})")
        return kind
    if (folder / "config.json").is_file():
        return VIDEO_LLM
    raise ValueError(f"{folder}: neither a video-LLM checkpoint (config.json) nor a vtg-rl head checkpoint "
                     f"({HEAD_CONFIG})")


class Grounder:
    """Front door over every model kind; see the module docstring."""

    @staticmethod
    def from_pretrained(path: str | os.PathLike, **kwargs):
        module, _, name = GROUNDERS[folder_kind(path)].partition(":")
        return getattr(importlib.import_module(module), name).from_pretrained(str(path), **kwargs)
