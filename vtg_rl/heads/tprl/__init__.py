"""TPRL: gradient-isolated, three-stage progressive RL of a grounding head on a frozen backbone.

:mod:`~vtg_rl.heads.tprl.loss` (the objective, freezing and the bit-identity check),
:mod:`~vtg_rl.heads.tprl.trainer` (``TPRLTrainer`` and the supervised control arm
``HeadOnlySupervisedTrainer``), :mod:`~vtg_rl.heads.tprl.recipe` (``recipes/tprl.py`` on a GIRL-DETR head).
Any head that follows :mod:`vtg_rl.heads.protocol` can be post-trained; R2-Tuning does so in its recipe.
"""

from vtg_rl.heads.tprl.loss import TPRLConfig, backbone_snapshot, changed_backbone_tensors, freeze_backbone, tprl_loss
from vtg_rl.heads.tprl.recipe import run_head_finetune, run_tprl
from vtg_rl.heads.tprl.trainer import HeadOnlySupervisedTrainer, TPRLArguments, TPRLTrainer, TPRLTrainingConfig

__all__ = ["HeadOnlySupervisedTrainer", "TPRLArguments", "TPRLConfig", "TPRLTrainer", "TPRLTrainingConfig",
           "backbone_snapshot", "changed_backbone_tensors", "freeze_backbone", "run_head_finetune", "run_tprl",
           "tprl_loss"]
