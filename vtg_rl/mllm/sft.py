"""Cold-start SFT on video (VTG-R1's first stage) on top of TRL's ``SFTTrainer``.

Stock TRL 1.16 runs without error on video prompts but never hands the video to the model.
:class:`VideoSFTTrainer` keeps TRL's loss, logging, PEFT and checkpointing, and swaps in
:class:`~vtg_rl.mllm.collator.VideoSFTCollator`, which carries the model family's video tensors (Qwen2.5-VL:
``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``, ``mm_token_type_ids``) into every
forward and masks the loss to the completion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from trl import SFTConfig, SFTTrainer

from vtg_rl.training.resume import ExactResumeMixin
from vtg_rl.mllm.collator import VideoSFTCollator
from vtg_rl.mllm.pacing import DifficultyPacedSampler, dataset_difficulties
from vtg_rl.mllm.video_source import VideoTrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class VideoSFTConfig(VideoTrainingArguments, SFTConfig):
    """``SFTConfig`` plus how videos are sampled (:class:`VideoTrainingArguments`) and the target length."""

    max_completion_tokens: int = field(default=256, metadata={"help": "truncate targets to this many tokens"})
    pacing_start_fraction: float = field(default=1.0, metadata={
        "help": "easy-first pacing: the first epoch draws from this easiest fraction of the data (1.0 = off, "
                "plain shuffling); see vtg_rl.mllm.pacing"})
    pacing_full_at_epoch: float = field(default=3.0, metadata={
        "help": "easy-first pacing: the epoch from which all of the data is drawn (linear growth before it)"})

    def __post_init__(self):
        # The collator builds the tokens and labels itself (video tokens need the processor), so TRL's
        # dataset preparation and column pruning must stay out of the way.
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        self.remove_unused_columns = False
        super().__post_init__()
        if self.pacing_start_fraction < 1.0 and self.train_sampling_strategy != "random":
            raise ValueError("easy-first pacing (--pacing_start_fraction < 1) replaces the Trainer's sampler; it "
                             f"cannot be combined with --train_sampling_strategy {self.train_sampling_strategy}")


def vision_tower(model):
    """The vision encoder of a video LLM of any supported family (through PEFT / DDP wrappers)."""
    from vtg_rl.mllm.families.base import VideoLLMAdapter

    core = VideoLLMAdapter.core(model)
    if core is None:
        raise ValueError(f"{type(model).__name__} has no vision tower (`visual` / `vision_tower` beside a "
                         "`language_model`): not a supported video LLM")
    return VideoLLMAdapter._tower_of(core)


class VideoSFTTrainer(ExactResumeMixin, SFTTrainer):
    """``SFTTrainer`` whose batches carry the video into the forward (see module docstring)."""

    def __init__(self, model, args: VideoSFTConfig, train_dataset, processing_class, eval_dataset=None,
                 data_collator=None, **kwargs):
        if not isinstance(args, VideoSFTConfig):
            raise TypeError("VideoSFTTrainer needs a VideoSFTConfig")
        if "completion" not in train_dataset.column_names:
            raise ValueError("the training dataset has no 'completion' column (build it with "
                             "vtg_rl.mllm.dataset.samples_to_hf(samples, target_fn=...))")
        if args.freeze_vision_tower and not isinstance(model, str):
            for p in vision_tower(model).parameters():
                p.requires_grad_(False)
        collator = data_collator or VideoSFTCollator(processing_class, sampling=args.video_sampling(),
                                                     max_completion_tokens=args.max_completion_tokens)
        if (args.train_sampling_strategy == "group_by_length" and args.length_column_name not in train_dataset.column_names
                and hasattr(collator, "estimate_lengths")):
            # Without a length column the sampler would look for input_ids, which only the collator makes.
            lengths = collator.estimate_lengths(train_dataset)
            train_dataset = train_dataset.add_column(args.length_column_name, lengths)
            logger.info("group_by_length: %d rows, estimated sequence length %d-%d tokens",
                        len(lengths), min(lengths), max(lengths))
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, data_collator=collator, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.args.pacing_start_fraction >= 1.0:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        sampler = DifficultyPacedSampler(dataset_difficulties(dataset), start_fraction=self.args.pacing_start_fraction,
                                         full_at_epoch=self.args.pacing_full_at_epoch, seed=self.args.seed)
        logger.info("easy-first pacing: epoch 0 draws from the easiest %d of %d rows, all from epoch %g",
                    len(sampler.pool(0)), len(sampler), self.args.pacing_full_at_epoch)
        return sampler
