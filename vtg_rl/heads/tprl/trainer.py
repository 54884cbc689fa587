"""TPRL post-training of a head on a frozen backbone, and its supervised control arm.

:class:`TPRLTrainer` runs the objective of :func:`vtg_rl.heads.tprl.loss.tprl_loss` on any head that
follows the head protocol (:mod:`vtg_rl.heads.protocol`: GIRL-DETR, R2-Tuning); :class:`TPRLArguments`
holds its options, mixed into every config that runs TPRL. :class:`HeadOnlySupervisedTrainer` continues
the supervised GIRL-DETR loss on exactly the parameters TPRL trains, so the two can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainer
from vtg_rl.heads.tprl.loss import TPRLConfig, tprl_loss
from vtg_rl.heads.trainer import HeadTrainer, HeadTrainingConfig, check_head_only


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
    control_arm: bool = field(default=False, metadata={
        "help": "train TPRL's control instead of TPRL: the supervised loss on the same head parameters, with "
                "the same data, optimiser settings and steps; tells RL apart from 'more data for the head'"})

    def tprl_config(self) -> TPRLConfig:
        return TPRLConfig(**{f.name: getattr(self, f"tprl_{f.name}") for f in fields(TPRLConfig)})


class TPRLTrainer(HeadTrainer):
    """TPRL on a frozen backbone: the objective of :func:`vtg_rl.heads.tprl.loss.tprl_loss` with the stage
    schedule driven by ``global_step / max_steps``. The model must already be frozen
    (:func:`vtg_rl.heads.tprl.loss.freeze_backbone`); the optimizer then holds only the head."""

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
