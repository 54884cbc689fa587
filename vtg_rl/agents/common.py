"""What both data agents share: the rollout settings, the model-backed rollout generator, turning
completions into windows, and small statistics / plotting helpers.

An agent never calls the model directly; it calls a *generator*
``generator(samples, frame_transform=None) -> list[list[str]]`` (K completions per sample). In
production that is :class:`ModelGenerator` (batched sampling through
:func:`vtg_rl.mllm.inference.generate_answers`); tests inject a fake one with chosen predictions.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np

from vtg_rl.data.schema import VTGSample, atomic_write_text

#: ``frame_transform(sample, sampled_video) -> sampled_video`` (see ``generate_answers``)
FrameTransform = Callable[[VTGSample, object], object]


class NothingProcessedError(RuntimeError):
    """Every sample of the input was skipped (missing videos, no annotation): there is nothing to write."""


class Generator(Protocol):
    def __call__(self, samples: list[VTGSample], frame_transform: Optional[FrameTransform] = None
                 ) -> list[list[str]]: ...


@dataclass
class AgentConfig:
    """Rollout settings shared by both agents (everything that changes their results is here)."""

    num_rollouts: int = field(default=8, metadata={"help": "K: sampled answers per sample"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    batch_size: int = field(default=4, metadata={
        "help": "samples per generation batch (and per flush of the resume file); the model decodes "
                "batch_size x num_rollouts sequences at once"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation budget per rollout"})
    seed: int = field(default=0, metadata={"help": "seed of the sampling RNG"})
    fps: float = field(default=2.0, metadata={"help": "frames per second sampled from each video"})
    min_frames: int = field(default=4)
    max_frames: int = field(default=64)
    max_pixels: Optional[int] = field(default=None, metadata={"help": "pixel budget per frame (None: processor's)"})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "disk cache of decoded frames"})

    def __post_init__(self):
        if self.num_rollouts < 1:
            raise ValueError(f"num_rollouts must be >= 1, got {self.num_rollouts}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (the agents sample), got {self.temperature}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def video_sampling(self):
        from vtg_rl.mllm.video_source import VideoSampling

        return VideoSampling(fps=self.fps, min_frames=self.min_frames, max_frames=self.max_frames,
                             max_pixels=self.max_pixels, cache_dir=self.cache_dir)

    def results_key(self) -> dict:
        """The settings that change per-sample results (the cache dir and batch size do not)."""
        d = asdict(self)
        d.pop("cache_dir", None)
        d.pop("batch_size", None)
        return d


class ModelGenerator:
    """K sampled completions per sample from a video LLM, batched through ``generate_answers``.

    ``generations`` counts the sequences generated so far (the agents' compute budget).
    """

    def __init__(self, model, processor, config: AgentConfig):
        import torch

        from vtg_rl.mllm.families import adapter_for_model

        self.model, self.processor, self.config = model, processor, config
        self.adapter = adapter_for_model(model, processor)
        self.sampling = config.video_sampling().for_family(self.adapter)
        self.generations = 0
        torch.manual_seed(config.seed)

    @property
    def temporal_patch_size(self) -> int:
        """Frames per temporal step of the model (masks cover whole steps)."""
        return self.adapter.temporal_patch_size

    def with_config(self, config: AgentConfig) -> "ModelGenerator":
        """Another generator on the same loaded model with other rollout settings (one load, two agents)."""
        other = ModelGenerator.__new__(ModelGenerator)
        other.model, other.processor, other.config = self.model, self.processor, config
        other.adapter = self.adapter
        other.sampling = config.video_sampling().for_family(self.adapter)
        other.generations = 0
        return other

    def __call__(self, samples: list[VTGSample], frame_transform: Optional[FrameTransform] = None
                 ) -> list[list[str]]:
        from vtg_rl.mllm.inference import generate_answers

        c = self.config
        out = generate_answers(self.model, self.processor, samples, sampling=self.sampling,
                               batch_size=len(samples), do_sample=True, num_return_sequences=c.num_rollouts,
                               temperature=c.temperature, max_new_tokens=c.max_new_tokens, progress=False,
                               frame_transform=frame_transform)
        self.generations += len(samples) * c.num_rollouts
        return out

    def vision_features(self, videos) -> list[tuple]:
        """The model's own vision-tower tokens for each (unmasked) ``SampledVideo``: ``(features (T', L, D),
        starts (T',), ends (T',))`` with one step per temporal patch and L merged spatial tokens (the
        tokens the language model sees), in seconds of the video."""
        from vtg_rl.agents.verification import step_intervals

        if not videos:
            return []
        result = []
        for v, (feats, per_step) in zip(videos, self.adapter.step_features(self.model, videos)):
            t = len(feats)
            starts, ends = step_intervals(v.timestamps, per_step)
            if len(starts) != t:
                raise RuntimeError(f"{v.path}: {len(v.timestamps)} frames do not make {t} temporal patches")
            result.append((feats, starts, ends))
        return result


def load_generator(model_path: str, config: AgentConfig, device: str = "auto", dtype: str = "auto",
                   trust_remote_code: bool = False) -> ModelGenerator:
    """Load any Qwen2.5-VL-style checkpoint folder for rollouts. ``device``/``dtype`` ``auto``: CUDA in
    bfloat16 when available, else CPU in float32."""
    import torch

    from vtg_rl.models.tiny_qwen import load_qwen_vl

    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_path}: no model checkpoint here (no config.json). Train the default one with "
            f"`accelerate launch recipes/sft.py` (writes runs/sft/checkpoint-final), or pass --model <folder> "
            f"(any Qwen2.5-VL checkpoint, e.g. a downloaded Qwen/Qwen2.5-VL-7B-Instruct)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"--dtype {dtype!r}: not a torch dtype (use auto, float32, bfloat16 or float16)")
    model, processor = load_qwen_vl(str(path), dtype=torch_dtype, trust_remote_code=trust_remote_code)
    model.to(device)
    return ModelGenerator(model, processor, config)


# --------------------------------------------------------------------------- completions -> numbers
def completions_to_windows(sample: VTGSample, completions: list[str]) -> list[Optional[list[float]]]:
    """The predicted ``[start, end]`` of each completion (clamped into the video), ``None`` when malformed."""
    from vtg_rl.mllm.inference import completion_to_window

    return [completion_to_window(text, sample.duration) for text in completions]


def best_gt_iou(window: Optional[list[float]], gt_windows: list[list[float]]) -> float:
    """IoU of one prediction with its best-matching ground-truth window (0 when malformed)."""
    from vtg_rl.spans import temporal_iou

    if window is None or not gt_windows:
        return 0.0
    return float(np.max(temporal_iou(np.asarray(window, dtype=np.float64)[None], np.asarray(gt_windows, dtype=np.float64))))


def spearman(x, y) -> float:
    """Spearman rank correlation (ties get average ranks); NaN with fewer than 3 pairs or no spread."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def finite_or_none(x: float) -> Optional[float]:
    """JSON has no NaN: write ``null`` instead."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def save_histogram(values, out_png: str | os.PathLike, bins: int, title: str, xlabel: str) -> str:
    """Histogram of ``values`` on [0, 1] as a PNG, written atomically (tmp file + rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(np.asarray(values, dtype=np.float64), bins=bins, range=(0.0, 1.0), color="#4477aa", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_png)
    return str(out_png)


def output_paths(out_path: str | os.PathLike, *suffixes: str) -> dict[str, Path]:
    """Files written next to an agent's output dataset: ``train.clean.jsonl`` ->
    ``train.clean.<suffix>`` for each suffix (e.g. ``summary.json``)."""
    out = Path(out_path)
    if out.suffix != ".jsonl":
        raise ValueError(f"--out {out}: the output dataset must be a .jsonl file")
    return {s: out.with_name(f"{out.stem}.{s}") for s in suffixes}


def split_labeled(samples: list[VTGSample], reason: str) -> tuple[list[VTGSample], list[dict]]:
    """``(samples with an annotated window, skip records of the others)``: an agent that compares answers
    with the annotation has nothing to do on a sample without one (``reason`` says why it was skipped)."""
    labeled = [s for s in samples if s.windows]
    skipped = [{"qid": s.qid, "video_path": s.video_path, "reason": reason} for s in samples if not s.windows]
    return labeled, skipped


def agent_runner(out_path, agent: str, model_name: str, config: "AgentConfig", progress: bool):
    """The resumable runner of ``agent`` writing next to ``out_path``; its configuration key makes a rerun with
    other settings refuse to mix results."""
    from vtg_rl.agents.runner import ResumableRunner, partial_path_for

    return ResumableRunner(partial_path_for(out_path), {"agent": agent, "model": model_name, **config.results_key()},
                           batch_size=config.batch_size, desc=agent, progress=progress)
