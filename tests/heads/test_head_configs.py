"""Every head recipe config parses with its recipe's parser (a stale or mistyped key fails here, not after
hours of feature extraction), and the real-data configs name a loader format that exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from trl import TrlParser

from vtg_rl.data.loaders import FORMATS
from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig
from vtg_rl.heads.r2_tuning.trainer import R2TuningConfig
from vtg_rl.heads.tprl.trainer import TPRLTrainingConfig

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "configs"
TYPES = {"girl": GirlDetrTrainingConfig, "r2": R2TuningConfig, "tprl": TPRLTrainingConfig}


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if p.name.split("_")[0] in TYPES),
                         ids=lambda p: p.name)
def test_head_config_parses(path):
    (cfg,) = TrlParser((TYPES[path.name.split("_")[0]],)).parse_args_and_config(
        ["--config", str(path), "--use_cpu", "true"])
    assert cfg.output_dir
    assert cfg.dataset == "synthetic" or cfg.dataset in FORMATS, cfg.dataset


def test_the_benchmarks_have_head_configs():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"r2_tuning_tvsum.yaml", "r2_tuning_youtube_highlight.yaml", "r2_tuning_activitynet.yaml",
            "r2_tuning_ego4d_nlq.yaml", "girl_detr_activitynet.yaml", "r2_tuning_qvhighlights.yaml"} <= names
