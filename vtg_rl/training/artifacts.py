"""What a training run leaves for a person: plots of its curves and JSON results with no bare NaN."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional

from vtg_rl.data.schema import atomic_write_text


def plot_curves(log_history: list[dict], keys: list[str], out_png: str | os.PathLike, title: str = "") -> Optional[str]:
    """Plot the Trainer's ``log_history`` series named by ``keys`` (those that exist) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: [(h["step"], h[k]) for h in log_history if k in h and "step" in h] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.4 * len(series)), squeeze=False)
    for ax, (k, pts) in zip(axes[:, 0], series.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, lw=1.2)
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return str(out_png)


def finite_json(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN; a metric of an empty split is
    reported as null, never as a bare ``NaN`` that strict readers reject)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")
