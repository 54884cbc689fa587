"""GPU suite: SFT, GRPO (naive vs shared prefix) and generation on random models of real shapes, in bf16.

Per model (random weights with the released sizes of Qwen2.5-VL-3B and Qwen3-VL-8B, built on the GPU; the
processors are the tiny families' builders with the real geometry: patch 14 / 16, 2x2 merge, temporal patch 2)
it measures, on video prompts of 32 frames at 448x448 (16 s at 2 fps; 4,096 / 3,136 video tokens):

  sft       forward + backward + AdamW of one batch (4 samples), through VideoSFTTrainer: the project's collator
            makes the batch once, ``training_step`` + the trainer's optimizer run it (bf16, gradient
            checkpointing, frozen vision tower, as recipes/configs/sft_*.yaml)
  grpo      one GRPO step = rollout (G = 8 completions of 128 tokens per prompt, 2 prompts, reference
            log-probs with beta 0.04) + loss forward/backward + AdamW, through VideoGRPOTrainer as
            benchmarks/grpo_step.py does; the naive and the shared-prefix (vtg_rl.mllm.shared_prefix) arms
            run on the same trainer and batches, interleaved, every repetition on videos not seen before
  generate  greedy generation of 128 new tokens for 8 video prompts: tokens/s, prefill and decode apart

and for each: wall time (median of the timed repetitions after one warm-up), peak memory
(``torch.cuda.max_memory_allocated``), model FLOPs and MFU. Model FLOPs are parameter counts x tokens:
6 x for forwards with gradients, 2 x without, counted by hooks on each model's language model and vision tower,
so every arm is charged the tokens it really runs (padding included); the language model counts its
non-embedding parameters plus the output head, the vision tower its blocks on every patch and its mergers on
every merged token. Attention-score FLOPs are left out (about a tenth more at these lengths), so the MFU is a
lower bound. The peak is the device's dense bf16 tensor-core rate (a small table by device name, e.g. H200 989
TFLOP/s), or ``--peak-tflops``.

A measurement that fails (out of memory, a missing kernel) is recorded with its error and the others still run;
after an out-of-memory error it is retried once at half the batch. ``--budget-s`` (default 420 s, counted from
start-up) bounds the whole run: repetitions stop where the time share of a measurement ends, and what no longer
fits is recorded as skipped. Everything goes into ONE JSON (``--out``): device, versions, shapes, the
configuration used and every measurement.

Run on a GPU machine where only torch and transformers are installed; the other packages travel as wheels.
Here (a machine with the registry and this repository):

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl -r benchmarks/gpu_wheels.txt
    pip wheel --no-deps --no-build-isolation -w .whl .          # the project itself (vtg_rl)

There (copy the repository with its .whl folder):

    pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python benchmarks/gpu_suite.py --out benchmarks/results/gpu_suite.json   # ~5-7 min on one H200

    python benchmarks/gpu_suite.py --smoke     # the same code paths on CPU, float32, tiny shapes (~1 min)

torchvision (in the wheel list) must be the build that matches the machine's torch. The results are recorded in
docs/gpu_results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

# ---------------------------------------------------------------------------------------------- shapes
# Every number below is the released one, from the config.json of the Hugging Face checkpoint named in
# "released_as" (text: hidden size, layers, heads, KV heads, head dim, FFN size, vocabulary, rope theta, mRoPE
# sections, tied embeddings; vision: depth, hidden, FFN, heads, patch, merge, temporal patch, window attention,
# deepstack indexes, output size). Only the token ids of the special tokens differ: they are the project
# tokenizer's (rows of the embedding beyond that small vocabulary are simply never fed as input).
REAL_SHAPES = {
    "qwen2_5_vl_3b": {
        "family": "qwen2_5_vl",
        "released_as": "Qwen/Qwen2.5-VL-3B-Instruct",
        "text": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                     intermediate_size=11008, vocab_size=151936, max_position_embeddings=128000,
                     rms_norm_eps=1e-6, rope_theta=1_000_000.0, mrope_section=[16, 24, 24],
                     tie_word_embeddings=True),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu",
                       patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, out_hidden_size=2048),
    },
    "qwen3_vl_8b": {
        "family": "qwen3_vl",
        "released_as": "Qwen/Qwen3-VL-8B-Instruct",
        "text": dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=128, intermediate_size=12288, vocab_size=151936, max_position_embeddings=262144,
                     rms_norm_eps=1e-6, rope_theta=5_000_000.0, mrope_section=[24, 20, 20],
                     tie_word_embeddings=False),
        "vision": dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                       hidden_act="gelu_pytorch_tanh", patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                       num_position_embeddings=2304, out_hidden_size=4096, deepstack_visual_indexes=[8, 16, 24]),
    },
}
SMOKE_MODELS = {"qwen2_5_vl_3b": "qwen2_5_vl_tiny", "qwen3_vl_8b": "qwen3_vl_tiny"}
ROLE_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; first match on the device
# name wins, so the more specific names come first.
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H800", 989.0),
                    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0))
SMOKE_PEAK_TFLOPS = 1.0  # a nominal CPU figure, so that the smoke run exercises the MFU arithmetic


def peak_for(device_name: str) -> tuple[Optional[float], Optional[str]]:
    """(peak dense bf16 TFLOP/s, table entry) for a CUDA device name, or (None, None) when it is not in the table."""
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value, key
    return None, None

SFT_TARGET = ("<think>The person walks to the door at about 2 seconds, reaches for the handle and opens it; the door "
              "stays open from 6.5 seconds on.</think><answer>2.0 to 6.5</answer>")
QUERY = "the person opens the door"


def tiny_shapes(name: str) -> dict:
    """The tiny families' own sizes (vtg_rl.models.tiny_qwen / tiny_families), in the layout of REAL_SHAPES."""
    if name == "qwen2_5_vl_tiny":
        from vtg_rl.models.tiny_qwen import make_spec

        s = make_spec()
        text = dict(hidden_size=s.hidden_size, num_hidden_layers=s.num_hidden_layers,
                    num_attention_heads=s.num_attention_heads, num_key_value_heads=s.num_key_value_heads,
                    intermediate_size=s.intermediate_size, vocab_size=None,
                    max_position_embeddings=s.max_position_embeddings, rope_theta=s.rope_theta,
                    mrope_section=s.resolved_mrope_section(), tie_word_embeddings=True)
        vision = dict(depth=s.vision_depth, hidden_size=s.vision_hidden_size,
                      intermediate_size=s.vision_intermediate_size, num_heads=s.vision_num_heads,
                      patch_size=s.patch_size, spatial_merge_size=s.spatial_merge_size,
                      temporal_patch_size=s.temporal_patch_size, window_size=s.window_size,
                      fullatt_block_indexes=[s.vision_depth - 1], tokens_per_second=s.tokens_per_second,
                      out_hidden_size=s.hidden_size)
        return {"family": "qwen2_5_vl", "released_as": None, "text": text, "vision": vision}
    if name == "qwen3_vl_tiny":
        from vtg_rl.models.tiny_families import make_family_spec

        s = make_family_spec("qwen3_vl")
        text = dict(hidden_size=s.hidden_size, num_hidden_layers=s.num_hidden_layers,
                    num_attention_heads=s.num_attention_heads, num_key_value_heads=s.num_key_value_heads,
                    head_dim=s.head_dim(), intermediate_size=s.intermediate_size, vocab_size=None,
                    max_position_embeddings=s.max_position_embeddings, rope_theta=s.rope_theta,
                    mrope_section=list(s.mrope_section), tie_word_embeddings=True)
        vision = dict(depth=s.vision_depth, hidden_size=s.vision_hidden_size,
                      intermediate_size=s.vision_intermediate_size, num_heads=s.vision_num_heads,
                      patch_size=s.patch_size, spatial_merge_size=s.spatial_merge_size,
                      temporal_patch_size=s.temporal_patch_size,
                      num_position_embeddings=(int(s.max_frame_pixels ** 0.5) // s.patch_size) ** 2,
                      out_hidden_size=s.hidden_size, deepstack_visual_indexes=list(s.deepstack_visual_indexes))
        return {"family": "qwen3_vl", "released_as": None, "text": text, "vision": vision}
    raise ValueError(f"unknown tiny shape {name!r}")


def shapes_for(name: str) -> dict:
    return copy.deepcopy(REAL_SHAPES[name]) if name in REAL_SHAPES else tiny_shapes(name)


# ---------------------------------------------------------------------------------------------- arguments
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="the same code paths on CPU in float32 with the tiny families' shapes, 1 timed step each")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu_suite.json"))
    p.add_argument("--work", default=str(ROOT / "runs/bench/gpu_suite"), help="videos and trainer folders")
    p.add_argument("--budget-s", type=float, default=420.0, help="time budget of the whole run, from start-up")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak dense bf16 TFLOP/s for the MFU (default: from the device name)")
    p.add_argument("--models", default="qwen2_5_vl_3b,qwen3_vl_8b",
                   help=f"comma-separated, run in this order; known: {', '.join(REAL_SHAPES)}")
    p.add_argument("--measurements", default="sft,grpo,generate", help="comma-separated subset, in this order")
    p.add_argument("--frames", type=int, default=32, help="frames per video (2 fps)")
    p.add_argument("--frame-side", type=int, default=448, help="frames are side x side pixels")
    p.add_argument("--sft-batch", type=int, default=4)
    p.add_argument("--grpo-prompts", type=int, default=2, help="prompts per GRPO step")
    p.add_argument("--num-generations", type=int, default=8, help="G, completions per prompt")
    p.add_argument("--completion-length", type=int, default=128, help="GRPO max_completion_length")
    p.add_argument("--gen-batch", type=int, default=8, help="prompts per generate call")
    p.add_argument("--gen-tokens", type=int, default=128, help="new tokens per prompt (greedy, no early stop)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement (after one warm-up)")
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.frames, args.frame_side, args.sft_batch, args.grpo_prompts = 8, 64, 2, 1
        args.num_generations, args.completion_length, args.gen_batch, args.gen_tokens, args.reps = 2, 8, 2, 8, 1
        if args.out == str(ROOT / "benchmarks/results/gpu_suite.json"):
            args.out = str(ROOT / "benchmarks/results/gpu_suite_smoke.json")
    unknown = [m for m in args.models.split(",") if m not in REAL_SHAPES]
    if unknown:
        p.error(f"unknown model(s) {unknown}; known: {', '.join(REAL_SHAPES)}")
    bad = [m for m in args.measurements.split(",") if m not in ("sft", "grpo", "generate")]
    if bad:
        p.error(f"unknown measurement(s) {bad}; known: sft, grpo, generate")
    return args


# ---------------------------------------------------------------------------------------------- device
class Device:
    """Where the suite runs: CUDA in bf16, or (``--smoke``) CPU in float32."""

    def __init__(self, smoke: bool, peak_tflops: Optional[float]):
        self.cuda = not smoke
        if self.cuda and not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or use --smoke for the CPU check")
        self.torch_device = torch.device("cuda" if self.cuda else "cpu")
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.name = torch.cuda.get_device_name(0) if self.cuda else (platform.processor() or platform.machine())
        if peak_tflops is not None:
            self.peak_tflops, self.peak_source = float(peak_tflops), "--peak-tflops"
        elif not self.cuda:
            self.peak_tflops, self.peak_source = SMOKE_PEAK_TFLOPS, "nominal CPU figure (smoke run)"
        else:
            self.peak_tflops, key = peak_for(self.name)
            self.peak_source = f"table entry {key!r}" if key else "unknown device: pass --peak-tflops"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB, process high-water mark

    def allocated_gb(self) -> float:
        return torch.cuda.memory_allocated() / 2**30 if self.cuda else 0.0

    def free(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def info(self) -> dict:
        out = {"name": self.name, "type": self.torch_device.type, "dtype": str(self.dtype).replace("torch.", ""),
               "peak_bf16_tflops": self.peak_tflops, "peak_source": self.peak_source,
               "memory_kind": "torch.cuda.max_memory_allocated" if self.cuda else "process max RSS (CPU)",
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
        if self.cuda:
            props = torch.cuda.get_device_properties(0)
            out.update(total_memory_gb=props.total_memory / 2**30, capability=list(torch.cuda.get_device_capability(0)),
                       multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                       cudnn=torch.backends.cudnn.version(), device_count=torch.cuda.device_count(),
                       flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                       mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled())
        return out


def versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "safetensors",
                 "av", "qwen-vl-utils", "torchvision", "numpy", "vtg-rl"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ---------------------------------------------------------------------------------------------- budget and records
class Budget:
    """The global time budget, shared out between the planned measurements by weight."""

    def __init__(self, seconds: float, start: float = START):
        self.seconds, self.start = float(seconds), start
        self.plan: list[tuple[str, float]] = []

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def share(self, key: str) -> float:
        """Seconds measurement ``key`` may use: the time left in proportion to its weight among those still to
        run (``key`` and after); it is removed from the plan."""
        keys = [k for k, _ in self.plan]
        i = keys.index(key) if key in keys else 0
        rest = self.plan[i:]
        total = sum(w for _, w in rest) or 1.0
        weight = dict(rest).get(key, 1.0)
        self.plan = [kw for kw in self.plan if kw[0] != key]
        return max(self.left(), 0.0) * weight / total


def error_record(err: BaseException) -> dict:
    msg = f"{type(err).__name__}: {err}"
    oom = isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()
    tb = traceback.format_exception(type(err), err, err.__traceback__)
    return {"status": "error", "error": msg[:2000], "out_of_memory": oom, "traceback_tail": "".join(tb)[-3000:]}


def run_guarded(fn: Callable[[], dict], device: Optional[Device] = None,
                retry: Optional[Callable[[], dict]] = None) -> dict:
    """``fn()``'s record, or its error as a record; after an out-of-memory error, ``retry()`` once (its record
    carries the first error under ``first_attempt``)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - every failure becomes a record; the suite goes on
        record = error_record(err)
    if device is not None:
        device.free()
    if retry is not None and record["out_of_memory"]:
        try:
            second = retry()
        except Exception as err:  # noqa: BLE001
            second = error_record(err)
        second["first_attempt"] = record
        if device is not None:
            device.free()
        return second
    return record


def skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason}


def timed_reps(step: Callable[[int], dict], reps: int, deadline: float, budget: Budget) -> tuple[dict, list[dict]]:
    """Warm-up (rep 0) then up to ``reps`` timed repetitions; one stops early when the next would pass
    ``deadline`` (this measurement's share) or the global budget. Each step returns a dict with ``step_s``."""
    warm = step(0)
    done = []
    for rep in range(1, reps + 1):
        expected = (done[-1] if done else warm)["step_s"] * 1.1
        if time.perf_counter() + expected > deadline and done:
            break
        if budget.left() < expected:
            break
        done.append(step(rep))
    return warm, done


def summarise(warm: dict, done: list[dict], keys: tuple[str, ...], device: Device) -> dict:
    """Median of the timed repetitions (or the warm-up alone when none fitted) + peak memory + MFU."""
    rows = done or [warm]
    out = {"status": "ok" if done else "warmup_only", "timed_reps": len(done),
           "step_s": statistics.median(r["step_s"] for r in rows),
           "step_s_all": [round(r["step_s"], 4) for r in rows], "warmup_s": round(warm["step_s"], 4),
           "peak_memory_gb": max(r["peak_memory_gb"] for r in [warm] + done)}
    for k in keys:
        values = [r[k] for r in rows if r.get(k) is not None]
        if values:
            out[k] = statistics.median(values) if isinstance(values[0], (int, float)) else values[0]
    flops = statistics.median(r["model_flops"] for r in rows)
    out["model_tflop_per_step"] = flops / 1e12
    out["achieved_tflops"] = flops / out["step_s"] / 1e12
    out["mfu"] = out["achieved_tflops"] / device.peak_tflops if device.peak_tflops else None
    return out


# ---------------------------------------------------------------------------------------------- FLOPs
def _core(model):
    from vtg_rl.mllm.families.base import VideoLLMAdapter

    core = VideoLLMAdapter.core(model)
    if core is None:
        raise ValueError(f"{type(model).__name__}: no vision tower + language model found")
    return core


def param_counts(model) -> dict:
    """Parameter counts (shared tensors once): total, vision tower (blocks / mergers), language model without
    its input embedding, output head."""
    core = _core(model)
    seen = set()

    def count(params):
        n = 0
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    total = count(model.parameters())
    seen.clear()
    head = model.get_output_embeddings()
    head_n = count(head.parameters()) if head is not None else 0
    embed = core.language_model.get_input_embeddings()
    seen.add(id(embed.weight))  # the input embedding is a lookup (no FLOPs); a tied head was counted above
    text_body = count(core.language_model.parameters())
    seen.clear()
    merger = count(p for n, p in core.visual.named_parameters() if "merger" in n)
    vision_blocks = count(core.visual.parameters())
    return {"total": total, "vision": merger + vision_blocks, "vision_blocks": vision_blocks,
            "vision_mergers": merger, "text_non_embedding": text_body, "output_head": head_n,
            "text_flop_params": text_body + head_n}


class FlopCounter:
    """Model FLOPs of the forwards run inside it, from hooks on each model's language model and vision tower:
    6 x params x tokens where the forward builds a graph for trainable parameters, else 2 x."""

    def __init__(self, models):
        self.flops = 0.0
        self.text_tokens = 0
        self.vision_patches = 0
        self.handles = []
        self.active = False
        for model in models:
            if model is None:
                continue
            core = _core(model)
            counts = param_counts(model)
            merge = int(getattr(core.visual.config, "spatial_merge_size", 2))
            lm_params = [p for p in core.language_model.parameters()]
            vis_params = [p for p in core.visual.parameters()]
            self.handles.append(core.language_model.register_forward_pre_hook(
                self._text_hook(counts["text_flop_params"], lm_params), with_kwargs=True))
            self.handles.append(core.visual.register_forward_pre_hook(
                self._vision_hook(counts["vision_blocks"], counts["vision_mergers"], merge, vis_params),
                with_kwargs=True))

    @staticmethod
    def _factor(params) -> int:
        return 6 if torch.is_grad_enabled() and any(p.requires_grad for p in params) else 2

    def _text_hook(self, n, params):
        def hook(module, args, kwargs):
            if not self.active:
                return
            x = kwargs.get("inputs_embeds")
            if x is None:
                x = kwargs.get("input_ids", args[0] if args else None)
            if x is None:
                return
            tokens = int(x.shape[0]) * int(x.shape[1])
            self.text_tokens += tokens
            self.flops += self._factor(params) * n * tokens
        return hook

    def _vision_hook(self, blocks, mergers, merge, params):
        def hook(module, args, kwargs):
            if not self.active:
                return
            x = args[0] if args else kwargs.get("hidden_states", kwargs.get("pixel_values"))
            if x is None:
                return
            patches = int(x.shape[0])
            self.vision_patches += patches
            self.flops += self._factor(params) * (blocks * patches + mergers * patches / merge**2)
        return hook

    @contextlib.contextmanager
    def counting(self):
        self.flops, self.text_tokens, self.vision_patches, self.active = 0.0, 0, 0, True
        try:
            yield self
        finally:
            self.active = False

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles = []


# ---------------------------------------------------------------------------------------------- models and data
def _cache_tokenizer_training():
    """Both families train the same project BPE; train it once per process (each builder gets its own copy)."""
    import vtg_rl.models.tokenizer as tokenizer_module
    from tokenizers import Tokenizer

    if getattr(tokenizer_module.train_qwen_tokenizer, "_trained_once", False):
        return
    original, trained = tokenizer_module.train_qwen_tokenizer, {}

    def train_once(vocab_size: int = 480, seed: int = 0):
        key = (vocab_size, seed)
        if key not in trained:
            trained[key] = original(vocab_size=vocab_size, seed=seed).to_str()
        return Tokenizer.from_str(trained[key])

    train_once._trained_once = True
    tokenizer_module.train_qwen_tokenizer = train_once


def build_processor(family: str, shape: dict, side: int, frames: int):
    """The tiny family's processor builder, with the shape's geometry and frames of side x side pixels kept."""
    _cache_tokenizer_training()
    v = shape["vision"]
    geometry = dict(patch_size=v["patch_size"], spatial_merge_size=v["spatial_merge_size"],
                    temporal_patch_size=v["temporal_patch_size"])
    if family == "qwen2_5_vl":
        from vtg_rl.models.tiny_qwen import build_processor as build, make_spec

        spec = make_spec(**geometry, min_pixels=56 * 56, max_pixels=side * side, fps=2.0,
                         max_frames=max(64, frames))
        return build(spec, seed=0)
    from vtg_rl.models.tiny_families import _qwen_processor, make_family_spec

    spec = make_family_spec(family, **geometry, max_frame_pixels=side * side, max_frames=max(64, frames))
    return _qwen_processor(family, spec, seed=0)


def build_config(family: str, shape: dict, tokenizer):
    """The model config of ``shape`` with the special-token ids of ``tokenizer`` (as the tiny builders do)."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ROLE_TOKENS}
    text, vision = dict(shape["text"]), dict(shape["vision"])
    vocab = text.pop("vocab_size") or len(tokenizer)
    if vocab < len(tokenizer):
        raise ValueError(f"vocab_size {vocab} < the tokenizer's {len(tokenizer)} tokens")
    rope = {"rope_type": "default", "rope_theta": text.pop("rope_theta"), "mrope_section": list(text.pop("mrope_section"))}
    tie = text.pop("tie_word_embeddings")
    text.update(vocab_size=vocab, rope_parameters=rope, pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=tie)
    roles = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                 vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                 tie_word_embeddings=tie)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        text.update(bos_token_id=None, eos_token_id=ids["<|im_end|>"])
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **roles), ids
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        rope["mrope_interleaved"] = True
        return Qwen3VLConfig(text_config=text, vision_config=vision, **roles), ids
    raise ValueError(f"no config builder for family {family!r}")


def build_model(config, ids: dict, device: Device):
    """Random weights, initialised directly on the device in its dtype (no host copy, no checkpoint)."""
    from transformers import AutoModelForImageTextToText, GenerationConfig

    torch.manual_seed(0)
    with torch.device(device.torch_device):
        model = AutoModelForImageTextToText.from_config(config, dtype=device.dtype, attn_implementation="sdpa")
    model.to(device.torch_device)
    model.generation_config = GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                                               pad_token_id=ids["<|endoftext|>"], bos_token_id=None)
    return model


def write_videos(folder: Path, n: int, side: int, frames: int, fps: float = 2.0) -> list:
    """``n`` distinct videos of ``frames`` frames of side x side pixels at ``fps`` (smooth moving patterns, cheap
    to encode and decode), as VTGSamples; reused when already written."""
    import numpy as np

    from vtg_rl.data.schema import VTGSample
    from vtg_rl.data.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:side, 0:side]
    samples = []
    for i in range(n):
        path = folder / f"video{i:02d}_{side}px_{frames}f.mp4"
        if not path.is_file():
            clip = np.empty((frames, side, side, 3), np.uint8)
            for k in range(frames):
                clip[k, ..., 0] = (xx + 9 * k + 37 * i) % 256
                clip[k, ..., 1] = (2 * yy + 5 * k + 11 * i) % 256
                clip[k, ..., 2] = ((xx + yy) // 2 + 60 * i + 3 * k) % 256
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.mp4")
            write_video(tmp, clip, fps=fps)
            os.replace(tmp, path)
        duration = frames / fps
        samples.append(VTGSample(qid=f"bench{i}", vid=f"video{i}", duration=duration, query=QUERY,
                                 windows=[[round(0.15 * duration, 1), round(0.4 * duration, 1)]],
                                 video_path=str(path)))
    return samples


def video_settings(args) -> dict:
    return dict(video_fps=2.0, video_min_frames=args.frames, video_max_frames=args.frames,
                video_max_pixels=args.frame_side * args.frame_side)


def trainer_settings(args, device: Device, out_dir: Path) -> dict:
    gc_on = not args.no_gradient_checkpointing
    return dict(output_dir=str(out_dir), report_to=[], save_strategy="no", seed=0, dataloader_num_workers=0,
                bf16=device.cuda, use_cpu=not device.cuda, gradient_checkpointing=gc_on,
                gradient_checkpointing_kwargs={"use_reentrant": False} if gc_on else None,
                freeze_vision_tower=True, **video_settings(args))


def enable_checkpointing(model, targs) -> None:
    """What ``Trainer.train`` does before its first step (the suite steps by hand)."""
    if targs.gradient_checkpointing and not model.is_gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=targs.gradient_checkpointing_kwargs)
    model.config.use_cache = False


# ---------------------------------------------------------------------------------------------- measurements
def measure_sft(model, processor, samples, args, device: Device, budget: Budget, share_s: float, work: Path,
                batch_size: int) -> dict:
    from vtg_rl.mllm.dataset import samples_to_hf
    from vtg_rl.mllm.sft import VideoSFTConfig, VideoSFTTrainer

    deadline = time.perf_counter() + share_s
    dataset = samples_to_hf(samples[:batch_size], target_fn=lambda s: SFT_TARGET)
    config = VideoSFTConfig(per_device_train_batch_size=batch_size, learning_rate=1e-5, max_completion_tokens=256,
                            **trainer_settings(args, device, work / "sft"))
    trainer = VideoSFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor)
    counter = None
    try:
        enable_checkpointing(model, config)
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train's loop, read by training_step
        optimizer = trainer.create_optimizer()
        t0 = time.perf_counter()
        batch = trainer.data_collator([dataset[i] for i in range(len(dataset))])  # the project's collator
        collate_s = time.perf_counter() - t0
        batch = {k: v.to(device.torch_device) if torch.is_tensor(v) else v for k, v in batch.items()}
        counter = FlopCounter([model])
        grid = batch["video_grid_thw"]
        merge = int(processor.video_processor.merge_size)

        def step(rep: int) -> dict:
            device.sync()
            device.reset_peak()
            before = device.allocated_gb()
            with counter.counting():
                t = time.perf_counter()
                loss = trainer.training_step(model, batch)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                device.sync()
                seconds = time.perf_counter() - t
            print(f"    sft rep {rep}: {seconds:.3f} s  loss {float(loss):.3f}", flush=True)
            return {"step_s": seconds, "peak_memory_gb": device.peak_gb(), "allocated_before_gb": before,
                    "model_flops": counter.flops, "text_tokens": counter.text_tokens,
                    "vision_patches": counter.vision_patches}

        warm, done = timed_reps(step, args.reps, deadline, budget)
        out = summarise(warm, done, ("allocated_before_gb", "text_tokens", "vision_patches"), device)
        out.update(batch_size=batch_size, collate_s=collate_s, sequence_length=int(batch["input_ids"].shape[1]),
                   tokens_per_step=int(batch["attention_mask"].sum()),
                   video_tokens_per_sample=int(grid[0].prod()) // merge**2,
                   completion_tokens_per_sample=float((batch["labels"] != -100).sum(1).float().mean()),
                   optimizer=type(optimizer).__name__,
                   gradient_checkpointing=bool(config.gradient_checkpointing), freeze_vision_tower=True)
        out["tokens_per_s"] = out["tokens_per_step"] / out["step_s"]
        return out
    finally:
        if counter is not None:
            counter.close()
        model.zero_grad(set_to_none=True)
        trainer.optimizer = None
        del trainer
        device.free()


def constant_reward(completions, **kwargs):
    # rewards do not change the work of a step; distinct values keep every advantage non-zero
    return [float(i % 7) / 7 for i in range(len(completions))]


@contextlib.contextmanager
def reference_from_policy(model):
    """TRL builds the reference model with ``from_pretrained(config._name_or_path)``; a random model has no
    folder, so the reference is a copy of the policy (what loading the same checkpoint again gives)."""
    import trl.trainer.grpo_trainer as grpo_module

    original = grpo_module.create_model_from_path

    def copy_of_policy(model_id, *a, **kw):
        ref = copy.deepcopy(model)
        ref.eval()
        return ref

    grpo_module.create_model_from_path = copy_of_policy
    try:
        yield
    finally:
        grpo_module.create_model_from_path = original


def measure_grpo(model, processor, samples, args, device: Device, budget: Budget, share_s: float, work: Path,
                 prompts: int) -> dict:
    from vtg_rl.mllm.dataset import samples_to_hf
    from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer
    from vtg_rl.mllm.shared_prefix import count_vision_videos

    deadline = time.perf_counter() + share_s
    g = args.num_generations
    needed = (args.reps + 1) * prompts
    if len(samples) < needed:
        raise ValueError(f"need {needed} distinct videos for {args.reps} + 1 repetitions of {prompts} prompts, "
                         f"have {len(samples)}")
    dataset = samples_to_hf(samples)
    rows = [dataset[i] for i in range(len(dataset))]
    config = VideoGRPOConfig(per_device_train_batch_size=prompts * g, num_generations=g,
                             max_completion_length=args.completion_length, temperature=1.0, beta=0.04,
                             loss_type="dapo", learning_rate=1e-6, shared_prefix=True,
                             reward_funcs=["constant_reward"], **trainer_settings(args, device, work / "grpo"))
    with reference_from_policy(model):
        trainer = VideoGRPOTrainer(model=model, reward_funcs=[constant_reward], args=config, train_dataset=dataset,
                                   processing_class=processor)
    counter = None
    try:
        enable_checkpointing(trainer.model, config)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
        optimizer = trainer.create_optimizer()
        counter = FlopCounter([trainer.model, trainer.ref_model])
        towers = [trainer.model] + ([trainer.ref_model] if trainer.ref_model is not None else [])

        def one_step(batch: list[dict], shared: bool, rep: int) -> dict:
            # the two arms share the trainer: only the switch the trainer reads at every step differs
            trainer.args.shared_prefix = shared
            device.sync()
            device.reset_peak()
            with counter.counting(), count_vision_videos(towers[0]) as policy, \
                    count_vision_videos(towers[-1]) as ref:
                torch.manual_seed(1000 + rep)
                t0 = time.perf_counter()
                out = trainer._generate_and_score_completions(batch)
                device.sync()
                t1 = time.perf_counter()
                loss = trainer.compute_loss(trainer.model, out)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                device.sync()
                t2 = time.perf_counter()
            videos = policy[0] + (ref[0] if len(towers) > 1 else 0)
            return {"step_s": t2 - t0, "rollout_s": t1 - t0, "train_s": t2 - t1, "peak_memory_gb": device.peak_gb(),
                    "model_flops": counter.flops, "text_tokens": counter.text_tokens,
                    "vision_patches": counter.vision_patches, "vision_forwards": videos,
                    "prompt_tokens": int(out["prompt_mask"].sum(1).max()),
                    "completion_tokens": float(out["completion_mask"].sum(1).float().mean())}

        arms = {"naive": [], "shared": []}
        warm = {}

        def pair(rep: int) -> dict:
            batch = [rows[(rep * prompts + i) % len(rows)] for i in range(prompts) for _ in range(g)]
            order = ("naive", "shared") if rep % 2 == 0 else ("shared", "naive")
            total = 0.0
            for name in order:
                r = one_step(batch, name == "shared", rep)
                total += r["step_s"]
                (arms[name].append(r) if rep > 0 else warm.__setitem__(name, r))
                print(f"    grpo rep {rep} {name:6s}: {r['step_s']:.3f} s (rollout {r['rollout_s']:.3f} s)  "
                      f"videos {r['vision_forwards']}  prompt {r['prompt_tokens']} tok  "
                      f"completion {r['completion_tokens']:.0f} tok  peak {r['peak_memory_gb']:.1f} GB", flush=True)
            return {"step_s": total}

        timed_reps(pair, args.reps, deadline, budget)
        keys = ("rollout_s", "train_s", "text_tokens", "vision_patches", "vision_forwards", "prompt_tokens",
                "completion_tokens")
        out = {name: summarise(warm[name], arms[name], keys, device) for name in ("naive", "shared")}
        for name in out:
            out[name]["completion_tokens_per_s"] = prompts * g * out[name]["completion_tokens"] / out[name]["step_s"]
        out["status"] = "ok" if all(out[n]["status"] == "ok" for n in ("naive", "shared")) else "warmup_only"
        out["shared_speedup"] = out["naive"]["step_s"] / out["shared"]["step_s"]
        out["shared_over_naive_peak_memory"] = out["shared"]["peak_memory_gb"] / out["naive"]["peak_memory_gb"]
        out.update(prompts=prompts, num_generations=g, max_completion_length=args.completion_length, beta=0.04,
                   loss_type="dapo", optimizer=type(optimizer).__name__, freeze_vision_tower=True,
                   vision_cache=trainer.vision_cache is not None,
                   gradient_checkpointing=bool(config.gradient_checkpointing),
                   arms="one trainer; shared_prefix switched per step, arms interleaved, same batches")
        return out
    finally:
        if counter is not None:
            counter.close()
        trainer.model.zero_grad(set_to_none=True)
        trainer.optimizer = None
        trainer.ref_model = None
        trainer.vision_cache = None
        del trainer
        device.free()


def measure_generate(model, processor, samples, args, device: Device, budget: Budget, share_s: float,
                     batch_size: int) -> dict:
    from vtg_rl.mllm.dataset import samples_to_rows
    from vtg_rl.mllm.families import adapter_for_model
    from vtg_rl.mllm.video_source import VideoSampling

    deadline = time.perf_counter() + share_s
    adapter = adapter_for_model(model, processor)
    sampling = VideoSampling(fps=2.0, min_frames=args.frames, max_frames=args.frames,
                             max_pixels=args.frame_side * args.frame_side).for_family(adapter)
    chunk = [samples[i % len(samples)] for i in range(batch_size)]
    t0 = time.perf_counter()
    # as vtg_rl.mllm.inference.generate_answers builds a batch (the same grounding messages as the trainers' rows)
    texts = [adapter.render_prompt(r["prompt"], add_generation_prompt=True) for r in samples_to_rows(chunk)]
    videos = [sampling.load(s.video_path, qid=s.qid) for s in chunk]
    batch = adapter.build_inputs(texts, videos, padding_side="left")
    video_kwargs = adapter.merge_videos(adapter.split_videos(batch, len(videos)))
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              **adapter.forward_kwargs(batch["input_ids"], video_kwargs)}
    inputs = {k: v.to(device.torch_device) for k, v in inputs.items()}
    preprocess_s = time.perf_counter() - t0
    prompt_len = int(inputs["input_ids"].shape[1])
    counter = FlopCounter([model])
    was_training = model.training
    model.eval()
    model.config.use_cache = True

    def generate(n: int) -> tuple[float, int]:
        device.sync()
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, eos_token_id=adapter.end_token_id(),
                                 pad_token_id=adapter.pad_token_id(), suppress_tokens=adapter.suppress_token_ids())
        device.sync()
        return time.perf_counter() - t, int(out.shape[1]) - prompt_len

    def step(rep: int) -> dict:
        device.reset_peak()
        prefill_s, _ = generate(1)
        with counter.counting():
            seconds, new = generate(args.gen_tokens)
        print(f"    generate rep {rep}: {seconds:.3f} s for {batch_size} x {new} tokens (prefill {prefill_s:.3f} s)",
              flush=True)
        return {"step_s": seconds, "prefill_s": prefill_s, "new_tokens": new, "peak_memory_gb": device.peak_gb(),
                "model_flops": counter.flops, "text_tokens": counter.text_tokens,
                "vision_patches": counter.vision_patches}

    try:
        warm, done = timed_reps(step, args.reps, deadline, budget)
        out = summarise(warm, done, ("prefill_s", "new_tokens", "text_tokens", "vision_patches"), device)
        new = out["new_tokens"]
        out.update(batch_size=batch_size, prompt_tokens=prompt_len, preprocess_s=preprocess_s, greedy=True,
                   tokens_per_s=batch_size * new / out["step_s"],
                   decode_tokens_per_s=(batch_size * (new - 1) / (out["step_s"] - out["prefill_s"])
                                        if new > 1 and out["step_s"] > out["prefill_s"] else None))
        return out
    finally:
        counter.close()
        model.train(was_training)
        device.free()


# ---------------------------------------------------------------------------------------------- one model
MEASUREMENT_WEIGHTS = {"build": 0.4, "sft": 1.0, "grpo": 3.0, "generate": 1.0}
# a measurement starts only with this much of the budget left (a GRPO warm-up pair of the 8B shapes takes ~30 s)
MIN_SECONDS = {"sft": 20.0, "grpo": 60.0, "generate": 20.0}


def run_model(key: str, args, device: Device, budget: Budget, work: Path, samples: list,
              record: Optional[dict] = None, on_update: Callable[[], None] = lambda: None) -> dict:
    """Build model ``key`` and run the measurements into ``record`` (``on_update()`` after each one)."""
    shape_name = SMOKE_MODELS[key] if args.smoke else key
    shape = shapes_for(shape_name)
    family = shape["family"]
    record = {} if record is None else record
    record.update(shape_name=shape_name, family=family, released_as=shape["released_as"], text=shape["text"],
                  vision=shape["vision"], measurements={})
    measurements = args.measurements.split(",")
    if budget.left() < 30 and not args.smoke:
        for m in measurements:
            record["measurements"][m] = skipped(f"time budget: {budget.left():.0f} s left before building the model")
        budget.plan = [kw for kw in budget.plan if not kw[0].startswith(key + "/")]
        return record
    t0 = time.perf_counter()
    processor = build_processor(family, shape, args.frame_side, args.frames)
    config, ids = build_config(family, shape, processor.tokenizer)
    record["processor_build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = build_model(config, ids, device)
    device.sync()
    record["build_s"] = time.perf_counter() - t0
    budget.share(f"{key}/build")
    record["parameters"] = param_counts(model)
    record["tokenizer_size"] = len(processor.tokenizer)
    record["vocab_size"] = int(config.text_config.vocab_size)
    record["weights_memory_gb"] = device.allocated_gb()
    vp = processor.video_processor
    record["processor"] = {"class": type(processor).__name__, "patch_size": int(vp.patch_size),
                           "merge_size": int(vp.merge_size), "temporal_patch_size": int(vp.temporal_patch_size)}
    print(f"  {shape_name}: {record['parameters']['total'] / 1e9:.3f} B parameters, built in "
          f"{record['build_s']:.1f} s", flush=True)
    runners = {
        "sft": (lambda share, n: measure_sft(model, processor, samples, args, device, budget, share, work / key, n),
                args.sft_batch),
        "grpo": (lambda share, n: measure_grpo(model, processor, samples, args, device, budget, share, work / key, n),
                 args.grpo_prompts),
        "generate": (lambda share, n: measure_generate(model, processor, samples, args, device, budget, share, n),
                     args.gen_batch),
    }
    try:
        for m in measurements:
            share = budget.share(f"{key}/{m}")
            needed = 5.0 if args.smoke else MIN_SECONDS[m]
            if budget.left() < needed:
                record["measurements"][m] = skipped(f"time budget: {budget.left():.0f} s left, a start needs "
                                                    f"{needed:.0f} s")
                on_update()
                continue
            fn, size = runners[m]
            print(f"  {m} (time share {share:.0f} s)", flush=True)
            retry = (lambda fn=fn, size=size: {**fn(share / 2, max(size // 2, 1)), "reduced_size": max(size // 2, 1)}) \
                if size > 1 else None
            t0 = time.perf_counter()
            record["measurements"][m] = run_guarded(lambda fn=fn, size=size: fn(share, size), device, retry)
            record["measurements"][m]["wall_s"] = time.perf_counter() - t0
            if record["measurements"][m]["status"] == "error":
                print(f"    {m} failed: {record['measurements'][m]['error'][:300]}", flush=True)
            on_update()
    finally:
        del model
        device.free()
    return record


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # transformers 5.23 renames gradient_* to activation_* checkpointing; TRL and the recipes use the old names
    warnings.filterwarnings("ignore", category=FutureWarning)
    device = Device(args.smoke, args.peak_tflops)
    budget = Budget(args.budget_s)
    work = Path(args.work) / ("smoke" if args.smoke else "gpu")
    models = args.models.split(",")
    measurements = args.measurements.split(",")
    for i, key in enumerate(models):
        scale = 1.0 if i == 0 else 2.0  # the later (bigger) model gets the larger share
        budget.plan.append((f"{key}/build", MEASUREMENT_WEIGHTS["build"] * scale))
        budget.plan += [(f"{key}/{m}", MEASUREMENT_WEIGHTS[m] * scale) for m in measurements]
    result = {"suite": "benchmarks/gpu_suite.py", "smoke": args.smoke,
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "device": device.info(), "versions": versions(), "config": vars(args).copy(), "models": {}}
    result["config"].update(attn_implementation="sdpa", video_fps=2.0,
                            flop_counting="6 x params x tokens with gradients, 2 x without (attention scores "
                                          "left out); text: non-embedding params + output head; vision: blocks "
                                          "per patch, mergers per merged token")
    print(f"gpu_suite on {device.name} ({device.dtype}), budget {args.budget_s:.0f} s, "
          f"{time.perf_counter() - START:.1f} s after start", flush=True)
    t0 = time.perf_counter()
    n_videos = max(args.sft_batch, args.gen_batch, (args.reps + 1) * args.grpo_prompts)
    samples = write_videos(work / "videos", n_videos, args.frame_side, args.frames)
    result["videos"] = {"count": n_videos, "frames": args.frames, "side": args.frame_side, "fps": 2.0,
                        "write_s": time.perf_counter() - t0}
    out = Path(args.out)

    def save(complete: bool = False) -> None:
        # written after every measurement, so a run cut short still leaves what it measured
        result["complete"] = complete
        result["wall_s"] = time.perf_counter() - START
        result["budget_left_s"] = budget.left()
        write_json(out, result)

    for key in models:
        print(f"model {key}", flush=True)
        record = result["models"][key] = {}
        outcome = run_guarded(lambda key=key, record=record: run_model(key, args, device, budget, work, samples,
                                                                       record, save), device)
        if outcome.get("status") == "error":  # the model itself failed (e.g. out of memory while building it)
            record.update(outcome)
        save()
    save(complete=True)
    print_summary(result)
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


def write_json(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(_finite(result), indent=2, allow_nan=False, default=_json_default) + "\n")
    os.replace(tmp, out)


def _finite(x):
    """``x`` with NaN / inf replaced by None (strict JSON)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _json_default(x):
    if hasattr(x, "item"):
        return _finite(x.item())
    return str(x)


def print_summary(result: dict) -> None:
    print(f"\n{'model':16s} {'measurement':16s} {'status':12s} {'step s':>9s} {'peak GB':>8s} {'MFU':>7s}")
    for key, rec in result["models"].items():
        for name, m in rec.get("measurements", {}).items():
            arms = [(f"{name}/{a}", m[a]) for a in ("naive", "shared") if isinstance(m.get(a), dict)] or [(name, m)]
            for label, r in arms:
                step = f"{r['step_s']:9.3f}" if "step_s" in r else " " * 9
                peak = f"{r['peak_memory_gb']:8.2f}" if "peak_memory_gb" in r else " " * 8
                mfu = f"{r['mfu']:7.3f}" if r.get("mfu") is not None else " " * 7
                print(f"{key:16s} {label:16s} {r.get('status', m.get('status', '')):12s} {step} {peak} {mfu}")
        if rec.get("status") == "error":
            print(f"{key:16s} {'(model)':16s} error: {rec['error'][:200]}")


if __name__ == "__main__":
    raise SystemExit(main())
