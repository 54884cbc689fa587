"""Every LLM recipe config parses with its recipe's own parser (a typo'd or stale key fails here, not on a
rented GPU node), and the family-specific choices in the real-checkpoint configs are the ones the family needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from trl import ModelConfig, TrlParser

from vtg_rl.mllm.grpo import VideoGRPOConfig
from vtg_rl.mllm.grpo_recipe import GRPOScriptArguments
from vtg_rl.mllm.sft import VideoSFTConfig
from vtg_rl.mllm.sft_recipe import SFTScriptArguments

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "configs"
TYPES = {"sft": (SFTScriptArguments, VideoSFTConfig, ModelConfig),
         "grpo": (GRPOScriptArguments, VideoGRPOConfig, ModelConfig)}


def parse(path: Path):
    kind = path.name.split("_")[0]
    return TrlParser(TYPES[kind]).parse_args_and_config(["--config", str(path), "--use_cpu", "true",
                                                         "--bf16", "false"])


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if p.name.split("_")[0] in TYPES),
                         ids=lambda p: p.name)
def test_recipe_config_parses(path):
    script, training, model = parse(path)
    assert model.model_name_or_path and training.output_dir


def test_real_checkpoint_configs_exist_for_the_current_families():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    for family in ("qwen3_vl_8b", "qwen3_5_9b", "qwen2_5_vl_7b"):
        assert {f"sft_{family}_charades.yaml", f"grpo_{family}_charades.yaml"} <= names
    _, grpo35, _ = parse(CONFIGS / "grpo_qwen3_5_9b_charades.yaml")
    assert grpo35.shared_prefix is False  # its linear attention cannot share folded prefixes
