"""The logic behind ``recipes/girl_detr.py`` (supervised) and ``recipes/tprl.py`` (post-training).

Defaults need no arguments: the synthetic world (``runs/data/synthetic``, shared with the LLM recipes)
and the tiny CLIP (``runs/models/tiny_clip``) are made when missing, features are extracted once into
``runs/features/...``, the head trains, and the run ends with a QVHighlights submission jsonl scored by
:mod:`vtg_rl.metrics`, ``metrics.json`` and ``training_curves.png`` in ``output_dir``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Optional

from transformers.trainer_utils import set_seed

from vtg_rl.data.schema import VTGSample, read_jsonl
from vtg_rl.heads.feature_dataset import FeatureDataset, collate_features, make_dataset
from vtg_rl.heads.girl_detr import GirlDetr, GirlDetrConfig
from vtg_rl.heads.head_trainer import (GirlDetrTrainer, GirlDetrTrainingConfig, HeadOnlySupervisedTrainer,
                                       HeadTrainingConfig, TPRLTrainer, TPRLTrainingConfig)
from vtg_rl.heads.losses import DetrGroundingLoss, LossWeights
from vtg_rl.heads.matcher import HungarianMatcher, MatcherWeights
from vtg_rl.heads.predictions import headline, predict, score_predictions
from vtg_rl.heads.tprl import backbone_snapshot, changed_backbone_tensors, freeze_backbone
from vtg_rl.training.checkpoints import last_complete_checkpoint
from vtg_rl.training.world import ensure_synthetic_world
from vtg_rl.training.artifacts import plot_curves, write_json

logger = logging.getLogger(__name__)
DEFAULT_TINY_CLIP_DIR = "runs/models/tiny_clip"
CURVE_KEYS = ["loss", "loss/span_l1", "loss/span_giou", "loss/label", "loss/saliency", "tprl/greedy_iou",
              "tprl/sampled_iou", "tprl/advantage", "eval_R1@0.5", "eval_R1@0.7", "eval_mIoU"]


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
        train, _ = load_samples(cfg.train_file, cfg.dataset, check_videos=not feature_only)
        evals, _ = load_samples(cfg.eval_file, cfg.dataset, check_videos=not feature_only)
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


def finish(trainer, model, eval_ds: FeatureDataset, cfg: HeadTrainingConfig, extra: dict) -> dict:
    """Save the head, write the submission, score it, plot curves, write metrics.json."""
    from vtg_rl.metrics import write_submission

    out = Path(cfg.output_dir)
    model.save(out / "final")
    from vtg_rl.heads.girl_detr_grounder import write_head_config

    write_head_config(out / "final", cfg)  # lets `vtg-rl predict --model out/final` run on raw video
    rows = predict(model, eval_ds, batch_size=cfg.per_device_eval_batch_size, top_k=cfg.top_k_windows)
    split = cfg.eval_split if cfg.dataset == "synthetic" else "eval"
    sub = write_submission(out / f"predictions_{split}.jsonl", rows)
    scores = score_predictions(rows, eval_ds.samples, cfg.eval_protocol)
    # "eval": vtg_rl.metrics numbers (percent); "<split>": the project-wide headline block (fractions)
    metrics = {**extra, "eval": scores, split: headline(scores), "num_eval": len(eval_ds), "submission": str(sub)}
    if "eval_before" in extra:
        metrics[f"{split}_before"] = headline(extra["eval_before"])
    metrics["curves"] = plot_curves(trainer.state.log_history, CURVE_KEYS, out / "training_curves.png",
                                    title=Path(cfg.output_dir).name)
    write_json(out / "metrics.json", metrics)
    return metrics


# --------------------------------------------------------------------------- supervised
def run_girl_detr(cfg: GirlDetrTrainingConfig, datasets: Optional[tuple] = None) -> dict:
    """Train GIRL-DETR with supervision; returns the metrics written to ``output_dir/metrics.json``."""
    set_seed(cfg.seed)
    train_ds, eval_ds = datasets or build_datasets(cfg)
    model_cfg = GirlDetrConfig(video_dim=train_ds.video_dim, text_dim=train_ds.text_dim, **cfg.architecture())
    model = GirlDetr(model_cfg)
    criterion = DetrGroundingLoss(_sub(cfg, LossWeights, "loss_"), HungarianMatcher(_sub(cfg, MatcherWeights)))
    trainer = GirlDetrTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                              data_collator=collate_features, criterion=criterion,
                              top_k_windows=cfg.top_k_windows, eval_protocol=cfg.eval_protocol)
    trainer.train(resume_from_checkpoint=_resume(cfg))
    n_params = sum(p.numel() for p in model.parameters())
    return finish(trainer, model, eval_ds, cfg, {"stage": "supervised", "total_params": n_params,
                                                 "head_params": sum(p.numel() for p in model.head_parameters()),
                                                 "config": asdict(model_cfg)})


# --------------------------------------------------------------------------- post-training (head only)
def _post_train(cfg: HeadTrainingConfig, datasets: tuple, model: GirlDetr, make_trainer, extra: dict,
                max_fraction: float) -> dict:
    """Freeze all but the head, train it with ``make_trainer(model, train_ds, eval_ds)``, prove that no
    backbone tensor moved, and finish the run (scores before / after, trainable fraction)."""
    train_ds, eval_ds = datasets
    before_rows = predict(model, eval_ds, batch_size=cfg.per_device_eval_batch_size, top_k=cfg.top_k_windows)
    before = score_predictions(before_rows, eval_ds.samples, cfg.eval_protocol)
    trainable, total = freeze_backbone(model)
    if trainable / total >= max_fraction:
        raise ValueError(f"{trainable}/{total} = {trainable / total:.1%} of the parameters would train; "
                         f"head-only post-training allows < {max_fraction:.0%}")
    snapshot = backbone_snapshot(model)
    trainer = make_trainer(model, train_ds, eval_ds)
    trainer.train(resume_from_checkpoint=_resume(cfg))
    changed = changed_backbone_tensors(model, snapshot)
    if changed:
        raise RuntimeError(f"gradient isolation broken: backbone tensors changed during post-training: {changed[:5]}")
    return finish(trainer, model, eval_ds, cfg, {
        **extra, "eval_before": before, "trainable_params": trainable, "total_params": total,
        "trainable_fraction": trainable / total, "backbone_bit_identical": True})


def _load_supervised(path: str) -> GirlDetr:
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{path}: no supervised head; run recipes/girl_detr.py first "
                                "or pass --supervised_checkpoint")
    return GirlDetr.load(path)


def run_tprl(cfg: TPRLTrainingConfig, datasets: Optional[tuple] = None, model: Optional[GirlDetr] = None) -> dict:
    """Post-train a supervised head with TPRL on a frozen backbone; checks gradient isolation."""
    set_seed(cfg.seed)
    datasets = datasets or build_datasets(cfg)
    model = model if model is not None else _load_supervised(cfg.supervised_checkpoint)

    def make_trainer(m, train_ds, eval_ds):
        return TPRLTrainer(model=m, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                           data_collator=collate_features, tprl_config=cfg.tprl_config(),
                           top_k_windows=cfg.top_k_windows, eval_protocol=cfg.eval_protocol)

    return _post_train(cfg, datasets, model, make_trainer,
                       {"stage": "tprl", "supervised_checkpoint": cfg.supervised_checkpoint}, cfg.max_trainable_fraction)


def run_head_finetune(cfg: GirlDetrTrainingConfig, datasets: tuple, model: GirlDetr,
                      backbone_dropout: bool = False) -> dict:
    """TPRL's control arm: continue the *supervised* loss (Hungarian matching, the recipe's loss weights)
    on exactly the parameters TPRL trains, frozen backbone, with ``cfg``'s optimiser settings."""
    set_seed(cfg.seed)
    criterion = DetrGroundingLoss(_sub(cfg, LossWeights, "loss_"), HungarianMatcher(_sub(cfg, MatcherWeights)))

    def make_trainer(m, train_ds, eval_ds):
        return HeadOnlySupervisedTrainer(model=m, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                                         data_collator=collate_features, criterion=criterion,
                                         backbone_dropout=backbone_dropout, top_k_windows=cfg.top_k_windows,
                                         eval_protocol=cfg.eval_protocol)

    # the control arm is held to TPRL's default bound (its supervised config has no such field)
    return _post_train(cfg, datasets, model, make_trainer, {"stage": "supervised_head_finetune"},
                       TPRLTrainingConfig.max_trainable_fraction)
