"""Batched generation with a video LLM, and held-out evaluation of its answers.

Used by the SFT / GRPO recipes (eval before and after training), the data agents (rollouts) and
``vtg-rl predict``. Predictions are written as QVHighlights submission rows
(``{"qid", "pred_relevant_windows": [[s, e, score]]}``) so ``vtg-rl eval`` scores them.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from vtg_rl.data.schema import VTGSample
from vtg_rl.mllm.families import adapter_for
from vtg_rl.prompts import grounding_messages
from vtg_rl.mllm.video_source import VideoSampling
from vtg_rl.spans import clamp_spans, is_well_formed, parse_answer, temporal_iou

#: the Qwen families' vision tokens, which must never be generated as text (other families: their adapter's
#: ``vision_token_strings``)
VISION_TOKENS = ("<|video_pad|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")


def suppressed_token_ids(tokenizer) -> list[int]:
    """Ids of :data:`VISION_TOKENS` in ``tokenizer`` (a processor's adapter knows its family's own set)."""
    ids = []
    for t in VISION_TOKENS:
        i = tokenizer.convert_tokens_to_ids(t)
        if i is not None and i != tokenizer.unk_token_id:
            ids.append(int(i))
    return ids


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


@torch.no_grad()
def generate_answers(model, processor, samples: list[VTGSample], sampling: Optional[VideoSampling] = None,
                     batch_size: int = 8, do_sample: bool = False, num_return_sequences: int = 1,
                     temperature: float = 1.0, max_new_tokens: int = 160, progress: bool = True,
                     desc: str = "generate",
                     frame_transform: Optional[Callable[[VTGSample, object], object]] = None) -> list[list[str]]:
    """Generate ``num_return_sequences`` completions per sample (greedy by default).

    ``frame_transform(sample, sampled_video) -> sampled_video`` edits the frames before the model sees
    them (the reflection agent blanks the annotated span with it; blanked frames keep their timestamps).
    Returns one list of decoded completions per sample, in order.
    """
    adapter = adapter_for(processor)
    sampling = (sampling or VideoSampling()).for_family(adapter)
    tok = processor.tokenizer
    end_id = adapter.end_token_id()
    pad_id = adapter.pad_token_id()
    was_training = model.training
    model.eval()
    results: list[list[str]] = []
    bar = tqdm(total=len(samples), desc=desc, disable=not progress, leave=False)
    try:
        for chunk in _batches(samples, batch_size):
            texts = [adapter.render_prompt(grounding_messages(s), add_generation_prompt=True) for s in chunk]
            videos = [sampling.load(s.video_path, qid=s.qid) for s in chunk]
            if frame_transform is not None:
                videos = [frame_transform(s, v) for s, v in zip(chunk, videos)]
            batch = adapter.build_inputs(texts, videos, padding_side="left")
            video_kwargs = adapter.merge_videos(adapter.split_videos(batch, len(videos)))
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                      **adapter.forward_kwargs(batch["input_ids"], video_kwargs)}
            inputs = {k: v.to(model.device) for k, v in inputs.items()}
            out = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                temperature=temperature if do_sample else None, top_p=None, top_k=None,
                num_return_sequences=num_return_sequences, eos_token_id=end_id, pad_token_id=pad_id,
                suppress_tokens=adapter.suppress_token_ids(),
            )
            completions = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            for i in range(len(chunk)):
                results.append(completions[i * num_return_sequences:(i + 1) * num_return_sequences])
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return results


def completion_to_window(completion: str, duration: float) -> Optional[list[float]]:
    """The predicted ``[start, end]`` of a completion, clamped into the video; ``None`` if malformed."""
    span = parse_answer(completion)
    if span is None or not span[0] < span[1]:
        return None
    s, e = clamp_spans(np.array(span, dtype=np.float64), duration).tolist()
    return [s, e] if s < e else None


def submission_rows(samples: list[VTGSample], completions: list[list[str]]) -> list[dict]:
    """QVHighlights submission rows. A malformed answer becomes the zero-length window ``[0, 0]`` with
    score 0 (it scores IoU 0 and keeps the row, so no qid goes missing)."""
    rows = []
    for s, outs in zip(samples, completions):
        windows = []
        for rank, text in enumerate(outs):
            w = completion_to_window(text, s.duration)
            if w is not None:
                windows.append([w[0], w[1], 1.0 / (rank + 1)])
        rows.append({"qid": s.qid, "query": s.query, "vid": s.vid,
                     "pred_relevant_windows": windows or [[0.0, 0.0, 0.0]]})
    return rows


def score_completions(samples: list[VTGSample], completions: list[str]) -> dict[str, float]:
    """Top-1 metrics of one completion per sample: mIoU, R1@{0.3,0.5,0.7}, well-formed rate.

    IoU is against the sample's best-matching ground-truth window (the R1@m protocol).
    """
    ious = np.zeros(len(samples))
    formed = np.zeros(len(samples))
    for i, (s, text) in enumerate(zip(samples, completions)):
        formed[i] = is_well_formed(text)
        w = completion_to_window(text, s.duration)
        if w is not None and s.windows:
            ious[i] = float(np.max(temporal_iou(np.array(w)[None], np.array(s.windows))))
    n = max(len(samples), 1)
    return {
        "n": len(samples),
        "miou": float(ious.sum() / n),
        "r1_03": float((ious >= 0.3).sum() / n),
        "r1_05": float((ious >= 0.5).sum() / n),
        "r1_07": float((ious >= 0.7).sum() / n),
        "format_rate": float(formed.sum() / n),
    }


def evaluate_model(model, processor, samples: list[VTGSample], sampling: Optional[VideoSampling] = None,
                   batch_size: int = 8, max_new_tokens: int = 160, progress: bool = True,
                   submission_path: Optional[str] = None) -> dict[str, float]:
    """Greedy answers on held-out samples -> metrics (and optionally a submission jsonl)."""
    completions = generate_answers(model, processor, samples, sampling=sampling, batch_size=batch_size,
                                   max_new_tokens=max_new_tokens, progress=progress, desc="eval")
    top1 = [c[0] for c in completions]
    metrics = score_completions(samples, top1)
    if submission_path is not None:
        from vtg_rl.metrics import write_submission

        write_submission(submission_path, submission_rows(samples, completions))
    return metrics
