"""TPRL: three-stage progressive RL of a supervised head's span / class / IoU heads, backbone frozen.

    python recipes/tprl.py                           # post-trains runs/girl_detr/final on the synthetic world
    python recipes/tprl.py --supervised_checkpoint runs/girl_detr_nocmi/final --output_dir runs/tprl_nocmi
    python recipes/tprl.py --control_arm --output_dir runs/head_control   # the same run, supervised loss

Defaults live in recipes/configs/tprl_synthetic.yaml. Stops with an error if any backbone tensor
changed; metrics.json holds the scores before and after, and the trainable fraction.
"""

import json
import logging

from vtg_rl.heads.tprl.recipe import run_control_arm, run_tprl
from vtg_rl.heads.tprl.trainer import TPRLTrainingConfig
from vtg_rl.training.config import parse_recipe_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (config,) = parse_recipe_args((TPRLTrainingConfig,), "recipes/configs/tprl_synthetic.yaml")
    metrics = run_control_arm(config) if config.control_arm else run_tprl(config)
    print(json.dumps({"before": metrics["eval_before"], "after": metrics["eval"],
                      "trainable_fraction": metrics["trainable_fraction"]}, indent=2, allow_nan=False))
