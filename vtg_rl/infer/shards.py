"""Where ``vtg-rl infer`` keeps its work: the processes of a run, their shards, their partial files, the merge.

* **Shards are whole batches.** The data (in file order) is cut into batches of ``--batch-size``; batch ``i``
  goes to process ``i % world_size``. A batch therefore holds the same samples whatever the number of
  processes, so a 2-process run computes exactly what one process computes (padding included).
* **Partial files.** Each process appends its results to its own ``<out stem>.partial.jsonl`` (one
  process) or ``<out stem>.partial.rank<R>.jsonl`` through :class:`vtg_rl.agents.runner.ResumableRunner`:
  every batch is flushed and fsync'ed, a torn last line is cut away on restart, and the settings that
  produced the results sit beside it in ``*.config.json``. A restart skips every qid already in *any*
  partial file of the same output (so a resume may use another number of processes) and refuses to mix
  settings, naming each difference.
* **Merge.** After a barrier, rank 0 reads all partial files and writes ``--out`` atomically, one row per
  sample in data order, then removes the partial files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from vtg_rl.agents.runner import lock_path_for, read_partial


@dataclass
class Processes:
    """This process's place in a (possibly single-process) run: ``torchrun`` / ``accelerate launch`` set
    ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a gloo process group is opened only for the barrier."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def from_env(cls) -> "Processes":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        owns = False
        if not dist.is_initialized():
            # gloo: the group only carries barriers, also on GPU machines; shards can take hours
            dist.init_process_group("gloo", timeout=timedelta(hours=24))
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def shard(items: list, batch_size: int, rank: int, world_size: int) -> list:
    """The items of the batches ``rank, rank + world_size, ...`` (batches cut in order, see the module doc)."""
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    return [x for b in batches[rank::world_size] for x in b]


def partial_path(out: Path, rank: int, world_size: int) -> Path:
    suffix = "" if world_size == 1 else f".rank{rank}"
    return out.with_name(f"{out.stem}.partial{suffix}.jsonl")


def partial_files(out: Path) -> list[Path]:
    """Every partial file of ``out`` on disk, whatever the number of processes that wrote it."""
    pattern = re.compile(rf"^{re.escape(out.stem)}\.partial(\.rank\d+)?\.jsonl$")
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.iterdir() if pattern.match(p.name))


def config_path(partial: Path) -> Path:
    """The settings file :class:`~vtg_rl.agents.runner.ResumableRunner` keeps beside ``partial``."""
    return partial.with_name(partial.name.replace(".jsonl", "") + ".config.json")


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def differences(before: dict, now: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for each setting that differs (nested dicts are walked)."""
    out = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key, "(unset)"), now.get(key, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {_show(a)} -> {_show(b)}")
    return out


def check_settings(out: Path, config: dict) -> None:
    """Refuse to resume from partial files of ``out`` made with other settings, naming each difference."""
    config = json.loads(json.dumps(config))
    for partial in partial_files(out):
        records, _ = read_partial(partial)
        cfg = config_path(partial)
        if not records:
            continue
        if not cfg.is_file():
            raise ValueError(f"{partial}: {len(records)} earlier prediction(s) without their settings file {cfg.name}; "
                             f"delete {partial.name} to start over")
        diff = differences(json.loads(cfg.read_text()), config)
        if diff:
            raise ValueError(f"{partial} holds {len(records)} prediction(s) made with other settings ("
                             + "; ".join(diff) + f"). Rerun with the earlier settings to resume, or delete "
                             f"{out.stem}.partial*.jsonl (and their .config.json) or choose another --out to start over")


def done_elsewhere(out: Path, mine: Path) -> set[str]:
    """qids already predicted in the partial files of ``out`` other than this process's own."""
    done: set[str] = set()
    for partial in partial_files(out):
        if partial != mine:
            done.update(read_partial(partial)[0])
    return done


def merged_records(out: Path) -> dict[str, dict]:
    """Every partial record of ``out`` by qid (the first one wins: one qid's records are identical)."""
    records: dict[str, dict] = {}
    for partial in partial_files(out):
        for qid, rec in read_partial(partial)[0].items():
            records.setdefault(qid, rec)
    return records


def remove_partials(out: Path, extra: Optional[list[Path]] = None) -> None:
    """Delete the partial files of ``out``, their settings and lock files (after the merge)."""
    for partial in partial_files(out) + list(extra or []):
        for p in (partial, config_path(partial), lock_path_for(partial)):
            p.unlink(missing_ok=True)
