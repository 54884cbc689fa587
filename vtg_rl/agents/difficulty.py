"""Difficulty Estimation Agent (VideoTG-R1).

For every sample, K sampled answers (the same sampling GRPO's group uses: temperature 1.0) are scored
against the annotation with temporal IoU; malformed answers score 0. From the K IoUs:

* ``zero_shot_iou_mean`` / ``zero_shot_iou_std`` (population std over the K rollouts);
* ``difficulty = 1 - zero_shot_iou_mean``, in [0, 1]. The mean IoU is the expected GRPO reward of the
  sample before RL, so 1 - mean says how far the policy is from solving it: ~1 means every rollout misses
  (an all-zero GRPO group: no preference, the curriculum masks such samples), ~0 means every rollout hits
  (nothing to learn). We keep the std beside it (a group with spread rewards is the informative case) but
  do not mix it into the scalar, so the scalar stays interpretable and monotone in the expected reward.

Output, for ``--out runs/agents/train.difficulty.jsonl``:
``train.difficulty.jsonl`` (every scored sample with ``difficulty``, ``zero_shot_iou_mean``,
``zero_shot_iou_std``, ``zero_shot_rollouts`` in ``meta``; skipped samples are left out),
``train.difficulty.hist.png``, ``train.difficulty.summary.json``, and the resume files
``train.difficulty.partial.jsonl`` / ``.partial.config.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from vtg_rl.agents.common import (AgentConfig, Generator, NothingProcessedError, agent_runner, best_gt_iou,
                                  completions_to_windows, finite_or_none, output_paths, save_histogram, spearman,
                                  split_labeled, write_json_atomic)
from vtg_rl.agents.runner import output_lock
from vtg_rl.data.schema import VTGSample, write_jsonl

logger = logging.getLogger(__name__)


@dataclass
class DifficultyConfig(AgentConfig):
    """Settings of :class:`DifficultyEstimationAgent` (rollout settings: see :class:`AgentConfig`)."""

    miss_iou: float = field(default=0.05, metadata={
        "help": "a rollout with IoU below this is a miss; samples where every rollout misses are counted "
                "as 'all_miss' (an all-zero GRPO group)"})
    hit_iou: float = field(default=0.9, metadata={
        "help": "a rollout with IoU at least this is a hit; samples where every rollout hits are 'all_hit'"})
    histogram_bins: int = field(default=20)

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.miss_iou < self.hit_iou <= 1.0:
            raise ValueError(f"need 0 <= miss_iou < hit_iou <= 1, got {self.miss_iou}, {self.hit_iou}")


def difficulty_from_ious(ious) -> dict:
    """The per-sample numbers from K rollout IoUs (see the module docstring)."""
    ious = np.clip(np.asarray(ious, dtype=np.float64), 0.0, 1.0)
    if ious.size == 0:
        raise ValueError("difficulty needs at least one rollout IoU")
    mean = float(ious.mean())
    return {"zero_shot_iou_mean": mean, "zero_shot_iou_std": float(ious.std()),
            "difficulty": float(min(max(1.0 - mean, 0.0), 1.0))}


class DifficultyEstimationAgent:
    """Estimate each sample's difficulty from K zero-shot rollouts of a grounding model."""

    def __init__(self, generator: Generator, config: Optional[DifficultyConfig] = None, model_name: str = ""):
        self.generator = generator
        self.config = config or DifficultyConfig()
        self.model_name = model_name

    def score(self, sample: VTGSample, completions: list[str]) -> dict:
        """Per-sample record from its K completions."""
        windows = completions_to_windows(sample, completions)
        ious = [best_gt_iou(w, sample.windows) for w in windows]
        return {"ious": [round(v, 6) for v in ious], "windows": windows,
                "malformed": sum(w is None for w in windows), **difficulty_from_ious(ious)}

    def process_batch(self, samples: list[VTGSample]) -> list[dict]:
        completions = self.generator(samples)
        return [self.score(s, c) for s, c in zip(samples, completions)]

    def run(self, samples: list[VTGSample], out_path, progress: bool = True) -> dict:
        """Score ``samples``, write the outputs next to ``out_path``; returns the summary.
        Holds an exclusive lock on ``out_path`` throughout (a second run on it refuses)."""
        with output_lock(out_path):
            return self._run(samples, out_path, progress)

    def _run(self, samples: list[VTGSample], out_path, progress: bool) -> dict:
        paths = output_paths(out_path, "hist.png", "summary.json")
        labeled, unlabeled = split_labeled(samples, "no annotated window to score against")
        runner = agent_runner(out_path, "difficulty", self.model_name, self.config, progress)
        report = runner.run(labeled, self.process_batch)

        scored = []
        for s in labeled:
            rec = report.results.get(s.qid)
            if rec is None:
                continue
            meta = dict(s.meta, difficulty=rec["difficulty"], zero_shot_iou_mean=rec["zero_shot_iou_mean"],
                        zero_shot_iou_std=rec["zero_shot_iou_std"], zero_shot_rollouts=len(rec["ious"]))
            scored.append(VTGSample(**{**s.to_dict(), "meta": meta}))
        if not scored:
            raise NothingProcessedError(f"no sample could be scored ({len(report.skipped)} skipped, {len(unlabeled)} "
                               f"without windows); see the reasons above")
        write_jsonl(scored, out_path)
        summary = self._summary(samples, scored, report, unlabeled, paths, out_path)
        write_json_atomic(paths["summary.json"], summary)
        return summary

    def _summary(self, samples, scored, report, unlabeled, paths, out_path) -> dict:
        c = self.config
        recs = [report.results[s.qid] for s in scored]
        diff = np.array([r["difficulty"] for r in recs])
        ious = [np.asarray(r["ious"]) for r in recs]
        counts, edges = np.histogram(diff, bins=c.histogram_bins, range=(0.0, 1.0))
        save_histogram(diff, paths["hist.png"], c.histogram_bins,
                       f"difficulty = 1 - mean zero-shot IoU (K={c.num_rollouts}, n={len(diff)})", "difficulty")
        summary = {
            "agent": "difficulty", "model": self.model_name, "config": c.results_key(),
            "n_input": len(samples), "n_scored": len(scored), "n_skipped": len(report.skipped) + len(unlabeled),
            "skipped": report.skipped + unlabeled,
            "resumed": report.resumed, "processed": report.processed,
            "seconds": round(report.seconds, 3), "samples_per_s": finite_or_none(report.samples_per_s),
            "generations": getattr(self.generator, "generations", None),
            "difficulty_mean": float(diff.mean()), "difficulty_median": float(np.median(diff)),
            "zero_shot_iou_mean": float(np.mean([r["zero_shot_iou_mean"] for r in recs])),
            "malformed_rate": float(sum(r["malformed"] for r in recs) / max(sum(len(i) for i in ious), 1)),
            "all_miss_fraction": float(np.mean([(i < c.miss_iou).all() for i in ious])),
            "all_hit_fraction": float(np.mean([(i >= c.hit_iou).all() for i in ious])),
            "histogram": {"counts": counts.tolist(), "edges": [round(e, 4) for e in edges.tolist()]},
            "outputs": {"dataset": str(out_path),
                        "histogram": str(paths["hist.png"]), "summary": str(paths["summary.json"])},
        }
        truth = [s.meta.get("true_difficulty") for s in scored]
        if all(t is not None for t in truth):  # the synthetic world knows the true difficulty
            summary["spearman_vs_true_difficulty"] = finite_or_none(spearman(diff, truth))
        return summary


def select_training_subset(samples: list[VTGSample], n: int, min_difficulty: float = 0.1,
                           seed: int = 0) -> tuple[list[VTGSample], dict]:
    """Pick ``n`` samples for data-efficient RL (VideoTG-R1's small-subset regime) from agent-scored samples.

    Samples easier than ``min_difficulty`` (nearly every rollout already right: a GRPO group of equal, high
    rewards, nothing to learn) are left out; the rest are drawn uniformly at random (seeded), so the subset
    keeps the spread of middle and hard samples (hard ones are made learnable by the curriculum). Samples
    without a ``difficulty`` raise: run the difficulty agent first. Returns ``(subset, report)``.
    """
    missing = [s.qid for s in samples if s.meta.get("difficulty") is None]
    if missing:
        raise ValueError(f"samples {missing[:5]} have no meta.difficulty; run data_agents/difficulty.py first")
    eligible = [s for s in samples if float(s.meta["difficulty"]) >= min_difficulty]
    rng = np.random.default_rng(seed)
    take = min(n, len(eligible))
    idx = sorted(rng.choice(len(eligible), size=take, replace=False).tolist()) if take else []
    subset = [eligible[i] for i in idx]
    d = np.array([s.meta["difficulty"] for s in subset]) if subset else np.zeros(0)
    report = {"requested": n, "selected": take, "eligible": len(eligible), "too_easy": len(samples) - len(eligible),
              "difficulty_mean": float(d.mean()) if take else None,
              "hard_fraction": float((d > 0.5).mean()) if take else None}
    if take < n:
        logger.warning("only %d samples are at least %.2f difficult; the subset has %d instead of %d",
                       len(eligible), min_difficulty, take, n)
    return subset, report
