"""What the head recipes share: the tiny CLIP, annotations, feature datasets and resume.

Defaults need no arguments: the synthetic world (``runs/data/synthetic``, shared with the LLM recipes)
and the tiny CLIP (``runs/models/tiny_clip``) are made when missing, and features are extracted once into
``runs/features/...``. The runs themselves are :func:`vtg_rl.heads.girl_detr.recipe.run_girl_detr`,
:func:`vtg_rl.heads.tprl.recipe.run_tprl` and :func:`vtg_rl.heads.r2_tuning.recipe.run_r2_tuning`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields
from pathlib import Path

from vtg_rl.data.schema import VTGSample, read_jsonl
from vtg_rl.heads.feature_dataset import FeatureDataset, make_dataset
from vtg_rl.heads.trainer import HeadTrainingConfig
from vtg_rl.training.checkpoints import last_complete_checkpoint
from vtg_rl.training.world import ensure_synthetic_world

logger = logging.getLogger(__name__)
DEFAULT_TINY_CLIP_DIR = "runs/models/tiny_clip"


# --------------------------------------------------------------------------- data
def ensure_clip(path: str, seed: int = 0) -> str:
    """The default CLIP is the tiny local one: build it when its folder is missing."""
    if os.path.normpath(path) == os.path.normpath(DEFAULT_TINY_CLIP_DIR) and not Path(path, "config.json").is_file():
        from vtg_rl.models.tiny_clip import build_tiny_clip

        logger.info("building the tiny local CLIP into %s", path)
        build_tiny_clip(path, seed=seed)
    return path


def load_annotations(cfg: HeadTrainingConfig) -> tuple[list[VTGSample], list[VTGSample]]:
    """(train, eval) samples: synthetic splits, or real files through :mod:`vtg_rl.data.loaders`."""
    if cfg.dataset == "synthetic":
        paths = ensure_synthetic_world(cfg.synthetic_dir, cfg.synthetic_n, cfg.synthetic_seed)
        train = read_jsonl(paths["train"])
        evals = [s for split in cfg.eval_split.split("+") for s in read_jsonl(paths[split])]
    else:
        from vtg_rl.data.loaders import load_samples

        if not cfg.train_file or not cfg.eval_file:
            raise ValueError(f"--dataset {cfg.dataset} needs --train_file and --eval_file")
        feature_only = bool(cfg.video_feature_dirs)
        kw = dict(check_videos=not feature_only, policy=cfg.data_policy)
        train, _ = load_samples(cfg.train_file, cfg.dataset, **kw)
        evals, _ = load_samples(cfg.eval_file, cfg.dataset, **kw)
    if cfg.max_eval_samples is not None:
        evals = evals[: cfg.max_eval_samples]
    return train, evals


def build_datasets(cfg: HeadTrainingConfig) -> tuple[FeatureDataset, FeatureDataset]:
    """Feature datasets for training and evaluation, extracting features first when needed."""
    train, evals = load_annotations(cfg)
    kw = dict(clip_len=cfg.clip_len, max_video_len=cfg.max_video_len)
    if cfg.video_feature_dirs:  # precomputed release features (e.g. QVHighlights clip + slowfast)
        if not cfg.text_feature_dirs:
            raise ValueError("--video_feature_dirs needs --text_feature_dirs too")
        return (FeatureDataset(train, cfg.video_feature_dirs, cfg.text_feature_dirs, **kw),
                FeatureDataset(evals, cfg.video_feature_dirs, cfg.text_feature_dirs, **kw))
    from vtg_rl.heads.features import ClipFeatureExtractor

    root = cfg.feature_root or f"runs/features/{cfg.dataset}_clip{cfg.clip_len:g}s_grid{cfg.patch_grid}"
    extractor = ClipFeatureExtractor(ensure_clip(cfg.clip_model), clip_len=cfg.clip_len,
                                     frames_per_clip=cfg.frames_per_clip, frame_cache_dir=cfg.frame_cache_dir,
                                     patch_grid=cfg.patch_grid)
    counts = extractor.extract(train + evals, root, progress=not cfg.disable_tqdm)
    logger.info("features in %s: %s", root, counts)
    return make_dataset(train, root, **kw), make_dataset(evals, root, **kw)


def _sub(cfg, cls, prefix: str = ""):
    return cls(**{f.name: getattr(cfg, prefix + f.name) for f in fields(cls) if hasattr(cfg, prefix + f.name)})


def _resume(cfg: HeadTrainingConfig):
    """``--resume_from_checkpoint auto``: the last checkpoint whose save finished (a run killed while saving
    leaves a partial ``checkpoint-N`` behind, which ``get_last_checkpoint`` would pick)."""
    if cfg.resume_from_checkpoint == "auto":
        return last_complete_checkpoint(cfg.output_dir)
    return cfg.resume_from_checkpoint
