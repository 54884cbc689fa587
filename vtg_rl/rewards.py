"""Reward functions for video temporal grounding, with TRL's signature.

Every function here is ``f(completions, **columns) -> list[float | None]``: ``completions`` are the
model's outputs, either strings or conversational message lists
(``[{"role": "assistant", "content": "..."}]``, where content may also be a list of
``{"type": "text", "text": ...}`` blocks), and ``columns`` are the dataset's columns repeated per
completion (TRL passes them all, plus ``prompts``, ``completion_ids``, ``trainer_state``, ...;
unknown ones are ignored). The columns read here:

* ``windows``: per sample, the ground-truth spans ``[[start, end], ...]`` in seconds;
* ``duration``: per sample, the video length in seconds (:func:`iou_boundary_reward`);
* ``answer`` / ``options``: grounded QA, the right option letter and the option texts.

Answers are parsed with :mod:`vtg_rl.spans` (the last ``<answer>S to E</answer>`` block).
A malformed answer, a start >= end, or NaN gives 0; a reward function never raises on a bad
completion. A sample a function cannot score (no ground-truth windows, no QA answer) gets
``None``, which TRL ignores for that function. :func:`answer_stats` counts the failure modes so
that trainers can log them.

With TRL::

    from trl import GRPOConfig
    from vtg_rl.rewards import format_reward, iou_reward
    args = GRPOConfig(..., reward_weights=[1.0, 0.1])
    trainer = GRPOTrainer(..., reward_funcs=[iou_reward, format_reward], args=args)

or one function: ``composite_reward({"iou_reward": 1.0, "format_reward": 0.1})``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional, Sequence

import numpy as np

from vtg_rl.metrics.grounded_qa import normalise_choice
from vtg_rl.spans import ANSWER_BLOCK, is_well_formed, parse_answer, parse_choice, temporal_iou

RewardFunc = Callable[..., list]
_NON_FINITE = re.compile(r"\b(?:nan|inf(?:inity)?)\b", re.IGNORECASE)


# --------------------------------------------------------------------------- completions
def completion_text(completion: Any) -> str:
    """The text of one completion: a string, a message, or a list of messages (assistant turns joined).

    >>> completion_text([{"role": "assistant", "content": "<answer>1 to 2</answer>"}])
    '<answer>1 to 2</answer>'
    >>> completion_text({"role": "assistant", "content": [{"type": "text", "text": "hi"}]})
    'hi'
    >>> completion_text(None)
    ''
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, (list, tuple)):
            return "".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type", "text") == "text")
        return ""
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"] or messages
        return "".join(completion_text(m) for m in assistant)
    return ""


def _column(columns: dict, name: str, n: int, fn: str, required: bool = True) -> list:
    values = columns.get(name)
    if values is None:
        if required:
            raise ValueError(f"{fn} needs a '{name}' column (dataset columns given: {sorted(columns)})")
        return [None] * n
    if len(values) != n:
        raise ValueError(f"{fn}: column '{name}' has {len(values)} values for {n} completions")
    return list(values)


def _gt_array(windows, where: str = "ground truth") -> Optional[np.ndarray]:
    """Ground-truth windows of one sample as ``(G, 2)`` floats, None when there are none. Anything else
    (ragged rows, triples) raises naming ``where`` (the reward function and the sample)."""
    if windows is None:
        return None
    try:
        arr = np.asarray(windows, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: ground-truth windows {windows!r} are not [start, end] pairs ({err})") from None
    if arr.size == 0:
        return None
    if arr.ndim == 1 and arr.shape[0] == 2:  # one flat [start, end]
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{where}: ground-truth windows {windows!r} are not [start, end] pairs (shape {arr.shape})")
    return arr


def _where(fn: str, i: int, qids: Optional[list]) -> str:
    qid = qids[i] if qids is not None and i < len(qids) else None
    return f"{fn}: sample {i}" + (f" (qid={qid})" if qid is not None else "")


def _span(text: str) -> Optional[tuple[float, float]]:
    """The parsed answer span when it is usable for IoU (finite, start < end), else None."""
    span = parse_answer(text)
    if span is None or not (math.isfinite(span[0]) and math.isfinite(span[1])) or span[0] >= span[1]:
        return None
    return span


# --------------------------------------------------------------------------- rewards
def iou_reward(completions: Sequence, windows: Optional[Sequence] = None, **columns) -> list[Optional[float]]:
    """Temporal IoU of the answered span with the best-matching ground-truth window.

    0 for a malformed answer, start >= end or NaN; None for a sample without ground-truth windows.
    Spans outside the video are scored as they are (they lose overlap by themselves).

    >>> iou_reward(["<think>.</think><answer>2.00 to 6.00</answer>", "<answer>6 to 2</answer>", "no"],
    ...            windows=[[[0, 4], [5, 9]], [[0, 4]], [[0, 4]]])
    [0.3333333333333333, 0.0, 0.0]
    """
    windows = _column({"windows": windows, **columns}, "windows", len(completions), "iou_reward")
    qids = columns.get("qid")
    out: list[Optional[float]] = []
    for i, (completion, gt) in enumerate(zip(completions, windows)):
        gt = _gt_array(gt, _where("iou_reward", i, qids))
        if gt is None:
            out.append(None)
            continue
        span = _span(completion_text(completion))
        out.append(0.0 if span is None else float(np.max(temporal_iou(np.array(span), gt))))
    return out


def iou_boundary_reward(completions: Sequence, windows: Optional[Sequence] = None,
                        duration: Optional[Sequence] = None, **columns) -> list[Optional[float]]:
    """IoU x (1 - |ds| / T) x (1 - |de| / T): IoU, sharpened by the boundary errors ``ds``, ``de``
    against the best-matching window, relative to the video length ``T`` (each factor clipped to
    [0, 1]). 0 when malformed; None without windows or with a non-positive duration.

    >>> iou_boundary_reward(["<answer>2 to 6</answer>"], windows=[[[0, 4]]], duration=[10.0])
    [0.21333333333333335]
    """
    n = len(completions)
    cols = {"windows": windows, "duration": duration, **columns}
    windows = _column(cols, "windows", n, "iou_boundary_reward")
    duration = _column(cols, "duration", n, "iou_boundary_reward")
    qids = columns.get("qid")
    out: list[Optional[float]] = []
    for i, (completion, gt, length) in enumerate(zip(completions, windows, duration)):
        gt = _gt_array(gt, _where("iou_boundary_reward", i, qids))
        try:
            length = float(length)
        except (TypeError, ValueError):
            length = float("nan")
        if gt is None or not (math.isfinite(length) and length > 0):
            out.append(None)
            continue
        span = _span(completion_text(completion))
        if span is None:
            out.append(0.0)
            continue
        ious = np.asarray(temporal_iou(np.array(span), gt))
        best = int(np.argmax(ious))
        start_factor = min(max(1.0 - abs(span[0] - gt[best, 0]) / length, 0.0), 1.0)
        end_factor = min(max(1.0 - abs(span[1] - gt[best, 1]) / length, 0.0), 1.0)
        out.append(float(ious[best] * start_factor * end_factor))
    return out


def format_reward(completions: Sequence, **columns) -> list[float]:
    """1.0 when the whole completion is ``<think>...</think><answer>...</answer>`` with a parsable
    answer (:func:`vtg_rl.spans.is_well_formed`), else 0.0.

    >>> format_reward(["<think>red at 2 s</think><answer>2 to 6</answer>", "<answer>2 to 6</answer>"])
    [1.0, 0.0]
    """
    return [1.0 if is_well_formed(completion_text(c)) else 0.0 for c in completions]


def answer_accuracy_reward(completions: Sequence, answer: Optional[Sequence] = None,
                           options: Optional[Sequence] = None, **columns) -> list[Optional[float]]:
    """Grounded QA: 1.0 when the answered option letter (``<answer>B; 3 to 5</answer>``) is right.

    ``answer`` is a letter ("B") or an option index (1); samples without one get None (TRL then
    ignores this function for them), so the function can sit beside grounding-only data.

    >>> answer_accuracy_reward(["<answer>B; 1 to 2</answer>", "<answer>A</answer>", "x"],
    ...                        answer=["B", 1, None], options=[["x", "y"]] * 3)
    [1.0, 0.0, None]
    """
    n = len(completions)
    cols = {"answer": answer, "options": options, **columns}
    answers = _column(cols, "answer", n, "answer_accuracy_reward", required=False)
    options = _column(cols, "options", n, "answer_accuracy_reward", required=False)
    out: list[Optional[float]] = []
    for completion, gt, opts in zip(completions, answers, options):
        gt = normalise_choice(gt)
        if gt is None:
            out.append(None)
            continue
        choice = parse_choice(completion_text(completion), list(opts) if opts else None)
        out.append(1.0 if choice == gt else 0.0)
    return out


REWARD_FUNCS: dict[str, RewardFunc] = {
    "iou_reward": iou_reward,
    "iou_boundary_reward": iou_boundary_reward,
    "format_reward": format_reward,
    "answer_accuracy_reward": answer_accuracy_reward,
}


def composite_reward(weights: dict[str, float]) -> RewardFunc:
    """One reward function: the weighted sum of registered rewards (names of :data:`REWARD_FUNCS`).

    A component that returns None for a sample (nothing to score) adds nothing; a sample no
    component can score gets None.

    >>> f = composite_reward({"iou_reward": 1.0, "format_reward": 0.5})
    >>> f(["<think>.</think><answer>0 to 4</answer>", "<answer>0 to 2</answer>"], windows=[[[0, 4]], [[0, 4]]])
    [1.5, 0.5]
    """
    if not weights:
        raise ValueError("composite_reward needs at least one {name: weight}")
    unknown = [name for name in weights if name not in REWARD_FUNCS]
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; choose from {sorted(REWARD_FUNCS)}")
    bad = {k: w for k, w in weights.items() if not isinstance(w, (int, float)) or not math.isfinite(w)}
    if bad:
        raise ValueError(f"reward weights must be finite numbers, got {bad}")
    parts = [(REWARD_FUNCS[name], float(w)) for name, w in weights.items()]

    def composite(completions: Sequence, **columns) -> list[Optional[float]]:
        total: list[Optional[float]] = [None] * len(completions)
        for func, weight in parts:
            for i, r in enumerate(func(completions, **columns)):
                if r is not None:
                    total[i] = (total[i] or 0.0) + weight * r
        return total

    composite.__name__ = "composite_reward"  # TRL logs rewards under the function's __name__
    composite.__doc__ = f"Weighted sum {dict(weights)} of vtg_rl rewards."
    return composite


# --------------------------------------------------------------------------- logging
def answer_stats(completions: Sequence, **columns) -> dict[str, float]:
    """Counts and rates of the answer failure modes of a batch, plus mean IoU / format rate, for logs.

    Keys: ``count``; ``malformed`` (no parsable ``S to E`` answer, NaN included), ``nan`` (the
    answer holds nan/inf), ``start_after_end``, ``zero_length`` (start == end), ``out_of_range``
    (start < 0 or end > ``duration``), each with a ``*_rate``; ``format_rate``; ``iou_mean`` (over
    samples with ``windows``); ``answer_accuracy`` (over samples with an ``answer``) when any.

    >>> s = answer_stats(["<answer>5 to 2</answer>", "<answer>nan to 2</answer>", "<answer>1 to 12</answer>"],
    ...                  windows=[[[0, 4]]] * 3, duration=[10, 10, 10])
    >>> s["start_after_end"], s["nan"], s["malformed"], s["out_of_range"]
    (1.0, 1.0, 1.0, 1.0)
    """
    n = len(completions)
    texts = [completion_text(c) for c in completions]
    duration = _column(columns, "duration", n, "answer_stats", required=False)
    counts = dict.fromkeys(("malformed", "nan", "start_after_end", "zero_length", "out_of_range"), 0)
    for text, length in zip(texts, duration):
        span = parse_answer(text)
        if span is None:
            counts["malformed"] += 1
            blocks = ANSWER_BLOCK.findall(text)
            counts["nan"] += bool(blocks and _NON_FINITE.search(blocks[-1]))
            continue
        start, end = span
        counts["start_after_end"] += start > end
        counts["zero_length"] += start == end
        try:
            beyond = length is not None and end > float(length)
        except (TypeError, ValueError):
            beyond = False
        counts["out_of_range"] += start < 0 or beyond
    stats: dict[str, float] = {"count": float(n)}
    for key, value in counts.items():
        stats[key] = float(value)
        stats[f"{key}_rate"] = value / n if n else 0.0
    stats["format_rate"] = float(np.mean(format_reward(texts))) if n else 0.0
    if columns.get("windows") is not None:
        ious = [r for r in iou_reward(texts, **columns) if r is not None]
        if ious:
            stats["iou_mean"] = float(np.mean(ious))
    if columns.get("answer") is not None:
        correct = [r for r in answer_accuracy_reward(texts, **columns) if r is not None]
        if correct:
            stats["answer_accuracy"] = float(np.mean(correct))
    return stats


# --------------------------------------------------------------------------- DETR side
def span_iou_reward(pred_spans, gt_spans):
    """Per-sample tIoU of predicted spans ``(..., 2)`` with their paired ground truth ``(..., 2)``.

    The reward of the DETR heads' RL stages (TPRL's self-critical REINFORCE): a plain call of
    :func:`vtg_rl.spans.temporal_iou` (numpy in, numpy out; torch in, torch out), *detached* for
    tensors because a reward is a constant to the policy gradient. Spans must already be in the
    same units (seconds, or normalised [0, 1] time).

    >>> span_iou_reward(np.array([[0.0, 0.4], [0.5, 1.0]]), np.array([[0.2, 0.6], [0.5, 1.0]]))
    array([0.33333333, 1.        ])
    """
    iou = temporal_iou(pred_spans, gt_spans)
    return iou.detach() if hasattr(iou, "detach") else iou
