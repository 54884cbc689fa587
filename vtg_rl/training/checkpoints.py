"""Checkpoint folders of the transformers ``Trainer`` family: which are complete, and loading their weights
exactly (through the model's own key conversion, missing / unexpected keys as errors).

The stock ``Trainer._load_from_checkpoint`` loads a checkpoint's raw state dict with
``model.load_state_dict(state_dict, strict=False)`` and only *logs* the keys that did not match. Under
transformers 5 that is a silent restart from the initial weights for every model whose class layout
differs from the layout ``save_pretrained`` writes: a Qwen2.5-VL checkpoint holds ``visual.*`` and
``model.layers.*`` (the original layout, restored on save by ``revert_weight_conversion``), the model
expects ``model.visual.*`` and ``model.language_model.*``, so *no* tensor is loaded while the step
count, the optimizer and the LR schedule are restored.

:func:`load_checkpoint_weights` performs the load ``from_pretrained`` performs: the checkpoint's tensors go
through the model's own weight-conversion mapping (``transformers.conversion_mapping.get_model_conversion_mapping``
and ``transformers.core_model_loading.convert_and_load_state_dict_in_model``), so a checkpoint loads whatever
key layout it was written with. PEFT adapters load through PEFT's ``load_adapter``. Any missing, unexpected
or mis-shaped key is an error naming the checkpoint, never a warning. The values are copied into the model's
existing parameters, so the optimizer's references, tied weights and ``requires_grad`` flags (a frozen
vision tower) keep pointing at the loaded values. :mod:`vtg_rl.training.resume` builds the exact resume on it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

import torch

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
RESUME_STATE = "resume_state.pt"
#: how many offending keys an error lists
SHOWN_KEYS = 8

_CHECKPOINT_RE = r"^checkpoint-(\d+)$"


class CheckpointLoadError(RuntimeError):
    """A checkpoint could not be loaded exactly into the model."""


# --------------------------------------------------------------------------- checkpoint folders
def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """A Trainer checkpoint is complete once ``trainer_state.json`` (written last) is there and whole."""
    try:
        return "global_step" in json.loads(Path(folder, TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Optional[str]:
    """The highest-step ``checkpoint-N`` folder of ``output_dir`` whose save finished (``None`` if none).

    ``transformers.trainer_utils.get_last_checkpoint`` returns the highest-step folder even when the
    run was killed while writing it."""
    import re

    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = []
    for p in root.iterdir():
        m = re.match(_CHECKPOINT_RE, p.name)
        if m and p.is_dir() and is_complete_checkpoint(p):
            found.append((int(m.group(1)), str(p)))
    return max(found)[1] if found else None


def checkpoint_step(folder: str | os.PathLike) -> int:
    """``global_step`` recorded in a checkpoint's ``trainer_state.json``."""
    return int(json.loads(Path(folder, TRAINER_STATE).read_text())["global_step"])


def require_complete(folder: str) -> None:
    if not os.path.isdir(folder):
        raise CheckpointLoadError(f"{folder}: no such checkpoint folder")
    if not is_complete_checkpoint(folder):
        parent = os.path.dirname(os.path.abspath(folder))
        previous = last_complete_checkpoint(parent)
        raise CheckpointLoadError(
            f"{folder}: incomplete checkpoint (no complete {TRAINER_STATE}, which the Trainer writes last): the run was "
            f"stopped while saving it. Resume from the last complete one"
            + (f" ({previous})" if previous else "") + " or delete it.")


# --------------------------------------------------------------------------- reading tensors
def _weight_files(folder: str) -> list[str]:
    """The model weight files of a checkpoint folder (safetensors preferred, sharded or not)."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

    for single, index in ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
        if os.path.isfile(os.path.join(folder, single)):
            return [os.path.join(folder, single)]
        index_path = os.path.join(folder, index)
        if os.path.isfile(index_path):
            shards = sorted(set(json.loads(Path(index_path).read_text())["weight_map"].values()))
            return [os.path.join(folder, s) for s in shards]
    return []


def read_state_dict(files: list[str]) -> dict[str, torch.Tensor]:
    """All tensors of ``files`` on the CPU (safetensors, or ``torch.load(weights_only=True)``)."""
    import safetensors.torch

    state: dict[str, torch.Tensor] = {}
    for f in files:
        if f.endswith(".safetensors"):
            state.update(safetensors.torch.load_file(f, device="cpu"))
        else:
            state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


def _first(keys, n: int = SHOWN_KEYS) -> str:
    keys = sorted(str(k) for k in keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def raise_if_mismatched(folder: str, missing=(), unexpected=(), mismatched=(), errors=()) -> None:
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensor(s) not in the checkpoint: {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint tensor(s) the model does not have: {_first(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) of another shape: {_first(mismatched)}")
    if errors:
        problems.append(f"errors: {_first(errors, 3)}")
    if problems:
        raise CheckpointLoadError(f"cannot load the checkpoint {folder} into the model exactly: " + "; ".join(problems))


# --------------------------------------------------------------------------- loading into a model
def _tensor_slots(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, bool, torch.Tensor]]:
    """(module, attribute, is_parameter, tensor) for every parameter and buffer, shared ones included."""
    slots = []
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                slots.append((module, name, True, p))
        for name, b in module._buffers.items():
            if b is not None:
                slots.append((module, name, False, b))
    return slots


def _restore_identity(slots) -> None:
    """Put the original tensor objects back, holding the values the loader installed in their place."""
    with torch.no_grad():
        for module, name, is_param, original in slots:
            table = module._parameters if is_param else module._buffers
            current = table.get(name)
            if current is original or current is None:
                continue
            original.copy_(current.detach().to(device=original.device, dtype=original.dtype))
            table[name] = original


def _load_transformers_model(model, folder: str, files: list[str]) -> list[str]:
    """``from_pretrained``'s loading of ``files`` into the existing ``model``; returns the loaded names."""
    from safetensors import safe_open
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import convert_and_load_state_dict_in_model
    from transformers.modeling_utils import LoadStateDictConfig

    expected = set(model.state_dict())
    slots = _tensor_slots(model)
    handles, state = [], {}
    try:
        for f in files:
            if f.endswith(".safetensors"):  # lazily, as from_pretrained does
                h = safe_open(f, framework="pt", device="cpu")
                handles.append(h)
                state.update({k: h.get_slice(k) for k in h.keys()})
            else:
                state.update(torch.load(f, map_location="cpu", weights_only=True))
        config = LoadStateDictConfig(pretrained_model_name_or_path=folder,
                                     weight_mapping=get_model_conversion_mapping(model), dtype=None)
        try:
            info, _ = convert_and_load_state_dict_in_model(model=model, state_dict=state, load_config=config)
        finally:
            _restore_identity(slots)
    finally:
        for h in handles:
            h.__exit__(None, None, None)
    model._adjust_missing_and_unexpected_keys(info)
    missing = set(info.missing_keys)
    # a tied parameter (lm_head.weight -> embed_tokens.weight) is saved once; it is loaded when its source is
    tied = dict(getattr(model, "all_tied_weights_keys", None) or {})
    missing -= {k for k, source in tied.items() if k in missing and source not in missing}
    raise_if_mismatched(folder, missing, info.unexpected_keys,
                         [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in info.mismatched_keys],
                         list(info.error_msgs or []) + [f"{k}: {v}" for k, v in (info.conversion_errors or {}).items()])
    return sorted(expected - missing)


def _load_plain_module(model: torch.nn.Module, folder: str, files: list[str]) -> list[str]:
    """A plain ``nn.Module`` (the DETR heads) saved by the Trainer: its own state-dict keys, strictly."""
    state = read_state_dict(files)
    own = model.state_dict()
    # shared tensors are saved once by safetensors' save_model; any alias of a saved tensor is loaded with it
    aliases = {}
    for k, v in own.items():
        aliases.setdefault((v.data_ptr(), v.shape, v.stride()), []).append(k)
    missing = set(own) - set(state)
    for group in aliases.values():
        if any(k in state for k in group):
            missing -= set(group)
    unexpected = set(state) - set(own)
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in set(state) & set(own) if state[k].shape != own[k].shape]
    raise_if_mismatched(folder, missing, unexpected, mismatched)
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(device=own[k].device, dtype=own[k].dtype))
    return sorted(state)


def _load_peft_adapter(model, folder: str) -> list[str]:
    """PEFT adapters through ``load_adapter`` (PEFT's own key conversion), with every key checked."""
    active = model.active_adapters[0] if hasattr(model, "active_adapters") else "default"
    if len(getattr(model, "active_adapters", [active])) > 1:
        raise CheckpointLoadError(f"{folder}: resuming with several active adapters is not supported")
    result = model.load_adapter(folder, active, is_trainable=True)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in (getattr(result, "missing_keys", []) or [])
               if f".{active}." in k or k.endswith(f".{active}")]  # the base model's keys are not in an adapter
    raise_if_mismatched(folder, missing, unexpected)
    return sorted(k for k, _ in model.named_parameters() if f".{active}." in k)


def load_checkpoint_weights(model: torch.nn.Module, folder: str | os.PathLike) -> list[str]:
    """Load the weights of a Trainer checkpoint (or any ``save_pretrained`` folder) into ``model`` exactly.

    Transformers models go through their weight-conversion mapping (any key layout the checkpoint was
    written with), PEFT models through PEFT's ``load_adapter``, plain modules by their state-dict keys.
    Raises :class:`CheckpointLoadError` naming ``folder`` and the first offending keys when a tensor is
    missing, unexpected or of another shape. Returns the names of the loaded tensors."""
    folder = str(folder)
    from transformers import PreTrainedModel

    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        PeftModel = ()
    if isinstance(model, PeftModel):
        from transformers.utils import ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME

        if not any(os.path.isfile(os.path.join(folder, n)) for n in (ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME)):
            raise CheckpointLoadError(f"{folder}: no adapter weights ({ADAPTER_SAFE_WEIGHTS_NAME}) for the PEFT model")
        return _load_peft_adapter(model, folder)
    files = _weight_files(folder)
    if not files:
        raise CheckpointLoadError(f"{folder}: no model weights (model.safetensors, a sharded index or "
                                  "pytorch_model.bin)")
    if isinstance(model, PreTrainedModel):
        return _load_transformers_model(model, folder, files)
    return _load_plain_module(model, folder, files)
