"""The model kinds ``vtg-rl infer`` runs, each exactly as its recipe's held-out evaluation does.

* ``video_llm`` (a video-LLM folder with ``config.json``): the grounding prompt, greedy decoding and submission rows
  of :func:`vtg_rl.mllm.inference.evaluate_model` (``generate_answers`` + ``submission_rows``), with
  transformers or, with ``--vllm``, vLLM;
* ``girl_detr`` / ``r2_tuning`` (a head folder with ``head_config.json``): CLIP features of each batch are
  extracted (or reused) in a feature folder with the frozen encoder and sampling the head was trained with,
  then the recipe's own prediction (:func:`vtg_rl.heads.predictions.predict` /
  :func:`vtg_rl.heads.r2_tuning.trainer.predict_rows`).

A backend's :meth:`settings` are everything that changes its predictions; they guard a resume.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional

from vtg_rl.data.schema import VTGSample

from vtg_rl.grounders import VIDEO_LLM as LLM

GIRL_DETR, R2_TUNING = "girl_detr", "r2_tuning"


def resolve_model(path: Path) -> Path:
    """A local folder (made absolute), or a hub id (``Qwen/Qwen2.5-VL-7B-Instruct``) already in the local
    Hugging Face cache: nothing is downloaded."""
    if path.exists() or len(path.parts) != 2:
        return path.resolve()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(path), local_files_only=True))
    except (LocalEntryNotFoundError, ValueError) as err:
        raise FileNotFoundError(f"{path}: no such model folder, and no hub model of that id in the local cache "
                                "(download it first, e.g. with `hf download`)") from err


def model_kind(folder: Path) -> str:
    """``video_llm``, ``girl_detr`` or ``r2_tuning``: the kind :func:`vtg_rl.grounders.folder_kind` reads."""
    from vtg_rl.grounders import HEAD_CONFIG, folder_kind

    if folder.is_dir() and (folder / "girl_detr_config.json").is_file() and not (folder / HEAD_CONFIG).is_file():
        raise ValueError(f"{folder}: a GIRL-DETR head trained on precomputed release features (no {HEAD_CONFIG}) "
                         "cannot see raw video; its recipe's own evaluation scores it on those features")
    kind = folder_kind(folder)
    if kind not in (LLM, GIRL_DETR, R2_TUNING):
        raise ValueError(f"{folder}: vtg-rl infer runs {LLM}, {GIRL_DETR} and {R2_TUNING} folders, not {kind!r}")
    return kind


def weights_fingerprint(folder: Path) -> dict[str, list[int]]:
    """Size and modification time of the folder's weight files: a checkpoint retrained in place is noticed."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".pth"):
            st = p.stat()
            out[p.name] = [st.st_size, st.st_mtime_ns]
    return out


def default_device(local_rank: int = 0) -> str:
    import torch

    return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"


class LLMBackend:
    """A video LLM of any supported family, prompted and decoded as the SFT / GRPO recipes' eval does."""

    kind = LLM

    def __init__(self, folder: Path, sampling, max_new_tokens: int = 160, dtype: str = "auto",
                 device: Optional[str] = None, attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                 use_vllm: bool = False, vllm_gpu_memory_utilization: float = 0.9, world_size: int = 1):
        self.folder, self.sampling, self.max_new_tokens = folder, sampling, int(max_new_tokens)
        self.device = device or default_device()
        self.dtype = dtype if dtype != "auto" else ("float32" if self.device == "cpu" else "bfloat16")
        self.attn_implementation, self.trust_remote_code = attn_implementation, trust_remote_code
        self.use_vllm = use_vllm
        if use_vllm:
            require_vllm()
        self._vllm_kw = dict(gpu_memory_utilization=vllm_gpu_memory_utilization, world_size=world_size)
        self.model = self.processor = self.engine = None

    def settings(self) -> dict:
        s = self.sampling
        return {"engine": "vllm" if self.use_vllm else "transformers", "decoding": "greedy",
                "max_new_tokens": self.max_new_tokens, "dtype": self.dtype,
                "video": {"fps": s.fps, "min_frames": s.min_frames, "max_frames": s.max_frames,
                          "max_pixels": s.max_pixels}}

    def load(self) -> None:
        import torch

        from vtg_rl.models.tiny_qwen import load_qwen_vl

        if self.use_vllm:
            from transformers import AutoProcessor

            from vtg_rl.models.remote_code import refuse_custom_code

            refuse_custom_code(str(self.folder), self.trust_remote_code)
            self.processor = AutoProcessor.from_pretrained(str(self.folder), trust_remote_code=self.trust_remote_code)
            self.engine = VLLMEngine(self.folder, self.processor, self.sampling, self.max_new_tokens, self.dtype,
                                     self.trust_remote_code, **self._vllm_kw)
            return
        self.model, self.processor = load_qwen_vl(str(self.folder), dtype=getattr(torch, self.dtype),
                                                  attn_implementation=self.attn_implementation,
                                                  trust_remote_code=self.trust_remote_code)
        self.model.to(self.device)

    def predict(self, batch: list[VTGSample]) -> list[dict]:
        from vtg_rl.mllm.inference import generate_answers, submission_rows

        if self.engine is not None:
            completions = self.engine.generate(batch)
        else:
            completions = generate_answers(self.model, self.processor, batch, sampling=self.sampling,
                                           batch_size=len(batch), max_new_tokens=self.max_new_tokens, progress=False)
        return submission_rows(batch, completions)


class MissingDependency(ImportError):
    """An optional package a requested feature needs is not installed."""


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise MissingDependency("--vllm needs vLLM, which is not installed in this environment: pip install -e '.[vllm]' "
                           "on a CUDA machine, or leave out --vllm to generate with transformers")


class VLLMEngine:
    """Greedy generation with ``vllm.LLM``: each prompt's frames go to vLLM as a video with their true
    timestamps (:class:`vtg_rl.mllm.vllm_video.VideoLLMProxy`, the GRPO trainer's checked colocate path), and
    the vision tokens are kept out of the answers by a logit bias."""

    def __init__(self, folder: Path, processor, sampling, max_new_tokens: int, dtype: str, trust_remote_code: bool,
                 gpu_memory_utilization: float = 0.9, world_size: int = 1):
        from vllm import LLM, SamplingParams

        from vtg_rl.mllm.families import adapter_for
        from vtg_rl.mllm.vllm_video import VideoLLMProxy, vision_logit_bias

        self.adapter = adapter_for(processor)
        self.sampling = sampling.for_family(self.adapter)
        kw = {"distributed_executor_backend": "external_launcher"} if world_size > 1 else {}
        llm = LLM(model=str(folder), dtype=dtype, trust_remote_code=trust_remote_code, seed=0,
                  limit_mm_per_prompt={"video": 1}, gpu_memory_utilization=gpu_memory_utilization, **kw)
        self.llm = VideoLLMProxy(llm, self.adapter.video_token_ids()[0])
        end = self.adapter.end_token_id()
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                     stop_token_ids=[end] if end is not None else None,
                                     logit_bias=vision_logit_bias(self.adapter.suppress_token_ids()))

    def generate(self, batch: list[VTGSample]) -> list[list[str]]:
        from vtg_rl.prompts import grounding_messages
        from vtg_rl.mllm.vllm_video import VideoPayload

        rows = []
        for s in batch:
            video = self.sampling.load(s.video_path, qid=s.qid)
            text = self.adapter.render_prompt(grounding_messages(s), add_generation_prompt=True)
            ids = self.adapter.build_inputs([text], [video])["input_ids"][0].tolist()
            rows.append({"prompt_token_ids": ids, "multi_modal_data": {"image": [VideoPayload.from_video(video)]}})
        outputs = self.llm.generate(rows, self.params, use_tqdm=False)
        return [[o.outputs[0].text] for o in outputs]


class HeadBackend:
    """A GIRL-DETR or R2-Tuning head: features per batch in ``feature_root`` (files already there are reused
    when they were made with the same CLIP and sampling), then the recipe's prediction."""

    def __init__(self, folder: Path, kind: str, feature_root: Path, top_k: int = 10, device: Optional[str] = None,
                 trust_remote_code: bool = False):
        from vtg_rl.heads.grounder import read_head_config

        self.folder, self.kind, self.feature_root, self.top_k = folder, kind, Path(feature_root), int(top_k)
        self.device = device or default_device()
        self.trust_remote_code = trust_remote_code
        self.cfg = read_head_config(folder, kind)
        self.model = self.extractor = None

    def settings(self) -> dict:
        keep = ("clip_model", "clip_len", "frames_per_clip", "patch_grid", "max_video_len", "num_clip_layers")
        out = {k: self.cfg[k] for k in keep if k in self.cfg}
        if self.kind == GIRL_DETR:
            out["top_k"] = self.top_k
        return out

    def _clip_path(self) -> str:
        """The head's CLIP, spelt as the feature folder's manifest spells it when both name the same folder
        (the extractor refuses a folder made with another ``clip_model`` string)."""
        from vtg_rl.heads.features import read_manifest

        old = read_manifest(self.feature_root).get("clip_model")
        if old and os.path.realpath(old) == os.path.realpath(self.cfg["clip_model"]):
            return old
        return self.cfg["clip_model"]

    def load(self) -> None:
        cfg, kw = self.cfg, dict(device=self.device, trust_remote_code=self.trust_remote_code)
        if self.kind == GIRL_DETR:
            from vtg_rl.heads.features import ClipFeatureExtractor
            from vtg_rl.heads.girl_detr.model import GirlDetr

            self.extractor = ClipFeatureExtractor(self._clip_path(), clip_len=cfg["clip_len"],
                                                  frames_per_clip=cfg["frames_per_clip"],
                                                  patch_grid=cfg.get("patch_grid", 0), **kw)
            self.model = GirlDetr.load(self.folder).to(self.device).eval()
        else:
            from vtg_rl.heads.r2_tuning.features import R2FeatureExtractor
            from vtg_rl.heads.r2_tuning.model import load_r2

            self.extractor = R2FeatureExtractor(self._clip_path(), num_layers=cfg["num_clip_layers"],
                                                clip_len=cfg["clip_len"], frames_per_clip=cfg["frames_per_clip"], **kw)
            self.model = load_r2(self.folder, device=self.device).eval()

    def predict(self, batch: list[VTGSample]) -> list[dict]:
        self.extractor.extract(batch, self.feature_root, progress=False, probe_videos=False)
        if self.kind == GIRL_DETR:
            from vtg_rl.heads.feature_dataset import make_dataset
            from vtg_rl.heads.predictions import predict

            ds = make_dataset(batch, self.feature_root, max_video_len=self.cfg.get("max_video_len", 75),
                              require_windows=False)
            return predict(self.model, ds, batch_size=len(batch), top_k=self.top_k)
        from vtg_rl.heads.r2_tuning.features import R2FeatureDataset
        from vtg_rl.heads.r2_tuning.trainer import predict_rows

        return predict_rows(self.model, R2FeatureDataset(batch, self.feature_root), batch_size=len(batch))
