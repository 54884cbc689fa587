"""LLaVA-OneVision: a video LLM with no time signal of its own, given time as text.

The model sees a video as frames of pooled vision tokens in a 1-D sequence: nothing in its positions or its
text says when a frame is shown. A grounding model must read time from somewhere, so vtg-rl writes it in
the prompt: every frame becomes its own vision item preceded by its presentation time, in the numeric format
the answers use (seconds, two decimals)::

    <0.00 seconds><video> <0.50 seconds><video> ... <12.50 seconds><video>

Each ``<video>`` item is one frame (the processor expands it to the frame's pooled tokens plus the newline
token that ends a video item). The vision tower encodes frames independently, so a frame's tokens are the
same as inside a multi-frame video item; only the per-item newline token and the text markers are added.
One-frame items also make videos of different lengths batchable (the processor cannot stack multi-frame
videos of different lengths). Shared prefixes, vLLM rollouts and the vision-feature cache are not offered.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import torch

from vtg_rl.mllm.families.base import Capabilities, VideoLLMAdapter, fmt_times, isclose_all

INJECTED_MARKER = re.compile(r"<(\d+\.\d\d) seconds>")


def frame_marker(seconds: float) -> str:
    """The text written before a frame shown at ``seconds``."""
    return f"<{seconds:.2f} seconds>"


class LlavaOnevisionAdapter(VideoLLMAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    processor_classes = ("LlavaOnevisionProcessor",)
    time_representation = "injected-timestamps"
    capabilities = Capabilities(shared_prefix=False, vllm=False, vision_cache=False)
    video_placeholder = "<video>"
    vision_token_strings = ("<video>", "<image>")
    needs_token_types = False
    time_grid = "native"

    @property
    def temporal_patch_size(self) -> int:
        return 1

    @property
    def pixel_factor(self) -> int:
        vp = self.processor.video_processor
        return int(getattr(vp, "patch_size", None) or 14)

    def video_token_ids(self) -> list[int]:
        i = self._token_id(self.video_placeholder)
        return [] if i is None else [i]

    def image_token_ids(self) -> list[int]:
        i = self._token_id("<image>")
        return [] if i is None else [i]

    def interleaved(self, video) -> str:
        ts = np.asarray(video.timestamps, dtype=np.float64)
        return "".join(frame_marker(t) + self.video_placeholder for t in ts)

    def processor_call(self, texts, videos):
        out_texts, items, metas = [], [], []
        queue = list(videos)
        for text in texts:
            parts = text.split(self.video_placeholder)
            built = parts[0]
            for part in parts[1:]:
                video = queue.pop(0)
                built += self.interleaved(video) + part
                for i in range(len(video.frames)):
                    items.append(video.frames[i:i + 1])
                    meta = copy.copy(video.metadata)
                    meta.frames_indices = [int(video.metadata.frames_indices[i])]
                    metas.append(meta)
            out_texts.append(built)
        return out_texts, dict(videos=items, video_metadata=metas, do_sample_frames=False)

    def split_videos(self, batch, n_videos):
        pixels = batch["pixel_values_videos"]
        if isinstance(pixels, (list, tuple)):
            pixels = torch.stack(list(pixels))
        counts = self._frames_per_video
        if len(counts) != n_videos or sum(counts) != pixels.size(0):
            raise ValueError(f"expected {n_videos} video(s) of {counts} frames, the processor returned "
                             f"{pixels.size(0)} frame items")
        return [{"pixel_values_videos": chunk} for chunk in torch.split(pixels, counts, dim=0)]

    def build_inputs(self, texts, videos, padding_side="left", return_tensors="pt"):
        self._frames_per_video = [len(v.frames) for v in videos]
        return super().build_inputs(texts, videos, padding_side=padding_side, return_tensors=return_tensors)

    def told_times(self, batch, videos):
        texts = self.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=False)
        flat = np.array([float(m) for text in texts for m in INJECTED_MARKER.findall(text)])
        sizes = [len(v.frames) for v in videos]
        return list(np.split(flat, np.cumsum(sizes)[:-1])) if len(flat) == sum(sizes) else [flat]

    def check_time(self, batch, videos):
        told = self.told_times(batch, videos)
        if len(told) != len(videos):
            raise RuntimeError(f"the prompts carry {sum(len(t) for t in told)} frame timestamps for "
                               f"{sum(len(v.frames) for v in videos)} frames")
        for v, got in zip(videos, told):
            want = np.asarray(v.timestamps, dtype=np.float64)  # written with two decimals
            if not isclose_all(got, want, 0.005 + 1e-6):
                raise RuntimeError(f"{v.path}: the frame timestamps in the prompt {fmt_times(got)} differ from the "
                                   f"frames' presentation times {fmt_times(want)}")

    def step_features(self, model, videos):
        out = []
        for v in videos:
            items = [v.frames[i:i + 1] for i in range(len(v.frames))]
            batch = self.processor.video_processor(videos=items, return_tensors="pt")
            with torch.no_grad():
                feats = model.get_video_features(batch["pixel_values_videos"].to(model.device))
            feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
            # (frames, pooled tokens + the item's newline, D): the newline carries no appearance
            out.append((feats[:, :-1].float().cpu().numpy(), 1))
        return out

    def true_step_times(self, video):
        ts = np.asarray(video.timestamps, dtype=np.float64)
        return ts

    def tokens_per_step(self, video_kwargs):
        # pooled tokens of one frame + the newline that closes each one-frame item
        h, w = video_kwargs["pixel_values_videos"].shape[-2:]
        cfg_patch = self.pixel_factor
        side = int(np.ceil((h // cfg_patch) / 2))
        return side * side + 1

    def extra_tokens_per_step(self) -> int:
        return len(self.tokenizer(frame_marker(12.5), add_special_tokens=False)["input_ids"])
