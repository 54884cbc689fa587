"""Ground a query in a raw video with a trained GIRL-DETR head (supervised or after TPRL).

The head's ``final/`` folder holds ``model.safetensors`` + its config and a ``head_config.json`` (written
by the head recipes) naming the frozen CLIP and how clips were sampled. Prediction runs the recipe's own
path on one ad-hoc sample: :class:`~vtg_rl.heads.features.ClipFeatureExtractor` into a temporary feature
folder, :func:`~vtg_rl.heads.feature_dataset.make_dataset`, :func:`~vtg_rl.heads.predictions.predict`,
so a prediction sees exactly the features training saw.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vtg_rl.heads.grounder import read_head_config
from vtg_rl.heads.grounder import write_head_config as _write

KIND = "girl_detr"


def write_head_config(directory: str | os.PathLike, cfg) -> Path | None:
    """Record the frozen encoder and sampling of a head trained on extracted CLIP features. Heads trained
    on precomputed release features (``--video_feature_dirs``) cannot see raw video: nothing is written."""
    if getattr(cfg, "video_feature_dirs", None):
        return None
    return _write(directory, KIND, clip_model=cfg.clip_model, clip_len=float(cfg.clip_len),
                  frames_per_clip=int(cfg.frames_per_clip), patch_grid=int(cfg.patch_grid),
                  max_video_len=int(cfg.max_video_len))


class GirlDetrGrounder:
    def __init__(self, model, extractor, max_video_len: int):
        self.model, self.extractor, self.max_video_len = model.eval(), extractor, max_video_len

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        trust_remote_code: bool = False) -> "GirlDetrGrounder":
        from vtg_rl.heads.features import ClipFeatureExtractor
        from vtg_rl.heads.girl_detr.model import GirlDetr

        folder = Path(folder)
        cfg = read_head_config(folder, KIND, written_by="recipes/girl_detr.py or recipes/tprl.py")
        extractor = ClipFeatureExtractor(cfg["clip_model"], clip_len=cfg["clip_len"],
                                         frames_per_clip=cfg["frames_per_clip"], device=device,
                                         patch_grid=cfg.get("patch_grid", 0), trust_remote_code=trust_remote_code)
        return cls(GirlDetr.load(folder).to(device), extractor, cfg.get("max_video_len", 75))

    def predict(self, video: str | os.PathLike, query: str, top_k: int = 1) -> list:
        from vtg_rl.data.schema import VTGSample
        from vtg_rl.data.video import sample_frames
        from vtg_rl.grounders import Span
        from vtg_rl.heads.feature_dataset import make_dataset
        from vtg_rl.heads.predictions import predict

        duration = sample_frames(video, fps=1.0, min_frames=2, max_frames=8).duration
        sample = VTGSample(qid="query", vid=Path(video).stem, duration=float(duration), query=query,
                           video_path=str(video))
        with tempfile.TemporaryDirectory(prefix="vtg-rl-grounder-") as tmp:
            self.extractor.extract([sample], tmp, progress=False)
            ds = make_dataset([sample], tmp, max_video_len=self.max_video_len, require_windows=False)
            rows = predict(self.model, ds, batch_size=1, top_k=top_k)
        return [Span(float(s), float(e), float(c)) for s, e, c in rows[0]["pred_relevant_windows"][:top_k]]
