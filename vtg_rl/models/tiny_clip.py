"""A tiny, randomly initialised CLIP for the DETR / R2-Tuning side, saved and loaded like ``openai/clip-*``.

Vision tower: 56x56 images, patch 14 (16 patches + CLS), hidden 64, 4 layers; text tower: hidden 64, 4 layers,
a CLIP-style BPE trained here on our queries; projection 64. R2-Tuning reads the last 4 layers of both towers,
so both have 4. Loaded only through ``from_pretrained(dir)`` (:func:`load_clip`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

BUILD_MARKER = "vtg_rl_build.json"
BUILD_VERSION = 2  # bump when the tokenizer corpus or the build changes: stale dirs are rebuilt
IMAGE_SIZE = 56


def build_clip_processor(seed: int = 0, vocab_size: int = 640, max_length: int = 64):
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    from vtg_rl.models.tokenizer import train_clip_tokenizer

    vocab, merges = train_clip_tokenizer(vocab_size=vocab_size, seed=seed)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_tiny_clip(out_dir, seed: int = 0) -> Path:
    """Build (seeded), save and return ``out_dir``; reuses a previous build with the same seed."""
    out_dir = Path(out_dir)
    marker = {"kind": "tiny_clip", "version": BUILD_VERSION, "seed": seed}
    marker_path = out_dir / BUILD_MARKER
    needed = ["config.json", "model.safetensors", "tokenizer.json", "processor_config.json"]
    if marker_path.is_file() and all((out_dir / n).is_file() for n in needed):
        if json.loads(marker_path.read_text()) == marker:
            return out_dir
    from transformers import CLIPConfig, CLIPModel

    out_dir.mkdir(parents=True, exist_ok=True)
    marker_path.unlink(missing_ok=True)

    processor = build_clip_processor(seed=seed)
    tok = processor.tokenizer
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, max_position_embeddings=tok.model_max_length,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=14, hidden_size=64, intermediate_size=256,
                           num_hidden_layers=4, num_attention_heads=4),
        projection_dim=64,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).to(torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    marker_path.write_text(json.dumps(marker, indent=1, sort_keys=True, allow_nan=False))
    return out_dir


def load_clip(path, dtype=torch.float32, trust_remote_code: bool = False):
    """(CLIPModel, CLIPProcessor) through ``from_pretrained`` only; a folder that asks to run its own code
    (``auto_map``) is refused unless ``trust_remote_code``."""
    from transformers import CLIPModel, CLIPProcessor

    from vtg_rl.models.remote_code import refuse_custom_code

    path = Path(path) if Path(str(path)).exists() else path
    if isinstance(path, Path) and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; build one with "
                                f"`vtg-rl models build-tiny --kind clip --out {path}`")
    refuse_custom_code(path, trust_remote_code)
    return (CLIPModel.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code),
            CLIPProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code))
