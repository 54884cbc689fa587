"""Exact resume for the transformers ``Trainer`` family (TRL's SFT and GRPO trainers, the DETR heads).

:class:`ExactResumeMixin` loads a checkpoint's weights with
:func:`vtg_rl.training.checkpoints.load_checkpoint_weights` (any key layout, mismatches are errors) and makes
the rest of the resume exact where the stock trainers are not:

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

import logging
import os
from typing import Any

import torch

from vtg_rl.training.checkpoints import (RESUME_STATE, CheckpointLoadError, last_complete_checkpoint,
                                         load_checkpoint_weights, raise_if_mismatched, require_complete)

logger = logging.getLogger(__name__)

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
        require_complete(resume_from_checkpoint)
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
        raise_if_mismatched(getattr(self, "_checkpoint_being_loaded", None) or "<checkpoint>", missing,
                             list(load_result.unexpected_keys))

    # ------------------------------------------------------------------ which checkpoint
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint is True:
            found = last_complete_checkpoint(self.args.output_dir)
            if found is None:
                raise ValueError(f"no complete checkpoint in {self.args.output_dir} to resume from")
            resume_from_checkpoint = found
        elif isinstance(resume_from_checkpoint, (str, os.PathLike)) and resume_from_checkpoint:
            require_complete(str(resume_from_checkpoint))
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
