"""What every benchmark shares: offline settings, the run record and the result file.

A benchmark script starts with::

    from harness import RESULTS, ROOT, machine_record, print_table, write_result  # noqa: E402

(benchmarks are run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``; importing the harness
puts the repository root there too and switches the model / dataset hubs off). Every result file records the
command, the date, the machine, torch's thread count and the load average before and after, because wall
times on a shared machine mean little without them.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vtg_rl.training.artifacts import finite_json  # noqa: E402  (needs the repository on sys.path)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_record() -> dict:
    """Where and how the numbers were measured (call it when the measurement starts)."""
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:  # the harness also serves benchmarks that need no torch
        threads = None
    return {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()}-core {_cpu_name()}, {platform.system()} {platform.machine()}",
            "python": platform.python_version(), "torch_threads": threads, "loadavg_1_5_15_before": _load()}


@contextmanager
def measured(record: dict) -> Iterator[dict]:
    """Add the wall time and the load after the block to ``record``."""
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["wall_s"] = round(time.perf_counter() - start, 2)
        record["loadavg_1_5_15_after"] = _load()


def write_result(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/NAME.json`` (non-finite numbers as null); returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(finite_json(payload), indent=2, allow_nan=False) + "\n")
    return path


def print_table(rows: Sequence[dict], columns: Sequence[str], title: str = "") -> str:
    """Print ``rows`` as an aligned text table of ``columns`` (floats with 4 decimals); returns the text."""
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    text = "\n".join(lines)
    print(text)
    return text


def print_metrics(result: dict, width: int = 44) -> None:
    """Print a flat result dict as a two-column metric / value table."""
    print(f"\n{'metric':<{width}}{'value':>14}")
    for k, v in result.items():
        print(f"{k:<{width}}{v:>14.4g}" if isinstance(v, float) else f"{k:<{width}}{str(v):>14}")
