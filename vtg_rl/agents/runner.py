"""Resumable, batched per-sample processing shared by the data agents.

The agents are long jobs (K model rollouts per sample over a whole training set), so they must survive
being killed at any moment. :class:`ResumableRunner` keeps one append-only ``*.partial.jsonl`` file of
per-sample results:

* each batch's results are appended as one JSON object per line (``{"qid": ..., **result}``), then
  flushed and fsync'ed, so a ``kill -9`` loses at most the batch in flight;
* on start the file is read back, deduplicated by qid (the first record wins: records for one qid are
  identical for one configuration), and a torn last line (a write cut short by the kill) is truncated
  away before anything new is appended, so it can never end up in the middle of the file;
* a sidecar ``*.partial.config.json`` records the configuration that produced the results; resuming with
  another configuration is refused with a message, rather than silently mixing results;
* a sample whose video is missing or cannot be decoded is listed (qid, path, reason) and skipped, not
  fatal. A batch that fails to decode is retried sample by sample to find the culprit; skipped samples are
  not written to the partial file, so a rerun retries them (e.g. after the video was restored).

Final outputs (datasets, summaries) are written by the agents with atomic writes; the partial file stays
next to them, so a rerun with the same configuration rebuilds the outputs without new rollouts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tqdm.auto import tqdm

from vtg_rl.data.schema import VTGSample, atomic_write_text

logger = logging.getLogger(__name__)

#: ``process_batch(samples) -> one result dict per sample`` (JSON-serialisable, without "qid")
BatchFn = Callable[[list[VTGSample]], list[dict]]


class OutputLockedError(RuntimeError):
    """Another run holds the lock on the same output (its pid, host and start time are in the message)."""


def lock_path_for(out_path: str | os.PathLike) -> Path:
    """``runs/x/train.clean.jsonl`` -> ``runs/x/train.clean.jsonl.lock``."""
    out = Path(out_path)
    return out.with_name(f"{out.name}.lock")


@contextlib.contextmanager
def output_lock(out_path: str | os.PathLike):
    """Hold an exclusive lock (``fcntl.flock`` on ``<out>.lock``) for the whole run: two runs on one
    ``--out`` would interleave records in the partial file and overwrite each other's outputs. A second
    run refuses at once, naming the holder's pid, host and start time. The lock goes with the process
    (also on ``kill -9``); the lock file itself stays."""
    import fcntl

    path = lock_path_for(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            try:
                h = json.loads(holder)
                who = f"pid {h['pid']} on {h['host']}, started {h['started']}"
            except (ValueError, KeyError, TypeError):
                who = "a process that has not written its details yet"
            raise OutputLockedError(
                f"{out_path}: another run is writing this output ({who}; lock file {path}); wait for it to "
                f"finish or choose another --out") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}, allow_nan=False)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (info + "\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock


def partial_path_for(out_path: str | os.PathLike) -> Path:
    """``runs/x/train.difficulty.jsonl`` -> ``runs/x/train.difficulty.partial.jsonl``."""
    out = Path(out_path)
    return out.with_name(f"{out.stem}.partial.jsonl")


def read_partial(path: str | os.PathLike) -> tuple[dict[str, dict], int]:
    """Records of a partial file by qid (first record wins) and the byte length of its intact prefix.

    A last line without its newline is a write cut short: it is ignored (and reported by the length).
    A malformed line *followed* by others cannot come from a crash and raises, naming file and line.
    """
    path = Path(path)
    records: dict[str, dict] = {}
    if not path.is_file():
        return records, 0
    data = path.read_bytes()
    intact = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
    for lineno, line in enumerate(data[:intact].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            qid = str(rec["qid"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{lineno}: corrupt agent record ({err}); delete the file to start over") from err
        records.setdefault(qid, rec)
    if intact < len(data):
        logger.warning("%s: ignoring a torn last line (%d bytes) left by an interrupted run", path, len(data) - intact)
    return records, intact


@dataclass
class RunReport:
    """What a run did: results by qid (in input order), skipped samples, and timing."""

    results: dict[str, dict]
    skipped: list[dict] = field(default_factory=list)
    resumed: int = 0  # samples whose results came from an earlier run
    processed: int = 0  # samples processed by this run
    seconds: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.processed / self.seconds if self.processed and self.seconds > 0 else float("nan")


def _video_problem(sample: VTGSample) -> Optional[str]:
    """Why a sample's video cannot be used, found without decoding (missing path / file)."""
    if not sample.video_path:
        return "the sample has no video_path"
    if not Path(sample.video_path).is_file():
        return "no such video file"
    return None


def _is_decode_error(err: BaseException) -> bool:
    # imported here, not at the top: the video module pulls in transformers, which a runner that never
    # meets a bad video (or drives a non-video job) should not pay for
    from vtg_rl.data.video import VideoDecodeError

    return isinstance(err, VideoDecodeError)


class ResumableRunner:
    """Run ``process_batch`` over samples in batches, persisting every result as it is made.

    Args:
        partial_path: the append-only results file (``*.partial.jsonl``).
        config: JSON-serialisable description of everything that changes the results (model, K, ...).
        batch_size: samples per ``process_batch`` call (and per flush).
        desc: progress-bar label.
        progress: show a tqdm bar.
    """

    def __init__(self, partial_path: str | os.PathLike, config: dict[str, Any], batch_size: int = 8,
                 desc: str = "agent", progress: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.partial_path = Path(partial_path)
        self.config_path = self.partial_path.with_name(self.partial_path.name.replace(".jsonl", "") + ".config.json")
        self.config = json.loads(json.dumps(config))  # normalise (tuples -> lists) for comparison
        self.batch_size = batch_size
        self.desc = desc
        self.progress = progress

    def _check_config(self, have_records: bool) -> None:
        if self.config_path.is_file() and have_records:
            previous = json.loads(self.config_path.read_text())
            if previous != self.config:
                changed = sorted(k for k in set(previous) | set(self.config) if previous.get(k) != self.config.get(k))
                raise ValueError(
                    f"{self.partial_path}: holds results of another configuration (differs in {changed}); "
                    f"delete it (and {self.config_path.name}) or choose another --out to start over")
        atomic_write_text(self.config_path, json.dumps(self.config, indent=2, sort_keys=True, allow_nan=False) + "\n")

    def run(self, samples: list[VTGSample], process_batch: BatchFn) -> RunReport:
        seen: set[str] = set()
        for s in samples:
            if s.qid in seen:
                raise ValueError(f"sample {s.qid}: duplicate qid in the input; the agents key results by qid")
            seen.add(s.qid)
        done, intact = read_partial(self.partial_path)
        self._check_config(bool(done))
        wanted = {s.qid for s in samples}
        resumed = sum(1 for q in done if q in wanted)
        todo = [s for s in samples if s.qid not in done]
        report = RunReport(results={}, resumed=resumed)
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        bar = tqdm(total=len(samples), initial=resumed, desc=self.desc, unit="sample", disable=not self.progress)
        # "r+b" keeps the intact prefix and lets us cut a torn tail before appending
        mode = "r+b" if self.partial_path.is_file() else "w+b"
        try:
            with open(self.partial_path, mode) as f:
                f.truncate(intact)
                f.seek(intact)
                for i in range(0, len(todo), self.batch_size):
                    batch = todo[i:i + self.batch_size]
                    new = self._process(batch, process_batch, report.skipped)
                    for qid, rec in new.items():
                        f.write((json.dumps({"qid": qid, **rec}, allow_nan=False) + "\n").encode())
                        done[qid] = {"qid": qid, **rec}
                    f.flush()
                    os.fsync(f.fileno())
                    report.processed += len(new)
                    bar.update(len(batch))
        finally:
            bar.close()
        report.seconds = time.perf_counter() - t0
        report.results = {s.qid: done[s.qid] for s in samples if s.qid in done}
        if report.skipped:
            logger.warning("%d sample(s) skipped (video missing or unreadable): %s", len(report.skipped),
                           ", ".join(f"{r['qid']} ({r['reason']})" for r in report.skipped[:5]))
        return report

    def _process(self, batch: list[VTGSample], process_batch: BatchFn, skipped: list[dict]) -> dict[str, dict]:
        usable = []
        for s in batch:
            problem = _video_problem(s)
            if problem is None:
                usable.append(s)
            else:
                skipped.append({"qid": s.qid, "video_path": s.video_path, "reason": problem})
        if not usable:
            return {}
        try:
            return self._call(usable, process_batch)
        except Exception as err:  # noqa: BLE001 - only decode errors are handled, the rest re-raised
            if not _is_decode_error(err):
                raise
            if len(usable) == 1:
                skipped.append({"qid": usable[0].qid, "video_path": usable[0].video_path, "reason": str(err)})
                return {}
        # some video of the batch does not decode: retry one by one to skip only the culprit(s)
        out = {}
        for s in usable:
            try:
                out.update(self._call([s], process_batch))
            except Exception as err:  # noqa: BLE001
                if not _is_decode_error(err):
                    raise
                skipped.append({"qid": s.qid, "video_path": s.video_path, "reason": str(err)})
        return out

    @staticmethod
    def _call(batch: list[VTGSample], process_batch: BatchFn) -> dict[str, dict]:
        results = process_batch(batch)
        if len(results) != len(batch):
            raise RuntimeError(f"process_batch returned {len(results)} results for {len(batch)} samples")
        return {s.qid: r for s, r in zip(batch, results)}
