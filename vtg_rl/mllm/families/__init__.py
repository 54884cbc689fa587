"""Model-family adapters: one object per video-LLM family that says how its prompts, videos, time, tokens and
vision tower work, so SFT, GRPO, inference, the agents and ``vtg-rl predict`` run on any supported family.

>>> from vtg_rl.mllm.families import FAMILIES
>>> sorted(FAMILIES)
['llava_onevision', 'qwen2_5_vl', 'qwen2_vl', 'qwen3_5', 'qwen3_vl']

The family is chosen from the model's ``config.model_type`` (:func:`adapter_for_model`) or, where only the
processor is at hand, from the processor's class (:func:`adapter_for`). An unknown family fails with one
sentence naming the supported ones.
"""

from __future__ import annotations

from typing import Optional

from vtg_rl.mllm.families.base import Capabilities, UnsupportedFamilyFeature, VideoLLMAdapter
from vtg_rl.mllm.families.llava_onevision import LlavaOnevisionAdapter
from vtg_rl.mllm.families.qwen import Qwen2_5_VLAdapter, Qwen2_VLAdapter, Qwen3_5Adapter, Qwen3_VLAdapter

__all__ = ["FAMILIES", "Capabilities", "UnsupportedFamilyFeature", "VideoLLMAdapter", "adapter_for",
           "adapter_for_model", "family_of_model", "UnknownFamilyError"]

#: family name -> adapter class
FAMILIES: dict[str, type[VideoLLMAdapter]] = {
    cls.family: cls for cls in (Qwen2_5_VLAdapter, Qwen2_VLAdapter, Qwen3_VLAdapter, Qwen3_5Adapter,
                                LlavaOnevisionAdapter)
}
_BY_MODEL_TYPE = {t: cls for cls in FAMILIES.values() for t in cls.model_types}
_BY_PROCESSOR = {name: cls for cls in FAMILIES.values() for name in cls.processor_classes}
_ATTR = "_vtg_rl_adapter"


class UnknownFamilyError(ValueError):
    """The model or processor belongs to no supported family."""


def _supported() -> str:
    return ", ".join(sorted(FAMILIES))


def family_of_model(model) -> str:
    """The family name of ``model`` (any wrapper), from its ``config.model_type``."""
    config = getattr(model, "config", model)
    seen = set()
    while config is None or not hasattr(config, "model_type"):  # DDP / DeepSpeed / PEFT wrappers
        if id(model) in seen:
            break
        seen.add(id(model))
        model = getattr(model, "module", None) or getattr(model, "base_model", None)
        config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    cls = _BY_MODEL_TYPE.get(model_type)
    if cls is None:
        raise UnknownFamilyError(f"model_type {model_type!r} is not a supported video-LLM family (supported: "
                                 f"{_supported()})")
    return cls.family


def adapter_for(processor, family: Optional[str] = None) -> VideoLLMAdapter:
    """The adapter of ``processor`` (cached on it); ``family`` overrides the choice by processor class."""
    cached = getattr(processor, _ATTR, None)
    if cached is not None and (family is None or cached.family == family):
        return cached
    if family is not None:
        if family not in FAMILIES:
            raise UnknownFamilyError(f"unknown video-LLM family {family!r} (supported: {_supported()})")
        cls = FAMILIES[family]
    else:
        name = type(processor).__name__
        cls = _BY_PROCESSOR.get(name)
        if cls is None:
            raise UnknownFamilyError(f"{name} is not the processor of a supported video-LLM family (supported: "
                                     f"{_supported()})")
    adapter = cls(processor)
    try:
        setattr(processor, _ATTR, adapter)
    except AttributeError:
        pass
    return adapter


def adapter_for_model(model, processor) -> VideoLLMAdapter:
    """The adapter for ``model`` + ``processor``, refusing a processor of another family."""
    family = family_of_model(model)
    cls = FAMILIES[family]
    name = type(processor).__name__
    by_processor = _BY_PROCESSOR.get(name)
    if by_processor is not None and by_processor is not cls and not issubclass(cls, by_processor):
        raise UnknownFamilyError(f"the model is a {family} model but its processor is a {name} "
                                 f"({by_processor.family}); load both from the same folder")
    return adapter_for(processor, family=family)
