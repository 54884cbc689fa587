"""transformers ``Trainer`` subclasses for the DETR-family heads: supervised GIRL-DETR and TPRL.

The Trainer gives checkpoints, resume, TensorBoard, progress bars and the LR schedule; we supply the
loss (``compute_loss``), the evaluation (decode windows, score them with :mod:`vtg_rl.metrics`) and the
per-part loss logging. Batches follow the head protocol of :mod:`vtg_rl.heads.tprl`
(``model_inputs`` / ``targets`` / ``saliency_targets`` / ``meta``), so :class:`TPRLTrainer` serves
any head that follows it (GIRL-DETR, R2-Tuning).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Optional

from transformers import Trainer, TrainingArguments

from vtg_rl.heads.girl_detr import GirlDetrArchitecture
from vtg_rl.heads.losses import DetrGroundingLoss
from vtg_rl.heads.predictions import predict
from vtg_rl.heads.tprl import TPRLConfig, tprl_loss
from vtg_rl.training.resume import ExactResumeMixin


@dataclass
class HeadTrainingConfig(TrainingArguments):
    """Data and feature options shared by the head recipes (plus every ``TrainingArguments`` option)."""

    output_dir: str = field(default="runs/girl_detr")
    dataset: str = field(default="synthetic", metadata={
        "help": "'synthetic' (generated if missing) or a loader format (qvhighlights, charades-jsonl, tacos, unified)"})
    train_file: Optional[str] = field(default=None, metadata={"help": "training annotations (real datasets)"})
    eval_file: Optional[str] = field(default=None, metadata={"help": "held-out annotations (real datasets)"})
    eval_split: str = field(default="test", metadata={"help": "synthetic split(s) scored at the end, '+'-joined"})
    synthetic_dir: str = field(default="runs/data/synthetic")
    synthetic_n: int = field(default=2400, metadata={"help": "samples when the world must be generated "
                                                             "(the LLM recipes share the same world)"})
    synthetic_seed: int = field(default=0)
    clip_model: str = field(default="runs/models/tiny_clip", metadata={"help": "CLIPModel folder (built if the tiny default is missing)"})
    feature_root: Optional[str] = field(default=None, metadata={"help": "where extracted features live "
                                                                       "(default runs/features/<dataset>_clip<len>)"})
    video_feature_dirs: Optional[list[str]] = field(default=None, metadata={
        "help": "precomputed video feature folders ({vid}.npz 'features'), concatenated; skips extraction"})
    text_feature_dirs: Optional[list[str]] = field(default=None, metadata={
        "help": "precomputed text feature folders (qid{qid}.npz 'last_hidden_state')"})
    clip_len: float = field(default=2.0, metadata={"help": "seconds per feature clip"})
    frames_per_clip: int = field(default=2)
    patch_grid: int = field(default=0, metadata={"help": "also extract the last CLIP layer's patch map pooled to "
                                                       "GxG (clip_patch_features); 0 = CLS embeddings only"})
    frame_cache_dir: Optional[str] = field(default=None)
    max_video_len: int = field(default=75, metadata={"help": "clips kept per video"})
    max_eval_samples: Optional[int] = field(default=None)
    top_k_windows: int = field(default=10, metadata={"help": "windows written per query (mAP uses 10)"})
    eval_protocol: str = field(default="qvhighlights", metadata={"help": "vtg_rl.metrics protocol"})
    remove_unused_columns: bool = field(default=False)


@dataclass
class GirlDetrTrainingConfig(GirlDetrArchitecture, HeadTrainingConfig):
    """Supervised GIRL-DETR: the architecture (:class:`GirlDetrArchitecture`), matcher costs and loss weights."""

    cost_class: float = 4.0
    cost_l1: float = 10.0
    cost_giou: float = 1.0
    loss_span_l1: float = 10.0
    loss_span_giou: float = 1.0
    loss_label: float = 4.0
    loss_background_weight: float = 0.1
    loss_iou: float = 1.0
    loss_saliency: float = 1.0
    loss_saliency_margin: float = 0.2
    loss_aux: bool = True


@dataclass
class TPRLArguments:
    """TPRL's stage schedule and loss weights (``tprl_*`` map onto :class:`TPRLConfig`); mixed into every
    config that runs TPRL (GIRL-DETR's and R2-Tuning's), so one head's RL is tuned like another's."""

    tprl_stage2_start: float = 0.2
    tprl_stage2_ramp: float = 0.2
    tprl_stage3_start: float = 0.5
    tprl_top_k: int = 3
    tprl_temperature: float = 0.5
    tprl_num_samples: int = 3
    tprl_policy_top_k: int = field(default=0, metadata={
        "help": "stage 3 draws among this many top-scoring queries (0 = all)"})
    tprl_refine_overlap_only: bool = field(default=True, metadata={
        "help": "stage 1 refines the top-1 window only when it overlaps a ground truth"})
    tprl_refine_weight: float = 1.0
    tprl_topk_weight: float = 1.0
    tprl_rl_weight: float = 1.0
    tprl_iou_head_weight: float = 1.0
    tprl_l1_weight: float = 10.0
    tprl_giou_weight: float = 1.0
    tprl_backbone_dropout: bool = field(default=False, metadata={
        "help": "run the frozen backbone with dropout on during TPRL (noisier features; parameters still frozen)"})


@dataclass
class TPRLTrainingConfig(TPRLArguments, HeadTrainingConfig):
    """TPRL post-training of a supervised head (``tprl_*`` map onto :class:`TPRLConfig`)."""

    output_dir: str = field(default="runs/tprl")
    supervised_checkpoint: str = field(default="runs/girl_detr/final", metadata={"help": "head to post-train"})
    max_trainable_fraction: float = field(default=0.05, metadata={"help": "refuse to train more of the model"})

    def tprl_config(self) -> TPRLConfig:
        return TPRLConfig(**{f.name: getattr(self, f"tprl_{f.name}") for f in fields(TPRLConfig)})


class HeadTrainer(ExactResumeMixin, Trainer):
    """Evaluation = decode windows and score them; extra loss parts are averaged into each log line.
    Resume is exact (:class:`~vtg_rl.training.resume.ExactResumeMixin`): a checkpoint whose tensors
    do not match the head's is an error, and only checkpoints whose save finished are resumed from."""

    def __init__(self, *args, top_k_windows: int = 10, eval_protocol: str = "qvhighlights", **kwargs):
        super().__init__(*args, **kwargs)
        self.top_k_windows, self.eval_protocol = top_k_windows, eval_protocol
        self._parts: dict[str, list[float]] = defaultdict(list)

    def _record(self, parts: dict[str, float]) -> None:
        for k, v in parts.items():
            self._parts[k].append(v)

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        if "loss" in logs and self._parts:
            logs.update({k: sum(v) / len(v) for k, v in self._parts.items()})
            self._parts.clear()
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        from vtg_rl.heads.predictions import score_predictions

        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        rows = predict(self.model, dataset, batch_size=self.args.per_device_eval_batch_size,
                       collate_fn=self.data_collator, top_k=self.top_k_windows)
        scores = score_predictions(rows, dataset.samples, self.eval_protocol)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _save(self, output_dir: Optional[str] = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)  # model.safetensors (the head is a plain nn.Module)
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "save_config") and self.args.should_save:
            model.save_config(output_dir or self.args.output_dir)


class GirlDetrTrainer(HeadTrainer):
    """Supervised set-prediction training (Hungarian matching, span / label / IoU / saliency losses)."""

    def __init__(self, *args, criterion: Optional[DetrGroundingLoss] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.criterion = criterion or DetrGroundingLoss()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs["model_inputs"])
        loss, parts = self.criterion(outputs, inputs["targets"], inputs.get("saliency_targets"))
        self._record({f"loss/{k}": v for k, v in parts.items() if not re.search(r"_\d+$", k)})  # skip aux layers
        return (loss, outputs) if return_outputs else loss


def check_head_only(model, trainer_name: str) -> None:
    """Raise unless the model's trainable parameters are exactly (a subset of) its head."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for p in model.head_parameters()}
    if not trainable or not trainable <= head:
        raise ValueError(f"{trainer_name} needs a model whose only trainable parameters are its head "
                         "(call vtg_rl.heads.tprl.freeze_backbone(model) first)")


class HeadOnlySupervisedTrainer(GirlDetrTrainer):
    """TPRL's control arm: the supervised set-prediction loss on the same frozen backbone and the same
    trainable head, so "TPRL helps" can be told apart from "more steps / more data on the head help".
    ``backbone_dropout`` plays the role it plays in TPRL (frozen backbone's dropout on or off)."""

    def __init__(self, *args, backbone_dropout: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.backbone_dropout = backbone_dropout
        check_head_only(self.model, type(self).__name__)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        model.train(self.backbone_dropout)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class TPRLTrainer(HeadTrainer):
    """TPRL on a frozen backbone: the objective of :func:`vtg_rl.heads.tprl.tprl_loss` with the stage
    schedule driven by ``global_step / max_steps``. The model must already be frozen
    (:func:`vtg_rl.heads.tprl.freeze_backbone`); the optimizer then holds only the head."""

    def __init__(self, *args, tprl_config: Optional[TPRLConfig] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tprl_config = tprl_config or TPRLConfig()
        check_head_only(self.model, type(self).__name__)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # the backbone is frozen either way; with backbone_dropout its dropout stays on, so the features the
        # policy sees on training videos are as imperfect as on held-out ones
        model.train(self.tprl_config.backbone_dropout)
        outputs = model(**inputs["model_inputs"])
        progress = self.state.global_step / max(self.state.max_steps, 1)
        loss, logs = tprl_loss(outputs, inputs["targets"], progress, self.tprl_config)
        self._record(logs)
        return (loss, outputs) if return_outputs else loss
