"""The logic behind ``recipes/tprl.py``: TPRL post-training of a supervised GIRL-DETR head, and its control arm.

Only the head trains (:func:`vtg_rl.heads.tprl.loss.freeze_backbone`); every run proves afterwards that no
backbone tensor moved, and ends like a supervised run (:func:`vtg_rl.heads.girl_detr.recipe.finish`) with
the scores before and after.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Optional

from transformers.trainer_utils import set_seed

from vtg_rl.heads.feature_dataset import collate_features
from vtg_rl.heads.girl_detr.losses import DetrGroundingLoss, LossWeights
from vtg_rl.heads.girl_detr.matcher import HungarianMatcher, MatcherWeights
from vtg_rl.heads.girl_detr.model import GirlDetr
from vtg_rl.heads.girl_detr.recipe import finish
from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig
from vtg_rl.heads.predictions import predict, score_predictions
from vtg_rl.heads.recipe import _resume, _sub, build_datasets
from vtg_rl.heads.tprl.loss import backbone_snapshot, changed_backbone_tensors, freeze_backbone
from vtg_rl.heads.tprl.trainer import HeadOnlySupervisedTrainer, TPRLTrainer, TPRLTrainingConfig
from vtg_rl.heads.trainer import HeadTrainingConfig


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


def control_arm_config(cfg: TPRLTrainingConfig) -> GirlDetrTrainingConfig:
    """The supervised config of TPRL's control arm: every field the two configs share (data, evaluation,
    optimiser, schedule, steps, seed, output folder) taken from ``cfg``, the supervised loss and matcher
    weights at the GIRL-DETR recipe's defaults. The architecture fields are unused (the head is loaded)."""
    shared = {f.name for f in fields(GirlDetrTrainingConfig) if f.init}
    return GirlDetrTrainingConfig(**{k: v for k, v in cfg.to_dict().items() if k in shared})


def run_control_arm(cfg: TPRLTrainingConfig, datasets: Optional[tuple] = None,
                    model: Optional[GirlDetr] = None) -> dict:
    """``recipes/tprl.py --control_arm``: :func:`run_head_finetune` from ``cfg.supervised_checkpoint`` with
    TPRL's data and optimiser settings (:func:`control_arm_config`), so its scores sit beside TPRL's."""
    model = model if model is not None else _load_supervised(cfg.supervised_checkpoint)
    metrics = run_head_finetune(control_arm_config(cfg), datasets or build_datasets(cfg), model,
                                backbone_dropout=cfg.tprl_backbone_dropout)
    return {**metrics, "supervised_checkpoint": cfg.supervised_checkpoint}


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
