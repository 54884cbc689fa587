"""vLLM rollouts for video prompts, in both of TRL's vLLM modes.

TRL 1.16's :class:`~trl.generation.vllm_generation.VLLMGeneration` sends images only: a video
prompt would reach vLLM as text and the rollouts would be video-blind. This module teaches an existing
``VLLMGeneration`` to carry one video per prompt, without re-implementing its gathering, tensor-parallel
slicing, sleep mode, weight sync or log-prob extraction:

* the trainer hands each prompt's video to ``VLLMGeneration.generate`` in the ``images`` slot, as a
  one-element list holding a :class:`VideoPayload` (the frames the trainer's own forward will see, and the
  metadata that makes their timestamps true);
* **colocate**: :class:`VideoLLMProxy` wraps ``vllm.LLM`` and turns each such row into
  ``multi_modal_data={"video": (frames, metadata)}`` — the input format of vLLM's Qwen2.5-VL processor,
  which hands ``metadata`` to the HF processor as ``VideoMetadata`` so that ``second_per_grid_ts`` (the
  temporal mRoPE step) is computed from the real sampled fps, as in the trainer — with the prompt's video
  tokens collapsed to the one placeholder vLLM expands itself;
* **server** (``vllm serve MODEL --enable-scale-out``, e.g. through ``trl vllm-serve``): :class:`VideoFeatureClient`
  wraps TRL's ``VLLMClient`` and processes each video on the server through ``/v1/chat/completions/render``
  as a ``video/jpeg`` data URL (the frame list, no re-sampling) with the metadata in ``media_io_kwargs``;
  :func:`place_video_features` points the returned features at the prompt's run of video tokens.
  JPEG is lossy, so in server mode the trainer feeds its own forwards the *same* JPEG-decoded frames and
  sends the server the JPEGs they were decoded from (:class:`JpegRoundTrip`): rollout and training see
  identical pixels, each video encoded once.

What this cannot check on a CPU machine is vLLM itself: the guard that it computed what the trainer computes
is :class:`~vtg_rl.mllm.grpo.VideoGRPOTrainer`'s first-rollout check of TRL's
``sampling/sampling_logp_difference`` (``vllm_max_logp_difference``), and ``benchmarks/vllm_video.py`` on a GPU.
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from vtg_rl.data.video import SampledVideo

#: the ``video_backend`` vLLM records for a frame list it decoded itself from a ``video/jpeg`` data URL
JPEG_SEQUENCE_BACKEND = "jpeg_sequence"


@dataclass(frozen=True)
class VideoPayload:
    """One prompt's video as vLLM receives it: ``frames`` ``(T, H, W, 3)`` uint8 and the metadata dict of
    vLLM's video items (``fps`` of the source, ``total_num_frames``, ``frames_indices``, ``duration``,
    ``video_backend``, ``do_sample_frames``)."""

    frames: np.ndarray
    metadata: dict
    jpeg: Optional[tuple[str, ...]] = None  # the frames' base64 JPEGs when ``frames`` are their decoding

    @classmethod
    def from_video(cls, video: SampledVideo, jpeg: Optional[Sequence[str]] = None) -> "VideoPayload":
        return cls(frames=np.ascontiguousarray(video.frames), metadata=vllm_metadata(video),
                   jpeg=None if jpeg is None else tuple(jpeg))

    def vllm_item(self) -> tuple[np.ndarray, dict]:
        """The ``multi_modal_data["video"]`` item of vLLM's Python API."""
        return self.frames, dict(self.metadata)

    def media_io_kwargs(self) -> dict[str, Any]:
        """The per-request ``media_io_kwargs["video"]`` that make vLLM's server keep every frame sent
        (``num_frames=-1``) and give them this metadata instead of its defaults (1 fps, 32 frames)."""
        meta = self.metadata
        return {"num_frames": -1, "fps": float(meta["fps"]), "frames_indices": [int(i) for i in meta["frames_indices"]],
                "total_num_frames": int(meta["total_num_frames"]), "duration": float(meta["duration"]),
                "do_sample_frames": False}


def vllm_metadata(video: SampledVideo) -> dict:
    """vLLM's metadata dict for a sampled video (the fields of ``transformers.video_utils.VideoMetadata`` that
    decide ``sampled_fps``, plus ``do_sample_frames=False``: the frames are already the sampled ones)."""
    meta = video.metadata
    if meta is None or not meta.fps or not meta.frames_indices or not meta.total_num_frames:
        raise ValueError(f"{video.path}: video metadata (fps, total_num_frames, frames_indices) is required for "
                         "vLLM to compute true timestamps")
    if len(meta.frames_indices) != len(video.frames):
        raise ValueError(f"{video.path}: {len(video.frames)} frames but {len(meta.frames_indices)} frames_indices")
    return {"fps": float(meta.fps), "total_num_frames": int(meta.total_num_frames),
            "frames_indices": [int(i) for i in meta.frames_indices], "duration": float(meta.duration),
            "video_backend": meta.video_backend or "pyav", "do_sample_frames": False}


# ---------------------------------------------------------------------------------------------- JPEG
def encode_jpeg_frames(frames: np.ndarray, quality: int = 95) -> list[str]:
    """Base64 JPEG of each frame (what a ``video/jpeg`` data URL lists, comma-separated)."""
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    out = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buf, format="JPEG", quality=int(quality))
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def decode_jpeg_frame(data: str) -> np.ndarray:
    """One base64 JPEG frame decoded the way vLLM's image loader does (PIL, converted to RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return np.asarray(image.convert("RGB"))


def jpeg_data_url(frames: np.ndarray, quality: int = 95) -> str:
    return "data:video/jpeg;base64," + ",".join(encode_jpeg_frames(frames, quality))


class JpegRoundTrip:
    """The server-mode frame transform: each video's frames are JPEG-encoded once; the decoded frames (exactly
    the pixels a vLLM server decodes from the data URL) feed the trainer's forwards, and the encoded ones are
    kept for the server (:meth:`jpeg_of`), so nothing is encoded twice or compressed twice."""

    def __init__(self, quality: int = 95):
        self.quality = int(quality)
        self.name = f"jpeg{self.quality}"
        self._encoded: dict[int, list[str]] = {}  # id(decoded video) -> its frames' base64 JPEGs

    def __call__(self, video: SampledVideo) -> SampledVideo:
        encoded = encode_jpeg_frames(video.frames, self.quality)
        frames = np.stack([decode_jpeg_frame(b) for b in encoded])
        decoded = SampledVideo(frames=frames, timestamps=video.timestamps, metadata=video.metadata, path=video.path)
        self._encoded[id(decoded)] = encoded
        return decoded

    def jpeg_of(self, video: SampledVideo) -> Optional[list[str]]:
        """The JPEGs a video returned by this transform was decoded from (``None`` for any other video)."""
        return self._encoded.get(id(video))


def jpeg_roundtrip(video: SampledVideo, quality: int = 95) -> SampledVideo:
    """``video`` with its frames replaced by their JPEG-decoded selves (:class:`JpegRoundTrip`)."""
    return JpegRoundTrip(quality)(video)


# ------------------------------------------------------------------------------------- placeholders
def token_runs(prompt_ids: Sequence[int], token_id: int) -> list[dict]:
    """``[{"offset", "length"}]`` of each maximal run of ``token_id`` in ``prompt_ids``."""
    runs, offset, n = [], 0, len(prompt_ids)
    while offset < n:
        if prompt_ids[offset] == token_id:
            length = 1
            while offset + length < n and prompt_ids[offset + length] == token_id:
                length += 1
            runs.append({"offset": offset, "length": length})
            offset += length
        else:
            offset += 1
    return runs


def place_video_features(features: Optional[dict], prompt_ids: Sequence[int], video_token_id: int,
                         fallback=None) -> Optional[dict]:
    """Point server-processed video features at the video tokens of the trainer's ``prompt_ids``.

    The server reports placeholders for the throwaway conversation it rendered; the positions that matter
    are the runs of video tokens in the prompt being trained on. Their number and lengths must equal the
    server's (the lengths are its frame grid): a difference means the server processed the video
    differently from the trainer, and is an error rather than a silent misalignment. Features without
    video placeholders go to ``fallback`` (TRL's image placement)."""
    if features is None:
        return None
    placeholders = features.get("mm_placeholders") or {}
    if "video" not in placeholders:
        if fallback is None:
            raise ValueError("server features carry no video placeholders")
        return fallback(features, prompt_ids)
    served = placeholders["video"]
    runs = token_runs(prompt_ids, video_token_id)
    if len(runs) != len(served):
        raise ValueError(f"the prompt holds {len(runs)} run(s) of video tokens but the vLLM server processed "
                         f"{len(served)} video(s); each prompt must carry one video block per video")
    for i, (run, got) in enumerate(zip(runs, served)):
        if int(got["length"]) != run["length"]:
            raise ValueError(f"video {i}: the trainer's processor made {run['length']} video tokens but the vLLM "
                             f"server made {got['length']}; serve the same checkpoint directory (its "
                             "preprocessor_config.json sets the resolution) and keep the video metadata")
    return {**features, "mm_placeholders": {**placeholders, "video": runs}}


# ------------------------------------------------------------------------------------------ wrappers
def _only_video(images_for_prompt) -> Optional[VideoPayload]:
    """The payload of a prompt's ``images`` entry when it is one video, else ``None`` (real images)."""
    if images_for_prompt is None:
        return None
    items = images_for_prompt if isinstance(images_for_prompt, (list, tuple)) else [images_for_prompt]
    videos = [x for x in items if isinstance(x, VideoPayload)]
    if not videos:
        return None
    if len(items) != 1:
        raise ValueError("a prompt may carry one video and nothing else in the vLLM video path "
                         f"(got {len(videos)} video(s) among {len(items)} item(s))")
    return videos[0]


def collapse_runs(prompt_ids: Sequence[int], token_id: int) -> list[int]:
    """``prompt_ids`` with each run of ``token_id`` shortened to one token (an unexpanded placeholder)."""
    out = []
    for t in prompt_ids:
        if t == token_id and out and out[-1] == token_id:
            continue
        out.append(t)
    return out


class VideoLLMProxy:
    """``vllm.LLM`` for colocate mode, with TRL's rows rewritten: a row whose ``multi_modal_data`` is
    ``{"image": VideoPayload}`` becomes ``{"video": (frames, metadata)}`` with ``do_sample_frames=False``,
    and its run of video tokens is shortened to one placeholder token, because vLLM (0.32, measured with
    its own processor) always expands each placeholder it finds: the trainer's already-expanded prompt
    would be expanded a second time. vLLM's expanded prompt must then equal the trainer's, token for
    token, or :meth:`generate` stops. Everything else (weights, sleep, caches) goes to the wrapped engine."""

    def __init__(self, llm, video_token_id: int):
        self._llm = llm
        self.video_token_id = int(video_token_id)

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def video_rows(self, prompts: list[dict]) -> tuple[list[dict], list[Optional[list[int]]]]:
        """(rows for vLLM, the trainer's prompt ids of each video row, None for other rows)."""
        out, expected = [], []
        for row in prompts:
            mm = row.get("multi_modal_data") if isinstance(row, dict) else None
            payload = _only_video(mm.get("image")) if mm else None
            if payload is None:
                out.append(row)
                expected.append(None)
                continue
            ids = list(row["prompt_token_ids"])
            kwargs = {**(row.get("mm_processor_kwargs") or {}), "do_sample_frames": False}
            out.append({**{k: v for k, v in row.items() if k not in ("multi_modal_data", "prompt_token_ids")},
                        "prompt_token_ids": collapse_runs(ids, self.video_token_id),
                        "multi_modal_data": {"video": payload.vllm_item()}, "mm_processor_kwargs": kwargs})
            expected.append(ids)
        return out, expected

    def generate(self, prompts, *args, **kwargs):
        if not isinstance(prompts, list):
            return self._llm.generate(prompts, *args, **kwargs)
        rows, expected = self.video_rows(prompts)
        outputs = self._llm.generate(rows, *args, **kwargs)
        for i, (want, output) in enumerate(zip(expected, outputs)):
            if want is not None and list(output.prompt_token_ids) != want:
                got = list(output.prompt_token_ids).count(self.video_token_id)
                raise ValueError(f"prompt {i}: vLLM expanded the video to {got} tokens, the trainer's processor to "
                                 f"{want.count(self.video_token_id)} (or the text differs); load vLLM from the "
                                 "trainer's checkpoint directory, whose preprocessor_config.json sets the resolution")
        return outputs


class VideoFeatureClient:
    """TRL's ``VLLMClient`` for server mode, whose ``image_features`` also processes videos: a prompt whose
    entry is ``[VideoPayload]`` is rendered on the server as a ``video/jpeg`` data URL with the video's
    metadata; other entries go to the wrapped client unchanged."""

    def __init__(self, client, jpeg_quality: int = 95):
        self._client = client
        self.jpeg_quality = int(jpeg_quality)

    def __getattr__(self, name):
        return getattr(self._client, name)

    def render_request(self, payload: VideoPayload) -> dict:
        """The ``/v1/chat/completions/render`` body for one video."""
        url = ("data:video/jpeg;base64," + ",".join(payload.jpeg) if payload.jpeg is not None
               else jpeg_data_url(payload.frames, self.jpeg_quality))
        messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}]}]
        return {"model": self._client.model, "messages": messages, "max_tokens": 1,
                "media_io_kwargs": {"video": payload.media_io_kwargs()},
                "mm_processor_kwargs": {"do_sample_frames": False}}

    def video_features(self, payload: VideoPayload) -> dict:
        url = f"{self._client.base_url}/v1/chat/completions/render"
        response = self._client.session.post(url, json=self.render_request(payload))
        if response.status_code == 404:
            raise RuntimeError(f"the vLLM server at {self._client.base_url} does not serve /v1/chat/completions/"
                               "render; start it with --enable-scale-out (vLLM >= 0.30; `trl vllm-serve` does)")
        if response.status_code != 200:
            raise RuntimeError(f"the vLLM server refused a video ({response.status_code}): {response.text[:500]}")
        return response.json()["features"]

    def image_features(self, images: list, **kwargs) -> list:
        payloads = [_only_video(entry) for entry in images]
        if not any(p is not None for p in payloads):
            return self._client.image_features(images, **kwargs)
        if any(p is None and entry for p, entry in zip(payloads, images)):
            raise ValueError("a vLLM server batch mixes video prompts with image prompts; use one kind per run")
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, len(payloads))) as pool:
            return list(pool.map(lambda p: None if p is None else self.video_features(p), payloads))


def vision_logit_bias(token_ids: Sequence[int]) -> dict[int, float]:
    """vLLM has no ``suppress_tokens``; a -100 logit bias keeps video pad / vision start / end tokens out of
    the rollouts, as ``suppress_tokens`` does for HF generate."""
    return {int(i): -100.0 for i in token_ids}


def enable_video_rollouts(generation, video_token_id: int, suppress_token_ids: Sequence[int] = (),
                          jpeg_quality: int = 95) -> None:
    """Make a TRL ``VLLMGeneration`` carry :class:`VideoPayload` prompts (module docstring). Idempotent."""
    if getattr(generation, "_vtg_video", False):
        return
    if generation.mode == "server":
        if hasattr(generation, "vllm_client"):  # only the main process holds a client
            generation.vllm_client = VideoFeatureClient(generation.vllm_client, jpeg_quality)
        generation._place_features = functools.partial(place_video_features, video_token_id=int(video_token_id),
                                                       fallback=generation._place_features)
    elif generation.mode == "colocate":
        generation.llm = VideoLLMProxy(generation.llm, video_token_id)
    else:
        raise ValueError(f"unknown vLLM mode {generation.mode!r} (expected 'server' or 'colocate')")
    if suppress_token_ids:
        kwargs = dict(generation.generation_kwargs or {})
        kwargs["logit_bias"] = {**vision_logit_bias(suppress_token_ids), **(kwargs.get("logit_bias") or {})}
        generation.generation_kwargs = kwargs
    generation._vtg_video = True
