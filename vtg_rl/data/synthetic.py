"""The synthetic VTG world: real mp4 files with known events, in the unified schema.

``generate_world(out_dir, n, seed)`` writes::

    out_dir/videos/v{seed}_{index:06d}.mp4    56x56 frames at 4 fps (frame i at i/4 s), 8-24 s
    out_dir/train.jsonl, val.jsonl, test.jsonl  VTGSample rows, video_path relative to out_dir
    out_dir/world.json                         generation parameters, codec, split sizes, rates

Each sample is one video with one *target* shape (e.g. "red circle") visible during its event
(2-8 s on a 0.5 s grid, drifting slightly), 0-3 distractors, a templated query, and its whole truth
in ``meta`` (see :mod:`vtg_rl.data.synthetic_plan` for the rules and README "The synthetic world" for
the fields). Samples are planned from ``(seed, index)`` only, so the jsonl bytes are identical for
identical arguments, whatever the number of workers.
"""

from __future__ import annotations

import json
import numbers
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from vtg_rl.data.schema import VTGSample, atomic_write_text, write_jsonl
from vtg_rl.data.synthetic_plan import FRAME_SIZE, plan_sample
from vtg_rl.data.synthetic_qa import plan_question
from vtg_rl.data.synthetic_render import pick_codec, render_video

WORLD_VERSION = "vtg-rl-synthetic/1"
SPLITS = ("train", "val", "test")
DEFAULT_FPS = 4
DEFAULT_HARD_RATE = 0.25
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
#: Below this many videos a process pool costs more than it saves.
MIN_JOBS_FOR_POOL = 24


def split_sizes(n: int, fractions: Sequence[float]) -> dict[str, int]:
    """Sizes of train/val/test; val and test get at least one sample each when ``n >= 3``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions {tuple(fractions)} must be 3 non-negative numbers summing to 1")
    n_val, n_test = (int(round(n * f)) for f in fractions[1:])
    if n >= 3:
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
    n_val, n_test = min(n_val, n), min(n_test, max(n - n_val, 0))
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def _check_args(n, seed, partial_rate, hard_rate, fps):
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n={n!r}: the world needs at least one sample")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be a non-negative integer")
    for name, value in (("partial_rate", partial_rate), ("hard_rate", hard_rate)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name}={value!r}: must be in [0, 1]")
    if not isinstance(fps, numbers.Integral) or fps < 2:
        raise ValueError(f"fps={fps!r}: write at least 2 frames per second (4 by default)")


def make_sample(plan: dict, seed: int, qa: bool, video_path: Path) -> VTGSample:
    """Turn a plan into a unified-schema sample (QA fields when ``qa``)."""
    index = plan["index"]
    sample = VTGSample(
        qid=f"q{seed}_{index:06d}", vid=f"v{seed}_{index:06d}", duration=plan["duration"],
        query=plan["query"], windows=[list(w) for w in plan["windows"]], video_path=str(video_path),
        relevant_clip_ids=plan["relevant_clip_ids"], saliency_scores=plan["saliency_scores"],
        meta=plan["meta"])
    if qa:
        q = plan_question(plan, seed)
        sample.meta = dict(sample.meta, qa=q["qa"], grounding_query=plan["query"])
        sample.query, sample.options, sample.answer = q["query"], q["options"], q["answer"]
    return sample


def _world_params(n, seed, partial_rate, qa, hard_rate, fps, split_fractions, codec) -> dict:
    return {"version": WORLD_VERSION, "n": n, "seed": seed, "partial_rate": float(partial_rate),
            "qa": bool(qa), "hard_rate": float(hard_rate), "fps": fps, "frame_size": FRAME_SIZE,
            "split_fractions": [float(f) for f in split_fractions], "codec": codec}


def _video_path(out_dir: Path, seed: int, index: int) -> Path:
    return out_dir / "videos" / f"v{seed}_{index:06d}.mp4"


def _existing_world(out_dir: Path, params: dict) -> Optional[dict[str, Path]]:
    """The split paths of a complete world with the same parameters in ``out_dir``, else None."""
    world_file = out_dir / "world.json"
    if not world_file.is_file():
        return None
    try:
        previous = json.loads(world_file.read_text())
    except json.JSONDecodeError:
        return None
    if previous.get("params") != params:
        return None
    paths = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    videos = [_video_path(out_dir, params["seed"], i) for i in range(params["n"])]
    if not all(p.is_file() for p in list(paths.values()) + videos):
        return None
    return paths


def _render_all(jobs: list[dict], workers: int, progress: bool) -> None:
    """Render every job, in ``workers`` child processes (see ``synthetic_render.worker_main``)."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="rendering videos", unit="video")
    try:
        if workers <= 1 or len(jobs) < MIN_JOBS_FOR_POOL:
            for job in jobs:
                render_video(job)
                if bar is not None:
                    bar.update(1)
        else:
            _render_in_workers(jobs, workers, bar)
    finally:
        if bar is not None:
            bar.close()


def _render_in_workers(jobs: list[dict], workers: int, bar) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="vtg_synth_") as tmp:
        procs, readers, logs = [], [], []
        for w in range(workers):
            job_file = Path(tmp) / f"jobs{w}.json"
            job_file.write_text(json.dumps(jobs[w::workers], allow_nan=False))  # interleaved: similar load per worker
            log = open(Path(tmp) / f"stderr{w}.txt", "w+")
            proc = subprocess.Popen([sys.executable, "-m", "vtg_rl.data.synthetic_render", str(job_file)],
                                    stdout=subprocess.PIPE, stderr=log, text=True, env=env)
            procs.append(proc)
            logs.append(log)
            reader = threading.Thread(target=_count_lines, args=(proc.stdout, bar), daemon=True)
            reader.start()
            readers.append(reader)
        for proc, reader in zip(procs, readers):
            proc.wait()
            reader.join()
        failures = []
        for proc, log in zip(procs, logs):
            log.seek(0)
            if proc.returncode != 0:
                failures.append(f"worker exit {proc.returncode}: {log.read()[-2000:].strip()}")
            log.close()
        if failures:
            raise RuntimeError("rendering the synthetic world failed:\n" + "\n".join(failures))


_BAR_LOCK = threading.Lock()


def _count_lines(stream, bar) -> None:
    """Drain a worker's stdout (one line per finished video) into the progress bar."""
    for _ in stream:
        if bar is not None:
            with _BAR_LOCK:
                bar.update(1)
    stream.close()


def render_videos(jobs: list[dict], workers: Optional[int], progress: bool) -> None:
    """Render the videos of ``jobs`` (one dict per video), on ``workers`` processes (default: up to 2)."""
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    _render_all(jobs, workers, progress)


def write_splits(samples: list[VTGSample], sizes: dict[str, int], out_dir: Path) -> dict[str, Path]:
    """Write consecutive runs of ``samples`` as ``out_dir/{train,val,test}.jsonl`` (``sizes`` per split)."""
    paths, start = {}, 0
    for split in SPLITS:
        paths[split] = out_dir / f"{split}.jsonl"
        write_jsonl(samples[start:start + sizes[split]], paths[split])
        start += sizes[split]
    return paths


def generate_world(out_dir: str | os.PathLike, n: int, seed: int, partial_rate: float = 0.0,
                   qa: bool = False, hard_rate: float = DEFAULT_HARD_RATE, fps: int = DEFAULT_FPS,
                   split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, workers: Optional[int] = None,
                   codec: str = "auto", overwrite: bool = False, progress: bool = False) -> dict[str, Path]:
    """Generate (or reuse) a synthetic VTG world; returns ``{"train"|"val"|"test": jsonl Path}``.

    Args:
        out_dir: output folder (created); videos go to ``out_dir/videos``.
        n: number of samples (= videos), split train/val/test by ``split_fractions`` in index order.
        seed: world seed; the same arguments give byte-identical jsonl files.
        partial_rate: fraction of samples whose target occurs twice with one occurrence annotated.
        qa: make every sample a grounded-QA sample (question, 4 options, answer letter; windows =
            evidence span). The videos and truth are those of the grounding world with the same seed.
        hard_rate: fraction of samples drawn from the hard configurations (look-alike distractor
            and/or a short, faint event); ``meta.hard`` marks them.
        fps: frames per second written (>= 2; 4 so that a 2 fps sampler gets real frames).
        workers: rendering processes (default: min(2, CPUs)).
        codec: "auto" (libx264, else mpeg4), "libx264" or "mpeg4".
        overwrite: regenerate even if ``out_dir/world.json`` records the same parameters.
        progress: show a progress bar.
    """
    _check_args(n, seed, partial_rate, hard_rate, fps)
    n, seed, fps = int(n), int(seed), int(fps)  # numpy integers are fine, but world.json needs ints
    out_dir = Path(out_dir)
    sizes = split_sizes(n, split_fractions)
    codec = pick_codec(codec)
    params = _world_params(n, seed, partial_rate, qa, hard_rate, fps, split_fractions, codec)
    if not overwrite:
        existing = _existing_world(out_dir, params)
        if existing is not None:
            return existing
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "world.json").unlink(missing_ok=True)  # written last: marks a complete world

    t0 = time.perf_counter()
    plans = [plan_sample(seed, i, partial_rate, hard_rate, fps) for i in range(n)]
    samples, jobs = [], []
    for plan in plans:
        path = _video_path(out_dir, seed, plan["index"]).resolve()
        samples.append(make_sample(plan, seed, qa, path))
        jobs.append({"render": plan["meta"]["render"], "duration": plan["duration"],
                     "noise_seed": [seed, plan["index"], 1], "path": str(path), "codec": codec})
    render_videos(jobs, workers, progress)
    paths = write_splits(samples, sizes, out_dir)
    summary = {
        "params": params, "splits": sizes,
        "hard_fraction": round(sum(s.meta["hard"] for s in samples) / n, 4),
        "partial_fraction": round(sum(s.meta["partially_annotated"] for s in samples) / n, 4),
        "generation_seconds": round(time.perf_counter() - t0, 2),
        "workers": workers,
    }
    atomic_write_text(out_dir / "world.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return paths


def reasoning_trace(sample: VTGSample) -> str:
    """A short, faithful account of what is seen when (from ``meta``), ending at the annotation.

    Lists every distractor in time order, then the annotated target occurrence. For partially
    annotated samples it does not mention the other occurrence (the annotation is the answer).
    """
    meta = sample.meta
    target = meta["target"]["description"]
    events = sorted((d["span"][0], d["span"][1], d["description"]) for d in meta["distractors"])
    parts = [f"I look for the {target}."]
    for s, e, desc in events:
        parts.append(f"A {desc} is visible from {s:.2f} to {e:.2f} s; it is not the {target}.")
    s, e = sample.windows[0]
    parts.append(f"The {target} is visible from {s:.2f} to {e:.2f} s.")
    qa = meta.get("qa")
    if qa is not None and sample.answer is not None:
        parts.append(f"So the answer is {qa['correct']} ({sample.answer}).")
    return " ".join(parts)
