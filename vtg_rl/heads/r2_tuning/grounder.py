"""Ground a query in a raw video with a trained R2-Tuning adapter: frames -> frozen CLIP layers -> R2 -> spans.

A final R2 folder (``recipes/r2_tuning.py`` writes ``output_dir/final`` and ``output_dir/tprl/final``) holds
``model.safetensors`` + ``r2_config.json`` and a ``head_config.json`` that records the frozen CLIP and the
sampling the adapter was trained with, so the folder is all :class:`R2Grounder` needs::

    grounder = R2Grounder.from_pretrained("runs/r2_tuning/final")
    grounder.predict("video.mp4", "when does the red circle appear?", top_k=3)   # [Span(start, end, score)]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from vtg_rl.heads.features import encode_query, load_clip_encoder, num_clips
from vtg_rl.heads.grounder import read_head_config
from vtg_rl.heads.grounder import write_head_config as _write
from vtg_rl.heads.r2_tuning.features import collate_r2, video_layer_states
from vtg_rl.heads.r2_tuning.model import load_r2

KIND = "r2_tuning"


def write_head_config(directory: str | os.PathLike, clip_model: str, clip_len: float, frames_per_clip: int,
                      num_clip_layers: int) -> Path:
    """Record what a grounder needs next to the adapter weights (the CLIP path is stored absolute)."""
    return _write(directory, KIND, weights="model.safetensors", model_config="r2_config.json", clip_model=clip_model,
                  clip_len=float(clip_len), frames_per_clip=int(frames_per_clip), num_clip_layers=int(num_clip_layers))


class R2Grounder:
    def __init__(self, model, encoder, clip_len: float, frames_per_clip: int, num_clip_layers: int):
        self.model, self.encoder = model.eval(), encoder
        self.clip_len, self.fps, self.num_layers = float(clip_len), frames_per_clip / float(clip_len), num_clip_layers

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        trust_remote_code: bool = False) -> "R2Grounder":
        folder = Path(folder)
        cfg = read_head_config(folder, KIND, written_by="recipes/r2_tuning.py")
        encoder = load_clip_encoder(cfg["clip_model"], device, trust_remote_code=trust_remote_code)
        model = load_r2(folder, device=device)
        return cls(model, encoder, cfg["clip_len"], cfg["frames_per_clip"], cfg["num_clip_layers"])

    @torch.no_grad()
    def ground(self, video: str | os.PathLike, query: str) -> dict:
        """``{"duration", "pred_relevant_windows": [[s, e, score], ...] (NMS'd, best first),
        "pred_saliency_scores": [one per clip of clip_len seconds]}``."""
        from vtg_rl.data.video import sample_frames

        sampled = sample_frames(video, fps=self.fps, min_frames=4, max_frames=4096)
        duration = sampled.duration
        layers = video_layer_states(self.encoder, sampled, duration, self.clip_len, self.num_layers)
        text = encode_query(self.encoder, query, hidden_layers=self.num_layers)["hidden_states"]
        n = num_clips(duration, self.clip_len)
        # through float16 like the training cache, so the adapter sees exactly the inputs it was trained on
        item = {"video_layers": layers.astype(np.float16).astype(np.float32),
                "query_layers": text.astype(np.float16).astype(np.float32),
                "windows": np.zeros((0, 2), np.float32), "moment_mask": np.zeros(n, bool),
                "saliency": np.zeros(n, np.float32), "clip_len_norm": self.clip_len / duration, "qid": "query",
                "vid": str(video), "duration": duration, "query": query, "clip_len": self.clip_len}
        batch = collate_r2([item])
        device = next(self.model.parameters()).device
        pred = self.model.predict({k: v.to(device) for k, v in batch["model_inputs"].items()}, [duration])[0]
        return {"duration": duration, **pred}

    def predict(self, video: str | os.PathLike, query: str, top_k: int = 1) -> list:
        """The ``top_k`` best windows as :class:`vtg_rl.predict.Span` (the ``vtg-rl predict`` front door's type)."""
        from vtg_rl.grounders import Span

        windows = self.ground(video, query)["pred_relevant_windows"][:top_k]
        return [Span(float(s), float(e), float(c)) for s, e, c in windows]
