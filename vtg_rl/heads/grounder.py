"""``head_config.json``: what a head folder is and what its grounder needs.

Each head family writes it beside its weights (its ``kind``, the frozen CLIP it was trained on and how clips
were sampled), so a ``final/`` folder is all ``vtg-rl predict --model DIR`` needs; :mod:`vtg_rl.grounders`
maps the kind to the family's grounder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vtg_rl.grounders import HEAD_CONFIG


def write_head_config(directory: str | os.PathLike, kind: str, **fields) -> Path:
    """Write ``directory/head_config.json``: the head ``kind`` and what its grounder needs (the frozen CLIP
    path, stored absolute, and how clips were sampled)."""
    if "clip_model" in fields:
        fields["clip_model"] = str(Path(fields["clip_model"]).resolve())
    path = Path(directory) / HEAD_CONFIG
    path.write_text(json.dumps({"kind": kind, **fields}, indent=2, allow_nan=False) + "\n")
    return path


def read_head_config(folder: str | os.PathLike, kind: str | None = None, written_by: str = "a vtg-rl head recipe") -> dict:
    """``folder/head_config.json`` as a dict; a clear error when it is missing or (with ``kind``) is another
    head's."""
    path = Path(folder) / HEAD_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a head folder written by {written_by} (no {HEAD_CONFIG})")
    cfg = json.loads(path.read_text())
    if kind is not None and cfg.get("kind") != kind:
        raise ValueError(f"{path}: kind {cfg.get('kind')!r} is not {kind!r}")
    return cfg
