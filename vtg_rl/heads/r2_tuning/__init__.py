"""R2-Tuning: a light side adapter on the last layers of a frozen CLIP (moments, highlights, summaries).

:mod:`~vtg_rl.heads.r2_tuning.model` (the adapter, save / load) built from
:mod:`~vtg_rl.heads.r2_tuning.block` and :mod:`~vtg_rl.heads.r2_tuning.heads`, trained with
:mod:`~vtg_rl.heads.r2_tuning.losses` on :mod:`~vtg_rl.heads.r2_tuning.features` by
:mod:`~vtg_rl.heads.r2_tuning.trainer` and :mod:`~vtg_rl.heads.r2_tuning.recipe` (``recipes/r2_tuning.py``,
then TPRL on the moment head); :mod:`~vtg_rl.heads.r2_tuning.grounder` runs a trained adapter on raw video.
"""

from vtg_rl.heads.r2_tuning.block import R2Block
from vtg_rl.heads.r2_tuning.features import R2FeatureDataset, R2FeatureExtractor, collate_r2
from vtg_rl.heads.r2_tuning.grounder import R2Grounder
from vtg_rl.heads.r2_tuning.model import R2Architecture, R2ModelConfig, R2Tuning, load_r2, save_r2
from vtg_rl.heads.r2_tuning.recipe import build_r2_datasets, run_r2_tprl, run_r2_tuning
from vtg_rl.heads.r2_tuning.trainer import R2TPRLTrainer, R2TuningConfig, R2TuningTrainer, predict_rows

__all__ = ["R2Architecture", "R2Block", "R2FeatureDataset", "R2FeatureExtractor", "R2Grounder", "R2ModelConfig",
           "R2TPRLTrainer", "R2Tuning", "R2TuningConfig", "R2TuningTrainer", "build_r2_datasets", "collate_r2",
           "load_r2", "predict_rows", "run_r2_tprl", "run_r2_tuning", "save_r2"]
