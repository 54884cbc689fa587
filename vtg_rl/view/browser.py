"""Headless Chromium for checking the viewer page (tests and the timing script).

Uses the system's Chromium (Debian package ``chromium``) through Playwright's ``executable_path``;
Playwright's own browser download is never needed.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

#: flags for a quiet, offline, throw-away headless browser
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium() -> Optional[str]:
    """Path of a Chromium binary: ``$VTG_RL_CHROMIUM``, Debian's ``/usr/bin/chromium``, or one on PATH."""
    env = os.environ.get("VTG_RL_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright, user_data_dir: str, executable: Optional[str] = None, width: int = 1280, height: int = 900):
    """A persistent Chromium context with a fresh profile in ``user_data_dir``."""
    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found (install Debian's 'chromium' or set VTG_RL_CHROMIUM)")
    return playwright.chromium.launch_persistent_context(
        user_data_dir, executable_path=executable, headless=True, args=list(CHROMIUM_ARGS),
        viewport={"width": width, "height": height})
