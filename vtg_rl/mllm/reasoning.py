"""Cold-start targets in the reasoning format: ``<think>...</think><answer>S to E</answer>``.

VTG-R1's finding is that the quality of the cold-start data decides how far RL can go, so targets
are either *faithful* (the synthetic world knows what is seen when) or *filtered* (for real data, a
trace is kept only when its own answer agrees with the annotation).

* Synthetic samples: :func:`synthetic_trace` writes a short trace from the generator's truth.
* Real data: :class:`TraceBank` reads ``{"qid": ..., "completion": "<think>...</think><answer>...</answer>"}``
  jsonl (from any source: a bigger model, a person) and :func:`target_for_sample` applies the filter.
* Samples with neither get a plain template trace built from the annotation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from vtg_rl.data.schema import VTGSample
from vtg_rl.spans import format_answer, parse_answer, parse_choice, temporal_iou


def _fmt_span(span) -> str:
    return f"{float(span[0]):.1f} s to {float(span[1]):.1f} s"


def synthetic_trace(sample: VTGSample) -> Optional[str]:
    """A faithful trace for a synthetic-world sample (``None`` for other samples): what is seen when,
    every shape in the order it appears, then which one the query names.

    >>> # e.g. "<think>1.0 s to 2.5 s: yellow cross. 3.0 s to 7.5 s: red circle. 10.0 s to 12.0 s:
    >>> # orange circle. the query names the red circle.</think><answer>3.00 to 7.50</answer>"

    Why every shape and not only the target: each listed span is one more lesson in reading time off
    the video per sample (the cold start's bottleneck, README "Cold-start SFT"), and naming the other
    shapes teaches the colours and shapes the query has to be told apart from.
    """
    meta = sample.meta or {}
    target = meta.get("target")
    if not target or not sample.windows:
        return None
    start, end = sample.windows[0]
    # the target at its annotated span (a partial annotation's unannotated repeat is not the answer)
    seen = [((float(start), float(end)), target["description"])]
    seen += [((float(d["span"][0]), float(d["span"][1])), d["description"])
             for d in meta.get("distractors", []) if d.get("span")]
    seen.sort(key=lambda item: item[0])
    thoughts = [f"{_fmt_span(span)}: {description}." for span, description in seen]
    thoughts.append(f"the query names the {target['description']}.")
    answer = format_answer(start, end)
    if sample.options and sample.answer:
        answer = answer.replace("<answer>", f"<answer>{sample.answer}; ")
    return f"<think>{' '.join(thoughts)}</think>{answer}"


def template_trace(sample: VTGSample) -> Optional[str]:
    """A minimal trace from the annotation alone (real data without traces)."""
    if not sample.windows:
        return None
    start, end = sample.windows[0]
    answer = format_answer(start, end)
    if sample.options and sample.answer:
        answer = answer.replace("<answer>", f"<answer>{sample.answer}; ")
    return f"<think>from {_fmt_span((start, end))} the moment matches the query.</think>{answer}"


class TraceBank:
    """Reasoning traces by qid, read from jsonl (``{"qid": ..., "completion": ...}`` per line)."""

    def __init__(self, traces: dict[str, str]):
        self.traces = traces

    @classmethod
    def from_jsonl(cls, path: str) -> "TraceBank":
        traces = {}
        with Path(path).open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    traces[str(row["qid"])] = str(row["completion"])
                except (ValueError, KeyError) as err:
                    raise ValueError(f"{path}:{lineno}: expected {{'qid', 'completion'}}: {err}") from err
        return cls(traces)

    def get(self, qid: str) -> Optional[str]:
        return self.traces.get(str(qid))


def trace_agrees(sample: VTGSample, trace: str, min_iou: float) -> bool:
    """Quality filter: the trace's own answer must match the annotation (IoU >= ``min_iou`` with the
    best ground-truth window; and the right option for grounded QA)."""
    span = parse_answer(trace)
    if span is None or not span[0] < span[1] or not sample.windows:
        return False
    iou = float(np.max(temporal_iou(np.array(span)[None], np.array(sample.windows))))
    if iou < min_iou:
        return False
    if sample.answer and parse_choice(trace, sample.options) != sample.answer:
        return False
    return True


def target_for_sample(sample: VTGSample, bank: Optional[TraceBank] = None, min_iou: float = 0.5) -> Optional[str]:
    """The SFT target of one sample, or ``None`` to leave the sample out.

    Order: a trace from ``bank`` (kept only if it passes :func:`trace_agrees`), else the synthetic
    world's faithful trace, else the template trace.
    """
    if bank is not None:
        trace = bank.get(sample.qid)
        if trace is not None:
            return trace if trace_agrees(sample, trace, min_iou) else None
    return synthetic_trace(sample) or template_trace(sample)
