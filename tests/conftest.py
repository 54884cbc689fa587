"""Shared fixtures: the tiny local models and a small synthetic world, built once per session.

They are built with the project's own builders (the same code `make demo` uses) into a
session-scoped temporary directory, and loaded back through `from_pretrained(dir)`.
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the video probe cache of the tests' runs (subprocesses included) stays out of the user's cache folder
os.environ.setdefault("VTG_RL_CACHE_DIR", tempfile.mkdtemp(prefix="vtg_rl_test_cache_"))


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen"), seed=0)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from vtg_rl.models.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), seed=0)


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory):
    """A 40-sample world (train/val/test jsonl + mp4s); returns {split: jsonl Path}."""
    from vtg_rl.data.synthetic import generate_world

    return generate_world(tmp_path_factory.mktemp("world"), n=40, seed=0)


@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory):
    """A function family -> folder of that family's tiny checkpoint (vtg_rl.models.tiny_families.build_tiny),
    each family built at most once per session."""
    from vtg_rl.models.tiny_families import build_tiny

    built = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny(family, tmp_path_factory.mktemp(f"tiny_{family}"), seed=0)
        return built[family]

    return get
