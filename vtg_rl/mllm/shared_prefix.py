"""Shared-prefix GRPO: each group's prompt (video + text) runs once, its G completions against it.

A GRPO batch holds every prompt G times. Run naively, the vision tower and the language model process
the prompt (thousands of video tokens) G times in generation and again G times in each log-prob forward
(policy, old, reference): G x (P + C) tokens per group instead of P + G x C.

Log-prob forwards (:func:`shared_prefix_logps`) *fold* each group into one sequence::

    [prompt without its last token] [last prompt token, c1_1 .. c1_{C-1}] ... [last prompt token, cG_1 ..]

with a 4-D attention mask: the prompt is causal over itself; each completion slot attends to the prompt
and causally to itself, never to another slot. The last prompt token opens every slot, so the slot's
hidden states predict exactly the tokens the naive forward scores (``shift_labels``): c_1 .. c_C. The
slots get the naive rotary positions: the model's 3-D positions of the prompt (``get_rope_index`` of the
Qwen2-VL, Qwen2.5-VL and Qwen3-VL families, through the family adapter), and text positions continuing
after the prompt's last position for every slot. Families whose layers carry state along the sequence
(Qwen3.5's linear attention) or without 3-D positions are refused at start-up (:func:`check_supported`).
The video and the prompt are computed once per group; autograd sums the G slots' gradients into them
(Prefix Grouper, 2025, splits the same attention into prefix self-attention plus suffix attention).
One ordinary forward, so gradient checkpointing, PEFT, DDP and ZeRO work as in the naive path.

Generation (:func:`shared_generate`) prefills each unique prompt once (without its last token), expands
the key/value cache to the rows (index over the group, in TRL's row order) and lets ``generate`` continue
from it with the rows' 3-D positions: the sampling calls are those of the naive path, row for row.

With a frozen vision tower, :class:`VisionFeatureCache` keeps each video's features (LRU, in memory)
across steps and epochs, keyed by the video's key (file, sampling, curriculum mask; see
:func:`vtg_rl.mllm.grpo_video.video_key`), the tower and the autocast state.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch

from vtg_rl.mllm.families import FAMILIES, UnsupportedFamilyFeature, adapter_for
from vtg_rl.mllm.families.base import unwrap_to
from vtg_rl.mllm.grpo_video import VideoRows

SUPPORTED_MODEL_TYPES = tuple(t for cls in FAMILIES.values() if cls.capabilities.shared_prefix for t in cls.model_types)
SUPPORTED_ATTENTION = ("sdpa", "eager")


class SharedPrefixUnsupported(UnsupportedFamilyFeature):
    """The model cannot run the shared-prefix forwards; ``shared_prefix=False`` runs the naive path."""


# ---------------------------------------------------------------------------------------------- the model
def vl_core(model):
    """The Qwen-style vision-language core inside ``model`` (``get_rope_index`` + ``visual`` +
    ``language_model``; through DDP / DeepSpeed wrappers and PEFT), or None."""
    return unwrap_to(model, lambda m: all(hasattr(m, a) for a in ("get_rope_index", "visual", "language_model")))


def check_supported(model, adapter=None) -> None:
    """Raise :class:`SharedPrefixUnsupported` with what to do when ``model`` cannot share prefixes."""
    name = type(model).__name__
    if adapter is not None and not adapter.capabilities.shared_prefix:
        raise SharedPrefixUnsupported(adapter.unsupported_reason("shared_prefix"))
    core = vl_core(model)
    if core is None:
        raise SharedPrefixUnsupported(f"shared_prefix=True needs a model with 3-D rotary positions (get_rope_index: "
                                      f"{', '.join(SUPPORTED_MODEL_TYPES)}); got {name}. Set shared_prefix=False "
                                      "to run the naive forwards")
    model_type = getattr(core.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise SharedPrefixUnsupported(f"shared_prefix=True supports {SUPPORTED_MODEL_TYPES}, got model_type "
                                      f"{model_type!r} ({name}); set shared_prefix=False")
    text = core.language_model.config
    attn = text._attn_implementation
    if attn not in SUPPORTED_ATTENTION:
        raise SharedPrefixUnsupported(f"shared_prefix=True folds each group into one sequence with a 4-D attention "
                                      f"mask, which needs attn_implementation in {SUPPORTED_ATTENTION}; the model "
                                      f"uses {attn!r}. Load it with attn_implementation='sdpa' or set "
                                      "shared_prefix=False")
    if "sliding_attention" in (getattr(text, "layer_types", None) or []):
        raise SharedPrefixUnsupported("shared_prefix=True does not support sliding-window attention layers; "
                                      "set shared_prefix=False")


def vision_is_frozen(visual) -> bool:
    return all(not p.requires_grad for p in visual.parameters())


# ---------------------------------------------------------------------------------------------- groups
@dataclass
class PrefixGroups:
    """Rows sharing a prompt: row r is slot ``slot[r]`` of group ``group[r]``; ``rep[u]`` is group u's first row."""

    group: torch.Tensor  # (B,) long
    slot: torch.Tensor  # (B,) long
    rep: torch.Tensor  # (U,) long
    n_slots: int

    @property
    def n_groups(self) -> int:
        return int(self.rep.numel())


def group_rows(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, video: VideoRows) -> PrefixGroups:
    """Group the rows whose prompt tokens and video are equal (in any order: TRL shuffles the rows).

    Videos are compared by their keys when the rows carry them, otherwise by the pixels themselves."""
    ids = [row[m.bool()].tolist() for row, m in zip(prompt_ids.cpu(), prompt_mask.cpu())]
    candidates: dict[tuple, list[int]] = {}  # signature -> representative rows of groups with it
    group, slot, rep, counts = [], [], [], []
    for r in range(len(ids)):
        key = video.keys[r] if video.keys is not None else None
        signature = (tuple(ids[r]), video.signature(r))
        found = None
        for u in candidates.get(signature, []):
            if key is not None or video.same_pixels(rep[u], r):
                found = u
                break
        if found is None:
            found = len(rep)
            rep.append(r)
            counts.append(0)
            candidates.setdefault(signature, []).append(found)
        group.append(found)
        slot.append(counts[found])
        counts[found] += 1
    device = prompt_ids.device
    return PrefixGroups(torch.tensor(group, device=device), torch.tensor(slot, device=device),
                        torch.tensor(rep, device=device), max(counts))


# ---------------------------------------------------------------------------------------------- vision cache
class VisionFeatureCache:
    """LRU cache of a frozen vision tower's per-video features (``capacity`` videos, kept where computed)."""

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f"vision cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._store: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._aliases: dict[int, int] = {}  # tower id -> id of a tower with the same (frozen) weights
        self.hits = 0
        self.misses = 0

    def share(self, tower, same_as) -> bool:
        """Let ``tower`` use ``same_as``'s entries (e.g. the reference model's copy of the frozen policy tower)
        when their weights are equal now; both must stay frozen. Returns whether they were shared."""
        pairs = list(zip(tower.parameters(), same_as.parameters()))
        if len(pairs) != len(list(tower.parameters())) or len(pairs) != len(list(same_as.parameters())):
            return False
        # ZeRO-3 leaves empty placeholders: nothing to compare, so nothing is shared
        if not pairs or any(a.numel() == 0 or a.shape != b.shape or not torch.equal(a, b.to(a.device))
                            for a, b in pairs):
            return False
        self._aliases[id(tower)] = self._aliases.get(id(same_as), id(same_as))
        return True

    def __len__(self) -> int:
        return len(self._store)

    def features(self, core, keys: list[str], pixels: list[torch.Tensor], grid: torch.Tensor) -> list[torch.Tensor]:
        """Per-video features of the frozen tower, computing (in one tower call) only the videos not cached."""
        device = pixels[0].device
        auto = torch.is_autocast_enabled(device.type)
        tower = self._aliases.get(id(core.visual), id(core.visual))
        state = (tower, auto, str(torch.get_autocast_dtype(device.type)) if auto else None, str(device))
        full = [(k, *state) for k in keys]
        missing = [i for i, k in enumerate(full) if k not in self._store]
        self.hits += len(full) - len(missing)
        self.misses += len(missing)
        computed = {}
        if missing:
            with torch.no_grad():
                out = core.get_video_features(torch.cat([pixels[i] for i in missing]), grid[missing])
            for i, feats in zip(missing, out.pooler_output):
                computed[full[i]] = feats.detach()
        result = []
        for k in full:
            value = computed.get(k)
            if value is None:
                value = self._store[k]
                self._store.move_to_end(k)
            result.append(value)
        for k, value in computed.items():
            if self.capacity:
                self._store[k] = value
                self._store.move_to_end(k)
        while len(self._store) > self.capacity:
            self._store.popitem(last=False)
        return result


def video_inputs(core, video: VideoRows, rows: torch.Tensor, cache: Optional[VisionFeatureCache]) -> dict:
    """The model's video keyword arguments for ``rows`` of ``video``: the pixels, or with a frozen tower and a
    cache, the cached features (``mm_encoder_outputs``)."""
    idx = rows.tolist()
    chosen = video.take(idx)
    kwargs = chosen.model_kwargs()
    if cache is not None and video.keys is not None and vision_is_frozen(core.visual):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        feats = cache.features(core, chosen.keys, chosen.pixel_values_videos, kwargs["video_grid_thw"])
        kwargs.pop("pixel_values_videos")
        return {"mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=tuple(feats))}, **kwargs}
    return kwargs


def prompt_positions(core, processor, ids: torch.Tensor, mask: torch.Tensor, video: VideoRows,
                     rows: torch.Tensor, adapter=None) -> torch.Tensor:
    """The 3-D positions ``(3, U, P)`` of left-padded prompts ``ids`` whose videos are ``rows``."""
    adapter = adapter or adapter_for(processor)
    return adapter.prompt_positions(core, ids, mask, video.take(rows.tolist()).model_kwargs())


# ---------------------------------------------------------------------------------------------- log-probs
@dataclass
class FoldedBatch:
    input_ids: torch.Tensor  # (U, L)
    attention_mask: torch.Tensor  # (U, 1, L, L) bool (sdpa) or additive float (eager)
    position_ids: torch.Tensor  # (3, U, L)
    shift_labels: torch.Tensor  # (U, L): the token each position predicts, -100 where nothing is scored
    columns: torch.Tensor  # (B, C): row r's scored columns in its group's sequence


def fold_batch(input_ids, attention_mask, logits_to_keep: int, groups: PrefixGroups, positions: torch.Tensor,
               pad_token_id: int, mask_dtype=torch.bool) -> FoldedBatch:
    """Fold TRL's ``[left-padded prompt | right-padded completion]`` rows into one sequence per group
    (module docstring). ``positions``: the prompts' 3-D positions ``(3, U, P)`` (:func:`prompt_positions`)."""
    n_comp = logits_to_keep
    width = input_ids.size(1) - n_comp  # prompt columns
    prompt, prompt_mask = input_ids[:, :width], attention_mask[:, :width]
    comp, comp_mask = input_ids[:, width:], attention_mask[:, width:].bool()
    if not bool(prompt_mask[:, -1].all()):
        raise ValueError("shared prefix: prompts must be left-padded (every prompt ends in the last prompt column)")
    device = input_ids.device
    n_groups, pre = groups.n_groups, width - 1
    length = pre + groups.n_slots * n_comp
    rep = groups.rep

    ids = torch.full((n_groups, length), pad_token_id, dtype=input_ids.dtype, device=device)
    ids[:, :pre] = prompt[rep, :pre]
    valid = torch.zeros(n_groups, length, dtype=torch.bool, device=device)
    valid[:, :pre] = prompt_mask[rep, :pre].bool()
    labels = torch.full((n_groups, length), -100, dtype=input_ids.dtype, device=device)
    pos = torch.empty(3, n_groups, length, dtype=positions.dtype, device=device)
    pos[:, :, :pre] = positions[:, :, :pre]
    # every slot continues the text positions after the prompt's last token, like the naive sequence
    steps = torch.arange(n_comp, device=device, dtype=positions.dtype).repeat(groups.n_slots)
    pos[:, :, pre:] = positions[:, :, pre:pre + 1] + steps

    columns = pre + groups.slot[:, None] * n_comp + torch.arange(n_comp, device=device)  # (B, C)
    rows = groups.group[:, None].expand_as(columns)
    slot_tokens = torch.cat([prompt[:, -1:], comp[:, :-1]], dim=1)
    slot_valid = torch.cat([torch.ones_like(comp_mask[:, :1]), comp_mask[:, :-1]], dim=1)
    ids[rows, columns] = slot_tokens
    valid[rows, columns] = slot_valid
    labels[rows, columns] = comp.masked_fill(~comp_mask, -100)

    block = torch.full((length,), -1, dtype=torch.long, device=device)
    block[pre:] = torch.arange(groups.n_slots, device=device).repeat_interleave(n_comp)
    idx = torch.arange(length, device=device)
    causal = idx[None, :] <= idx[:, None]
    same_or_prefix = (block[None, :] == block[:, None]) | (block[None, :] == -1)
    allowed = (causal & same_or_prefix)[None] & valid[:, None, :]
    allowed |= torch.eye(length, dtype=torch.bool, device=device)[None]  # padding queries: no empty softmax rows
    mask = allowed[:, None]
    if mask_dtype != torch.bool:
        mask = torch.zeros(mask.shape, dtype=mask_dtype, device=device).masked_fill(~mask, torch.finfo(mask_dtype).min)
    return FoldedBatch(ids, mask, pos, labels, columns)


def shared_prefix_logps(model, processor, input_ids, attention_mask, video: VideoRows, logits_to_keep: int,
                        compute_entropy: bool = False, vision_cache: Optional[VisionFeatureCache] = None,
                        pad_token_id: int = 0, adapter=None):
    """Per-token log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row, each group's
    prompt computed once. Same contract as ``VideoGRPOTrainer.video_logps_forward``: ``(B, C)`` tensors,
    0 where the completion is padding. ``model`` must carry TRL's fused LM head (``fused_lm_head=True``)."""
    core = vl_core(model)
    width = input_ids.size(1) - logits_to_keep
    groups = group_rows(input_ids[:, :width], attention_mask[:, :width], video)
    rep_ids, rep_mask = input_ids[groups.rep, :width], attention_mask[groups.rep, :width]
    positions = prompt_positions(core, processor, rep_ids, rep_mask, video, groups.rep, adapter=adapter)
    attn = core.language_model.config._attn_implementation
    dtype = torch.bool if attn == "sdpa" else next(core.language_model.parameters()).dtype
    if not dtype.is_floating_point and dtype != torch.bool:
        dtype = torch.float32
    folded = fold_batch(input_ids, attention_mask, logits_to_keep, groups, positions, pad_token_id, mask_dtype=dtype)
    outputs = model(input_ids=folded.input_ids, attention_mask=folded.attention_mask,
                    position_ids=folded.position_ids, shift_labels=folded.shift_labels, fused_lm_head=True,
                    **video_inputs(core, video, groups.rep, vision_cache))
    rows = groups.group[:, None].expand_as(folded.columns)
    logps = outputs.log_probs[rows, folded.columns]
    entropies = outputs.entropy[rows, folded.columns] if compute_entropy else None
    return logps, entropies


# ---------------------------------------------------------------------------------------------- generation
def shared_generate(model, processor, prompt_ids: list[list[int]], video: VideoRows, generation_config,
                    pad_token_id: int, vision_cache: Optional[VisionFeatureCache] = None,
                    adapter=None) -> torch.Tensor:
    """Sample one continuation per row, each unique prompt prefilled once. Returns the new tokens ``(B, T)``
    (right-padded with ``pad_token_id`` after EOS, as ``generate`` leaves them), in the rows' order."""
    core = vl_core(model)
    device = next(iter(video.fields[0].values())).device
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for r, p in enumerate(prompt_ids):
        ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    groups = group_rows(ids, mask, video)
    rep = groups.rep
    positions = prompt_positions(core, processor, ids[rep], mask[rep], video, rep, adapter=adapter)
    # prefill all but the last prompt token, once per group; generate() feeds the last token per row
    prefill = model(input_ids=ids[rep, :-1], attention_mask=mask[rep, :-1], position_ids=positions[..., :-1],
                    use_cache=True, logits_to_keep=1, **video_inputs(core, video, rep, vision_cache))
    cache = prefill.past_key_values
    cache.reorder_cache(groups.group)
    out = model.generate(input_ids=ids, attention_mask=mask, position_ids=positions[:, groups.group],
                         past_key_values=cache, generation_config=generation_config)
    return out[:, width:]


def completion_lists(completions: torch.Tensor, eos_token_ids) -> list[list[int]]:
    """Tokens up to and including the first EOS of each row (TRL's rule)."""
    is_eos = torch.isin(completions, torch.tensor(list(eos_token_ids), device=completions.device))
    n = completions.size(1)
    none = torch.full_like(is_eos[:, 0], n, dtype=torch.long)
    first = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), none)
    keep = torch.arange(n, device=completions.device)[None] <= first[:, None]
    return [row[m].tolist() for row, m in zip(completions.cpu(), keep.cpu())]


def generate_single_turn(trainer, prompt_ids: list[list[int]]) -> tuple[list[list[int]], None]:
    """``GRPOTrainer._generate_single_turn`` (regular transformers path) with shared prefills."""
    from trl.extras.profiling import profiling_context
    from trl.models import unwrap_model_for_generation

    video = trainer._active_video
    if video is None or len(video) != len(prompt_ids):
        raise RuntimeError("shared-prefix generation needs the rows' videos (VideoGRPOTrainer._video_context)")
    args = trainer.args
    with (profiling_context(trainer, "transformers.generate"),
          unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                      gather_deepspeed3_params=args.ds3_gather_for_generation,
                                      generation_kwargs=trainer.generation_kwargs,
                                      gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs) as unwrapped,
          torch.no_grad(),
          trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False)):
        new_tokens = shared_generate(unwrapped, trainer.processing_class, prompt_ids, video, trainer.generation_config,
                                     trainer._tokenizer.pad_token_id, vision_cache=trainer.vision_cache,
                                     adapter=trainer.adapter)
    return completion_lists(new_tokens, trainer.eos_token_ids), None


@contextlib.contextmanager
def count_vision_videos(model):
    """Count the videos the vision tower encodes inside the block: ``with count_vision_videos(m) as n: ...;
    n[0]`` (a forward hook on the tower; used by the tests and the benchmark)."""
    counter = [0]

    def hook(module, args, kwargs, output):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        counter[0] += int(grid.size(0))

    handle = vl_core(model).visual.register_forward_hook(hook, with_kwargs=True)
    try:
        yield counter
    finally:
        handle.remove()
