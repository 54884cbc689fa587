"""Evaluation front: one :func:`evaluate` for moment retrieval, highlight detection and grounded QA.

Predictions are QVHighlights submission rows (one JSON object per line)::

    {"qid": 7803, "pred_relevant_windows": [[s, e, score], ...],   # listed by decreasing score
     "pred_saliency_scores": [..., one per 2 s clip],              # optional (highlights)
     "pred_answer": "B"}                                          # grounded QA only

Ground truth is the unified schema (:func:`vtg_rl.data.schema.read_jsonl`) or a raw
QVHighlights-style jsonl (``relevant_windows``, integer ``qid``); qids are compared as strings.
The numbers equal the QVHighlights reference protocol (moment_detr's ``standalone_eval``) to
the second decimal: see :mod:`~vtg_rl.metrics.moment_retrieval` and :mod:`vtg_rl.metrics.highlights` for the rules.
Highlight-only benchmarks (``tvsum``, ``youtube_highlight``) are scored by
:mod:`vtg_rl.metrics.summarization` from ``pred_saliency_scores`` alone (one score per labelled clip).

>>> gt = [{"qid": 1, "duration": 150, "relevant_windows": [[10, 20]]}]
>>> pred = [{"qid": 1, "pred_relevant_windows": [[10, 20, 0.9], [50, 60, 0.1]]}]
>>> evaluate(pred, gt, protocol="charades")["brief"]["R1@0.7"]
100.0

Modules: :mod:`~vtg_rl.metrics.evaluate` (the protocols), :mod:`~vtg_rl.metrics.moment_retrieval`,
:mod:`~vtg_rl.metrics.highlights`, :mod:`~vtg_rl.metrics.summarization`, :mod:`~vtg_rl.metrics.grounded_qa` and
:mod:`~vtg_rl.metrics.submission` (reading and writing submission files).
"""

from vtg_rl.metrics.evaluate import PROTOCOLS, evaluate
from vtg_rl.metrics.submission import SubmissionError, load_ground_truth, read_submission, write_submission

__all__ = ["PROTOCOLS", "evaluate", "SubmissionError", "load_ground_truth", "read_submission", "write_submission"]
