"""The package's front: lazy root exports, the ``vtg-rl agents`` commands, and every docstring example."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vtg_rl"
WITH_EXAMPLES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py") if ">>>" in p.read_text())


@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{module}: {result}"


def test_root_exports_are_lazy_and_complete():
    code = ("import sys, vtg_rl; assert 'torch' not in sys.modules, 'import vtg_rl pulled in torch'; "
            "[getattr(vtg_rl, n) for n in vtg_rl.__all__]; "
            "from vtg_rl import evaluate, Grounder, VideoSFTTrainer, VideoGRPOTrainer, REWARD_FUNCS; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    import vtg_rl

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vtg_rl.nope


@pytest.mark.parametrize("words, marker", [(["agents", "reflect"], "--min_verified"),
                                           (["agents", "difficulty"], "--num_rollouts")])
def test_agents_commands_take_the_scripts_options(words, marker):
    out = subprocess.run([sys.executable, "-m", "vtg_rl.cli", *words, "--help"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and f"vtg-rl {' '.join(words)}" in out.stdout and marker in out.stdout
