"""Multi-layer frozen-CLIP features for R2-Tuning, cached to disk, and the dataset / collator over them.

R2-Tuning reads the *last K layers* of both CLIP towers, not the final embedding: per clip the [CLS] +
patch tokens of each of the last K vision layers, per query the token states of the last K text layers.
Sampling, CLIP loading, pooling frames into clips and the npz cache are those of
:mod:`vtg_rl.heads.features` (:class:`R2FeatureExtractor` only says which arrays to keep)::

    DIR/r2_video_layers/{vid}.npz     hidden_states: (n_clips, K, 1 + P, Hv) float16
    DIR/r2_text_layers/qid{qid}.npz   hidden_states: (K, L, Ht) float16
    DIR/features.json                 CLIP path, clip_len, fps, K and the dims

Size: the tiny CLIP keeps ~35 KB per 1 s clip; a ViT-B/32 at 2 s clips ~0.3 MB per clip (QVHighlights'
10k videos: ~230 GB), so for real CLIPs :class:`~vtg_rl.heads.r2_tuning.model.R2Tuning` can also run the frozen
CLIP on the fly (:func:`clip_layer_states`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from vtg_rl.data.schema import CLIP_LABEL_TASKS, TASK_SUMMARIZATION, VTGSample
from vtg_rl.heads.features import (ClipFeatureExtractor, encode_query, encode_video_frames, load_npz_array,
                                   num_clips, pool_frames_to_clips, read_manifest, text_feature_path,
                                   video_feature_path)
from vtg_rl.spans import span_xx_to_cxw

R2_VIDEO_SUBDIR = "r2_video_layers"
R2_TEXT_SUBDIR = "r2_text_layers"
#: QVHighlights scores saliency on 2 s clips, whatever clip length the features use
SALIENCY_CLIP_SECONDS = 2.0


def clip_layer_states(clip, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      num_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``num_layers`` hidden states of both towers of a ``CLIPModel``, on the fly.

    ``pixel_values (B, T, 3, H, W)`` (one frame per clip), ``input_ids / attention_mask (B, L)`` ->
    ``video_layers (B, T, K, 1 + P, Hv)``, ``query_layers (B, K, L, Ht)`` (shallow -> deep), the layout
    of the cached arrays.
    """
    b, t = pixel_values.shape[:2]
    vision = clip.vision_model(pixel_values=pixel_values.flatten(0, 1), output_hidden_states=True)
    video = torch.stack(vision.hidden_states[-num_layers:], 1)                     # (B*T, K, P, Hv)
    text = clip.text_model(input_ids=input_ids, attention_mask=attention_mask.long(), output_hidden_states=True)
    query = torch.stack(text.hidden_states[-num_layers:], 1)                        # (B, K, L, Ht)
    return video.reshape(b, t, *video.shape[1:]), query


def video_layer_states(encoder, video, duration: float, clip_len: float, num_layers: int,
                       batch_size: int = 64) -> np.ndarray:
    """Sampled frames -> ``(n_clips, K, 1 + P, Hv)``: the last K vision layers, frames of a clip averaged."""
    enc = encode_video_frames(encoder, video.frames, hidden_layers=num_layers, batch_size=batch_size)
    per_frame = np.moveaxis(enc["hidden_states"], 0, 1)                              # (T_frames, K, P, H)
    return pool_frames_to_clips(per_frame, video.timestamps, duration, clip_len)


class R2FeatureExtractor(ClipFeatureExtractor):
    """Caches the last ``num_layers`` CLIP layers of every clip and query (see the module docstring)."""

    video_subdir = R2_VIDEO_SUBDIR
    text_subdir = R2_TEXT_SUBDIR

    def __init__(self, clip_path, num_layers: int = 4, clip_len: float = 1.0, frames_per_clip: int = 2, **kw):
        super().__init__(clip_path, clip_len=clip_len, frames_per_clip=frames_per_clip, **kw)
        depth = min(self.encoder.model.config.vision_config.num_hidden_layers,
                    self.encoder.model.config.text_config.num_hidden_layers)
        if not 1 <= num_layers <= depth:
            raise ValueError(f"num_layers={num_layers}: the CLIP at {clip_path} has {depth} layers per tower")
        self.num_layers = int(num_layers)

    def video_arrays(self, sample: VTGSample) -> dict[str, np.ndarray]:
        states = video_layer_states(self.encoder, self.sample_video(sample), sample.duration, self.clip_len,
                                    self.num_layers, self.batch_size)
        return {"hidden_states": states.astype(np.float16)}

    def query_arrays(self, sample: VTGSample) -> dict[str, np.ndarray]:
        enc = encode_query(self.encoder, sample.query, hidden_layers=self.num_layers)
        return {"hidden_states": enc["hidden_states"].astype(np.float16)}

    def manifest(self) -> dict:
        cfg = self.encoder.model.config
        return dict(super().manifest(), num_layers=self.num_layers,
                    vision_dim=int(cfg.vision_config.hidden_size), text_dim=int(cfg.text_config.hidden_size))


# --------------------------------------------------------------------------- dataset
def label_saliency(sample: VTGSample) -> np.ndarray:
    """Per labelled clip of a clip-label sample (``clip_labels``), a target saliency in [0, 1].

    Highlight labels (0/1, or annotator shares of them) are kept; importance scores on another scale
    (TVSum's 1-5, and any ``"summarization"`` sample) are min-max normalised within the video, the way
    their metrics read them (top clips of *this* video). A video whose clips all score the same gets 0.5.
    """
    labels = np.asarray(sample.clip_labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[0] == 0 or labels.shape[1] == 0:
        raise ValueError(f"sample qid={sample.qid}: clip_labels must be clips x annotators, got shape {labels.shape}")
    mean = labels.mean(1)
    if sample.task != TASK_SUMMARIZATION and mean.min() >= 0.0 and mean.max() <= 1.0:
        return mean.astype(np.float32)
    lo, hi = float(mean.min()), float(mean.max())
    if hi - lo < 1e-9:
        return np.full(len(mean), 0.5, dtype=np.float32)
    return ((mean - lo) / (hi - lo)).astype(np.float32)


def label_clip_of(n: int, clip_len: float, clip_length: float, n_labels: int) -> np.ndarray:
    """For each of ``n`` feature clips of ``clip_len`` s, the labelled clip (``clip_length`` s) its centre is in."""
    centres = (np.arange(n) + 0.5) * clip_len
    return np.clip(np.floor(centres / clip_length + 1e-9).astype(np.int64), 0, n_labels - 1)


def pool_to_label_clips(scores: np.ndarray, clip_len: float, clip_length: float, n_labels: int) -> list[float]:
    """Per-feature-clip scores -> one score per labelled clip: the mean of the feature clips whose centre
    falls in it, else (a labelled clip shorter than a feature clip) the feature clip that covers its centre."""
    scores = np.asarray(scores, dtype=np.float64)
    owner = label_clip_of(len(scores), clip_len, clip_length, n_labels)
    out = []
    for k in range(n_labels):
        inside = scores[owner == k]
        if len(inside):
            out.append(float(inside.mean()))
        else:
            centre = (k + 0.5) * clip_length
            out.append(float(scores[min(len(scores) - 1, int(centre // clip_len))]))
    return out


def clip_targets(sample: VTGSample, n: int, clip_len: float) -> tuple[np.ndarray, np.ndarray]:
    """Per feature clip: ``moment_mask`` (centre inside a ground-truth window) and ``saliency`` in [0, 1].

    Saliency comes from the annotators (mean 0-4 score / 4 of the 2 s clip the feature clip falls in);
    without annotations it is the fraction of the clip inside the windows. Clip-label samples
    (highlight-only / summarisation: ``clip_labels``, no windows) take the :func:`label_saliency` of the
    labelled clip each feature clip falls in, and their ``moment_mask`` marks the clips at or above 0.5
    (the highlights): it feeds only the contrastive alignment terms, never a span loss.
    """
    centres = (np.arange(n) + 0.5) * clip_len
    if sample.clip_labels is not None and sample.task in CLIP_LABEL_TASKS:
        if not sample.clip_length or sample.clip_length <= 0:
            raise ValueError(f"sample qid={sample.qid}: clip_labels without a positive clip_length")
        per_label = label_saliency(sample)
        saliency = per_label[label_clip_of(n, clip_len, float(sample.clip_length), len(per_label))]
        return saliency >= 0.5, saliency.astype(np.float32)
    moment = np.zeros(n, dtype=bool)
    for s, e in sample.windows:
        moment |= (centres >= s) & (centres <= e)
    if sample.relevant_clip_ids is not None and sample.saliency_scores is not None:
        if len(sample.relevant_clip_ids) != len(sample.saliency_scores):
            raise ValueError(f"sample qid={sample.qid}: {len(sample.relevant_clip_ids)} relevant_clip_ids but "
                             f"{len(sample.saliency_scores)} saliency_scores rows")
        per_2s = {int(k): float(np.mean(v)) / 4.0 for k, v in zip(sample.relevant_clip_ids, sample.saliency_scores)}
        saliency = np.array([per_2s.get(int(c // SALIENCY_CLIP_SECONDS), 0.0) for c in centres], dtype=np.float32)
    else:
        starts = np.arange(n) * clip_len
        inter = sum(np.clip(np.minimum(starts + clip_len, e) - np.maximum(starts, s), 0, None) for s, e in sample.windows)
        saliency = (np.asarray(inter, dtype=np.float32) / clip_len) if sample.windows else np.zeros(n, np.float32)
    return moment, saliency.astype(np.float32)


class R2FeatureDataset(torch.utils.data.Dataset):
    """(sample, cached multi-layer features) pairs; arrays are read lazily (``cache_in_memory`` keeps them)."""

    def __init__(self, samples: Sequence[VTGSample], feature_root: str | os.PathLike, cache_in_memory: bool = True):
        self.samples = list(samples)
        self.root = Path(feature_root)
        self.manifest = read_manifest(self.root)
        if not self.manifest or "num_layers" not in self.manifest:
            raise FileNotFoundError(f"{self.root}: no R2 feature manifest (run R2FeatureExtractor.extract first)")
        self.clip_len = float(self.manifest["clip_len"])
        self.cache: Optional[dict] = {} if cache_in_memory else None
        for s in self.samples:
            if s.duration <= 0:
                raise ValueError(f"sample qid={s.qid}: duration {s.duration} must be > 0")

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, sub: str, key: str, path_fn, what: str) -> np.ndarray:
        if self.cache is not None and (sub, key) in self.cache:
            return self.cache[(sub, key)]
        arr = load_npz_array(path_fn(self.root / sub, key), "hidden_states", what)
        if self.cache is not None:
            self.cache[(sub, key)] = arr
        return arr

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        video = self._load(R2_VIDEO_SUBDIR, s.vid, video_feature_path, f"video {s.vid!r} (qid={s.qid})")
        query = self._load(R2_TEXT_SUBDIR, s.qid, text_feature_path, f"query qid={s.qid!r}")
        k = int(self.manifest["num_layers"])
        if video.ndim != 4 or video.shape[1] != k or query.ndim != 3 or query.shape[0] != k:
            raise ValueError(f"qid={s.qid}: cached R2 features have shapes video {video.shape} / query {query.shape}, "
                             f"expected (n_clips, {k}, P, H) / ({k}, L, H)")
        expected = num_clips(s.duration, self.clip_len)
        if abs(video.shape[0] - expected) > 1:
            raise ValueError(f"qid={s.qid}: {video.shape[0]} cached clips for a {s.duration} s video "
                             f"(expected {expected} at {self.clip_len} s): stale features?")
        moment, saliency = clip_targets(s, video.shape[0], self.clip_len)
        windows = np.asarray(s.windows, dtype=np.float32).reshape(-1, 2) / s.duration
        return {"video_layers": video, "query_layers": query, "windows": np.clip(windows, 0, 1),
                "moment_mask": moment, "saliency": saliency, "clip_len_norm": self.clip_len / s.duration,
                "qid": s.qid, "vid": s.vid, "duration": s.duration, "query": s.query, "clip_len": self.clip_len,
                "task": s.task, "label_clip_length": s.clip_length,
                "n_label_clips": len(s.clip_labels) if s.clip_labels is not None else None}


def collate_r2(items: list[dict]) -> dict:
    """Pad to the batch's longest video / query. Layout follows :mod:`vtg_rl.heads.protocol`:
    ``model_inputs`` (what the model's forward takes), ``targets`` (normalised cxw spans per sample),
    ``supervision`` (R2's extra training targets) and ``meta``."""
    b = len(items)
    t = max(x["video_layers"].shape[0] for x in items)
    length = max(x["query_layers"].shape[1] for x in items)
    _, k, p, hv = items[0]["video_layers"].shape
    ht = items[0]["query_layers"].shape[-1]
    video = torch.zeros(b, t, k, p, hv)
    query = torch.zeros(b, k, length, ht)
    vmask = torch.zeros(b, t, dtype=torch.bool)
    qmask = torch.zeros(b, length, dtype=torch.bool)
    moment = torch.zeros(b, t, dtype=torch.bool)
    saliency = torch.zeros(b, t)
    for i, x in enumerate(items):
        n, m = x["video_layers"].shape[0], x["query_layers"].shape[1]
        video[i, :n] = torch.from_numpy(x["video_layers"])
        query[i, :, :m] = torch.from_numpy(x["query_layers"])
        vmask[i, :n], qmask[i, :m] = True, True
        moment[i, :n] = torch.from_numpy(x["moment_mask"])
        saliency[i, :n] = torch.from_numpy(x["saliency"])
    windows = [torch.from_numpy(x["windows"]) for x in items]
    # pairs that must not act as contrastive negatives: same video or the very same sentence
    vids, queries = [x["vid"] for x in items], [x["query"].strip().lower() for x in items]
    same = torch.tensor([[vids[i] == vids[j] or queries[i] == queries[j] for j in range(b)] for i in range(b)])
    return {
        "model_inputs": {"video_layers": video, "video_mask": vmask, "query_layers": query, "query_mask": qmask,
                         "clip_len_norm": torch.tensor([x["clip_len_norm"] for x in items], dtype=torch.float32)},
        "targets": [{"spans": span_xx_to_cxw(w)} for w in windows],
        "supervision": {"windows": windows, "saliency": saliency, "moment_mask": moment, "same_pair": same},
        "meta": [{"qid": x["qid"], "vid": x["vid"], "duration": x["duration"], "query": x["query"],
                  "clip_len": x["clip_len"], "n_clips": x["video_layers"].shape[0],
                  "task": x.get("task", "grounding"), "label_clip_length": x.get("label_clip_length"),
                  "n_label_clips": x.get("n_label_clips")} for x in items],
    }
