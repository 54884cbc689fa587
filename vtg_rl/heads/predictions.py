"""From head outputs to QVHighlights submission rows, for any head that follows the TPRL protocol.

A row: ``{"qid", "query", "vid", "pred_relevant_windows": [[start_s, end_s, score], ...] (best first),
"pred_saliency_scores": [one score per 2 s clip]}``. Windows come from ``pred_spans`` (normalised
(center, width)) ranked by :func:`vtg_rl.heads.protocol.query_scores`, the same score TPRL optimises.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from vtg_rl.heads.protocol import query_confidence, query_scores
from vtg_rl.heads.span_losses import cxw_to_unit_xx

QVH_CLIP_SECONDS = 2.0


def to_qvh_clips(scores: np.ndarray, clip_len: float, duration: float) -> list[float]:
    """Per-clip scores at ``clip_len`` -> one score per 2 s clip (mean of the clips whose centre falls in it)."""
    if abs(clip_len - QVH_CLIP_SECONDS) < 1e-6:
        return [float(x) for x in scores]
    n_out = max(1, int(math.ceil(duration / QVH_CLIP_SECONDS - 1e-6)))
    centers = (np.arange(len(scores)) + 0.5) * clip_len
    bucket = np.clip((centers // QVH_CLIP_SECONDS).astype(int), 0, n_out - 1)
    out = []
    for k in range(n_out):
        inside = scores[bucket == k]
        out.append(float(inside.mean()) if len(inside) else float(scores[min(len(scores) - 1, int(k * QVH_CLIP_SECONDS / clip_len))]))
    return out


def decode_outputs(outputs: dict, meta: list[dict], top_k: int = 10) -> list[dict]:
    """Submission rows for one batch. ``meta`` items need ``qid, vid, query, duration`` (and
    ``clip_len, n_clips`` for saliency)."""
    scores = query_scores(outputs).detach().float().cpu()
    confidence = query_confidence(outputs).detach().float().cpu()
    spans = cxw_to_unit_xx(outputs["pred_spans"].detach().float().cpu())
    saliency = outputs.get("saliency_scores")
    rows = []
    for b, m in enumerate(meta):
        valid = torch.isfinite(scores[b])
        order = [int(i) for i in torch.argsort(scores[b], descending=True) if valid[i]][:top_k]
        conf = confidence[b]
        windows = [[round(float(spans[b, i, 0]) * m["duration"], 3), round(float(spans[b, i, 1]) * m["duration"], 3),
                    round(float(conf[i]), 5)] for i in order]
        row = {"qid": m["qid"], "query": m["query"], "vid": m["vid"], "pred_relevant_windows": windows}
        if saliency is not None and "n_clips" in m:
            sal = saliency[b, : m["n_clips"]].detach().float().cpu().numpy()
            row["pred_saliency_scores"] = [round(x, 4) for x in to_qvh_clips(sal, m["clip_len"], m["duration"])]
        rows.append(row)
    return rows


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, batch_size: int = 64, collate_fn: Optional[Callable] = None,
            top_k: int = 10, device: Optional[torch.device] = None) -> list[dict]:
    """Run ``model`` (eval mode) over ``dataset`` and return submission rows in dataset order."""
    from torch.utils.data import DataLoader

    if collate_fn is None:
        from vtg_rl.heads.feature_dataset import collate_features as collate_fn
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn):
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch["model_inputs"].items()}
            rows.extend(decode_outputs(model(**inputs), batch["meta"], top_k))
    finally:
        model.train(was_training)
    return rows


def score_predictions(rows: list[dict], samples, protocol: str = "qvhighlights") -> dict[str, float]:
    """Flat headline numbers (percent) from :func:`vtg_rl.metrics.evaluate`: its ``brief`` plus
    ``R1@0.3``, ``R1@0.5``, ``R1@0.7`` and ``mIoU`` of the full split, whatever the protocol."""
    from vtg_rl.metrics import evaluate

    result = evaluate(rows, samples, protocol=protocol)
    flat = {k: v for k, v in result["brief"].items() if isinstance(v, (int, float))}
    full = result.get("full") or {}
    if "MR-R1" in full:
        flat.update({f"R1@{t}": full["MR-R1"][t] for t in ("0.3", "0.5", "0.7") if t in full["MR-R1"]})
    if "MR-mIoU" in full:
        flat["mIoU"] = full["MR-mIoU"]
    return flat


#: headline keys shared with the LLM side's reports (fractions in [0, 1]) -> keys of :func:`score_predictions`
HEADLINE_KEYS = {"miou": "mIoU", "r1_03": "R1@0.3", "r1_05": "R1@0.5", "r1_07": "R1@0.7", "map_avg": "MR-full-mAP",
                 "hd_hit1": "HL-min-VeryGood-Hit1", "hd_map": "HL-min-VeryGood-mAP"}


def headline(scores: dict[str, float]) -> dict[str, float]:
    """The project-wide headline block (``miou``, ``r1_05``, ..., fractions) from percent scores."""
    return {k: round(scores[m] / 100.0, 4) for k, m in HEADLINE_KEYS.items() if scores.get(m) is not None}
