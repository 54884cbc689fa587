"""The transformers ``Trainer`` base every head trainer builds on, and the options every head recipe shares.

The Trainer gives checkpoints, resume, TensorBoard, progress bars and the LR schedule; subclasses supply
the loss (``compute_loss``: :class:`vtg_rl.heads.girl_detr.trainer.GirlDetrTrainer`,
:class:`vtg_rl.heads.tprl.trainer.TPRLTrainer`, R2-Tuning's trainers), and :class:`HeadTrainer` the
evaluation (decode windows, score them with :mod:`vtg_rl.metrics`) and the per-part loss logging.
Batches follow the head protocol of :mod:`vtg_rl.heads.protocol` (``model_inputs`` / ``targets`` /
``saliency_targets`` / ``meta``), so one trainer serves any head that follows it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from transformers import Trainer, TrainingArguments

from vtg_rl.heads.predictions import predict
from vtg_rl.training.resume import ExactResumeMixin


@dataclass
class HeadTrainingConfig(TrainingArguments):
    """Data and feature options shared by the head recipes (plus every ``TrainingArguments`` option)."""

    output_dir: str = field(default="runs/girl_detr")
    dataset: str = field(default="synthetic", metadata={
        "help": "'synthetic' (generated if missing) or a loader format of vtg_rl.data.loaders (qvhighlights, "
                "charades-jsonl, tacos, activitynet, ego4d-nlq, tvsum, youtube_highlight, unified)"})
    data_policy: str = field(default="strict", metadata={
        "help": "bad annotation rows: 'strict' (refuse, listing them by file:line) or 'drop' (skip and count)"})
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


def check_head_only(model, trainer_name: str) -> None:
    """Raise unless the model's trainable parameters are exactly (a subset of) its head."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for p in model.head_parameters()}
    if not trainable or not trainable <= head:
        raise ValueError(f"{trainer_name} needs a model whose only trainable parameters are its head "
                         "(call vtg_rl.heads.tprl.loss.freeze_backbone(model) first)")
