"""The logic behind ``recipes/girl_detr.py``: supervised GIRL-DETR on frozen CLIP features.

Defaults need no arguments (see :mod:`vtg_rl.heads.recipe`): features are extracted once, the head trains,
and the run ends with a QVHighlights submission jsonl scored by :mod:`vtg_rl.metrics`, ``metrics.json``
and ``training_curves.png`` in ``output_dir``. :func:`finish` also ends TPRL's runs on a GIRL-DETR head
(:mod:`vtg_rl.heads.tprl.recipe`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

from transformers.trainer_utils import set_seed

from vtg_rl.heads.feature_dataset import FeatureDataset, collate_features
from vtg_rl.heads.girl_detr.grounder import write_head_config
from vtg_rl.heads.girl_detr.losses import DetrGroundingLoss, LossWeights
from vtg_rl.heads.girl_detr.matcher import HungarianMatcher, MatcherWeights
from vtg_rl.heads.girl_detr.model import GirlDetr, GirlDetrConfig
from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainer, GirlDetrTrainingConfig
from vtg_rl.heads.predictions import headline, predict, score_predictions
from vtg_rl.heads.recipe import _resume, _sub, build_datasets
from vtg_rl.heads.trainer import HeadTrainingConfig
from vtg_rl.training.artifacts import plot_curves, write_json

CURVE_KEYS = ["loss", "loss/span_l1", "loss/span_giou", "loss/label", "loss/saliency", "tprl/greedy_iou",
              "tprl/sampled_iou", "tprl/advantage", "eval_R1@0.5", "eval_R1@0.7", "eval_mIoU"]


def finish(trainer, model, eval_ds: FeatureDataset, cfg: HeadTrainingConfig, extra: dict) -> dict:
    """Save the head, write the submission, score it, plot curves, write metrics.json."""
    from vtg_rl.metrics import write_submission

    out = Path(cfg.output_dir)
    model.save(out / "final")
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
