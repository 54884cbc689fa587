"""Ids that become file names, and paths that must stay inside a folder.

A dataset row's ``vid`` / ``qid`` becomes a file name in several places (feature caches, per-sample
outputs). A row with ``vid: "../../x"`` or ``"/abs/x"`` must not make vtg-rl write outside the folder
the user named, so every such id goes through :func:`safe_file_stem` first, and every path built from
one can be checked with :func:`inside` / :func:`ensure_inside`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: most file systems refuse longer names (bytes)
MAX_NAME_BYTES = 240


class UnsafePathError(ValueError):
    """An id cannot be used as a file name, or a path leaves the folder it must stay in."""


def file_stem_problem(value) -> str | None:
    """Why ``value`` cannot be used as (part of) one file name, or ``None`` when it can."""
    s = str(value)
    if not s:
        return "it is empty"
    if "\x00" in s:
        return "it contains a NUL byte"
    seps = {"/", "\\"} | {sep for sep in (os.sep, os.altsep) if sep}
    if any(sep in s for sep in seps):
        return "it contains a path separator"
    if s in (".", ".."):
        return f"{s!r} names a folder, not a file"
    if os.path.isabs(s):
        return "it is an absolute path"
    if len(s.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    return None


def safe_file_stem(value, what: str) -> str:
    """``str(value)`` when it is usable as a file name, else :class:`UnsafePathError` naming ``what``
    (e.g. ``"sample qid=3: vid"``) and the reason."""
    problem = file_stem_problem(value)
    if problem is not None:
        raise UnsafePathError(f"{what} {str(value)!r} cannot be used as a file name: {problem}")
    return str(value)


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` (symlinks and ``..`` resolved; relative paths taken from ``root``) lies in ``root``."""
    root_r = Path(os.path.realpath(root))
    p = Path(path)
    if not p.is_absolute():
        p = Path(root) / p
    try:
        Path(os.path.realpath(p)).relative_to(root_r)
    except ValueError:
        return False
    return True


def ensure_inside(root: str | os.PathLike, path: str | os.PathLike, what: str) -> Path:
    """``path`` when it lies in ``root``, else :class:`UnsafePathError` naming ``what``."""
    if not inside(root, path):
        raise UnsafePathError(f"{what}: {path} is outside {root}")
    return Path(path)
