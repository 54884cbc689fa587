"""Never run a model folder's own Python code unless the user asked for it.

A checkpoint folder whose ``config.json`` (or processor / tokenizer config) has an ``auto_map`` names
Python files inside the folder that ``transformers`` would import. Without an explicit
``trust_remote_code`` transformers asks on a terminal, and one careless "y" runs whatever the folder
holds. vtg-rl passes ``trust_remote_code=False`` to every ``from_pretrained`` and refuses such folders
up front with a message, unless the user gave ``--trust_remote_code``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: the files of a checkpoint folder through which transformers may import the folder's own code
CONFIG_FILES = ("config.json", "processor_config.json", "preprocessor_config.json",
                "video_preprocessor_config.json", "tokenizer_config.json", "feature_extractor_config.json",
                "image_processor_config.json")


def custom_code_entries(path: str | os.PathLike) -> dict[str, dict]:
    """``{config file name: its auto_map}`` for each config file of a local folder that names custom code."""
    folder = Path(path)
    found: dict[str, dict] = {}
    if not folder.is_dir():
        return found
    for name in CONFIG_FILES:
        f = folder / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # transformers reports an unreadable config itself
        if isinstance(data, dict) and data.get("auto_map"):
            found[name] = data["auto_map"]
    return found


def refuse_custom_code(path: str | os.PathLike, trust_remote_code: bool) -> None:
    """Raise ``ValueError`` when the local folder ``path`` asks to run its own code and the user did not
    pass ``--trust_remote_code``."""
    if trust_remote_code:
        return
    entries = custom_code_entries(path)
    if entries:
        names = ", ".join(f"{name} (auto_map: {', '.join(sorted(map(str, m)))})" for name, m in entries.items())
        raise ValueError(
            f"{path}: the model folder asks to run its own Python code through {names}; vtg-rl does not run "
            f"a checkpoint's code unless you pass --trust_remote_code (only for a folder whose code you have read)")
