"""The logic behind ``recipes/r2_tuning.py``: supervised R2-Tuning, then (optionally) TPRL on its moment head.

Defaults need no arguments: the synthetic world and the tiny CLIP are made when missing (the helpers of
:mod:`vtg_rl.heads.recipe`, shared with GIRL-DETR), multi-layer features are extracted once into
``runs/features/...``, and the run writes into ``output_dir``: checkpoints (``model.safetensors`` +
``r2_config.json``), TensorBoard logs, ``final/``, a QVHighlights submission with saliency scores,
``metrics.json`` and ``curves.png``; with ``tprl_max_steps > 0`` the same again under ``output_dir/tprl``.

Highlight-only and summarisation data (``task`` "highlight" / "summarization": the synthetic worlds of
``--synthetic_task``, or the ``tvsum`` / ``youtube_highlight`` releases) train the saliency head alone (no
span loss), write per-labelled-clip saliency rows and are scored with their own protocol; ``--domain``
keeps one domain (the per-domain runs those benchmarks report).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional

from transformers.trainer_utils import set_seed

from vtg_rl.data.schema import TASK_GROUNDING, TASK_HIGHLIGHT, TASK_SUMMARIZATION
from vtg_rl.heads.predictions import score_predictions
from vtg_rl.heads.r2_tuning.features import R2FeatureDataset, R2FeatureExtractor
from vtg_rl.heads.r2_tuning.grounder import write_head_config
from vtg_rl.heads.r2_tuning.model import R2Tuning, save_r2
from vtg_rl.heads.r2_tuning.trainer import (R2TPRLTrainer, R2TuningConfig, R2TuningTrainer, clip_task_protocol,
                                            filter_domains, predict_rows)
from vtg_rl.heads.recipe import _resume, ensure_clip, load_annotations
from vtg_rl.heads.tprl.loss import backbone_snapshot, changed_backbone_tensors, freeze_backbone
from vtg_rl.training.artifacts import plot_curves, write_json
from vtg_rl.training.world import DEFAULT_WORLD_SPLITS

logger = logging.getLogger(__name__)
CURVE_KEYS = ["loss", "loss/cls", "loss/l1", "loss/giou", "loss/saliency", "loss/video_contrastive",
              "loss/layer_contrastive", "tprl/greedy_iou", "tprl/sampled_iou", "eval_R1@0.5", "eval_R1@0.7",
              "eval_MR-full-mAP", "eval_HL-min-VeryGood-mAP", "eval_HL-min-VeryGood-Hit1",
              "eval_mAP"]  # the last: TVSum top-5 / YouTube Highlights mAP over domains


def _task_world_dir(cfg: R2TuningConfig) -> Path:
    """Where the synthetic world of ``cfg.synthetic_task`` lives: the configured folder, except that the
    default folder (the grounding world shared with the other recipes) maps to ``<it>_<task>``."""
    directory = Path(cfg.synthetic_dir)
    default = next(f.default for f in dataclasses.fields(R2TuningConfig) if f.name == "synthetic_dir")
    if cfg.synthetic_task != TASK_GROUNDING and directory == Path(default):
        directory = Path(f"{default}_{cfg.synthetic_task}")
    return directory


def load_task_world(cfg: R2TuningConfig) -> tuple[list, list]:
    """(train, eval) samples of the synthetic summarisation / highlight world, generated when missing."""
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.data.synthetic_highlight import generate_task_world

    directory = _task_world_dir(cfg)
    world = directory / "world.json"
    if world.is_file():  # never regenerate another task's world in place
        task = json.loads(world.read_text()).get("params", {}).get("task", TASK_GROUNDING)
        if task != cfg.synthetic_task:
            raise ValueError(f"{directory} holds a synthetic {task!r} world, not {cfg.synthetic_task!r}: "
                             "point --synthetic_dir at another folder")
    paths = generate_task_world(directory, n=cfg.synthetic_n, seed=cfg.synthetic_seed, task=cfg.synthetic_task,
                                split_fractions=DEFAULT_WORLD_SPLITS, progress=not cfg.disable_tqdm)
    train = read_jsonl(paths["train"])
    evals = [s for split in cfg.eval_split.split("+") for s in read_jsonl(paths[split])]
    return train, evals


def load_r2_annotations(cfg: R2TuningConfig):
    """(train, eval) samples; real datasets get their video paths from ``cfg.video_dir``. ``cfg.domain``
    keeps one domain / category (or several, comma-separated) of both splits."""
    if cfg.synthetic_task not in (TASK_GROUNDING, TASK_SUMMARIZATION, TASK_HIGHLIGHT):
        raise ValueError(f"--synthetic_task {cfg.synthetic_task!r}: choose grounding, summarization or highlight")
    if cfg.dataset == "synthetic" and cfg.synthetic_task != TASK_GROUNDING:
        train, evals = load_task_world(cfg)
    elif cfg.dataset == "synthetic" or cfg.video_dir is None:
        train, evals = load_annotations(cfg)
    else:
        from vtg_rl.data.loaders import load_samples

        if not cfg.train_file or not cfg.eval_file:
            raise ValueError(f"--dataset {cfg.dataset} needs --train_file and --eval_file")
        kw = {"clip_length": cfg.label_clip_length} if cfg.label_clip_length is not None else {}
        kw["policy"] = cfg.data_policy
        train, _ = load_samples(cfg.train_file, cfg.dataset, video_dir=cfg.video_dir, **kw)
        evals, _ = load_samples(cfg.eval_file, cfg.dataset, video_dir=cfg.video_dir, **kw)
    train, evals = filter_domains(train, cfg.domain), filter_domains(evals, cfg.domain)
    return train, evals[: cfg.max_eval_samples] if cfg.max_eval_samples is not None else evals


def eval_protocol_for(cfg: R2TuningConfig, samples) -> str:
    """``cfg.eval_protocol``, except that the QVHighlights default on a summarisation / highlight-only split
    becomes the split's own protocol (``tvsum`` / ``youtube_highlight``)."""
    own = clip_task_protocol(samples)
    if own is not None and cfg.eval_protocol == "qvhighlights":
        logger.info("scoring the %s split with protocol %s", samples[0].task, own)
        return own
    return cfg.eval_protocol


def build_r2_datasets(cfg: R2TuningConfig) -> tuple[R2FeatureDataset, R2FeatureDataset, int]:
    """(train, eval) feature datasets, extracting missing features first, and the CLIP's parameter count."""
    if cfg.video_feature_dirs or cfg.text_feature_dirs:
        raise ValueError("R2-Tuning reads the last K layers of both CLIP towers; release features "
                         "(--video_feature_dirs / --text_feature_dirs) hold only final embeddings")
    train, evals = load_r2_annotations(cfg)
    clip_path = ensure_clip(cfg.clip_model, seed=0)
    root = cfg.feature_root or f"runs/features/{cfg.dataset}_r2_k{cfg.num_clip_layers}_clip{cfg.clip_len:g}s"
    extractor = R2FeatureExtractor(clip_path, num_layers=cfg.num_clip_layers, clip_len=cfg.clip_len,
                                   frames_per_clip=cfg.frames_per_clip, frame_cache_dir=cfg.frame_cache_dir)
    counts = extractor.extract(train + evals, root, progress=not cfg.disable_tqdm)
    logger.info("R2 features in %s: %s", root, counts)
    clip_params = sum(p.numel() for p in extractor.encoder.model.parameters())
    return R2FeatureDataset(train, root), R2FeatureDataset(evals, root), clip_params


def _finish(trainer, model: R2Tuning, eval_ds: R2FeatureDataset, cfg: R2TuningConfig, extra: dict) -> dict:
    """Save the adapter, write and score the submission, plot the curves, write metrics.json."""
    from vtg_rl.metrics import write_submission

    out = Path(cfg.output_dir)
    save_r2(model, out / "final")
    write_head_config(out / "final", cfg.clip_model, cfg.clip_len, cfg.frames_per_clip, cfg.num_clip_layers)
    rows = predict_rows(model, eval_ds, cfg.per_device_eval_batch_size)
    split = cfg.eval_split if cfg.dataset == "synthetic" else "eval"
    submission = write_submission(out / f"predictions_{split}.jsonl", rows)
    metrics = {**extra, "eval": score_predictions(rows, eval_ds.samples, cfg.eval_protocol),
               "num_eval": len(eval_ds), "submission": str(submission)}
    metrics["curves"] = plot_curves(trainer.state.log_history, CURVE_KEYS, out / "curves.png", title=out.name)
    write_json(out / "metrics.json", metrics)
    return metrics


def run_r2_tuning(cfg: R2TuningConfig, datasets: Optional[tuple] = None) -> dict:
    """Supervised R2-Tuning (+ TPRL when ``cfg.tprl_max_steps > 0``); returns the metrics written to disk.

    ``datasets``: ``(train, eval, clip_params)`` to skip annotation loading and feature extraction.
    """
    set_seed(cfg.seed)
    train_ds, eval_ds, clip_params = datasets or build_r2_datasets(cfg)
    if cfg.tprl_max_steps > 0 and not any(s.windows for s in train_ds.samples):
        raise ValueError("TPRL post-trains the moment head, and no training sample has windows (highlight-only / "
                         "summarisation data): set --tprl_max_steps 0")
    protocol = eval_protocol_for(cfg, eval_ds.samples)
    if protocol != cfg.eval_protocol:
        cfg = dataclasses.replace(cfg, eval_protocol=protocol)
    manifest = train_ds.manifest
    model = R2Tuning(cfg.model_config(int(manifest["vision_dim"]), int(manifest["text_dim"])))
    counts = model.parameter_counts(frozen_extra=clip_params)
    if counts["trainable_fraction"] >= cfg.max_trainable_fraction:
        raise ValueError(f"R2-Tuning would train {counts['trainable_params']} of "
                         f"{counts['trainable_params'] + counts['frozen_params']} parameters "
                         f"({counts['trainable_fraction']:.1%} >= {cfg.max_trainable_fraction:.0%}); "
                         "lower --hidden_size or raise --max_trainable_fraction")
    logger.info("R2-Tuning trains %d parameters, %.2f%% of the system (CLIP frozen)",
                counts["trainable_params"], 100 * counts["trainable_fraction"])
    trainer = R2TuningTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                              top_k_windows=cfg.top_k_windows, eval_protocol=cfg.eval_protocol)
    trainer.train(resume_from_checkpoint=_resume(cfg))
    result = _finish(trainer, model, eval_ds, cfg, {"stage": "supervised", **counts, "clip_model": cfg.clip_model,
                                                     "config": dataclasses.asdict(model.config)})
    if cfg.tprl_max_steps > 0:
        result["tprl"] = run_r2_tprl(cfg, model, train_ds, eval_ds, clip_params)
        write_json(Path(cfg.output_dir) / "metrics.json", result)
    return result


def run_r2_tprl(cfg: R2TuningConfig, model: R2Tuning, train_ds, eval_ds, clip_params: int = 0) -> dict:
    """TPRL on the moment head of a trained R2 model with the shared loop; checks gradient isolation."""
    tcfg = dataclasses.replace(cfg, output_dir=str(Path(cfg.output_dir) / "tprl"), max_steps=cfg.tprl_max_steps,
                               learning_rate=cfg.tprl_learning_rate, warmup_steps=0,
                               lr_scheduler_type="constant", eval_steps=None, eval_strategy="no",
                               save_steps=max(cfg.tprl_max_steps // 2, 1))
    trainable, total = freeze_backbone(model)
    total += clip_params
    if trainable / total >= cfg.max_trainable_fraction:
        raise ValueError(f"TPRL would train {trainable}/{total} parameters (>= {cfg.max_trainable_fraction:.0%})")
    snapshot = backbone_snapshot(model)
    trainer = R2TPRLTrainer(model=model, args=tcfg, train_dataset=train_ds, eval_dataset=eval_ds,
                            tprl_config=cfg.tprl_config(), top_k_windows=cfg.top_k_windows,
                            eval_protocol=cfg.eval_protocol)
    trainer.train(resume_from_checkpoint=_resume(tcfg))
    changed = changed_backbone_tensors(model, snapshot)
    if changed:
        raise RuntimeError(f"gradient isolation broken: R2 backbone tensors changed during TPRL: {changed[:5]}")
    return _finish(trainer, model, eval_ds, tcfg, {"stage": "tprl", "trainable_params": trainable,
                                                   "total_params": total, "trainable_fraction": trainable / total,
                                                   "backbone_bit_identical": True})
