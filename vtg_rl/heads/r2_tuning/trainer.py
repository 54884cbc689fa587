"""Training R2-Tuning on the head trainers of :mod:`vtg_rl.heads.trainer` and :mod:`vtg_rl.heads.tprl.trainer`.

:class:`R2TuningConfig` extends the heads' shared :class:`HeadTrainingConfig` (data, features, every
``TrainingArguments`` option) with the R2 architecture, loss weights and the TPRL post-training knobs.
:class:`R2TuningTrainer` is the supervised trainer (R2 losses, logged per part); :class:`R2TPRLTrainer`
is the shared :class:`TPRLTrainer` itself (same RL loop, same objective) with R2's evaluation. Both
evaluate by decoding NMS'd moments and per-clip saliency into a QVHighlights submission scored by
:mod:`vtg_rl.metrics` (moment retrieval + highlight detection); highlight-only and summarisation samples
(``task`` "highlight" / "summarization") get per-labelled-clip saliency rows, scored by the
``youtube_highlight`` / ``tvsum`` protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np
import torch

from vtg_rl.data.schema import CLIP_LABEL_TASKS, TASK_HIGHLIGHT, TASK_SUMMARIZATION
from vtg_rl.heads.predictions import score_predictions, to_qvh_clips
from vtg_rl.heads.r2_tuning.features import collate_r2, pool_to_label_clips
from vtg_rl.heads.r2_tuning.model import R2Architecture, R2ModelConfig, R2Tuning
from vtg_rl.heads.tprl.loss import TPRLConfig
from vtg_rl.heads.tprl.trainer import TPRLArguments, TPRLTrainer
from vtg_rl.heads.trainer import HeadTrainer, HeadTrainingConfig


@dataclass
class R2TuningConfig(R2Architecture, TPRLArguments, HeadTrainingConfig):
    """R2-Tuning's knobs on top of the heads' shared ones. Defaults: the tiny-CLIP / synthetic recipe."""

    output_dir: str = field(default="runs/r2_tuning")
    clip_len: float = field(default=1.0, metadata={"help": "seconds per feature clip (one pooled frame set each)"})
    video_dir: Optional[str] = field(default=None, metadata={"help": "folder of <vid>.mp4 for real datasets "
                                                                       "(features are extracted from the videos)"})
    hidden_size: int = field(default=16, metadata={"help": "R2 block width D (16 for the tiny CLIP; paper: 256)"})
    r2_dropout: float = field(default=0.1)
    max_trainable_fraction: float = field(default=0.05, metadata={"help": "refuse a model that trains more of the "
                                                                          "whole system (CLIP included)"})
    # clip-label tasks (highlight-only, summarisation)
    synthetic_task: str = field(default="grounding", metadata={
        "help": "synthetic world: 'grounding' (moment retrieval + QVHighlights-style saliency), 'summarization' "
                "(TVSum-like) or 'highlight' (YouTube Highlights-like); see vtg_rl.data.synthetic_highlight"})
    domain: Optional[str] = field(default=None, metadata={
        "help": "keep only samples whose meta['domain'] is one of these (comma-separated): the per-domain runs "
                "TVSum and YouTube Highlights report"})
    label_clip_length: Optional[float] = field(default=None, metadata={
        "help": "seconds per labelled clip of tvsum / youtube_highlight files (default: the release's, 2 s / 1 s)"})
    # TPRL post-training of the moment head (0 steps: skip)
    tprl_max_steps: int = field(default=0, metadata={"help": "TPRL steps after supervised training (0 = none)"})
    tprl_learning_rate: float = field(default=1e-4)

    def model_config(self, vision_dim: int, text_dim: int) -> R2ModelConfig:
        return R2ModelConfig(vision_dim=vision_dim, text_dim=text_dim, dropout=self.r2_dropout,
                             max_moments=self.top_k_windows, **self.r2_architecture())

    def tprl_config(self) -> TPRLConfig:
        return TPRLConfig(**{f.name: getattr(self, f"tprl_{f.name}") for f in fields(TPRLConfig)})


def clip_task_protocol(samples) -> Optional[str]:
    """The metric protocol of a clip-label split: ``"tvsum"`` when every sample is a summarisation sample,
    ``"youtube_highlight"`` when every one is highlight-only, else None (grounding or mixed)."""
    tasks = {s.task for s in samples}
    if tasks == {TASK_SUMMARIZATION}:
        return "tvsum"
    if tasks == {TASK_HIGHLIGHT}:
        return "youtube_highlight"
    return None


def filter_domains(samples, domain: Optional[str]) -> list:
    """The samples whose ``meta["domain"]`` is one of the comma-separated ``domain`` (all when None)."""
    if not domain:
        return list(samples)
    wanted = {d.strip() for d in domain.split(",") if d.strip()}
    kept = [s for s in samples if s.meta.get("domain") in wanted]
    if not kept:
        found = sorted({str(s.meta.get("domain")) for s in samples})
        raise ValueError(f"--domain {domain}: no sample has that meta['domain'] (found {found[:20]})")
    return kept


@torch.no_grad()
def predict_rows(model: R2Tuning, dataset, batch_size: int = 64, device: Optional[torch.device] = None) -> list[dict]:
    """Submission rows for a feature dataset. Grounding samples: NMS'd windows in seconds (best first) and
    ``pred_saliency_scores`` per 2 s clip (QVHighlights). Clip-label samples (highlight-only,
    summarisation): ``pred_saliency_scores`` only, one per labelled clip of the sample (its ``clip_length``)."""
    from torch.utils.data import DataLoader

    device = device or next(model.parameters()).device
    rows = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_r2):
        inputs = {k: v.to(device) for k, v in batch["model_inputs"].items()}
        preds = model.predict(inputs, [m["duration"] for m in batch["meta"]])
        for m, p in zip(batch["meta"], preds):
            scores = np.asarray(p["pred_saliency_scores"], dtype=np.float64)
            row = {"qid": m["qid"], "vid": m["vid"], "query": m["query"]}
            if m.get("task") in CLIP_LABEL_TASKS and m.get("n_label_clips"):
                saliency = pool_to_label_clips(scores, m["clip_len"], m["label_clip_length"], m["n_label_clips"])
            else:
                saliency = to_qvh_clips(scores, m["clip_len"], m["duration"])
                row["pred_relevant_windows"] = p["pred_relevant_windows"]
            row["pred_saliency_scores"] = [round(x, 4) for x in saliency]
            rows.append(row)
    return rows


class R2Evaluation:
    """Evaluation for R2 heads (mixed in before a :class:`HeadTrainer`): NMS'd moments + saliency."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError(f"{type(self).__name__}.evaluate needs an eval_dataset")
        was_training = self.model.training
        self.model.eval()
        try:
            rows = predict_rows(self.model, dataset, self.args.per_device_eval_batch_size)
        finally:
            self.model.train(was_training)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in score_predictions(rows, dataset.samples,
                                                                              self.eval_protocol).items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class R2TuningTrainer(R2Evaluation, HeadTrainer):
    """Supervised R2-Tuning: moment (focal + L1 + gIoU + IoU head), saliency and the two contrastive losses."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("data_collator", collate_r2)
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(**inputs["model_inputs"], **inputs["supervision"])
        self._record({f"loss/{k[5:]}": float(v.detach()) for k, v in out.items() if k.startswith("loss_")})
        return (out["loss"], out) if return_outputs else out["loss"]


class R2TPRLTrainer(R2Evaluation, TPRLTrainer):
    """The shared TPRL loop (:class:`TPRLTrainer`, unchanged) with R2's NMS'd evaluation."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("data_collator", collate_r2)
        super().__init__(*args, **kwargs)
