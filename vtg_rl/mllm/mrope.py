"""Qwen2.5-VL's original mRoPE rule for the text that follows a video, for agreement with vLLM.

Qwen2.5-VL gives each video token a (time, height, width) position. In the original implementation (the
one the released weights were trained with, and the one vLLM 0.32 computes), the text after a vision block
starts at ``max(all previous positions) + 1``. transformers 5.19-5.23 start it at ``block start +
max(height, width)`` instead, which is the same for an image but not for a video whose time positions run
past its spatial grid (the usual case: 30 s at 2 fps is 30 time steps against a 16 x 16 grid). Measured
with vLLM 0.32's own processor and position code against transformers 5.23 on our prompts: identical
video positions, and text positions after the video that differ by the gap (e.g. 38 vs 61); on the
0.56-mIoU tiny SFT model the two rules change the completion log-probs by 0.12 nats/token on average
(10 at most) and the greedy token in 4.6% of the steps.

:func:`use_original_text_positions` makes a model follow the original rule by post-correcting its own
``get_rope_index`` (every forward, ``generate`` and the shared-prefix path call it), so the trainer's
log-probs are those of the policy vLLM samples from. ``VideoGRPOTrainer`` does it whenever it generates
with vLLM (``mrope_text_positions``); the HF-only paths keep transformers' rule, which the project's own
checkpoints were trained with.
"""

from __future__ import annotations

import types

import torch

ORIGINAL = "original"


def shift_text_after_vision(positions: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
    """``(3, n)`` positions of one unpadded sequence with every text run that follows a vision run restarted
    at ``max(previous positions) + 1`` (the tokens after it move with it). ``token_types``: 0 text, >0 vision."""
    positions = positions.clone()
    is_vision = token_types != 0
    starts = torch.nonzero(~is_vision[1:] & is_vision[:-1]).flatten() + 1  # first text token after vision
    for i in starts.tolist():
        shift = int(positions[:, :i].max()) + 1 - int(positions[0, i])
        if shift:
            positions[:, i:] += shift
    return positions


def _original_get_rope_index(self, input_ids, mm_token_type_ids, *args, attention_mask=None, **kwargs):
    positions, _ = self._vtg_model_get_rope_index(input_ids, mm_token_type_ids, *args,
                                                 attention_mask=attention_mask, **kwargs)
    deltas = []
    for b in range(input_ids.size(0)):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(input_ids[b], dtype=torch.bool)
        fixed = shift_text_after_vision(positions[:, b, keep], mm_token_type_ids[b, keep])
        positions[:, b, keep] = fixed
        deltas.append(int(fixed.max()) + 1 - int(keep.sum()) if fixed.numel() else 0)
    return positions, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def use_original_text_positions(model) -> bool:
    """Make ``model`` (a Qwen2.5-VL, possibly wrapped by PEFT / DDP / DeepSpeed) place text after a vision
    block at ``max + 1``, as the original Qwen2.5-VL and vLLM do. Idempotent; False if ``model`` has no
    Qwen2.5-VL core (nothing is changed then)."""
    from vtg_rl.mllm.shared_prefix import vl_core

    core = vl_core(model)
    if core is None:
        return False
    if getattr(core, "_vtg_mrope", None) != ORIGINAL:
        core._vtg_model_get_rope_index = core.get_rope_index
        core.get_rope_index = types.MethodType(_original_get_rope_index, core)
        core._vtg_mrope = ORIGINAL
    return True


def rotary_positions(model, batch: dict) -> torch.Tensor:
    """The ``(3, B, L)`` position ids that reach ``model``'s language-model rotary embedding in a real forward
    of ``batch`` (whatever rule computed them): what the model actually attends with."""
    from vtg_rl.mllm.shared_prefix import vl_core

    seen = {}

    def grab(module, args, kwargs):
        seen["pos"] = (kwargs["position_ids"] if "position_ids" in kwargs else args[1]).detach().clone()

    hook = vl_core(model).language_model.rotary_emb.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        hook.remove()
    return seen["pos"].expand(3, -1, -1)
