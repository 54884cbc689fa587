"""GIRL-DETR: a small DETR grounding head over frozen CLIP features, trained with supervision.

:mod:`~vtg_rl.heads.girl_detr.model` (the network), :mod:`~vtg_rl.heads.girl_detr.matcher` and
:mod:`~vtg_rl.heads.girl_detr.losses` (DETR set prediction), :mod:`~vtg_rl.heads.girl_detr.trainer` and
:mod:`~vtg_rl.heads.girl_detr.recipe` (``recipes/girl_detr.py``), :mod:`~vtg_rl.heads.girl_detr.grounder`
(a trained head on raw video). Its RL post-training is :mod:`vtg_rl.heads.tprl`.
"""

from vtg_rl.heads.girl_detr.grounder import GirlDetrGrounder
from vtg_rl.heads.girl_detr.losses import DetrGroundingLoss, LossWeights
from vtg_rl.heads.girl_detr.matcher import HungarianMatcher, MatcherWeights
from vtg_rl.heads.girl_detr.model import GirlDetr, GirlDetrArchitecture, GirlDetrConfig
from vtg_rl.heads.girl_detr.recipe import run_girl_detr
from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainer, GirlDetrTrainingConfig

__all__ = ["DetrGroundingLoss", "GirlDetr", "GirlDetrArchitecture", "GirlDetrConfig", "GirlDetrGrounder",
           "GirlDetrTrainer", "GirlDetrTrainingConfig", "HungarianMatcher", "LossWeights", "MatcherWeights",
           "run_girl_detr"]
