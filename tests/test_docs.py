"""The docs site builds in strict mode (broken links, missing pages and bad API references fail), and every
result record under docs/results/ has the keys the results page renders."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "docs" / "results").glob("*.json"))


def _missing_docs_tools() -> list[str]:
    missing = []
    for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def _docs_tools_or_skip() -> None:
    """Installs nothing: fails in CI (CI=true), where `make setup` must have installed the docs extra;
    skips on a developer machine without it."""
    missing = _missing_docs_tools()
    if not missing:
        return
    message = (f"the docs tools are not installed ({', '.join(missing)} missing): "
               f"`make setup` installs them (pip install -e '.[docs]')")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _load_hooks():
    spec = importlib.util.spec_from_file_location("vtg_rl_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_site_builds_strict(tmp_path):
    _docs_tools_or_skip()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    site = tmp_path / "site"
    for page in ("index.html", "quickstart/index.html", "results/index.html", "api/core/index.html",
                 "models/index.html", "design/index.html"):
        assert (site / page).is_file(), page
    results = (site / "results" / "index.html").read_text(encoding="utf-8")
    assert "<!-- record:" not in results
    for record in RECORDS:
        assert f"results/{record.stem}.json" in results, f"{record.name} is not rendered on the results page"
    api = (site / "api" / "core" / "index.html").read_text(encoding="utf-8")
    assert "iou_reward" in api and ":func:" not in api


def test_result_records_have_the_required_keys():
    hooks = _load_hooks()
    assert RECORDS, "no result records under docs/results/"
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for path in RECORDS:
        record = hooks.load_record(path)  # raises naming the file and the missing keys
        assert record["rows"], path.name
        assert record["command"] and record["date"] and record["machine"], path.name
        assert record["threads"] is None or isinstance(record["threads"], int), path.name
        assert f"<!-- record: {path.stem} -->" in page, f"docs/results.md does not show {path.name}"
        json.dumps(record)


def test_record_with_a_missing_key_is_refused(tmp_path):
    hooks = _load_hooks()
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"benchmark": "x", "command": "c"}))
    with pytest.raises(ValueError, match="missing keys"):
        hooks.load_record(bad)
