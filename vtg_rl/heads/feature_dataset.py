"""Torch dataset over precomputed features (:mod:`vtg_rl.heads.features`) and its padding collate.

A batch (the head protocol of :mod:`vtg_rl.heads.protocol`)::

    {"model_inputs": {video_feats (B, Lv, Dv), video_mask (B, Lv) bool, text_feats (B, Lt, Dt),
                      text_mask (B, Lt) bool, clip_centers (B, Lv) normalised clip-centre times},
     "targets": [{"spans": (n_b, 2) normalised (center, width)}, ...],
     "saliency_targets": (B, Lv) in [0, 1],
     "meta": [{"qid", "vid", "query", "duration", "clip_len", "n_clips"}, ...]}

Spans are normalised by the video duration. Saliency targets come from QVHighlights-style
``saliency_scores`` (mean annotator score / 4) when the features use 2 s clips, and otherwise from
the fraction of each clip covered by the annotated windows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vtg_rl.data.schema import VTGSample, read_jsonl
from vtg_rl.heads.features import load_text_features, load_video_features
from vtg_rl.spans import span_problem, span_xx_to_cxw

QVH_CLIP_SECONDS = 2.0


def clip_overlap_targets(windows: Sequence[Sequence[float]], n_clips: int, clip_len: float, duration: float) -> np.ndarray:
    """Fraction of each clip covered by the windows, ``(n_clips,)`` in [0, 1]."""
    out = np.zeros(n_clips, dtype=np.float32)
    for k in range(n_clips):
        lo, hi = k * clip_len, min((k + 1) * clip_len, duration)
        if hi <= lo:
            continue
        out[k] = min(1.0, sum(max(0.0, min(hi, e) - max(lo, s)) for s, e in windows) / (hi - lo))
    return out


class FeatureDataset(Dataset):
    """(video, query) samples with their cached features.

    Args:
        samples: a unified-schema jsonl path or a list of :class:`VTGSample`.
        video_dirs / text_dirs: feature folders (several are concatenated along the feature axis).
        clip_len: seconds per feature clip (2 s for the QVHighlights release).
        max_video_len: clips kept per video (longer videos are cut; spans are clamped to the kept part).
        require_windows: training and evaluation need ground truth; prediction on a label-free split does not.
        preload: read every file once at construction (fast epochs; small feature sets).
    """

    def __init__(self, samples, video_dirs: Sequence[str | os.PathLike], text_dirs: Sequence[str | os.PathLike],
                 clip_len: float = 2.0, max_video_len: int = 75, max_text_len: int = 32, normalize: bool = True,
                 require_windows: bool = True, preload: bool = True):
        if isinstance(samples, (str, os.PathLike)):
            samples = read_jsonl(samples)
        self.samples: list[VTGSample] = list(samples)
        if not self.samples:
            raise ValueError("FeatureDataset got no samples")
        self.video_dirs, self.text_dirs = [Path(d) for d in video_dirs], [Path(d) for d in text_dirs]
        if not self.video_dirs or not self.text_dirs:
            raise ValueError("FeatureDataset needs at least one video and one text feature folder")
        self.clip_len, self.max_video_len, self.max_text_len = float(clip_len), int(max_video_len), int(max_text_len)
        self.normalize, self.require_windows = normalize, require_windows
        for s in self.samples:
            self._check(s)
        self._cache: dict[int, dict] = {}
        if preload:
            for i in range(len(self.samples)):
                self._cache[i] = self._load(i)
        first = self._cache.get(0) or self._load(0)
        self.video_dim, self.text_dim = first["video_feats"].shape[-1], first["text_feats"].shape[-1]

    def _check(self, s: VTGSample) -> None:
        if self.require_windows and not s.windows:
            raise ValueError(f"sample qid={s.qid}: no ground-truth windows (pass require_windows=False to predict)")
        for w in s.windows:
            problem = span_problem(w[0], w[1], s.duration, tolerance=1e-3)
            if problem:
                raise ValueError(f"sample qid={s.qid}: window {w}: {problem}")

    def __len__(self) -> int:
        return len(self.samples)

    def _saliency(self, s: VTGSample, n: int) -> np.ndarray:
        if s.saliency_scores and s.relevant_clip_ids is not None and abs(self.clip_len - QVH_CLIP_SECONDS) < 1e-6:
            out = np.zeros(n, dtype=np.float32)
            for cid, scores in zip(s.relevant_clip_ids, s.saliency_scores):
                if 0 <= cid < n:
                    out[cid] = float(np.mean(scores)) / 4.0
            return out
        return clip_overlap_targets(s.windows, n, self.clip_len, s.duration)

    def _load(self, i: int) -> dict:
        s = self.samples[i]
        video = load_video_features(self.video_dirs, s.vid, self.normalize)[: self.max_video_len]
        text = load_text_features(self.text_dirs, s.qid, self.normalize)[: self.max_text_len]
        n = video.shape[0]
        covered = min(s.duration, n * self.clip_len)  # seconds the kept features cover
        centers = np.minimum((np.arange(n) + 0.5) * self.clip_len / s.duration, 1.0).astype(np.float32)
        windows = np.asarray([[min(a, covered), min(b, covered)] for a, b in s.windows], dtype=np.float32).reshape(-1, 2)
        windows = windows[windows[:, 1] > windows[:, 0]]
        if self.require_windows and len(windows) == 0:
            raise ValueError(f"sample qid={s.qid}: every window lies beyond the {n} feature clips "
                             f"({covered:.1f} s); raise max_video_len or check clip_len={self.clip_len}")
        return {"video_feats": torch.from_numpy(video), "text_feats": torch.from_numpy(text),
                "clip_centers": torch.from_numpy(centers),
                "spans": torch.from_numpy(span_xx_to_cxw(windows / s.duration).astype(np.float32)).reshape(-1, 2),
                "saliency": torch.from_numpy(self._saliency(s, n)),
                "meta": {"qid": s.qid, "vid": s.vid, "query": s.query, "duration": s.duration,
                         "clip_len": self.clip_len, "n_clips": n}}

    def __getitem__(self, i: int) -> dict:
        return self._cache[i] if i in self._cache else self._load(i)


def _pad(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(t.shape[0] for t in tensors)
    out = tensors[0].new_zeros((len(tensors), n) + tuple(tensors[0].shape[1:]))
    mask = torch.zeros(len(tensors), n, dtype=torch.bool)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = True
    return out, mask


def collate_features(items: list[dict]) -> dict:
    """Pad a list of :class:`FeatureDataset` items into one batch (layout in the module docstring)."""
    video, video_mask = _pad([it["video_feats"] for it in items])
    text, text_mask = _pad([it["text_feats"] for it in items])
    centers, _ = _pad([it["clip_centers"] for it in items])
    saliency, _ = _pad([it["saliency"] for it in items])
    return {"model_inputs": {"video_feats": video, "video_mask": video_mask, "text_feats": text,
                             "text_mask": text_mask, "clip_centers": centers},
            "targets": [{"spans": it["spans"]} for it in items],
            "saliency_targets": saliency,
            "meta": [it["meta"] for it in items]}


def feature_dirs(root: str | os.PathLike, video_subdirs: Sequence[str] = ("clip_features",),
                 text_subdirs: Sequence[str] = ("clip_text_features",)) -> tuple[list[Path], list[Path]]:
    """Video and text folders under one feature root (the layout :mod:`vtg_rl.heads.features` writes)."""
    root = Path(root)
    return [root / d for d in video_subdirs], [root / d for d in text_subdirs]


def make_dataset(jsonl, feature_root, clip_len: Optional[float] = None, **kw) -> FeatureDataset:
    """A :class:`FeatureDataset` over ``feature_root``; ``clip_len`` defaults to the manifest's."""
    from vtg_rl.heads.features import read_manifest

    manifest = read_manifest(feature_root)
    clip_len = clip_len if clip_len is not None else manifest.get("clip_len", QVH_CLIP_SECONDS)
    video_subdirs = manifest.get("video_subdirs") or [manifest.get("video_subdir", "clip_features")]
    vdirs, tdirs = feature_dirs(feature_root, video_subdirs, (manifest.get("text_subdir", "clip_text_features"),))
    return FeatureDataset(jsonl, vdirs, tdirs, clip_len=clip_len, **kw)
