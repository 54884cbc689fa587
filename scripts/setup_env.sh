#!/usr/bin/env bash
# Create .venv with a torch + torchvision pair that really imports, then install the project.
# Idempotent: a second run on a machine that already has a working .venv reinstalls nothing.
set -euo pipefail
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
# --isolated: ignore this machine's pip config, whose local CPU-only torch wheel shadows the
# registry's torch and cannot load torchvision.
PIP=("$PY" -m pip --isolated --disable-pip-version-check)

[ -x "$PY" ] || python3 -m venv "$VENV"

if "$PY" -c "import torch, torchvision.ops; assert torch.__version__.startswith('2.13.0'), torch.__version__" 2>/dev/null; then
  echo "setup: torch + torchvision already work in $VENV"
else
  echo "setup: installing torch 2.13.0 + torchvision 0.28.0 into $VENV (~5 GB, once)"
  "${PIP[@]}" install -q torch==2.13.0 torchvision==0.28.0
  "$PY" -c "import torchvision.ops" || { echo "setup: torchvision still does not import" >&2; exit 1; }
fi

stamp="$VENV/.vtg-rl-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! "$PY" -c "import vtg_rl" 2>/dev/null; then
  echo "setup: installing vtg-rl (editable) with its pinned stack, test tools, deepspeed and the docs tools"
  # DS_BUILD_OPS=0: deepspeed's pure-Python install (no CUDA kernels to compile); ZeRO runs on CPU too
  DS_BUILD_OPS=0 "${PIP[@]}" install -q -e '.[dev,deepspeed,docs]'
  touch "$stamp"
else
  echo "setup: vtg-rl already installed"
fi

# The docs extra (tests/test_docs.py builds the site): also for a .venv set up before the extra existed.
if ! "$PY" -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null; then
  echo "setup: installing the docs tools (mkdocs, mkdocs-material, mkdocstrings)"
  "${PIP[@]}" install -q -e '.[docs]'
fi

# Headless Chromium for the viewer's browser test (tests/view/test_view.py); Debian's package, not a download.
if command -v chromium >/dev/null 2>&1; then
  :
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing chromium (apt) for the viewer's browser test"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation; } >/dev/null \
    || echo "setup: could not install chromium; the viewer's browser test will skip locally" >&2
else
  echo "setup: chromium missing and apt-get not usable here (needs root); the viewer's browser test will skip locally"
fi
