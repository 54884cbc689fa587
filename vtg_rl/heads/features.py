"""Frozen-CLIP features for the DETR-family heads, cached in the Moment-DETR / QVHighlights layout.

Layout of a feature folder (one ``.npz`` per video / query, read with ``allow_pickle=False``)::

    DIR/clip_features/{vid}.npz          features: (n_clips, D) one CLIP image embedding per clip
    DIR/clip_text_features/qid{qid}.npz  last_hidden_state: (L, H) text tokens; pooler_output: (D,)
    DIR/features.json                    what produced them (model path, clip_len, fps, dims)

This is the layout of the public QVHighlights feature release, so its ``clip_features`` /
``slowfast_features`` / ``clip_text_features`` folders load with the same code; several video feature
folders are concatenated along the feature axis (:func:`load_video_features`).

Reuse (R2-Tuning): :func:`load_clip_encoder`, :func:`encode_video_frames` (optionally the hidden states
of the last k vision layers), :func:`encode_query` (likewise for the text tower),
:func:`pool_frames_to_clips` (any leading time axis) and :class:`ClipFeatureExtractor`, whose
``video_arrays`` / ``query_arrays`` / sub-folder names a subclass overrides to cache other arrays with the
same sampling, caching and bookkeeping.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from vtg_rl.data.schema import VTGSample, atomic_write_text

VIDEO_SUBDIR = "clip_features"
PATCH_SUBDIR = "clip_patch_features"
TEXT_SUBDIR = "clip_text_features"
MANIFEST = "features.json"
# OpenAI CLIP's pixel statistics: used when a processor does not state its own
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------- CLIP
@dataclass
class ClipEncoder:
    """A frozen ``CLIPModel`` with its tokenizer and pixel normalisation."""

    model: "torch.nn.Module"
    tokenizer: object
    image_size: int
    mean: tuple
    std: tuple
    path: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_clip_encoder(path: str | os.PathLike, device: str = "cpu", trust_remote_code: bool = False) -> ClipEncoder:
    """Load any ``CLIPModel`` checkpoint folder with its processor (the tiny local one, or e.g. a
    downloaded ``openai/clip-vit-base-patch32``) through :func:`vtg_rl.models.tiny_clip.load_clip`."""
    from vtg_rl.models.tiny_clip import load_clip

    model, processor = load_clip(path, trust_remote_code=trust_remote_code)
    model = model.to(device).eval().requires_grad_(False)
    ip = processor.image_processor
    mean, std = tuple(ip.image_mean or CLIP_MEAN), tuple(ip.image_std or CLIP_STD)
    return ClipEncoder(model, processor.tokenizer, int(model.config.vision_config.image_size), mean, std, str(path))


def preprocess_frames(frames: np.ndarray, image_size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> normalised ``(T, 3, S, S)``: resize the short side to S, centre-crop (CLIP's policy)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = image_size / min(h, w)
    size = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
    if size != (h, w):
        x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    x = x[..., top:top + image_size, left:left + image_size]
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@torch.no_grad()
def encode_video_frames(encoder: ClipEncoder, frames: np.ndarray, hidden_layers: int = 0,
                        batch_size: int = 64) -> dict[str, np.ndarray]:
    """CLIP image embeddings of every frame: ``image_embeds (T, D)``; with ``hidden_layers=k`` also
    ``hidden_states (k, T, 1 + P, H)``, the outputs of the last k vision layers (CLS + patch tokens)."""
    embeds, hidden = [], []
    for i in range(0, len(frames), batch_size):
        pixels = preprocess_frames(frames[i:i + batch_size], encoder.image_size, encoder.mean, encoder.std)
        out = encoder.model.vision_model(pixel_values=pixels.to(encoder.device), output_hidden_states=hidden_layers > 0)
        embeds.append(encoder.model.visual_projection(out.pooler_output).float().cpu())
        if hidden_layers > 0:
            hidden.append(torch.stack(out.hidden_states[-hidden_layers:]).float().cpu())
    result = {"image_embeds": torch.cat(embeds).numpy()}
    if hidden_layers > 0:
        result["hidden_states"] = torch.cat(hidden, 1).numpy()
    return result


@torch.no_grad()
def encode_query(encoder: ClipEncoder, text: str, hidden_layers: int = 0) -> dict[str, np.ndarray]:
    """CLIP text features: ``last_hidden_state (L, H)``, ``pooler_output (D,)`` (the projected sentence
    embedding); with ``hidden_layers=k`` also ``hidden_states (k, L, H)``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"query {text!r} is empty")
    max_len = encoder.model.config.text_config.max_position_embeddings
    tok = encoder.tokenizer(text, truncation=True, max_length=max_len, return_tensors="pt").to(encoder.device)
    out = encoder.model.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                                   output_hidden_states=hidden_layers > 0)
    result = {"last_hidden_state": out.last_hidden_state[0].float().cpu().numpy(),
              "pooler_output": encoder.model.text_projection(out.pooler_output)[0].float().cpu().numpy()}
    if hidden_layers > 0:
        result["hidden_states"] = torch.stack(out.hidden_states[-hidden_layers:])[:, 0].float().cpu().numpy()
    return result


# --------------------------------------------------------------------------- clips
def num_clips(duration: float, clip_len: float) -> int:
    return max(1, int(math.ceil(float(duration) / clip_len - 1e-6)))


def pool_frames_to_clips(values: np.ndarray, timestamps: np.ndarray, duration: float, clip_len: float) -> np.ndarray:
    """Mean of the per-frame ``values (T, ...)`` over the frames inside each ``clip_len`` clip.

    A clip that got no frame (sparse sampling) takes the frame nearest to its centre, so every clip
    of the video has a feature: ``(num_clips(duration, clip_len), ...)``.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if len(values) != len(timestamps) or len(values) == 0:
        raise ValueError(f"{len(values)} frame values for {len(timestamps)} timestamps")
    n = num_clips(duration, clip_len)
    idx = np.clip(np.floor(timestamps / clip_len).astype(np.int64), 0, n - 1)
    out = np.empty((n,) + values.shape[1:], dtype=np.float32)
    for k in range(n):
        inside = idx == k
        if inside.any():
            out[k] = values[inside].mean(0)
        else:
            out[k] = values[int(np.abs(timestamps - (k + 0.5) * clip_len).argmin())]
    return out


def patch_grid_features(tokens: np.ndarray, grid: int) -> np.ndarray:
    """Patch tokens ``(T, 1 + P, H)`` (CLS first, P a square) -> ``(T, grid * grid * H)``: the patch map
    average-pooled to ``grid x grid`` and flattened, so *where* something is in the frame survives."""
    t, n, h = tokens.shape
    side = int(round(math.sqrt(n - 1)))
    if side * side != n - 1 or grid < 1 or side % grid:
        raise ValueError(f"cannot pool {n - 1} patches (side {side}) to a {grid}x{grid} grid")
    x = tokens[:, 1:].reshape(t, grid, side // grid, grid, side // grid, h).mean((2, 4))
    return x.reshape(t, grid * grid * h).astype(np.float32)


# --------------------------------------------------------------------------- npz cache
def video_feature_path(feature_dir: str | os.PathLike, vid: str) -> Path:
    """``feature_dir/{vid}.npz``; a ``vid`` that is not a plain file name (``../x``, ``/abs``) is refused."""
    from vtg_rl.safe_paths import safe_file_stem

    return Path(feature_dir) / f"{safe_file_stem(vid, 'vid')}.npz"


def text_feature_path(feature_dir: str | os.PathLike, qid: str) -> Path:
    """``feature_dir/qid{qid}.npz``; a ``qid`` that is not a plain file name is refused."""
    from vtg_rl.safe_paths import safe_file_stem

    return Path(feature_dir) / f"qid{safe_file_stem(qid, 'qid')}.npz"


def check_feature_ids(samples: Sequence[VTGSample]) -> None:
    """Refuse, before anything is computed or written, samples whose ``vid`` / ``qid`` cannot be a file
    name; the error lists each such sample."""
    from vtg_rl.safe_paths import UnsafePathError, file_stem_problem

    bad = []
    for i, s in enumerate(samples):
        for field_name, value in (("vid", s.vid), ("qid", s.qid)):
            problem = file_stem_problem(value)
            if problem is not None:
                bad.append(f"  sample {i} (qid={s.qid!r}): {field_name} {value!r} cannot be a file name: {problem}")
    if bad:
        raise UnsafePathError(f"{len(bad)} id(s) cannot become feature file names:\n" + "\n".join(bad[:20])
                              + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""))


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` atomically (concurrent readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)


def load_npz_array(path: Path, key: str, what: str) -> np.ndarray:
    """One array of an ``.npz`` as float32, errors naming the file and the sample."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no features for {what}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                raise KeyError(f"{path}: no array {key!r} for {what} (arrays: {data.files})")
            arr = data[key].astype(np.float32)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: unreadable feature file for {what}: {err}") from err
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: non-finite values in {key!r} for {what}")
    return arr


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def load_video_features(dirs: Sequence[str | os.PathLike], vid: str, normalize: bool = True,
                        key: str = "features") -> np.ndarray:
    """``(n_clips, sum of D)``: each folder's ``{vid}.npz``, L2-normalised, cut to the shortest, concatenated."""
    parts = []
    for d in dirs:
        arr = load_npz_array(video_feature_path(d, vid), key, f"video {vid!r}")
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"{video_feature_path(d, vid)}: video features must be (n_clips, D), got {arr.shape}")
        parts.append(_l2(arr) if normalize else arr)
    n = min(p.shape[0] for p in parts)
    return np.concatenate([p[:n] for p in parts], -1)


def load_text_features(dirs: Sequence[str | os.PathLike], qid: str, normalize: bool = True,
                       key: str = "last_hidden_state") -> np.ndarray:
    """``(n_tokens, sum of H)`` token features of query ``qid`` (several folders concatenated)."""
    parts = []
    for d in dirs:
        arr = load_npz_array(text_feature_path(d, qid), key, f"query qid={qid!r}")
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"{text_feature_path(d, qid)}: text features must be (n_tokens, H), got {arr.shape}")
        parts.append(_l2(arr) if normalize else arr)
    n = min(p.shape[0] for p in parts)
    return np.concatenate([p[:n] for p in parts], -1)


def read_manifest(feature_root: str | os.PathLike) -> dict:
    path = Path(feature_root) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


# --------------------------------------------------------------------------- extraction
class ClipFeatureExtractor:
    """Samples frames (PyAV, optional :class:`~vtg_rl.data.video.FrameCache`), encodes them with a
    frozen CLIP and caches per-video / per-query ``.npz`` files; existing files are reused."""

    video_subdir = VIDEO_SUBDIR
    text_subdir = TEXT_SUBDIR

    def __init__(self, clip_path: str | os.PathLike, clip_len: float = 2.0, frames_per_clip: int = 2,
                 frame_cache_dir: Optional[str | os.PathLike] = None, device: str = "cpu", batch_size: int = 64,
                 patch_grid: int = 0, trust_remote_code: bool = False):
        if clip_len <= 0 or frames_per_clip < 1:
            raise ValueError(f"clip_len must be > 0 and frames_per_clip >= 1 (got {clip_len}, {frames_per_clip})")
        self.encoder = load_clip_encoder(clip_path, device, trust_remote_code=trust_remote_code)
        self.clip_len, self.fps = float(clip_len), frames_per_clip / float(clip_len)
        self.batch_size, self.patch_grid = batch_size, int(patch_grid)
        self.frame_cache = None
        if frame_cache_dir is not None:
            from vtg_rl.data.video import FrameCache

            self.frame_cache = FrameCache(frame_cache_dir)

    def sample_video(self, sample: VTGSample):
        from vtg_rl.data.video import sample_frames

        if not sample.video_path:
            raise ValueError(f"sample qid={sample.qid}: no video_path to extract features from")
        params = dict(fps=self.fps, min_frames=4, max_frames=int(math.ceil(sample.duration * self.fps)) + 4)
        return self.frame_cache.get(sample.video_path, **params) if self.frame_cache else sample_frames(sample.video_path, **params)

    def video_arrays(self, sample: VTGSample) -> dict[str, np.ndarray]:
        """Arrays cached for one video; override to add more (e.g. multi-layer patch tokens)."""
        video = self.sample_video(sample)
        enc = encode_video_frames(self.encoder, video.frames, batch_size=self.batch_size)
        return {"features": pool_frames_to_clips(enc["image_embeds"], video.timestamps, sample.duration, self.clip_len)}

    def video_outputs(self, sample: VTGSample) -> dict[str, dict[str, np.ndarray]]:
        """``{sub-folder: arrays of its {vid}.npz}`` for one video. With ``patch_grid`` the frames are
        decoded once for both the CLS embeddings and the last layer's pooled patch map."""
        if not self.patch_grid:
            return {self.video_subdir: self.video_arrays(sample)}
        video = self.sample_video(sample)
        enc = encode_video_frames(self.encoder, video.frames, hidden_layers=1, batch_size=self.batch_size)

        def pool(v):
            return pool_frames_to_clips(v, video.timestamps, sample.duration, self.clip_len)

        return {self.video_subdir: {"features": pool(enc["image_embeds"])},
                PATCH_SUBDIR: {"features": pool(patch_grid_features(enc["hidden_states"][-1], self.patch_grid))}}

    def video_subdirs(self) -> list[str]:
        return [self.video_subdir] + ([PATCH_SUBDIR] if self.patch_grid else [])

    def query_arrays(self, sample: VTGSample) -> dict[str, np.ndarray]:
        """Arrays cached for one query; override to add more."""
        return encode_query(self.encoder, sample.query)

    def manifest(self) -> dict:
        return {"clip_model": self.encoder.path, "clip_len": self.clip_len, "fps": self.fps,
                "video_subdir": self.video_subdir, "video_subdirs": self.video_subdirs(),
                "text_subdir": self.text_subdir, "patch_grid": self.patch_grid,
                "video_dim": int(self.encoder.model.config.projection_dim),
                "text_dim": int(self.encoder.model.config.text_config.hidden_size)}

    def extract(self, samples: Iterable[VTGSample], out_dir: str | os.PathLike, overwrite: bool = False,
                progress: bool = True, probe_videos: bool = True, on_bad_video: str = "error") -> dict:
        """Write every missing feature file under ``out_dir``; returns counts of computed / reused files.

        Before anything is computed, the videos still to be read are probed (:mod:`vtg_rl.data.probe`,
        cached): ``on_bad_video="error"`` refuses to start listing the bad rows, ``"skip"`` leaves their
        features out (``videos_skipped``); ``probe_videos=False`` skips the check."""
        from tqdm.auto import tqdm

        out_dir = Path(out_dir)
        old = read_manifest(out_dir)
        new = self.manifest()
        if old and not overwrite and any(old.get(k) != new[k] for k in ("clip_model", "clip_len", "fps")):
            raise ValueError(f"{out_dir} holds features made with {old}; refusing to mix with {new} "
                             "(use another folder or overwrite=True)")
        samples = list(samples)
        check_feature_ids(samples)
        counts = {"videos_computed": 0, "videos_reused": 0, "queries_computed": 0, "queries_reused": 0}
        if probe_videos:
            from vtg_rl.data.probe import preflight

            todo = [s for s in samples if overwrite or not all(
                video_feature_path(out_dir / d, s.vid).is_file() for d in self.video_subdirs())]
            usable = {id(s) for s in preflight(todo, what="feature extraction", on_bad_video=on_bad_video)}
            skipped = {id(s) for s in todo} - usable
            if skipped:
                counts["videos_skipped"] = len({s.vid for s in todo if id(s) in skipped})
                samples = [s for s in samples if id(s) not in skipped]
        seen_vids: set[str] = set()
        for s in tqdm(samples, desc="features", disable=not progress):
            if s.vid not in seen_vids:
                seen_vids.add(s.vid)
                paths = {d: video_feature_path(out_dir / d, s.vid) for d in self.video_subdirs()}
                if all(p.is_file() for p in paths.values()) and not overwrite:
                    counts["videos_reused"] += 1
                else:
                    for d, arrays in self.video_outputs(s).items():
                        save_npz(video_feature_path(out_dir / d, s.vid), **arrays)
                    counts["videos_computed"] += 1
            tpath = text_feature_path(out_dir / self.text_subdir, s.qid)
            if tpath.is_file() and not overwrite:
                counts["queries_reused"] += 1
            else:
                save_npz(tpath, **self.query_arrays(s))
                counts["queries_computed"] += 1
        atomic_write_text(out_dir / MANIFEST, json.dumps(new, indent=2, allow_nan=False) + "\n")
        return counts
