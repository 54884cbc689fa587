"""Raw video + query -> spans for any trained head: dispatches on ``head_config.json``'s ``kind``.

Each head family writes ``head_config.json`` beside its weights (the frozen CLIP it was trained on and how
clips were sampled), so a ``final/`` folder is all ``vtg-rl predict --model DIR`` needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HEAD_CONFIG = "head_config.json"


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


class HeadGrounder:
    @staticmethod
    def from_pretrained(folder: str | os.PathLike, device: str = "cpu", trust_remote_code: bool = False):
        path = Path(folder) / HEAD_CONFIG
        kind = read_head_config(folder).get("kind")
        if kind == "r2_tuning":
            from vtg_rl.heads.r2_grounder import R2Grounder

            return R2Grounder.from_pretrained(folder, device=device, trust_remote_code=trust_remote_code)
        if kind == "girl_detr":
            from vtg_rl.heads.girl_detr_grounder import GirlDetrGrounder

            return GirlDetrGrounder.from_pretrained(folder, device=device, trust_remote_code=trust_remote_code)
        raise ValueError(f"{path}: unknown head kind {kind!r} (expected 'girl_detr' or 'r2_tuning')")
