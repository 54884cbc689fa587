"""GRPO on video (VTG-R1 stage 2, VideoTG-R1's curriculum) on top of TRL's ``GRPOTrainer``.

Stock TRL 1.16 runs on video prompts without error but is video-blind: it tokenises the
chat template without the frames, generates from text alone, and its log-prob forwards get only
``input_ids`` / ``attention_mask``, so the vision tower never receives a gradient.
:class:`VideoGRPOTrainer` keeps all of TRL's GRPO (every ``loss_type``, KL, clipping, importance
sampling, logging, checkpointing) and changes only where the video must go:

* rollouts: each row's video is decoded from its ``video_path`` (PyAV + optional frame cache), masked by
  the curriculum when enabled, and processed with the prompt (:mod:`vtg_rl.mllm.grpo_video`); the
  prompt ids TRL generates from are the processor's (with the real video tokens), and the model family's
  video tensors (Qwen2.5-VL: ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``) and token
  types go into ``generate``; the family's vision tokens are suppressed in generation. Everything
  family-specific comes from the model's adapter (:mod:`vtg_rl.mllm.families`), and a feature a family
  cannot run exactly (shared prefix, vLLM, the vision-feature cache) is refused at start-up;
* every log-prob forward (policy with gradients, old, reference) goes through
  :meth:`VideoGRPOTrainer.video_logps_forward` with the rows' video tensors, which travel per row with
  TRL's shuffled and split batches;
* shared prefix (``shared_prefix``, on by default): generation prefills each prompt once and every
  log-prob forward computes each group's video and prompt once (:mod:`vtg_rl.mllm.shared_prefix`); with
  ``freeze_vision_tower`` the video features are cached across steps;
* difficulty control: groups whose rewards are all ~0 or all ~1 are dropped from the loss
  (``drop_uniform_groups``); dataset-level filtering lives in :mod:`vtg_rl.mllm.difficulty_filter`.
* vLLM rollouts (``use_vllm``, colocate or server mode, ``pip install -e '.[vllm]'``): each prompt's
  frames and metadata go to vLLM as a video (:mod:`vtg_rl.mllm.vllm_video`); in server mode the frames
  travel as JPEG and the trainer's forwards use the same JPEG-decoded frames, and the trainer places the
  text after a video where vLLM does (:mod:`vtg_rl.mllm.mrope`). The first rollout batch is
  checked: TRL's mean |log p(vLLM) - log p(trainer)| above ``vllm_max_logp_difference`` stops the run,
  since it means vLLM saw another video (or other timestamps) than the trainer.

Logged per step besides TRL's metrics: ``curriculum/mask_fraction`` (mean over rows),
``curriculum/masked_rows``, ``difficulty/dropped_groups_low|high``, and the answer statistics of
:func:`vtg_rl.rewards.answer_stats` under ``answers/`` (``iou_mean``, ``format_rate``, and the counts of
malformed, NaN, start-after-end, zero-length and out-of-range answers summed over processes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import logging
from typing import Optional

import numpy as np
import torch
from trl import GRPOTrainer

from vtg_rl.training.resume import ExactResumeMixin
from vtg_rl.mllm.curriculum import CurriculumMasker
from vtg_rl.mllm.difficulty_filter import uniform_groups
from vtg_rl.mllm.grpo_config import VideoGRPOConfig
from vtg_rl.mllm.families import adapter_for_model
from vtg_rl.mllm.grpo_video import VideoRows, build_rollout_video
from vtg_rl.mllm import shared_prefix

logger = logging.getLogger(__name__)

__all__ = ["VideoGRPOConfig", "VideoGRPOTrainer"]


class VideoGRPOTrainer(ExactResumeMixin, GRPOTrainer):
    """``GRPOTrainer`` that carries the video into generation and every log-prob forward (module docstring)."""

    def __init__(self, model, reward_funcs, args: VideoGRPOConfig, train_dataset, processing_class,
                 eval_dataset=None, **kwargs):
        if not isinstance(args, VideoGRPOConfig):
            raise TypeError("VideoGRPOTrainer needs a VideoGRPOConfig")
        if args.use_vllm and importlib.util.find_spec("vllm") is None:
            raise ImportError("use_vllm needs vLLM installed in the trainer's environment (both modes: TRL's "
                              "client pushes the weights through it) on a GPU machine; see the README section "
                              "'vLLM rollouts for video' for the version constraints")
        if args.use_vllm and args.vllm_max_logp_difference is not None \
                and not args.vllm_importance_sampling_correction:
            raise ValueError("vllm_max_logp_difference needs vllm_importance_sampling_correction=True (TRL only "
                             "computes the trainer's rollout log-probs then); set vllm_max_logp_difference=None")
        for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if ds is not None and "video_path" not in ds.column_names:
                raise ValueError(f"{name} has no 'video_path' column (build it with vtg_rl.mllm.dataset.samples_to_hf)")
        if getattr(processing_class, "video_processor", None) is None:
            raise TypeError("VideoGRPOTrainer needs a multimodal processor with a video_processor "
                            f"(got {type(processing_class).__name__})")
        if isinstance(model, str):
            raise TypeError("VideoGRPOTrainer needs a loaded model (vtg_rl.models.load_video_llm), not a path")
        adapter = adapter_for_model(model, processing_class)
        if args.shared_prefix is None:  # unset: on wherever the family runs it exactly
            args.shared_prefix = adapter.capabilities.shared_prefix
            logger.info("shared_prefix=%s for the %s model", args.shared_prefix, adapter.family)
        if args.use_vllm:
            adapter.check_model(model, "vllm")
        if args.freeze_vision_tower:
            for p in adapter.vision_tower(model).parameters():
                p.requires_grad_(False)
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        self.adapter = adapter
        # TRL suppresses only the image pad token; a sampled video placeholder / vision start / end token would
        # be taken for a video slot by the next forward.
        # (with use_vllm TRL builds no HF generation config: the same ids become a vLLM logit bias below)
        suppress = adapter.suppress_token_ids()
        if not self.use_vllm:
            suppress = sorted(set(self.generation_kwargs.get("suppress_tokens") or []) | set(suppress))
            self.generation_kwargs["suppress_tokens"] = suppress
            self.generation_config.suppress_tokens = suppress
        self.video_sampling = args.video_sampling().for_family(adapter)
        # masks blank whole temporal steps of the model's own size, so no step is half visible
        self.masker = CurriculumMasker(dataclasses.replace(args.curriculum_config(),
                                                           temporal_patch_size=adapter.temporal_patch_size)) \
            if args.curriculum else None
        if args.drop_uniform_groups and args.uniform_reward_func != "total" \
                and args.uniform_reward_func not in self.reward_func_names:
            raise ValueError(f"uniform_reward_func {args.uniform_reward_func!r} is not one of the reward functions "
                             f"{self.reward_func_names} (or 'total')")
        self._active_video: Optional[VideoRows] = None
        self.vision_cache = None
        if args.shared_prefix:  # refuse unsupported models now, not at the first step
            for m in (self.model, self.ref_model):
                if m is not None:
                    shared_prefix.check_supported(m, adapter)
            if args.freeze_vision_tower and args.vision_cache_size > 0 and not adapter.capabilities.vision_cache:
                logger.info("vision_cache_size ignored: the %s vision tower's features are not cacheable (results "
                            "are the same, each video is encoded once per forward)", adapter.family)
            elif args.freeze_vision_tower and args.vision_cache_size > 0:
                self.vision_cache = shared_prefix.VisionFeatureCache(args.vision_cache_size)
                if self.ref_model is not None:  # the reference's tower is the frozen policy tower's copy
                    ref_tower = adapter.vision_tower(self.ref_model)
                    tower = adapter.vision_tower(self.model)
                    for p in ref_tower.parameters():
                        p.requires_grad_(False)
                    self.vision_cache.share(ref_tower, tower)
        self._pending_rollout = None
        self._pending_jpeg = None
        self._last_rewards_per_func: Optional[torch.Tensor] = None
        self._vllm_checked = False
        self.apply_mrope_rule()
        if self.use_vllm:
            from vtg_rl.mllm.vllm_video import enable_video_rollouts

            enable_video_rollouts(self.vllm_generation, video_token_id=adapter.video_token_ids()[0],
                                  suppress_token_ids=suppress, jpeg_quality=args.vllm_video_jpeg_quality)

    # ------------------------------------------------------------------ video context
    @contextlib.contextmanager
    def _video_context(self, rows: Optional[VideoRows]):
        previous, self._active_video = self._active_video, rows
        try:
            yield
        finally:
            self._active_video = previous

    def training_progress(self) -> float:
        """Fraction of training done (drives the curriculum)."""
        max_steps = self.state.max_steps or self.args.max_steps
        return float(self.state.global_step) / max_steps if max_steps and max_steps > 0 else 0.0

    # ------------------------------------------------------------------ rollouts
    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        masker = self.masker if mode == "train" else None  # evaluation always sees the whole video
        jpeg = None
        if self.use_vllm and self.vllm_mode == "server":  # the trainer sees the pixels the server decodes
            from vtg_rl.mllm.vllm_video import JpegRoundTrip

            jpeg = JpegRoundTrip(self.args.vllm_video_jpeg_quality)
        rollout = build_rollout_video(self.processing_class, self.video_sampling, inputs, masker=masker,
                                      progress=self.training_progress(), device=self.accelerator.device,
                                      frame_transform=jpeg, transform_name=jpeg.name if jpeg else None,
                                      adapter=self.adapter)
        self._pending_rollout, self._pending_jpeg = rollout, jpeg
        try:
            with self._video_context(rollout.rows):
                output = super()._generate_and_score_completions(inputs)
        finally:
            self._pending_rollout, self._pending_jpeg = None, None
        if self.use_vllm and mode == "train":
            self._check_vllm_logps(mode)
        output.update(rollout.rows.as_inputs())
        if self.masker is not None and mode == "train":
            self._log_gathered(mode, "curriculum/mask_fraction", rollout.mask_fraction)
            self._log_gathered(mode, "curriculum/masked_rows", [float(m) for m in rollout.masked])
            self._metrics[mode]["curriculum/context_fraction"].append(
                self.masker.context_fraction(self.training_progress()))
        if self.args.drop_uniform_groups and mode == "train":
            output = self._drop_uniform_groups(output, mode)
        return output

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.use_vllm:
            # the videos ride in TRL's images slot; vtg_rl.mllm.vllm_video turns them into vLLM videos
            images = self._vllm_video_payloads(len(prompt_ids))
        elif self.args.shared_prefix and not self.use_transformers_continuous_batching:
            return shared_prefix.generate_single_turn(self, prompt_ids)  # each prompt prefilled once
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                             has_tool_images=has_tool_images)

    def apply_mrope_rule(self) -> str:
        """Put the policy and reference models on the ``mrope_text_positions`` rule; returns the rule used.
        With vLLM rollouts the trainer must score samples with the positions vLLM sampled them under."""
        rule = self.args.mrope_text_positions
        if rule == "auto":
            rule = "original" if self.use_vllm else "model"
        if rule == "original":
            from vtg_rl.mllm.mrope import use_original_text_positions

            for m in (self.model, self.ref_model):
                if m is not None and not use_original_text_positions(m):
                    raise ValueError(f"mrope_text_positions='original' needs a Qwen2.5-VL model, got {type(m).__name__}")
        return rule

    def _vllm_video_payloads(self, n_rows: int) -> list:
        from vtg_rl.mllm.vllm_video import VideoPayload

        rollout = self._pending_rollout
        if rollout is None or rollout.videos is None or len(rollout.videos) != n_rows:
            raise RuntimeError("VideoGRPOTrainer: vLLM generation was asked for prompts without their videos")
        jpeg = self._pending_jpeg
        payloads = {}  # the rows of a group share one video object, hence one payload
        for v in rollout.videos:
            if id(v) not in payloads:
                payloads[id(v)] = VideoPayload.from_video(v, jpeg=jpeg.jpeg_of(v) if jpeg else None)
        return [[payloads[id(v)]] for v in rollout.videos]

    def _check_vllm_logps(self, mode: str) -> None:
        """Stop on the first rollout batch if vLLM's log-probs of its own samples are far from the trainer's:
        the sign that vLLM processed another video (frames, resolution or timestamps) than the trainer."""
        limit = self.args.vllm_max_logp_difference
        if self._vllm_checked or limit is None:
            return
        values = self._metrics[mode].get("sampling/sampling_logp_difference/mean")
        if not values:
            return
        self._vllm_checked = True
        if values[-1] > limit:
            raise RuntimeError(
                f"vLLM and the trainer disagree on the first rollouts: mean |logp_vLLM - logp_trainer| = "
                f"{values[-1]:.3f} > vllm_max_logp_difference={limit}. vLLM most likely saw a different video: "
                "serve the trainer's checkpoint directory (same preprocessor_config.json), keep the default "
                "frame metadata, and check dtype; set vllm_max_logp_difference=None to skip this check")

    def _tokenize_prompts(self, prompts: list):
        rollout = self._pending_rollout
        if rollout is None or len(rollout.prompt_ids) != len(prompts):
            raise RuntimeError("VideoGRPOTrainer: prompts reached tokenisation without their videos; "
                               "generation must go through _generate_and_score_completions")
        ids = rollout.prompt_ids
        fields = rollout.rows.model_kwargs()
        if self.adapter.needs_token_types:  # per-token lists: TRL left-pads them like the prompt ids
            mm = self.adapter.token_type_ids(torch.tensor(list(itertools.chain.from_iterable(ids))))
            lengths = [len(x) for x in ids]
            fields["mm_token_type_ids"] = [t.tolist() for t in torch.split(mm, lengths)]
        return ids, None, fields

    def _log_gathered(self, mode: str, name: str, values: list[float], weights: Optional[list[float]] = None,
                      reduce: str = "mean") -> None:
        """Log a metric over all processes: the mean of ``values`` (sum(values) / sum(weights)), or their sum.
        Nothing is logged when no process had any weight."""
        weight = float(len(values)) if weights is None else float(sum(weights))
        local = torch.tensor([float(sum(values)), weight], dtype=torch.float64, device=self.accelerator.device)
        total, count = self.accelerator.gather(local).view(-1, 2).sum(dim=0).tolist()
        if reduce == "sum":
            self._metrics[mode][name].append(total)
        elif count > 0:
            self._metrics[mode][name].append(total / count)

    # ------------------------------------------------------------------ rewards
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func
        self._log_answer_stats(inputs, completions)
        return rewards_per_func

    #: answer_stats keys logged as counts summed over processes; the others as means over completions
    ANSWER_COUNT_KEYS = ("malformed", "nan", "start_after_end", "zero_length", "out_of_range")
    ANSWER_MEAN_KEYS = ("format_rate", "iou_mean", "answer_accuracy", "malformed_rate")

    def _log_answer_stats(self, inputs, completions) -> None:
        from vtg_rl.rewards import answer_stats

        mode = "train" if self.model.training else "eval"
        columns = {k: [row.get(k) for row in inputs] for k in ("windows", "duration", "answer", "options")}
        stats = answer_stats(completions, **columns)
        n = float(len(completions))
        # a fixed key order on every process: gathers are collective, and optional keys (iou_mean,
        # answer_accuracy) may be missing on some processes
        for key in self.ANSWER_COUNT_KEYS:
            self._log_gathered(mode, f"answers/{key}", [stats.get(key, 0.0)], weights=[1.0], reduce="sum")
        for key in self.ANSWER_MEAN_KEYS:
            present = key in stats
            self._log_gathered(mode, f"answers/{key}", [stats.get(key, 0.0) * n if present else 0.0],
                               weights=[n if present else 0.0])

    def _drop_uniform_groups(self, output: dict, mode: str) -> dict:
        """Zero the loss mask and advantages of groups whose rewards are all ~0 or all ~1."""
        rpf = self._last_rewards_per_func
        if self.args.uniform_reward_func == "total":
            judged = (rpf * self.reward_weights.to(rpf.device).unsqueeze(0)).nansum(dim=1)
        else:
            judged = rpf[:, self.reward_func_names.index(self.args.uniform_reward_func)]
        low, high = uniform_groups(judged.float().cpu().numpy(), self.num_generations,
                                   self.args.uniform_low, self.args.uniform_high)
        self._metrics[mode]["difficulty/dropped_groups_low"].append(float(low.sum()))
        self._metrics[mode]["difficulty/dropped_groups_high"].append(float(high.sum()))
        self._metrics[mode]["difficulty/dropped_group_fraction"].append(float((low | high).mean()))
        drop_rows = np.repeat(low | high, self.num_generations)
        n_local = output["completion_mask"].size(0)
        start = self.accelerator.process_index * n_local
        keep = torch.tensor(~drop_rows[start:start + n_local], device=output["completion_mask"].device)
        output["completion_mask"] = output["completion_mask"] * keep.unsqueeze(1).to(output["completion_mask"].dtype)
        output["advantages"] = output["advantages"] * keep.to(output["advantages"].dtype)
        loss_mask = output["completion_mask"] * output["tool_mask"] if "tool_mask" in output \
            else output["completion_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return output

    # ------------------------------------------------------------------ log-prob forwards
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rows = VideoRows.from_inputs(inputs)
        if rows is None:
            raise RuntimeError("VideoGRPOTrainer: a loss batch without its video rows (video-blind forward)")
        with self._video_context(rows):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        """TRL's entry point for every log-prob forward; routes each chunk of rows, with its video, through
        :meth:`video_logps_forward`. Refuses to run without the video rather than silently dropping it."""
        video = self._active_video
        if video is None:
            raise RuntimeError("VideoGRPOTrainer: a log-prob forward was requested without the rows' video")
        stray = sorted(k for k, v in multimodal.items() if v is not None and k != "mm_token_type_ids")
        if stray:
            raise ValueError(f"VideoGRPOTrainer handles video prompts only; got image inputs {stray}")
        if len(video) != input_ids.size(0):
            raise RuntimeError(f"{input_ids.size(0)} rows but {len(video)} videos in a log-prob forward")
        batch_size = batch_size or input_ids.size(0)
        logps, entropies, aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            lp, ent, ax = self.video_logps_forward(model, input_ids[start:end], attention_mask[start:end],
                                                   video.select(start, end), logits_to_keep,
                                                   compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss)
            logps.append(lp)
            entropies.append(ent)
            aux.append(ax)
        return (torch.cat(logps, dim=0), torch.cat(entropies, dim=0) if compute_entropy else None,
                torch.stack(aux).mean() if compute_aux_loss else None)

    def video_logps_forward(self, model, input_ids, attention_mask, video: VideoRows, logits_to_keep: int,
                            compute_entropy: bool = False, compute_aux_loss: bool = False):
        """Per-token log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row, with its video.

        The one place a log-prob forward runs: override it to change how (e.g. a shared prefix per group).
        Returns ``(logps (B, C), entropies (B, C) or None, aux_loss or None)``.
        """
        if self.args.shared_prefix and not compute_aux_loss:
            with self.accelerator.autocast():
                logps, entropies = shared_prefix.shared_prefix_logps(
                    model, self.processing_class, input_ids, attention_mask, video, logits_to_keep,
                    compute_entropy=compute_entropy, vision_cache=self.vision_cache,
                    pad_token_id=self._tokenizer.pad_token_id, adapter=self.adapter)
            return logps, entropies, None
        model_inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                        **self.adapter.forward_kwargs(input_ids, video.model_kwargs(input_ids.device))}
        if compute_aux_loss:
            model_inputs["output_router_logits"] = True
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, :-logits_to_keep] = -100  # only the completion tokens are scored
        with self.accelerator.autocast():
            outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -logits_to_keep:]
        entropies = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
        return logps, entropies, (outputs.aux_loss if compute_aux_loss else None)
