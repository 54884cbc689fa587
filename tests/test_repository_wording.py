"""The repository speaks of the software: what it does, what was measured, where and when. It never points at
documents it does not ship, and never describes how it was built."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = [
    (re.compile(r"DESIGN\s*§"), "a design document the repository does not ship"),
    (re.compile(r"\b(?:was|were|is|be) lent\b|\blent to\b", re.I), "how machines were handed out"),
    (re.compile(r"\bthe issue (?:asks|says|wants)\b|\bissue \d+\b", re.I), "the issue tracker"),
    (re.compile(r"\bSeed \d{3}\b"), "how the work was seeded"),
    (re.compile(r"not run on these machines", re.I), "the development machines"),
    (re.compile(r"\b(?:this|a previous|an earlier) session\b", re.I), "working sessions"),
]
TEXT = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg", ".html", ".json"}


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / p for p in out.splitlines() if Path(p).suffix in TEXT or p in ("Makefile", ".ci/run")]


def test_no_development_process_wording_anywhere():
    me = Path(__file__).resolve()
    hits = []
    for path in tracked_files():
        if path.resolve() == me or not path.is_file():
            continue
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for pattern, what in FORBIDDEN:
                if pattern.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{lineno}: {what}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)
