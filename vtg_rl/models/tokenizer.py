"""Tokenizers for the tiny local models, trained here with the `tokenizers` library.

There is no model hub at run time, so the tiny Qwen2.5-VL and the tiny CLIP get their own byte-level BPE,
trained on the text this project actually produces: the grounding / QA prompts of
:mod:`vtg_rl.prompts`, templated synthetic queries, think-then-answer completions and numbers.

Design choices:
- every digit is its own token, so "12.50" is always ``1 2 . 5 0`` and the model can learn numbers digit by
  digit, as real Qwen2.5 does. Training puts ``Digits(individual_digits=True)`` in front of Qwen's split
  regex; transformers' ``Qwen2Tokenizer`` rebuilds its own pipeline (that regex alone) on reload, which
  isolates every ``\\p{N}`` too, so no merge across digits exists and the tokenization is the same;
- byte-level: the 256 byte symbols are always in the vocabulary, so no input is ever unknown;
- Qwen's special tokens keep Qwen's names, so the processor, TRL and our trainers find
  ``<|video_pad|>`` / ``<|im_end|>`` exactly where a real ``Qwen/Qwen2.5-VL-*`` checkpoint has them;
- the vocabulary is small (480 tokens), so embeddings stay a small part of a ~1.3 M-parameter model.
"""

from __future__ import annotations

import itertools
import json
import random
from importlib import resources
from typing import Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

#: Qwen2.5-VL's added tokens, in Qwen's id order (the first 14 are special, the rest are ordinary added tokens).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
QWEN_EXTRA_ADDED_TOKENS = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]

# The same split regex as transformers' Qwen2Tokenizer, so a reload through `from_pretrained` (which may rebuild
# the pre-tokenizer from the class definition) tokenizes exactly as training did.
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CLIP_PRETOKENIZE_REGEX = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)

# covers the synthetic world's vocabulary (vtg_rl.data.synthetic_plan) and a few more
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan", "magenta", "pink", "gray",
           "black", "brown", "lime", "teal"]
SHAPES = ["circle", "square", "triangle", "star", "cross", "diamond", "rectangle", "ring", "disk", "bar", "shape"]
QUERY_TEMPLATES = [
    "when does the {c} {s} appear?", "when is the {c} {s} visible?", "when does the {c} {s} move?",
    "when does the {c} {s} show up?", "the {c} {s} appears.", "a {c} {s} moves across the frame.",
    "find the moment the {c} {s} is on screen.", "when can we see the {c} {s}?",
    "what colour is the {s}?", "which shape is {c}?", "when does the {c} {s} disappear?",
    "a {c} {s} is shown on the screen.", "the {c} {s} comes into view.",
]


def chat_template_text() -> str:
    """Qwen2.5-VL's chat template as shipped by TRL (renders ``{"type": "video"}`` as the vision block)."""
    return (resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text()


def _number(rng: random.Random) -> str:
    return f"{rng.uniform(0, 150):.2f}"


def corpus(seed: int = 0, n: int = 3000) -> Iterator[str]:
    """The training text: our prompts, queries, completions and numbers (deterministic by seed)."""
    from vtg_rl.prompts import GROUNDING_INSTRUCTION, QA_INSTRUCTION, format_options

    rng = random.Random(seed)
    yield "You are a helpful assistant."
    yield "system\nuser\nassistant\n"
    for _ in range(n):
        c, s = rng.choice(COLOURS), rng.choice(SHAPES)
        query = rng.choice(QUERY_TEMPLATES).format(c=c, s=s)
        start = round(rng.uniform(0, 20) * 2) / 2
        end = start + round(rng.uniform(0.5, 10) * 2) / 2
        duration = rng.uniform(max(end, 8.0), max(end, 8.0) + 16)
        if rng.random() < 0.8:
            yield GROUNDING_INSTRUCTION.format(duration=duration, query=query)
            yield (f"<think>the {c} {s} is visible from {start:.1f} s to {end:.1f} s.</think>"
                   f"<answer>{start:.2f} to {end:.2f}</answer>")
        else:
            options = [f"the {rng.choice(COLOURS)} {rng.choice(SHAPES)}" for _ in range(4)]
            letter = chr(ord("A") + rng.randrange(4))
            yield QA_INSTRUCTION.format(duration=duration, query=query, options=format_options(options))
            yield (f"<think>the answer is ({letter}); it happens from {start:.1f} s to {end:.1f} s.</think>"
                   f"<answer>{letter}; {start:.2f} and {end:.2f}</answer>")
        yield " ".join(_number(rng) for _ in range(4))
    yield " ".join(str(i) for i in range(10))


def train_qwen_tokenizer(vocab_size: int = 480, seed: int = 0) -> Tokenizer:
    """A byte-level BPE with Qwen's pre-tokenization, single-digit tokens and Qwen's added tokens."""
    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(QWEN_EXTRA_ADDED_TOKENS),
        min_frequency=2,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_EXTRA_ADDED_TOKENS])
    return tok


def build_qwen_tokenizer(vocab_size: int = 480, seed: int = 0):
    """The trained BPE wrapped as transformers' ``Qwen2Tokenizer`` (the fast, tokenizers-backed class) with
    Qwen2.5-VL-Instruct's token roles (eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos) and chat template."""
    from transformers import Qwen2Tokenizer

    raw = train_qwen_tokenizer(vocab_size=vocab_size, seed=seed)
    tokenizer = Qwen2Tokenizer(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               unk_token=None, bos_token=None, model_max_length=32768)
    tokenizer.chat_template = chat_template_text()
    return tokenizer


def train_clip_tokenizer(vocab_size: int = 640, seed: int = 0) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE (lower-cased words, ``</w>`` word ends, byte-level) on our queries; returns (vocab, merges)
    for transformers' ``CLIPTokenizer``, which rebuilds the same pipeline around them."""
    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", continuing_subword_prefix="", end_of_word_suffix="</w>",
                               fuse_unk=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_PRETOKENIZE_REGEX), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=["<|startoftext|>", "<|endoftext|>"],
        # every byte both inside and at the end of a word, so no query is ever unknown
        initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False,
    )
    word_ends = [" ".join(alphabet)]  # teaches "x</w>" for every byte x
    tok.train_from_iterator(itertools.chain(corpus(seed, n=1500), word_ends), trainer=trainer)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(tok.to_str())["model"]["merges"]]
    return tok.get_vocab(), merges


#: Tokens Qwen3-generation checkpoints (Qwen3-VL, Qwen3.5) add after Qwen2.5-VL's: tool responses and the
#: thinking delimiters, ordinary (non-special) added tokens as there, so ``<think>`` is one id and survives decoding.
QWEN3_EXTRA_ADDED_TOKENS = ["<tool_response>", "</tool_response>", "<think>", "</think>"]
#: LLaVA-OneVision's media placeholders, special tokens that the processor expands to one token per feature.
LLAVA_ONEVISION_SPECIAL_TOKENS = ["<image>", "<video>"]


def trl_chat_template(name: str) -> str:
    """A chat template shipped with TRL (``trl/chat_templates/<name>.jinja``), e.g. ``qwen3_vl``."""
    return (resources.files("trl") / "chat_templates" / f"{name}.jinja").read_text()


def build_family_tokenizer(chat_template: str, tokenizer_class=None, added_tokens=(), special_tokens=(),
                           vocab_size: int = 480, seed: int = 0):
    """The project BPE (single-digit tokens, Qwen's special tokens) for another model family.

    ``tokenizer_class`` is the class the family's ``AutoTokenizer`` entry loads (default ``Qwen2Tokenizer``), so
    the tokenizer built here and the one reloaded from disk are the same class; ``added_tokens`` (ordinary) and
    ``special_tokens`` go after the trained vocabulary, in order.
    """
    from transformers import Qwen2Tokenizer

    raw = train_qwen_tokenizer(vocab_size=vocab_size, seed=seed)
    tokenizer = (tokenizer_class or Qwen2Tokenizer)(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None,
        model_max_length=32768)
    if added_tokens:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in added_tokens])
    if special_tokens:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens],
                             special_tokens=True)
    tokenizer.chat_template = chat_template
    return tokenizer
