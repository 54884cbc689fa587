"""R2-Tuning: a light side-adapter on the last layers of a frozen CLIP, for moment retrieval, highlight
detection and video summarisation, then (optionally, moment retrieval only) TPRL on its moment head through
the shared loop.

    python recipes/r2_tuning.py                                             # tiny CLIP, synthetic world
    python recipes/r2_tuning.py --clip_model path/to/clip-vit-base-patch32 --output_dir runs/r2_b32
    python recipes/r2_tuning.py --config recipes/configs/r2_tuning_qvhighlights.yaml
    python recipes/r2_tuning.py --config recipes/configs/r2_tuning_synthetic_summarization.yaml  # TVSum-like
    python recipes/r2_tuning.py --config recipes/configs/r2_tuning_synthetic_highlight.yaml      # YouTube-like
    python recipes/r2_tuning.py --config recipes/configs/r2_tuning_tvsum.yaml --domain VT        # one category

Highlight-only / summarisation data trains the saliency head only and is scored per domain (docs/r2_tuning_tasks.md).

Defaults live in recipes/configs/r2_tuning_synthetic.yaml; any flag overrides them.
"""

import json
import logging

from vtg_rl.heads.r2_tuning.recipe import run_r2_tuning
from vtg_rl.heads.r2_tuning.trainer import R2TuningConfig
from vtg_rl.training.config import parse_recipe_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (config,) = parse_recipe_args((R2TuningConfig,), "recipes/configs/r2_tuning_synthetic.yaml")
    metrics = run_r2_tuning(config)
    summary = {"supervised": metrics["eval"], "trainable_fraction": metrics["trainable_fraction"]}
    if "tprl" in metrics:
        summary["tprl"] = metrics["tprl"]["eval"]
    print(json.dumps(summary, indent=2, allow_nan=False))
