"""Recipe configuration, open-r1 style: dataclasses parsed by ``TrlParser`` from flags and a YAML file."""

from __future__ import annotations

import sys


def default_config_argv(argv: list[str], default_config: str) -> list[str]:
    """open-r1 style: the recipe's defaults live in YAML. Without ``--config`` use ``default_config``."""
    if "--config" in argv or any(a.startswith("--config=") for a in argv):
        return argv
    return ["--config", default_config, *argv]


def parse_recipe_args(dataclass_types, default_config: str):
    """``TrlParser`` over ``dataclass_types`` with the recipe's YAML as default config."""
    from trl import TrlParser

    sys.argv = [sys.argv[0], *default_config_argv(sys.argv[1:], default_config)]
    return TrlParser(dataclass_types).parse_args_and_config()
