"""vtg-rl: reinforcement-learning post-training for video temporal grounding.

The public API is importable from the package root; names load lazily, so ``import vtg_rl`` (and the
``vtg-rl eval`` command) stays fast and pulls in torch / transformers only when a trainer is asked for:

>>> import vtg_rl
>>> sorted(vtg_rl.__all__)[:3]
['BoundaryReflectionAgent', 'DifficultyEstimationAgent', 'Grounder']
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "evaluate": "vtg_rl.metrics",
    "REWARD_FUNCS": "vtg_rl.rewards",
    "temporal_iou": "vtg_rl.spans",
    "VTGSample": "vtg_rl.data.schema",
    "load_samples": "vtg_rl.data.loaders",
    "generate_world": "vtg_rl.data.synthetic",
    "Grounder": "vtg_rl.grounders",
    "VideoSFTConfig": "vtg_rl.mllm.sft",
    "VideoSFTTrainer": "vtg_rl.mllm.sft",
    "VideoGRPOConfig": "vtg_rl.mllm.grpo",
    "VideoGRPOTrainer": "vtg_rl.mllm.grpo",
    "adapter_for": "vtg_rl.mllm.families",
    "BoundaryReflectionAgent": "vtg_rl.agents",
    "DifficultyEstimationAgent": "vtg_rl.agents",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vtg_rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
