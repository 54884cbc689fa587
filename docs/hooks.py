"""MkDocs hooks for the vtg-rl docs site (listed under ``hooks:`` in mkdocs.yml; not a page).

* ``<!-- record: NAME -->`` in a page becomes the table of the committed result record
  ``docs/results/NAME.json`` (numbers as measured, with command, date, machine, threads and load), so a
  number lives in one place. A missing or malformed record stops the build.
* Pages that other work adds under docs/ are listed in mkdocs.yml's nav ahead of time (``OPTIONAL_PAGES``);
  while one of them does not exist its nav entry is left out, so the strict build does not fail on it.
  Any other nav entry without a file still fails the build.
* (The API pages' docstrings are turned into Markdown by ``docs/griffe_docstrings.py``.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RECORD_KEYS = ("benchmark", "title", "command", "date", "machine", "threads", "load", "columns", "rows",
               "target", "verdict")
OPTIONAL_PAGES = frozenset({"resume.md", "r2_tuning_tasks.md", "inference.md", "demo.md",
                            "model_families_results.md", "gpu_results.md"})
_RECORD = re.compile(r"<!--\s*record:\s*([A-Za-z0-9_\-]+)\s*-->")


def load_record(path: Path) -> dict:
    """Read one record and check its keys and table shape (also used by tests/test_docs.py)."""
    record = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    if record["benchmark"] != path.stem:
        raise ValueError(f"{path}: benchmark {record['benchmark']!r} does not match the file name")
    width = len(record["columns"])
    for i, row in enumerate(record["rows"]):
        if len(row) != width:
            raise ValueError(f"{path}: row {i} has {len(row)} cells, columns has {width}")
    return record


def _cell(value) -> str:
    if value is None:
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_record(record: dict) -> str:
    """The record as Markdown: a provenance line, the table, the target and verdict."""
    threads = record["threads"] if record["threads"] is not None else "unknown"
    load = record["load"] if record["load"] is not None else "unknown"
    lines = [
        f"`{record['command']}` · {record['date']} · {record['machine']} · threads: {threads} · "
        f"machine load: {load} · record: [`results/{record['benchmark']}.json`](results/{record['benchmark']}.json)",
        "",
        "| " + " | ".join(_cell(c) for c in record["columns"]) + " |",
        "|" + "---|" * len(record["columns"]),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in record["rows"]]
    lines += ["", f"**Target:** {record['target']} **Verdict:** {record['verdict']}"]
    if record.get("notes"):
        lines += ["", str(record["notes"])]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown, page, config, files, **kwargs):
    if "<!-- record:" not in markdown:
        return markdown
    from mkdocs.exceptions import PluginError  # imported here: tests/test_docs.py reads records without mkdocs
    results = Path(config["docs_dir"]) / "results"

    def sub(match):
        path = results / f"{match.group(1)}.json"
        if not path.is_file():
            raise PluginError(f"{page.file.src_path}: no result record {path}")
        try:
            return render_record(load_record(path))
        except (ValueError, json.JSONDecodeError) as err:
            raise PluginError(str(err)) from err

    return _RECORD.sub(sub, markdown)


def _drop_missing_optional(item, docs_dir: Path):
    if isinstance(item, dict):
        ((title, value),) = item.items()
        if isinstance(value, list):
            kept = [x for x in (_drop_missing_optional(v, docs_dir) for v in value) if x is not None]
            return {title: kept} if kept else None
        return None if _drop_missing_optional(value, docs_dir) is None else item
    if isinstance(item, str) and item in OPTIONAL_PAGES and not (docs_dir / item).is_file():
        return None
    return item


def on_config(config, **kwargs):
    if config.get("nav"):
        docs_dir = Path(config["docs_dir"])
        config["nav"] = [x for x in (_drop_missing_optional(i, docs_dir) for i in config["nav"]) if x is not None]
    return config
