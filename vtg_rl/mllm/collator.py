"""Video-aware batching for the LLM trainers.

Stock TRL 1.16 is video-blind: its collators hand the model only ``input_ids`` and ``attention_mask``.
:class:`VideoSFTCollator` decodes each row's video (PyAV, cached), runs the processor on the *prompt*
(which expands the video placeholder into the real video tokens and produces the family's video tensors,
e.g. ``pixel_values_videos`` and ``video_grid_thw``), tokenises the *completion* separately and
concatenates the two; the model family's adapter (:mod:`vtg_rl.mllm.families`) says which keys the
forward takes and adds the token types (``mm_token_type_ids``) where the family needs them. The labels
mask everything but the completion (completion-only loss). Training thus sees exactly the token
sequence that generation produces at inference time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from vtg_rl.data.video import VideoDecodeError
from vtg_rl.mllm.families import adapter_for
from vtg_rl.mllm.video_source import VideoSampling

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class VideoSFTCollator:
    """Collate rows of :func:`vtg_rl.mllm.dataset.samples_to_hf` (with ``completion``) into a training batch."""

    processor: Any
    sampling: VideoSampling = field(default_factory=VideoSampling)
    max_completion_tokens: Optional[int] = 256
    #: a row whose video fails to decode at run time: "error" stops with the sample named, "skip" drops the row
    #: from its batch and counts it in ``skipped`` (the pre-flight probe catches most bad videos before training)
    on_bad_video: str = "error"

    def __post_init__(self):
        self.adapter = adapter_for(self.processor)
        # the end-of-turn token closes every target, as the chat template closes an assistant turn
        self.end_text = self.adapter.end_of_turn + "\n"
        self.sampling = self.sampling.for_family(self.adapter)
        if self.on_bad_video not in ("error", "skip"):
            raise ValueError(f"on_bad_video must be 'error' or 'skip', got {self.on_bad_video!r}")
        self.skipped: list[str] = []

    def _load_videos(self, rows: list[dict]) -> tuple[list[dict], list]:
        kept, videos = [], []
        for r in rows:
            try:
                videos.append(self.sampling.load(r["video_path"], qid=r.get("qid")))
            except VideoDecodeError as err:
                if self.on_bad_video == "error":
                    raise
                self.skipped.append(str(r.get("qid")))
                logger.warning("skipping a row whose video cannot be decoded (%d skipped so far): %s",
                               len(self.skipped), err)
                continue
            kept.append(r)
        if not kept:
            raise VideoDecodeError(f"every video of a batch failed to decode (qids {[r.get('qid') for r in rows]}); "
                                   "run `vtg-rl data check --probe-videos` on the dataset")
        return kept, videos

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        tok = self.processor.tokenizer
        rows, videos = self._load_videos(rows)
        texts = [self.adapter.render_prompt(r["prompt"], add_generation_prompt=True) for r in rows]
        prompt_batch = self.adapter.build_inputs(texts, videos, padding_side="right")

        completions = [tok(r["completion"] + self.end_text, add_special_tokens=False)["input_ids"] for r in rows]
        if self.max_completion_tokens is not None:
            completions = [c[: self.max_completion_tokens] for c in completions]

        prompt_ids, prompt_mask = prompt_batch["input_ids"], prompt_batch["attention_mask"]
        seqs, labels = [], []
        for i, comp in enumerate(completions):
            n = int(prompt_mask[i].sum())
            p = prompt_ids[i, :n]
            c = torch.tensor(comp, dtype=p.dtype)
            seqs.append(torch.cat([p, c]))
            labels.append(torch.cat([torch.full_like(p, IGNORE_INDEX), c]))
        width = max(len(s) for s in seqs)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

        def pad(xs, value):
            return torch.stack([torch.cat([x, x.new_full((width - len(x),), value)]) for x in xs])

        batch = {
            "input_ids": pad(seqs, pad_id),
            "attention_mask": pad([torch.ones(len(s), dtype=torch.long) for s in seqs], 0),
            "labels": pad(labels, IGNORE_INDEX),
        }
        video_kwargs = self.adapter.merge_videos(self.adapter.split_videos(prompt_batch, len(videos)))
        batch.update(self.adapter.forward_kwargs(batch["input_ids"], video_kwargs))
        return batch

    def estimate_lengths(self, rows) -> list[int]:
        """Approximate token count of each row's training sequence, without decoding its video.

        For ``train_sampling_strategy="group_by_length"`` (batches of similar length waste less compute on
        padding; the sampler only needs the order to be right). Text tokens are counted exactly; video
        tokens are extrapolated from the row's duration with the frame count policy and the tokens per
        temporal patch of the first row's video (decoded once), i.e. assuming one frame size and fps.
        """
        from qwen_vl_utils.vision_process import smart_nframes

        rows = list(rows)
        if not rows:
            return []
        tok = self.processor.tokenizer
        probe = self.sampling.load(rows[0]["video_path"], qid=rows[0].get("qid"))
        text = self.adapter.render_prompt(rows[0]["prompt"], add_generation_prompt=True)
        probe_kwargs = self.adapter.split_videos(self.adapter.build_inputs([text], [probe]), 1)[0]
        temporal = self.adapter.temporal_patch_size
        tokens_per_patch = self.adapter.tokens_per_step(probe_kwargs) + self.adapter.extra_tokens_per_step()
        video_fps = float(probe.metadata.fps)
        policy = {"fps": self.sampling.fps, "min_frames": self.sampling.min_frames,
                  "max_frames": self.sampling.max_frames}
        lengths = []
        for r in rows:
            total = max(int(round(float(r["duration"]) * video_fps)), temporal)
            n_frames = smart_nframes(policy, total_frames=total, video_fps=video_fps)
            prompt = self.adapter.render_prompt(r["prompt"], add_generation_prompt=True)
            n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"]) - 1  # -1: the video placeholder
            n_completion = len(tok(r["completion"] + self.end_text, add_special_tokens=False)["input_ids"])
            if self.max_completion_tokens is not None:
                n_completion = min(n_completion, self.max_completion_tokens)
            lengths.append(n_prompt + n_completion + -(-n_frames // temporal) * tokens_per_patch)
        return lengths
