"""A video-LLM checkpoint as a grounder: the greedy answer first, sampled answers vote for the rest of the top-k
(the ``video_llm`` kind of :mod:`vtg_rl.grounders`)."""

from __future__ import annotations

from pathlib import Path

from vtg_rl.data.schema import VTGSample
from vtg_rl.data.video import sample_frames
from vtg_rl.grounders import Span, vote_spans
from vtg_rl.mllm.families import adapter_for
from vtg_rl.mllm.inference import completion_to_window, generate_answers
from vtg_rl.mllm.video_source import VideoSampling


class LLMGrounder:
    """Greedy answer first, ``samples_per_k x top_k`` sampled answers vote for the other spans."""

    def __init__(self, model, processor, sampling=None):
        self.model, self.processor = model, processor
        self.sampling = (sampling or VideoSampling()).for_family(adapter_for(processor))

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "LLMGrounder":
        from vtg_rl.models.tiny_qwen import load_qwen_vl

        model, processor = load_qwen_vl(path, **kwargs)
        return cls(model, processor)

    def predict(self, video: str, query: str, top_k: int = 1, samples_per_k: int = 4) -> list[Span]:
        duration = sample_frames(video, fps=self.sampling.fps, max_frames=self.sampling.max_frames).duration
        sample = VTGSample(qid="query", vid=Path(video).stem, duration=float(duration), query=query,
                           video_path=str(video))
        texts = generate_answers(self.model, self.processor, [sample], sampling=self.sampling, progress=False)[0]
        if top_k > 1:
            texts += generate_answers(self.model, self.processor, [sample], sampling=self.sampling, do_sample=True,
                                      num_return_sequences=samples_per_k * top_k, progress=False)[0]
        windows = [w for w in (completion_to_window(t, duration) for t in texts) if w is not None]
        return vote_spans(windows, top_k) if windows else []
