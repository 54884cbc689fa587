"""Video-aware batching for the LLM trainers.

Stock TRL 1.16 is video-blind (DESIGN §7): its collators hand the model only ``input_ids`` and
``attention_mask``. :class:`VideoSFTCollator` decodes each row's video (PyAV, cached), runs the
processor on the *prompt* (which expands the video placeholder into the real video tokens and
produces ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts`` and
``mm_token_type_ids``), tokenises the *completion* separately and concatenates the two. The labels
mask everything but the completion (completion-only loss). Training thus sees exactly the token
sequence that generation produces at inference time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from vtg_rl.mllm.video_inputs import build_video_inputs, render_prompt
from vtg_rl.mllm.video_source import VideoSampling

IGNORE_INDEX = -100


@dataclass
class VideoSFTCollator:
    """Collate rows of :func:`vtg_rl.mllm.dataset.samples_to_hf` (with ``completion``) into a training batch."""

    processor: Any
    sampling: VideoSampling = field(default_factory=VideoSampling)
    max_completion_tokens: Optional[int] = 256

    def __post_init__(self):
        tok = self.processor.tokenizer
        self.end_text = "<|im_end|>\n"
        if tok.convert_tokens_to_ids("<|im_end|>") in (None, tok.unk_token_id):
            raise ValueError("the tokenizer has no <|im_end|> token: VideoSFTCollator expects a Qwen-style chat template")

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        tok = self.processor.tokenizer
        texts = [render_prompt(self.processor, r["prompt"], add_generation_prompt=True) for r in rows]
        videos = [self.sampling.load(r["video_path"], qid=r.get("qid")) for r in rows]
        prompt_batch = build_video_inputs(self.processor, texts, videos, padding_side="right")

        completions = [tok(r["completion"] + self.end_text, add_special_tokens=False)["input_ids"] for r in rows]
        if self.max_completion_tokens is not None:
            completions = [c[: self.max_completion_tokens] for c in completions]

        prompt_ids, prompt_mask = prompt_batch["input_ids"], prompt_batch["attention_mask"]
        mm_types = prompt_batch.get("mm_token_type_ids")
        seqs, labels, types = [], [], []
        for i, comp in enumerate(completions):
            n = int(prompt_mask[i].sum())
            p = prompt_ids[i, :n]
            c = torch.tensor(comp, dtype=p.dtype)
            seqs.append(torch.cat([p, c]))
            labels.append(torch.cat([torch.full_like(p, IGNORE_INDEX), c]))
            if mm_types is not None:
                types.append(torch.cat([mm_types[i, :n], torch.zeros_like(c, dtype=mm_types.dtype)]))
        width = max(len(s) for s in seqs)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

        def pad(xs, value):
            return torch.stack([torch.cat([x, x.new_full((width - len(x),), value)]) for x in xs])

        batch = {
            "input_ids": pad(seqs, pad_id),
            "attention_mask": pad([torch.ones(len(s), dtype=torch.long) for s in seqs], 0),
            "labels": pad(labels, IGNORE_INDEX),
        }
        if mm_types is not None:
            batch["mm_token_type_ids"] = pad(types, 0)
        for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
            if key in prompt_batch:
                batch[key] = prompt_batch[key]
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
        text = render_prompt(self.processor, rows[0]["prompt"], add_generation_prompt=True)
        grid = build_video_inputs(self.processor, [text], [probe])["video_grid_thw"][0]
        merge = getattr(self.processor.video_processor, "merge_size", 1)
        temporal = self.processor.video_processor.temporal_patch_size
        tokens_per_patch = int(grid[1] * grid[2]) // (merge * merge)
        video_fps = float(probe.metadata.fps)
        policy = {"fps": self.sampling.fps, "min_frames": self.sampling.min_frames,
                  "max_frames": self.sampling.max_frames}
        lengths = []
        for r in rows:
            total = max(int(round(float(r["duration"]) * video_fps)), temporal)
            n_frames = smart_nframes(policy, total_frames=total, video_fps=video_fps)
            prompt = render_prompt(self.processor, r["prompt"], add_generation_prompt=True)
            n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"]) - 1  # -1: the video placeholder
            n_completion = len(tok(r["completion"] + self.end_text, add_special_tokens=False)["input_ids"])
            if self.max_completion_tokens is not None:
                n_completion = min(n_completion, self.max_completion_tokens)
            lengths.append(n_prompt + n_completion + (n_frames // temporal) * tokens_per_patch)
        return lengths
