"""Cold-start SFT of a video LLM for temporal grounding (VTG-R1 stage 1).

    accelerate launch recipes/sft.py                                   # tiny model, synthetic world
    accelerate launch recipes/sft.py --config recipes/configs/sft_qwen2_5_vl_7b_charades.yaml

Defaults live in recipes/configs/sft_synthetic.yaml; any flag overrides them.
"""

import logging

from trl import ModelConfig

from vtg_rl.training.config import parse_recipe_args
from vtg_rl.mllm.sft import VideoSFTConfig
from vtg_rl.mllm.sft_recipe import SFTScriptArguments, run_sft

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    script_args, training_args, model_args = parse_recipe_args(
        (SFTScriptArguments, VideoSFTConfig, ModelConfig), "recipes/configs/sft_synthetic.yaml")
    run_sft(script_args, training_args, model_args)
