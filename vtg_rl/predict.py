"""Ground a query in a video with any model vtg-rl trains: ``vtg-rl predict`` and :class:`Grounder`.

    from vtg_rl.predict import Grounder
    grounder = Grounder.from_pretrained("runs/demo/grpo/checkpoint-final")
    print(grounder.predict("video.mp4", "when does the red circle appear?", top_k=3))

``from_pretrained`` recognises the folder: a video-LLM checkpoint (``config.json`` of a
Qwen2.5-VL-style model, as written by ``recipes/sft.py`` / ``recipes/grpo.py``) or a DETR / R2 head
checkpoint (``head_config.json``, as written by ``recipes/girl_detr.py``, ``recipes/tprl.py`` and
``recipes/r2_tuning.py``, which records its frozen CLIP encoder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vtg_rl.data.schema import VTGSample
from vtg_rl.data.video import VideoDecodeError, sample_frames
from vtg_rl.spans import temporal_iou


@dataclass
class Span:
    start: float
    end: float
    score: float

    def as_list(self) -> list[float]:
        return [round(self.start, 2), round(self.end, 2), round(self.score, 4)]


def vote_spans(windows: list[list[float]], top_k: int, merge_iou: float = 0.7) -> list[Span]:
    """Rank sampled spans by agreement: spans with IoU >= ``merge_iou`` vote together; the first
    (greedy) span leads its cluster, so the greedy answer wins ties."""
    clusters: list[tuple[list[float], int]] = []
    for w in windows:
        for i, (rep, votes) in enumerate(clusters):
            if float(temporal_iou(np.array(rep), np.array(w))) >= merge_iou:
                clusters[i] = (rep, votes + 1)
                break
        else:
            clusters.append((w, 1))
    total = max(len(windows), 1)
    order = sorted(range(len(clusters)), key=lambda i: (-clusters[i][1], i))
    return [Span(clusters[i][0][0], clusters[i][0][1], clusters[i][1] / total) for i in order[:top_k]]


class LLMGrounder:
    """A video LLM checkpoint: greedy answer first, sampled answers vote for the rest of the top-k."""

    def __init__(self, model, processor, sampling=None):
        from vtg_rl.mllm.video_source import VideoSampling

        self.model, self.processor = model, processor
        self.sampling = sampling or VideoSampling()

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "LLMGrounder":
        from vtg_rl.models.tiny_qwen import load_qwen_vl

        model, processor = load_qwen_vl(path, **kwargs)
        return cls(model, processor)

    def predict(self, video: str, query: str, top_k: int = 1, samples_per_k: int = 4) -> list[Span]:
        from vtg_rl.mllm.inference import completion_to_window, generate_answers

        duration = sample_frames(video, fps=self.sampling.fps, max_frames=self.sampling.max_frames).duration
        sample = VTGSample(qid="query", vid=Path(video).stem, duration=float(duration), query=query,
                           video_path=str(video))
        texts = generate_answers(self.model, self.processor, [sample], sampling=self.sampling, progress=False)[0]
        if top_k > 1:
            texts += generate_answers(self.model, self.processor, [sample], sampling=self.sampling, do_sample=True,
                                      num_return_sequences=samples_per_k * top_k, progress=False)[0]
        windows = [w for w in (completion_to_window(t, duration) for t in texts) if w is not None]
        return vote_spans(windows, top_k) if windows else []


class Grounder:
    """Front door over every model family; see the module docstring."""

    @staticmethod
    def from_pretrained(path: str, **kwargs):
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such model folder")
        if (folder / "head_config.json").is_file():
            from vtg_rl.heads.grounder import HeadGrounder

            return HeadGrounder.from_pretrained(str(folder), **kwargs)
        if (folder / "config.json").is_file():
            return LLMGrounder.from_pretrained(str(folder), **kwargs)
        raise ValueError(f"{folder}: neither a video-LLM checkpoint (config.json) nor a vtg-rl head "
                         f"checkpoint (head_config.json)")


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (LLM, GIRL-DETR or R2-Tuning)")
    parser.add_argument("video", help="any file PyAV can read")
    parser.add_argument("query", help="the sentence to ground")
    parser.add_argument("--top-k", type=int, default=1, help="number of spans to print")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--trust_remote_code", "--trust-remote-code", action="store_true",
                        help="let a model folder whose config has an auto_map run its own Python code "
                             "(off by default: such folders are refused; use only for code you have read)")


def run(args) -> int:
    import sys

    if args.top_k < 1:
        print("vtg-rl predict: --top-k must be >= 1", file=sys.stderr)
        return 2
    try:
        grounder = Grounder.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
        spans = grounder.predict(args.video, args.query, top_k=args.top_k)
    except (VideoDecodeError, FileNotFoundError, ValueError) as err:
        print(f"vtg-rl predict: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"video": args.video, "query": args.query, "spans": [s.as_list() for s in spans]},
                         allow_nan=False))
        return 0
    print(f"{args.query!r} in {args.video}:")
    if not spans:
        print("  (the model gave no well-formed span)")
    for rank, s in enumerate(spans, 1):
        print(f"  {rank}. {s.start:7.2f} s -> {s.end:7.2f} s   score {s.score:.3f}")
    return 0
