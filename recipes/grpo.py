"""GRPO on video for temporal grounding (VTG-R1 stage 2, VideoTG-R1 curriculum).

    accelerate launch recipes/grpo.py                     # from runs/sft/checkpoint-final, synthetic world
    accelerate launch recipes/grpo.py --curriculum        # + curriculum masking of hard samples
    accelerate launch --config_file accelerate_configs/zero3.yaml recipes/grpo.py \
        --config recipes/configs/grpo_qwen2_5_vl_7b_charades.yaml

Defaults live in recipes/configs/grpo_synthetic.yaml; any flag overrides them. Run
`accelerate launch recipes/sft.py` first: GRPO starts from its cold-start checkpoint.
"""

import logging
import sys

from trl import ModelConfig

from vtg_rl.mllm.grpo import VideoGRPOConfig
from vtg_rl.mllm.grpo_recipe import GRPOScriptArguments, MissingCheckpointError, run_grpo
from vtg_rl.training.config import parse_recipe_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    script_args, training_args, model_args = parse_recipe_args(
        (GRPOScriptArguments, VideoGRPOConfig, ModelConfig), "recipes/configs/grpo_synthetic.yaml")
    try:
        run_grpo(script_args, training_args, model_args)
    except MissingCheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
