"""Boundary Reflection Agent (VideoTG-R1): find partially annotated samples.

A sample is *partially annotated* when the queried moment also happens outside its annotated windows;
its GRPO reward then punishes a correct answer. The agent asks the grounding model for the query with the
annotated frames **masked**: every frame whose display interval overlaps an annotated window (widened by
``mask_margin`` s) is replaced by a flat frame, in whole temporal patches, and keeps its timestamp (the
video's length, frame count and mRoPE time positions are unchanged, so answers stay in true seconds).
With the annotated moment hidden, a model that still finds the query *elsewhere*, consistently over K
sampled answers, has found another occurrence.

Decision rule (thresholds in :class:`ReflectionConfig`):

1. a predicted span is *outside* when at most ``max_overlap`` of its length overlaps the annotated windows;
2. two spans *agree* when their IoU is at least ``agreement_iou``;
3. for each outside span, its support is the number of outside spans (itself included) that agree with it;
   the best-supported one defines the cluster, and ``agreement = support / K`` (malformed answers and
   answers inside the annotation count against it);
4. without verification (``verify="none"``) the sample is flagged when ``agreement >= min_agreement``; the
   found span is the median start / end of the cluster.

Verification (``verify="appearance"``, the default). With the annotated moment hidden, a grounder that
cannot find the query often answers a *look-alike* (same shape in another colour, same colour on another
shape), and its K answers agree on it: agreement alone flagged over two clean samples for every partially
annotated one on the synthetic world (precision 0.29). The annotated span is by definition a true occurrence of the query,
so a second occurrence must *look like it*; a look-alike does not. Each outside answer is checked against
the annotation on the **unmasked** video (:func:`span_appearance_scores`), with per-time-step features
``(T, L, D)`` (L spatial cells): the model's own vision-tower tokens (``verify_features="vision"``, one step
per temporal patch) or mean colours on a grid (``"pixels"``):

* background ``b`` = per-cell median over the time steps outside both the annotation and the answer;
* the annotation's signature ``s_A`` = per-cell median over the annotated steps, and the query's *region*:
  the cells whose deviation from ``b`` is specific to the annotated span -- consistent over it (its 10%
  quantile over the annotated steps; the queried object is present throughout its annotation, a
  distractor passing by is not) minus the largest deviation in the step right before and right after it
  (the annotation's boundaries are the event's: a distractor that outlasts the annotation is not the
  event) -- at least half of the largest such weight;
* for every step of the answer, ``p_t = <x_t - b, s_A - b> / |s_A - b|^2`` over the region (1: the step
  shows what the annotation shows, where it shows it; 0: background there); the answer's score is the
  75% quantile of ``p_t`` over its steps (an answer that overshoots the occurrence still counts).

An outside answer is *verified* when its score is at least ``min_verification``; the sample is flagged
when at least ``min_verified`` of the K answers are verified (they need not agree with each other: they all
point at frames that look like the annotation). The found span is then the median start / end of the
verified answers and ``verification`` the median of their scores. A score is ``None`` (not verified) when
the video has no step outside both spans to estimate the background from.

Output, for ``--out runs/agents/train.clean.jsonl``: ``train.clean.jsonl`` (the samples *not* flagged, with
``meta.reflection``), ``train.clean.flagged.jsonl`` (flagged samples with the found span, agreement, the
verification score and every prediction with its score, for a person to review),
``train.clean.summary.json`` (counts, how many agreement alone would flag, skipped samples, and precision /
recall when the samples carry the synthetic world's ``partially_annotated`` truth), and the resume files
``train.clean.partial.jsonl`` / ``.partial.config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from vtg_rl.agents.common import (AgentConfig, Generator, NothingProcessedError, agent_runner,
                                  completions_to_windows, finite_or_none, output_paths, split_labeled,
                                  write_json_atomic)
from vtg_rl.agents.runner import output_lock
from vtg_rl.agents.verification import pixel_features, span_appearance_scores
from vtg_rl.data.schema import VTGSample, atomic_write_text, iter_dicts, write_jsonl
from vtg_rl.data.video import frames_overlapping
from vtg_rl.spans import cross_temporal_iou

logger = logging.getLogger(__name__)


@dataclass
class ReflectionConfig(AgentConfig):
    """Settings of :class:`BoundaryReflectionAgent` (rollout settings: see :class:`AgentConfig`)."""

    agreement_iou: float = field(default=0.5, metadata={"help": "two predicted spans agree at this IoU or more"})
    min_agreement: float = field(default=0.5, metadata={
        "help": "flag a sample when at least this fraction of the K rollouts agree on one outside span"})
    max_overlap: float = field(default=0.2, metadata={
        "help": "a predicted span is outside the annotation when at most this fraction of it overlaps it"})
    mask_margin: float = field(default=0.0, metadata={"help": "seconds masked on each side of the annotation too"})
    fill: str = field(default="video_mean", metadata={"help": "masked frames: 'video_mean', 'grey' or 'black'"})
    temporal_patch_size: int = field(default=2, metadata={"help": "frames are masked in whole temporal patches"})
    verify: str = field(default="appearance", metadata={
        "help": "'appearance': check each outside answer against the annotated span on the unmasked video "
                "and flag by min_verified (see the module docstring); 'none': flag by min_agreement alone"})
    verify_features: str = field(default="vision", metadata={
        "help": "features compared by the verification: 'vision' (the model's vision-tower tokens) or "
                "'pixels' (mean colours on a verify_grid x verify_grid grid)"})
    verify_grid: int = field(default=7, metadata={"help": "grid cells per side of the 'pixels' features"})
    min_verification: float = field(default=0.4, metadata={
        "help": "an outside answer is verified when its appearance score (1: looks like the annotation, "
                "0: like the background) is at least this"})
    min_verified: float = field(default=0.3, metadata={
        "help": "with verification: flag a sample when at least this fraction of the K rollouts are verified"})

    def __post_init__(self):
        super().__post_init__()
        if self.verify not in ("appearance", "none"):
            raise ValueError(f"verify must be 'appearance' or 'none', got {self.verify!r}")
        if self.verify_features not in ("vision", "pixels"):
            raise ValueError(f"verify_features must be 'vision' or 'pixels', got {self.verify_features!r}")
        if self.verify_grid < 1:
            raise ValueError(f"verify_grid must be >= 1, got {self.verify_grid}")
        for name in ("agreement_iou", "min_agreement", "max_overlap", "min_verified"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.fill not in ("video_mean", "grey", "black"):
            raise ValueError(f"fill must be 'video_mean', 'grey' or 'black', got {self.fill!r}")
        if self.mask_margin < 0 or self.temporal_patch_size < 1:
            raise ValueError("mask_margin must be >= 0 and temporal_patch_size >= 1")


# --------------------------------------------------------------------------- masking
def annotated_frame_mask(timestamps, windows, margin: float = 0.0, temporal_patch_size: int = 2) -> np.ndarray:
    """Boolean per frame: True where the frame must be hidden. Frame i is shown during
    ``[t_i, t_{i+1})``; it is hidden when that interval overlaps a window widened by ``margin``, and a
    temporal patch is hidden as a whole when any of its frames is (no half-visible video token)."""
    widened = [(float(s) - margin, float(e) + margin) for s, e in windows]
    return frames_overlapping(timestamps, widened, temporal_patch_size)


def mask_annotated(video, windows, margin: float = 0.0, fill: str = "video_mean", temporal_patch_size: int = 2):
    """Return ``(video with annotated frames blanked, fraction of frames blanked)``. Works on any
    dataclass with ``frames (T, H, W, C)`` and ``timestamps (T,)``; timestamps and metadata are kept."""
    frames = np.asarray(video.frames)
    hide = annotated_frame_mask(video.timestamps, windows, margin, temporal_patch_size)
    if not hide.any():
        return video, 0.0
    if fill == "video_mean":
        value = frames.reshape(-1, frames.shape[-1]).mean(axis=0).round().astype(frames.dtype)
    else:
        value = np.full((frames.shape[-1],), 128 if fill == "grey" else 0, dtype=frames.dtype)
    out = frames.copy()
    out[hide] = value
    return dataclasses.replace(video, frames=out), float(hide.mean())


# --------------------------------------------------------------------------- decision rule
def overlap_fraction(window, annotated) -> float:
    """Fraction of ``window``'s length that lies inside the union of the ``annotated`` windows."""
    s, e = float(window[0]), float(window[1])
    if e <= s:
        return 1.0
    pieces = sorted((max(s, float(a)), min(e, float(b))) for a, b in annotated)
    covered, reach = 0.0, s
    for a, b in pieces:
        a = max(a, reach)
        if b > a:
            covered += b - a
            reach = b
    return covered / (e - s)


def _median_span(spans) -> list[float]:
    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    return [round(float(np.median(spans[:, 0])), 3), round(float(np.median(spans[:, 1])), 3)]


def reflect_on_predictions(windows: list[Optional[list[float]]], annotated: list[list[float]],
                           config: ReflectionConfig, scores: Optional[list[Optional[float]]] = None) -> dict:
    """Apply the decision rule (module docstring) to K predicted windows (``None`` = malformed).

    With ``config.verify == "appearance"``, ``scores`` holds each window's appearance score
    (:func:`span_appearance_scores`, ``None`` = unverifiable) and decides the flag.
    """
    k = len(windows)
    verify = config.verify != "none"
    if verify and (scores is None or len(scores) != k):
        raise ValueError(f"verify={config.verify!r} needs one appearance score per prediction "
                         f"({k} predictions, {None if scores is None else len(scores)} scores)")
    outside = [w is not None and overlap_fraction(w, annotated) <= config.max_overlap for w in windows]
    cand = np.array([w for w, o in zip(windows, outside) if o], dtype=np.float64).reshape(-1, 2)
    result = {"windows": windows, "outside": outside, "flagged": False, "found_span": None,
              "agreement": 0.0, "support": 0}
    if verify:
        rounded = [None if s is None else round(float(s), 4) for s in scores]
        verified = [bool(o and s is not None and s >= config.min_verification) for o, s in zip(outside, scores)]
        result.update(verification_scores=rounded, verified=verified, verified_fraction=sum(verified) / k if k else 0.0,
                      verification=None)
    if len(cand) == 0 or k == 0:
        return result
    agree = cross_temporal_iou(cand, cand) >= config.agreement_iou
    support = agree.sum(axis=1)
    best = int(np.argmax(support))
    agreement = float(support[best]) / k
    result.update(found_span=_median_span(cand[agree[best]]), agreement=agreement, support=int(support[best]),
                  flagged=bool(agreement >= config.min_agreement))
    if verify:
        ok = [i for i, v in enumerate(verified) if v]
        result["flagged"] = bool(ok) and result["verified_fraction"] >= config.min_verified
        if ok:  # the finding a person reviews is what the verified answers point at
            result["found_span"] = _median_span([windows[i] for i in ok])
            result["verification"] = round(float(np.median([scores[i] for i in ok])), 4)
    return result


def reflection_truth_metrics(samples: list[VTGSample], flagged: set[str]) -> Optional[dict]:
    """Precision / recall of the flags against ``meta.partially_annotated`` (the synthetic world's truth);
    ``None`` when the samples do not carry it."""
    truth = [s.meta.get("partially_annotated") for s in samples]
    if not samples or any(t is None for t in truth):
        return None
    tp = sum(1 for s, t in zip(samples, truth) if t and s.qid in flagged)
    fp = sum(1 for s, t in zip(samples, truth) if not t and s.qid in flagged)
    fn = sum(1 for s, t in zip(samples, truth) if t and s.qid not in flagged)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": len(samples) - tp - fp - fn, "partial": int(sum(map(bool, truth))),
            "precision": finite_or_none(tp / (tp + fp) if tp + fp else float("nan")),
            "recall": finite_or_none(tp / (tp + fn) if tp + fn else float("nan"))}


def found_span_iou(sample: VTGSample, found_span) -> Optional[float]:
    """IoU of a found span with the best *unannotated* true occurrence (synthetic truth), else None."""
    occ = [o for o in sample.meta.get("occurrences") or [] if list(map(float, o)) not in sample.windows]
    if not occ or found_span is None:
        return None
    return float(cross_temporal_iou(np.array([found_span], dtype=np.float64), np.array(occ, dtype=np.float64)).max())


class BoundaryReflectionAgent:
    """Flag samples whose query the model finds, consistently, outside the annotated windows."""

    def __init__(self, generator: Generator, config: Optional[ReflectionConfig] = None, model_name: str = ""):
        self.generator = generator
        self.config = config or ReflectionConfig()
        self.model_name = model_name
        if self.config.verify != "none" and self.config.verify_features == "vision" \
                and not callable(getattr(generator, "vision_features", None)):
            raise ValueError("verify_features='vision' needs a generator backed by the model (with vision_features); "
                             "use verify_features='pixels' or verify='none'")
        self._masked: dict[str, float] = {}
        self._originals: dict[str, object] = {}

    def frame_transform(self, sample: VTGSample, video):
        c = self.config
        # a model's own temporal step wins over the configured one: a half-blanked step would leak the span
        patch = getattr(self.generator, "temporal_patch_size", None) or c.temporal_patch_size
        masked, fraction = mask_annotated(video, sample.windows, c.mask_margin, c.fill, patch)
        self._masked[sample.qid] = fraction
        if c.verify != "none":
            self._originals[sample.qid] = video  # the verification looks at the unmasked frames
        return masked

    def _features(self, samples: list[VTGSample]) -> list[tuple]:
        """Per sample ``(features (T, L, D), starts, ends)`` of the unmasked video the generator was shown."""
        missing = [s.qid for s in samples if s.qid not in self._originals]
        if missing:
            raise RuntimeError(f"sample {missing[0]}: the generator never passed its video through frame_transform, "
                               f"so there are no frames to verify against (verify='none' skips the verification)")
        videos = [self._originals.pop(s.qid) for s in samples]
        if self.config.verify_features == "vision":
            return self.generator.vision_features(videos)
        out = []
        for s, v in zip(samples, videos):
            try:
                out.append(pixel_features(v, self.config.verify_grid))
            except ValueError as err:
                raise ValueError(f"sample {s.qid}: {err}") from err
        return out

    def process_batch(self, samples: list[VTGSample]) -> list[dict]:
        self._originals.clear()
        completions = self.generator(samples, frame_transform=self.frame_transform)
        features = self._features(samples) if self.config.verify != "none" else [None] * len(samples)
        out = []
        for s, texts, feats in zip(samples, completions, features):
            windows = completions_to_windows(s, texts)
            scores = None
            if feats is not None:
                outside = [w is not None and overlap_fraction(w, s.windows) <= self.config.max_overlap for w in windows]
                scores = span_appearance_scores(*feats, s.windows, [w if o else None for w, o in zip(windows, outside)])
            rec = reflect_on_predictions(windows, s.windows, self.config, scores)
            fraction = self._masked.pop(s.qid, None)  # None: the generator never showed the video
            rec["masked_fraction"] = None if fraction is None else round(fraction, 4)
            out.append(rec)
        return out

    def run(self, samples: list[VTGSample], out_path, progress: bool = True) -> dict:
        """Reflect on ``samples``; write the cleaned dataset, the flagged list and the summary.
        Holds an exclusive lock on ``out_path`` throughout (a second run on it refuses)."""
        with output_lock(out_path):
            return self._run(samples, out_path, progress)

    def _run(self, samples: list[VTGSample], out_path, progress: bool) -> dict:
        paths = output_paths(out_path, "flagged.jsonl", "summary.json")
        labeled, unlabeled = split_labeled(samples, "no annotated window to mask")
        runner = agent_runner(out_path, "reflection", self.model_name, self.config, progress)
        report = runner.run(labeled, self.process_batch)

        kept, flagged_rows, done = [], [], []
        for s in labeled:
            rec = report.results.get(s.qid)
            if rec is None:
                continue
            done.append(s)
            info = {"flagged": rec["flagged"], "agreement": rec["agreement"], "found_span": rec["found_span"]}
            if "verification" in rec:
                info.update(verification=rec["verification"], verified_fraction=rec["verified_fraction"])
            if rec["flagged"]:
                row = next(iter_dicts([s], relative_to=paths["flagged.jsonl"].parent))
                flagged_rows.append({k: row[k] for k in ("qid", "vid", "video_path", "duration", "query", "windows")}
                                    | {"found_span": rec["found_span"], "agreement": rec["agreement"],
                                       "support": rec["support"], "num_rollouts": len(rec["windows"]),
                                       "predictions": rec["windows"]}
                                    | ({"verification": rec["verification"], "verified_fraction": rec["verified_fraction"],
                                        "verification_scores": rec["verification_scores"]}
                                       if "verification" in rec else {}))
            else:
                kept.append(VTGSample(**{**s.to_dict(), "meta": dict(s.meta, reflection=info)}))
        if not done:
            raise NothingProcessedError(f"no sample could be processed ({len(report.skipped)} skipped, {len(unlabeled)} "
                               f"without windows); see the reasons above")
        write_jsonl(kept, out_path)
        atomic_write_text(paths["flagged.jsonl"], "".join(json.dumps(r, allow_nan=False) + "\n" for r in flagged_rows))
        flagged_qids = {r["qid"] for r in flagged_rows}
        summary = {
            "agent": "reflection", "model": self.model_name, "config": self.config.results_key(),
            "n_input": len(samples), "n_processed": len(done), "n_flagged": len(flagged_rows), "n_kept": len(kept),
            "flagged_rate": len(flagged_rows) / len(done),
            "n_skipped": len(report.skipped) + len(unlabeled), "skipped": report.skipped + unlabeled,
            "resumed": report.resumed, "processed": report.processed,
            "seconds": round(report.seconds, 3), "samples_per_s": finite_or_none(report.samples_per_s),
            "generations": getattr(self.generator, "generations", None),
            "mean_agreement": float(np.mean([report.results[s.qid]["agreement"] for s in done])),
            "n_flagged_by_agreement": sum(1 for s in done if report.results[s.qid]["agreement"] >= self.config.min_agreement),
            "outputs": {"dataset": str(out_path), "flagged": str(paths["flagged.jsonl"]),
                        "summary": str(paths["summary.json"])},
        }
        truth = reflection_truth_metrics(done, flagged_qids)
        if truth is not None:
            ious = [found_span_iou(s, report.results[s.qid]["found_span"]) for s in done
                    if s.qid in flagged_qids and s.meta.get("partially_annotated")]
            ious = [v for v in ious if v is not None]
            truth["found_span_miou"] = float(np.mean(ious)) if ious else None
            summary["truth"] = truth
        write_json_atomic(paths["summary.json"], summary)
        return summary
