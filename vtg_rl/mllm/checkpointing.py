"""Exact resume for the transformers ``Trainer`` family (TRL's SFT and GRPO trainers, the DETR heads).

The stock ``Trainer._load_from_checkpoint`` loads a checkpoint's raw state dict with
``model.load_state_dict(state_dict, strict=False)`` and only *logs* the keys that did not match. Under
transformers 5 that is a silent restart from the initial weights for every model whose class layout
differs from the layout ``save_pretrained`` writes: a Qwen2.5-VL checkpoint holds ``visual.*`` and
``model.layers.*`` (the original layout, restored on save by ``revert_weight_conversion``), the model
expects ``model.visual.*`` and ``model.language_model.*``, so *no* tensor is loaded while the step
count, the optimizer and the LR schedule are restored.

:class:`ExactResumeMixin` replaces that load with the one ``from_pretrained`` performs: the checkpoint's
tensors go through the model's own weight-conversion mapping
(``transformers.conversion_mapping.get_model_conversion_mapping`` and
``transformers.core_model_loading.convert_and_load_state_dict_in_model``), so a checkpoint loads whatever
key layout it was written with (original, or the class's own). PEFT adapters load through PEFT's
``load_adapter`` (which applies the same conversions to adapter keys). Any missing, unexpected or
mis-shaped key is an error naming the checkpoint, never a warning. The values are copied into the
model's existing parameters, so the optimizer's references, tied weights, ``requires_grad`` flags (a
frozen vision tower) and any module that shares a tensor keep pointing at the loaded values.

Besides the weights, the mixin makes the rest of the resume exact where the stock trainers are not:

* a checkpoint left incomplete by a killed save (no ``trainer_state.json``, written last) is refused
  with a clear error, and ``resume_from_checkpoint=True`` picks the last *complete* checkpoint;
* TRL's ``RepeatSampler`` (GRPO) draws one permutation per epoch from a generator seeded once, so a
  run resumed in epoch ``k`` replayed epoch 0's order: the sampler is made to derive epoch ``k``'s
  order from the seed and ``k`` (the same order the uninterrupted run draws);
* GRPO's micro-step counter and, when the checkpoint falls inside a generation cycle
  (``steps_per_generation * num_iterations`` micro-steps), the buffered rollouts are saved with the
  checkpoint (``resume_state.pt``) and restored, so the resumed run reuses the same rollouts instead of
  generating new ones at a different point of the cycle;
* TRL SFT's running token count (the logged ``num_tokens``) is saved and restored with them.

The optimizer, scheduler, scaler, RNG states and data position are restored by the ``Trainer`` itself;
the GRPO reference model is built from the initial policy's path by TRL (never from the checkpoint),
and the curriculum is driven by ``global_step``, which the trainer state restores.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

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


def _require_complete(folder: str) -> None:
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


def _raise_if_mismatched(folder: str, missing=(), unexpected=(), mismatched=(), errors=()) -> None:
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
    _raise_if_mismatched(folder, missing, info.unexpected_keys,
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
    _raise_if_mismatched(folder, missing, unexpected, mismatched)
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
    _raise_if_mismatched(folder, missing, unexpected)
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


# --------------------------------------------------------------------------- samplers
def make_epoch_seeded(sampler):
    """Give TRL's ``RepeatSampler`` a ``set_epoch`` that derives epoch ``k``'s permutation from its seed
    (the ``k+1``-th draw of the generator, as the uninterrupted run makes it), so a run resumed in epoch
    ``k`` does not replay epoch 0's order. Other samplers are returned unchanged."""
    if getattr(sampler, "shuffle", False) is not True or not hasattr(sampler, "generator") \
            or hasattr(sampler, "set_epoch") or getattr(sampler, "seed", None) is None:
        return sampler
    num_samples = sampler.num_samples

    def set_epoch(epoch: int) -> None:
        g = torch.Generator()
        g.manual_seed(sampler.seed)
        for _ in range(int(epoch)):
            torch.randperm(num_samples, generator=g)
        sampler.generator = g

    sampler.set_epoch = set_epoch
    return sampler


# --------------------------------------------------------------------------- the mixin
class ExactResumeMixin:
    """Mix into a ``transformers.Trainer`` subclass (before it in the bases) for an exact resume: weights
    through the model's conversion mapping with missing / unexpected keys as errors, complete checkpoints
    only, epoch-seeded GRPO sampling, GRPO's micro-step counter and buffered rollouts (module docstring)."""

    # ------------------------------------------------------------------ weights
    def _plain_load_path(self) -> bool:
        from transformers.utils import is_sagemaker_mp_enabled

        return not (is_sagemaker_mp_enabled() or getattr(self, "is_deepspeed_enabled", False)
                    or getattr(self, "is_fsdp_enabled", False))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        _require_complete(resume_from_checkpoint)
        if not self._plain_load_path():  # DeepSpeed / FSDP / SageMaker load their own sharded formats
            self._checkpoint_being_loaded = resume_from_checkpoint
            try:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            finally:
                self._checkpoint_being_loaded = None
        target = self.model if model is None else self.accelerator.unwrap_model(model)
        loaded = load_checkpoint_weights(target, resume_from_checkpoint)
        logger.info("loaded %d tensors from %s", len(loaded), resume_from_checkpoint)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if best is None or not self._plain_load_path():
            return super()._load_best_model()
        loaded = load_checkpoint_weights(self.model, best)
        logger.info("loaded the best model (%d tensors) from %s (score %s)", len(loaded), best, self.state.best_metric)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # reached only through the stock loaders (DeepSpeed / FSDP paths): a mismatch is an error there too
        missing = list(load_result.missing_keys)
        ignore = set(getattr(self.model, "_keys_to_ignore_on_save", None) or [])
        if missing and ignore and set(missing) == ignore:
            self.model.tie_weights()
            missing = []
        _raise_if_mismatched(getattr(self, "_checkpoint_being_loaded", None) or "<checkpoint>", missing,
                             list(load_result.unexpected_keys))

    # ------------------------------------------------------------------ which checkpoint
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint is True:
            found = last_complete_checkpoint(self.args.output_dir)
            if found is None:
                raise ValueError(f"no complete checkpoint in {self.args.output_dir} to resume from")
            resume_from_checkpoint = found
        elif isinstance(resume_from_checkpoint, (str, os.PathLike)) and resume_from_checkpoint:
            _require_complete(str(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # ------------------------------------------------------------------ data order
    def _get_train_sampler(self, *args, **kwargs):
        return make_epoch_seeded(super()._get_train_sampler(*args, **kwargs))

    # ------------------------------------------------------------------ trainer-side counters
    def _resume_state_name(self) -> str:
        world = getattr(self.args, "world_size", 1)
        return RESUME_STATE if world <= 1 else f"resume_state_{self.args.process_index}.pt"

    def _is_grpo(self) -> bool:
        return hasattr(self, "_buffered_inputs") and hasattr(self, "_step") and hasattr(self, "num_iterations")

    def _generate_every(self) -> int:
        return self.args.steps_per_generation * self.num_iterations

    def _resume_state(self) -> dict:
        """What the Trainer's own checkpoint leaves out: TRL SFT's token counter (the logged ``num_tokens``);
        GRPO's micro-step counter and, inside a generation cycle, the buffered rollouts."""
        state = {}
        if hasattr(self, "_total_train_tokens"):
            state["total_train_tokens"] = self._total_train_tokens
        if self._is_grpo():
            mid_cycle = self._step % self._generate_every() != 0
            state["step"] = int(self._step)
            state["buffered_inputs"] = _to_cpu(self._buffered_inputs) if mid_cycle else None
        return state

    def _save_checkpoint(self, model, trial) -> None:
        state = self._resume_state()
        if state:
            # written before the Trainer's files, so trainer_state.json stays the last one (completeness marker)
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            out = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(out, exist_ok=True)
            torch.save(state, os.path.join(out, self._resume_state_name()))
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, self._resume_state_name())
        state = torch.load(path, map_location="cpu", weights_only=True) if os.path.isfile(path) else {}
        if "total_train_tokens" in state and hasattr(self, "_total_train_tokens"):
            self._total_train_tokens = state["total_train_tokens"]
        if not self._is_grpo():
            return
        if "step" not in state:
            step = self.state.global_step * self.args.gradient_accumulation_steps
            if step % self._generate_every() != 0:
                raise CheckpointLoadError(
                    f"{checkpoint}: saved inside a generation cycle (micro-step {step}, rollouts every "
                    f"{self._generate_every()}) without {RESUME_STATE}: its buffered rollouts are lost")
            self._step, self._buffered_inputs = step, None
            return
        self._step = int(state["step"])
        buffered = state.get("buffered_inputs")
        self._buffered_inputs = None if buffered is None else _to_device(buffered, self.accelerator.device)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _to_device(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj
