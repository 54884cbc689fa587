"""The Qwen video families: Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5.

They share a processor design (flattened patches + ``video_grid_thw``, ``mm_token_type_ids`` for the 3-D
rotary positions, ``<|im_end|>`` turns) and differ in how time reaches the model:

* Qwen2.5-VL puts absolute time into the rotary positions: ``second_per_grid_ts`` (seconds per temporal
  patch) times ``tokens_per_second`` is the position step, so the model reads seconds from positions. The
  positions assume evenly spaced frames, so variable-frame-rate videos are resampled to an even time grid.
* Qwen2-VL's time position is the temporal-patch index: one position is ``temporal_patch_size / fps``
  seconds, which changes whenever a frame cap lowers the sampling rate of a long video. The rate is kept
  where the cap allows and a warning (once, with the numbers) says when it is not.
* Qwen3-VL and Qwen3.5 write ``<t seconds>`` markers into the text before every temporal patch, computed by
  the processor from ``video_metadata`` as ``frame index / fps``, averaged over the patch's frames. We hand
  the processor each frame's *real* presentation time as a fractional index (``timestamp x fps``), so the
  markers are true for variable-frame-rate videos, after frame caps, and under masking (masked frames keep
  their timestamps). The markers are checked against the frames after every processor call.
"""

from __future__ import annotations

import copy
import logging
import re

import numpy as np
import torch

from vtg_rl.mllm.families.base import Capabilities, UnsupportedFamilyFeature, VideoLLMAdapter, fmt_times, isclose_all

logger = logging.getLogger(__name__)


class _QwenMRopeAdapter(VideoLLMAdapter):
    """Shared by the Qwen families: 3-D rotary positions from ``get_rope_index``."""

    def prompt_positions(self, core, ids, mask, video_kwargs):
        if not self.capabilities.shared_prefix:
            raise UnsupportedFamilyFeature(self.unsupported_reason("shared_prefix"))
        kwargs = {k: v for k, v in video_kwargs.items() if k in ("video_grid_thw", "second_per_grid_ts")}
        positions, _ = core.get_rope_index(ids, self.token_type_ids(ids), attention_mask=mask, **kwargs)
        return positions

    def check_model(self, model, feature: str) -> None:
        super().check_model(model, feature)
        if feature == "shared_prefix":
            core = self.core(model)
            if core is None or not hasattr(core, "get_rope_index"):
                raise UnsupportedFamilyFeature(f"shared_prefix=True needs the {self.family} model's get_rope_index; "
                                               f"got {type(model).__name__}. Set shared_prefix=False")


class Qwen2_5_VLAdapter(_QwenMRopeAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    processor_classes = ("Qwen2_5_VLProcessor",)
    time_representation = "mrope-seconds"
    capabilities = Capabilities(shared_prefix=True, vllm=True, vision_cache=True)
    time_grid = "even"

    def expected_second_per_grid(self, video) -> float:
        return self.temporal_patch_size / video.sampled_fps

    def check_time(self, batch, videos):
        spg = [float(s) for s in torch.as_tensor(batch["second_per_grid_ts"]).reshape(-1)]
        for v, s in zip(videos, spg):
            want = self.expected_second_per_grid(v)
            if not np.isclose(s, want, rtol=1e-4, atol=0):
                raise RuntimeError(f"{v.path}: second_per_grid_ts is {s:.4f} s but the video's sampled fps "
                                   f"{v.sampled_fps:.3f} gives {want:.4f} s; the metadata did not reach the processor")
        _check_steps(self, batch, videos)

    def told_times(self, batch, videos):
        spg = torch.as_tensor(batch["second_per_grid_ts"]).reshape(-1).tolist()
        steps = batch["video_grid_thw"][:, 0].tolist()
        return [np.arange(int(n)) * float(s) for n, s in zip(steps, spg)]


class Qwen2_VLAdapter(_QwenMRopeAdapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl",)
    processor_classes = ("Qwen2VLProcessor",)
    time_representation = "mrope-frame-index"
    capabilities = Capabilities(shared_prefix=True, vllm=False, vision_cache=True)
    time_grid = "even"
    _warned = False

    @property
    def reference_fps(self) -> float:
        """The sampling rate at which one time position means ``temporal_patch_size / fps`` seconds."""
        return float(getattr(self.processor.video_processor, "fps", None) or 2.0)

    def check_time(self, batch, videos):
        _check_steps(self, batch, videos)
        ref = self.reference_fps
        for v in videos:
            # a few percent come from rounding frame counts to whole temporal patches; a cap costs far more
            if not np.isclose(v.sampled_fps, ref, rtol=0.1) and not Qwen2_VLAdapter._warned:
                Qwen2_VLAdapter._warned = True
                logger.warning(
                    "qwen2_vl: %s was sampled at %.2f fps instead of %.2f fps (a frame cap of %d frames on a "
                    "%.1f s video); its time positions step %.2f s instead of %.2f s, so the model reads time "
                    "differently on this video. Raise video_max_frames (or lower video_fps for all videos) to keep "
                    "one rate. This warning is shown once.", v.path, v.sampled_fps, ref, len(v.frames), v.duration,
                    self.temporal_patch_size / v.sampled_fps, self.temporal_patch_size / ref)

    def told_times(self, batch, videos):
        steps = batch["video_grid_thw"][:, 0].tolist()
        return [np.arange(int(n)) * self.temporal_patch_size / self.reference_fps for n in steps]


MARKER = re.compile(r"<(\d+(?:\.\d+)?) seconds>")


class Qwen3_VLAdapter(_QwenMRopeAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl", "qwen3_vl_moe")
    processor_classes = ("Qwen3VLProcessor",)
    time_representation = "text-timestamps"
    # the deepstack features of a vision tower are not kept by the feature cache: no vision cache
    capabilities = Capabilities(shared_prefix=True, vllm=False, vision_cache=False)
    time_grid = "native"
    #: the processor writes markers with one decimal
    marker_resolution = 0.1

    def metadata_for(self, video):
        # the processor computes a frame's time as frames_indices[i] / fps: a fractional index carries the
        # frame's real presentation time, whatever the spacing of the sampled frames
        meta = copy.copy(video.metadata)
        fps = float(meta.fps)
        meta.frames_indices = [float(t) * fps for t in np.asarray(video.timestamps, dtype=np.float64)]
        return meta

    def expected_markers(self, video) -> np.ndarray:
        """The marker values the processor must write: mean time of each temporal patch's first/last frame."""
        ts = np.asarray(video.timestamps, dtype=np.float64)
        p = self.temporal_patch_size
        if len(ts) % p:
            ts = np.concatenate([ts, np.repeat(ts[-1], p - len(ts) % p)])
        return (ts[0::p] + ts[p - 1::p]) / 2

    def told_times(self, batch, videos):
        out, texts = [], self.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=False)
        for text in texts:
            out.append(np.array([float(m) for m in MARKER.findall(text)]))
        if len(out) == len(videos):
            return out
        # several videos in one text: split the markers by video, in order
        flat = np.concatenate(out) if out else np.zeros(0)
        sizes = [len(self.expected_markers(v)) for v in videos]
        return list(np.split(flat, np.cumsum(sizes)[:-1]))

    def check_time(self, batch, videos):
        told = self.told_times(batch, videos)
        for v, got in zip(videos, told):
            want = self.expected_markers(v)  # written with one decimal: within half a tenth of the true time
            if not isclose_all(got, want, self.marker_resolution / 2 + 1e-6):
                raise RuntimeError(f"{v.path}: the timestamp markers {fmt_times(got)} differ from the frames' "
                                   f"presentation times {fmt_times(want)}; the video metadata did not reach the "
                                   "processor")

    def extra_tokens_per_step(self) -> int:
        return len(self.tokenizer("<12.5 seconds><|vision_start|><|vision_end|>", add_special_tokens=False)["input_ids"])


class Qwen3_5Adapter(Qwen3_VLAdapter):
    family = "qwen3_5"
    model_types = ("qwen3_5", "qwen3_5_moe")
    processor_classes = ()  # Qwen3.5 checkpoints ship the Qwen3-VL processor; the model type tells them apart
    # linear-attention (gated delta) layers carry a recurrent state along the sequence: a folded 4-D mask does
    # not isolate one completion from another there, so shared prefixes are refused
    capabilities = Capabilities(shared_prefix=False, vllm=False, vision_cache=False)

    def unsupported_reason(self, feature: str) -> str:
        if feature == "shared_prefix":
            return ("shared_prefix=True is not supported for qwen3_5 models: their linear-attention layers carry a "
                    "recurrent state through the folded sequence, so completions would see each other; set "
                    "shared_prefix=False")
        return super().unsupported_reason(feature)


def _check_steps(adapter, batch, videos) -> None:
    """The processor made one temporal step per ``temporal_patch_size`` frames of each video."""
    steps = batch["video_grid_thw"][:, 0].tolist()
    if len(steps) != len(videos):
        return  # per-frame grids (Qwen3 style) are checked through their markers
    for v, n in zip(videos, steps):
        if int(n) * adapter.temporal_patch_size != len(v.frames):
            raise RuntimeError(f"{v.path}: {len(v.frames)} frames became {int(n)} temporal patches of "
                               f"{adapter.temporal_patch_size}; frames were added or dropped by the processor")
