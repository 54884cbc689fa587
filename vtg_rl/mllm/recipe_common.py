"""What the LLM recipes (``recipes/sft.py``, ``recipes/grpo.py``) share: where the data and the model
come from, and the plots. The recipes stay thin; this is the logic behind them."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vtg_rl.data.loaders import GROUNDING_FORMATS
from vtg_rl.data.schema import VTGSample, atomic_write_text, read_jsonl

logger = logging.getLogger(__name__)

DEFAULT_WORLD_DIR = "runs/data/synthetic"
DEFAULT_TINY_QWEN_DIR = "runs/models/tiny_qwen"
#: the default world: 600 held-out test samples (evaluate on >= 500; 100 give +-0.035 mIoU)
DEFAULT_WORLD_N = 4000
DEFAULT_WORLD_SPLITS = (0.8, 0.05, 0.15)

#: dataset names accepted by ``--dataset`` -> loader format names of :mod:`vtg_rl.data.loaders`
#: --dataset values of a real dataset -> loader format
DATASET_FORMATS = GROUNDING_FORMATS


@dataclass
class DataArguments:
    """Which data a recipe trains and evaluates on."""

    dataset: str = field(default="synthetic", metadata={
        "help": "'synthetic' (generated if missing) or a format: " + ", ".join(sorted(DATASET_FORMATS))})
    dataset_path: Optional[str] = field(default=None, metadata={"help": "training file of a real dataset"})
    eval_path: Optional[str] = field(default=None, metadata={"help": "held-out file of a real dataset"})
    durations: Optional[str] = field(default=None, metadata={"help": "Charades-STA durations file"})
    gsub: Optional[str] = field(default=None, metadata={"help": "NExT-GQA gsub_*.json"})
    video_dir: Optional[str] = field(default=None, metadata={"help": "folder of <vid>.mp4 files"})
    data_policy: str = field(default="strict", metadata={"help": "bad rows: 'strict' (raise) or 'drop'"})
    synthetic_dir: str = field(default=DEFAULT_WORLD_DIR, metadata={"help": "where the synthetic world lives"})
    synthetic_n: int = field(default=DEFAULT_WORLD_N, metadata={"help": "samples to generate when the world is missing"})
    synthetic_seed: int = field(default=0)
    synthetic_partial_rate: float = field(default=0.0)
    eval_split: str = field(default="test", metadata={"help": "synthetic split used for held-out eval"})
    max_train_samples: Optional[int] = field(default=None)
    max_eval_samples: Optional[int] = field(default=500)
    probe_videos: bool = field(default=True, metadata={
        "help": "open every video before training (cached; vtg_rl/data/probe.py); false skips the check"})
    on_bad_video: str = field(default="error", metadata={
        "help": "rows whose video is unusable or not of the stated duration: 'error' refuses to start, 'skip' drops"})


def ensure_synthetic_world(out_dir: str, n: int, seed: int, partial_rate: float = 0.0) -> dict[str, Path]:
    """Generate the synthetic world into ``out_dir`` unless it is already there."""
    out = Path(out_dir)
    splits = {name: out / f"{name}.jsonl" for name in ("train", "val", "test")}
    if all(p.is_file() for p in splits.values()):
        return splits
    from vtg_rl.data.synthetic import generate_world

    logger.info("generating the synthetic world (%d samples) into %s", n, out)
    paths = generate_world(out, n=n, seed=seed, partial_rate=partial_rate, split_fractions=DEFAULT_WORLD_SPLITS,
                           progress=True)
    return {k: Path(v) for k, v in paths.items()}


def load_split(data: DataArguments, split: str) -> list[VTGSample]:
    """Samples of one split ("train" or "eval") as the arguments describe."""
    if data.dataset == "synthetic":
        paths = ensure_synthetic_world(data.synthetic_dir, data.synthetic_n, data.synthetic_seed,
                                       data.synthetic_partial_rate)
        samples = read_jsonl(paths["train" if split == "train" else data.eval_split])
    else:
        fmt = DATASET_FORMATS.get(data.dataset)
        if fmt is None:
            raise ValueError(f"unknown --dataset {data.dataset!r}; choose 'synthetic' or one of {sorted(DATASET_FORMATS)}")
        path = data.dataset_path if split == "train" else data.eval_path
        if path is None:
            if split == "train":
                raise ValueError(f"--dataset {data.dataset} needs --dataset_path (the training file)")
            return []
        from vtg_rl.data.loaders import load_samples

        samples, report = load_samples(path, fmt, durations=data.durations, gsub=data.gsub,
                                       video_dir=data.video_dir, policy=data.data_policy)
        logger.info("%s: %s", path, report)
        spanless = [s.qid for s in samples if getattr(s, "task", "grounding") != "grounding"]
        if spanless:
            raise ValueError(f"{path}: {len(spanless)} highlight-only sample(s) (e.g. qid {spanless[0]}) have no span "
                             "to ground; the LLM recipes train moment retrieval (use recipes/r2_tuning.py for "
                             "highlight detection and summarisation)")
    limit = data.max_train_samples if split == "train" else data.max_eval_samples
    if limit is not None and len(samples) > limit:
        samples = random.Random(0).sample(samples, limit) if split == "train" else samples[:limit]
    from vtg_rl.data.probe import preflight_split

    return preflight_split(samples, data, split)  # unusable videos are found before the run starts


def ensure_model(model_name_or_path: str, seed: int = 0) -> str:
    """The default model is the tiny local Qwen2.5-VL: build it if its folder is missing. Any other
    value is passed to ``from_pretrained`` as it is (a local folder or a hub id the user downloaded)."""
    if os.path.normpath(model_name_or_path) == os.path.normpath(DEFAULT_TINY_QWEN_DIR) and not Path(
            model_name_or_path, "config.json").is_file():
        from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

        logger.info("building the tiny local Qwen2.5-VL into %s", model_name_or_path)
        build_tiny_qwen2_5_vl(model_name_or_path, seed=seed)
    return model_name_or_path


def default_config_argv(argv: list[str], default_config: str) -> list[str]:
    """open-r1 style: the recipe's defaults live in YAML. Without ``--config`` use ``default_config``."""
    if "--config" in argv or any(a.startswith("--config=") for a in argv):
        return argv
    return ["--config", default_config, *argv]


def parse_recipe_args(dataclass_types, default_config: str):
    """``TrlParser`` over ``dataclass_types`` with the recipe's YAML as default config."""
    from trl import TrlParser

    sys.argv = [sys.argv[0], *default_config_argv(sys.argv[1:], default_config)]
    return TrlParser(dataclass_types).parse_args_and_config()


def plot_curves(log_history: list[dict], keys: list[str], out_png: str | os.PathLike, title: str = "") -> Optional[str]:
    """Plot the Trainer's ``log_history`` series named by ``keys`` (those that exist) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: [(h["step"], h[k]) for h in log_history if k in h and "step" in h] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.4 * len(series)), squeeze=False)
    for ax, (k, pts) in zip(axes[:, 0], series.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, lw=1.2)
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return str(out_png)


def finite_json(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN; a metric of an empty split is
    reported as null, never as a bare ``NaN`` that strict readers reject)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")
