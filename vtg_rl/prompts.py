"""Prompts for video grounding with a multimodal LLM (the task's question and answer format, shared by the
LLM trainers, the tiny models' tokenizer corpus and inference).

The model reasons in ``<think>...</think>`` and answers ``<answer>S to E</answer>`` in seconds with
two decimals. Messages use the HF chat format with a payload-free ``{"type": "video"}`` block: the
video itself travels in its own column and is decoded by :mod:`vtg_rl.data.video` (a path inside
the block would be unified by ``datasets`` into every text block and rendered twice).
"""

from __future__ import annotations

from typing import Optional

from vtg_rl.data.schema import VTGSample

# The question goes before the video and only fixed text follows it. Why: Qwen2.5-VL places the text after
# a video at a fixed offset from the video's first temporal position, so the rotary phase between an
# answer token and the video token of second s is a function of s alone *if* the number of tokens in
# between is the same for every sample; a query of varying length in between shifts it per sample.
# (On its own this did not shorten the tiny model's cold-start plateau in a trial; the every-shape
# traces of vtg_rl.mllm.reasoning did. README, "Cold-start SFT".)
GROUNDING_QUESTION = "The video is {duration:.2f} seconds long. When does this happen: {query}"
GROUNDING_FORMAT = ("Think inside <think></think>, then give the start and end in seconds inside "
                    "<answer></answer>, as <answer>S to E</answer>.")
# whole instructions, for the tokenizer's training text (vtg_rl.models.tokenizer)
GROUNDING_INSTRUCTION = GROUNDING_QUESTION + " " + GROUNDING_FORMAT

QA_QUESTION = "The video is {duration:.2f} seconds long. Question: {query}\nOptions:\n{options}"
QA_FORMAT = ("Think inside <think></think>, then give the option letter and the start and end in seconds of the "
             "evidence inside <answer></answer>, as <answer>X; S to E</answer>.")
QA_INSTRUCTION = QA_QUESTION + "\n" + QA_FORMAT


def format_options(options: list[str]) -> str:
    return "\n".join(f"({chr(ord('A') + i)}) {opt}" for i, opt in enumerate(options))


def prompt_parts(sample: VTGSample) -> tuple[str, str]:
    """(question, answer format) for one sample: the text before and the fixed text after the video."""
    query = sample.query.strip()
    if sample.options:
        return QA_QUESTION.format(duration=sample.duration, query=query,
                                  options=format_options(sample.options)), QA_FORMAT
    return GROUNDING_QUESTION.format(duration=sample.duration, query=query), GROUNDING_FORMAT


def grounding_messages(sample: VTGSample, answer: Optional[str] = None) -> list[dict]:
    """Chat messages: one user turn (question, video, answer format), plus the assistant turn when
    ``answer`` is given."""
    question, answer_format = prompt_parts(sample)
    content = [{"type": "text", "text": question + "\n"}, {"type": "video"}, {"type": "text", "text": answer_format}]
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages
