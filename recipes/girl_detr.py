"""Supervised GIRL-DETR on frozen-CLIP features (CMI before the encoder, TGG on the decoder queries).

    python recipes/girl_detr.py                      # synthetic world + tiny CLIP, built if missing
    python recipes/girl_detr.py --use_cmi false      # ablation
    python recipes/girl_detr.py --config recipes/configs/girl_detr_qvhighlights.yaml

Defaults live in recipes/configs/girl_detr_synthetic.yaml; any flag overrides them. Writes
output_dir/final (safetensors), predictions_*.jsonl (QVHighlights submission), metrics.json, curves.png.
"""

import json
import logging

from vtg_rl.heads.girl_detr.recipe import run_girl_detr
from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig
from vtg_rl.training.config import parse_recipe_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (config,) = parse_recipe_args((GirlDetrTrainingConfig,), "recipes/configs/girl_detr_synthetic.yaml")
    metrics = run_girl_detr(config)
    print(json.dumps(metrics["eval"], indent=2, allow_nan=False))
