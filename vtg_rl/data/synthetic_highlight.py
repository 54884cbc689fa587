"""Synthetic worlds for the clip-label tasks: video summarisation (TVSum-like) and highlight-only
detection (YouTube Highlights-like), rendered by the grounding world's renderer.

``generate_task_world(out_dir, n, seed, task)`` writes the same layout as
:func:`vtg_rl.data.synthetic.generate_world` (``videos/*.mp4``, ``train/val/test.jsonl``, ``world.json``)
with samples whose ``task`` is ``"summarization"`` or ``"highlight"``: ``windows == []``,
``clip_length == 2.0`` and ``clip_labels`` (one row per 2 s clip). ``task="grounding"`` delegates to
``generate_world``. Every sample is planned from ``(seed, index)`` only, so the jsonl bytes do not depend on
the number of rendering workers, and its whole truth is in ``meta`` (``meta["domain"]`` is its
category / domain).

**Summarisation** (``task="summarization"``, 5 categories like TVSum's 10): a 30-60 s video shows 4-7
events, each one shape for 2-10 s, large or small, in one of the five colours. The category (the query,
e.g. ``"a video about fire"``) decides what matters: its *key* colour weighs 1.0, its *secondary* colour
0.6, any other colour 0.2; a small shape counts 0.55 of a large one. Every colour is the key of one
category and the secondary of another, so colour alone does not tell importance: the query does. The
true importance of a clip is the largest ``weight x size x visible fraction`` over the events seen in it
(0 when nothing is); 20 simulated annotators score it 1-5 as ``round(1 + 4 * gain * importance + bias +
noise)``, each with their own gain and bias (TVSum's raters disagree too).

**Highlight-only** (``task="highlight"``, 4 domains like YouTube Highlights' 6): each domain has a target
(``"circle"``: the red circle, ...), shown 1-3 times for 2-8 s in a 20-40 s video next to 1-3
distractors (other domains' targets, or look-alikes: the target's shape in another colour, or its colour
on another shape). A 2 s clip is a highlight (label 1) when the target is on screen for at least half of
it; one annotator per clip (``clip_labels = [[0 or 1], ...]``), and the query names the target.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from vtg_rl.data.schema import TASK_GROUNDING, TASK_HIGHLIGHT, TASK_SUMMARIZATION, VTGSample, atomic_write_text
from vtg_rl.data.synthetic import (DEFAULT_FPS, DEFAULT_SPLIT_FRACTIONS, SPLITS, generate_world, render_videos,
                                   split_sizes, write_splits)
from vtg_rl.data.synthetic_plan import FRAME_SIZE, NEAR_COLOURS, QUADRANT_CENTRES, SHAPES, TARGET_COLOURS, _grid
from vtg_rl.data.synthetic_render import pick_codec

TASK_WORLD_VERSION = "vtg-rl-synthetic-tasks/1"
TASKS = (TASK_GROUNDING, TASK_SUMMARIZATION, TASK_HIGHLIGHT)
LABEL_CLIP_SECONDS = 2.0  # TVSum and YouTube Highlights are scored on 2 s clips
DEFAULT_ANNOTATORS = 20
DEFAULT_ANNOTATOR_NOISE = 0.6

# --------------------------------------------------------------------------- summarisation rules
#: category -> (query, key colour, secondary colour); each colour is once a key and once a secondary
SUMMARY_CATEGORIES = {
    "fire": ("a video about fire", "red", "yellow"),
    "sunshine": ("a video about sunshine", "yellow", "green"),
    "forest": ("a video about the forest", "green", "blue"),
    "ocean": ("a video about the ocean", "blue", "magenta"),
    "flowers": ("a video about flowers", "magenta", "red"),
}
KEY_WEIGHT, SECONDARY_WEIGHT, OTHER_WEIGHT = 1.0, 0.6, 0.2
SIZES = {"large": ((9.5, 11.0), 1.0), "small": ((5.5, 7.0), 0.55)}  # radius range, importance factor
SUMMARY_DURATION = (30.0, 60.0)
SUMMARY_EVENTS = (4, 7)
SUMMARY_EVENT_LENGTH = (2.0, 10.0)

# --------------------------------------------------------------------------- highlight rules
#: domain -> its target (shape, colour)
HIGHLIGHT_DOMAINS = {
    "circle": ("circle", "red"),
    "square": ("square", "blue"),
    "triangle": ("triangle", "green"),
    "cross": ("cross", "yellow"),
}
HIGHLIGHT_DURATION = (20.0, 40.0)
HIGHLIGHT_EVENT_LENGTH = (2.0, 8.0)
HIGHLIGHT_MIN_FRACTION = 0.5  # a clip is a highlight when the target covers at least this much of it


def label_clips(duration: float, clip_length: float = LABEL_CLIP_SECONDS) -> list[tuple[float, float]]:
    """The labelled clips ``[k * L, min((k + 1) * L, duration))`` covering the video (the last may be shorter)."""
    n = int(math.ceil(duration / clip_length - 1e-9))
    return [(k * clip_length, min((k + 1) * clip_length, duration)) for k in range(n)]


def visible_fraction(spans: Sequence[Sequence[float]], clip: tuple[float, float]) -> float:
    """Fraction of ``clip`` covered by the (non-overlapping) ``spans``."""
    inter = sum(max(0.0, min(clip[1], e) - max(clip[0], s)) for s, e in spans)
    return inter / (clip[1] - clip[0])


def object_importance(category: str, colour: str, size: str) -> float:
    """Importance of one event for a summarisation category: colour weight x size factor."""
    _, key, secondary = SUMMARY_CATEGORIES[category]
    weight = KEY_WEIGHT if colour == key else SECONDARY_WEIGHT if colour == secondary else OTHER_WEIGHT
    return round(weight * SIZES[size][1], 4)


def clip_importance(events: list[dict], duration: float, clip_length: float = LABEL_CLIP_SECONDS) -> list[float]:
    """True per-clip importance: the largest ``importance x visible fraction`` over the events."""
    return [round(max([e["importance"] * visible_fraction([e["span"]], c) for e in events] + [0.0]), 4)
            for c in label_clips(duration, clip_length)]


def highlight_labels(occurrences: list, duration: float, clip_length: float = LABEL_CLIP_SECONDS) -> list[int]:
    """1 for the clips where the target is visible for at least half of the clip, else 0."""
    return [int(visible_fraction(occurrences, c) >= HIGHLIGHT_MIN_FRACTION - 1e-9)
            for c in label_clips(duration, clip_length)]


def _object(rng, role, shape, colour, rgb, contrast, span, quadrant, radius, **extra) -> dict:
    """A renderable object (the keys :func:`vtg_rl.data.synthetic_render.render_frames` reads)."""
    cx, cy = QUADRANT_CENTRES[quadrant]
    c0 = [round(cx + rng.uniform(-1.5, 1.5), 2), round(cy + rng.uniform(-1.5, 1.5), 2)]
    c1 = [round(c0[0] + rng.uniform(-1.5, 1.5), 2), round(c0[1] + rng.uniform(-1.5, 1.5), 2)]
    return {"role": role, "shape": shape, "colour": colour, "description": f"{colour} {shape}", "rgb": list(rgb),
            "contrast": round(float(contrast), 3), "span": span, "quadrant": quadrant, "center_start": c0,
            "center_end": c1, "radius": round(float(radius), 2), **extra}


def _render_params(rng, fps: int, objects: list[dict]) -> dict:
    return {"fps": fps, "size": FRAME_SIZE, "background": int(rng.integers(80, 141)),
            "gradient": [round(float(rng.uniform(-8, 8)), 2), round(float(rng.uniform(-8, 8)), 2)],
            "noise_sigma": round(float(rng.uniform(2.0, 5.0)), 2), "temporal_noise": int(rng.integers(1, 3)),
            "objects": objects}


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def plan_summary_sample(seed: int, index: int, fps: int, annotators: int = DEFAULT_ANNOTATORS,
                        annotator_noise: float = DEFAULT_ANNOTATOR_NOISE) -> dict:
    """Decide everything about summarisation sample ``index`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index, 10])
    category = list(SUMMARY_CATEGORIES)[int(rng.integers(len(SUMMARY_CATEGORIES)))]
    query, key, _ = SUMMARY_CATEGORIES[category]
    duration = _grid(rng, *SUMMARY_DURATION)
    n_events = int(rng.integers(SUMMARY_EVENTS[0], SUMMARY_EVENTS[1] + 1))
    colours = list(TARGET_COLOURS)
    events, objects = [], []
    for k in range(n_events):
        # the first event has the key colour, so every video holds something worth keeping
        colour = key if k == 0 else colours[int(rng.integers(len(colours)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        size = "large" if rng.random() < 0.5 else "small"
        length = _grid(rng, SUMMARY_EVENT_LENGTH[0], min(SUMMARY_EVENT_LENGTH[1], duration / 2))
        for _ in range(40):  # a span whose time has a free quadrant (objects never share one)
            start = _grid(rng, 0.0, duration - length)
            span = [start, round(start + length, 2)]
            busy = {o["quadrant"] for o in objects if _overlaps(o["span"], span)}
            free = [q for q in range(4) if q not in busy]
            if free:
                break
        else:
            continue
        quadrant = free[int(rng.integers(len(free)))]
        radius = rng.uniform(*SIZES[size][0])
        importance = object_importance(category, colour, size)
        objects.append(_object(rng, "event", shape, colour, TARGET_COLOURS[colour], rng.uniform(0.7, 1.0), span,
                               quadrant, radius, size=size, importance=importance))
        events.append({"shape": shape, "colour": colour, "description": f"{colour} {shape}", "size": size,
                       "span": span, "quadrant": quadrant, "importance": importance})
    importance = clip_importance(events, duration)
    gain = rng.uniform(0.8, 1.2, size=annotators)
    bias = rng.normal(0.0, 0.35, size=annotators)
    noise = rng.normal(0.0, annotator_noise, size=(len(importance), annotators))
    raw = 1.0 + 4.0 * gain[None, :] * np.asarray(importance)[:, None] + bias[None, :] + noise
    scores = np.clip(np.rint(raw), 1, 5).astype(int)
    meta = {
        "world": TASK_WORLD_VERSION, "task": TASK_SUMMARIZATION, "seed": seed, "index": index, "domain": category,
        "key_colour": key, "secondary_colour": SUMMARY_CATEGORIES[category][2], "events": events,
        "true_importance": importance, "annotator_gain": [round(float(g), 3) for g in gain],
        "annotator_bias": [round(float(b), 3) for b in bias], "annotator_noise": float(annotator_noise),
        "render": _render_params(rng, fps, objects),
    }
    return {"index": index, "duration": duration, "query": query, "clip_labels": scores.tolist(), "meta": meta}


def plan_highlight_sample(seed: int, index: int, fps: int) -> dict:
    """Decide everything about highlight-only sample ``index`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index, 20])
    domain = list(HIGHLIGHT_DOMAINS)[int(rng.integers(len(HIGHLIGHT_DOMAINS)))]
    shape, colour = HIGHLIGHT_DOMAINS[domain]
    duration = _grid(rng, *HIGHLIGHT_DURATION)
    quadrants = [int(q) for q in rng.permutation(4)]  # the target owns quadrants[0]; distractors one each
    occurrences: list[list[float]] = []
    for _ in range(int(rng.integers(1, 4))):
        length = _grid(rng, *HIGHLIGHT_EVENT_LENGTH)
        if sum(e - s for s, e in occurrences) + length > duration / 2:  # keep negatives in every video
            break
        for _ in range(40):
            start = _grid(rng, 0.0, duration - length)
            span = [start, round(start + length, 2)]
            if not any(_overlaps([s - 1.0, e + 1.0], span) for s, e in occurrences):
                occurrences.append(span)
                break
    occurrences.sort()
    contrast = rng.uniform(0.6, 1.0)
    objects = [_object(rng, "target", shape, colour, TARGET_COLOURS[colour], contrast, span, quadrants[0],
                       rng.uniform(8.0, 10.0)) for span in occurrences]
    others = [d for d in HIGHLIGHT_DOMAINS if d != domain]
    distractors = []
    for k in range(int(rng.integers(1, 4))):
        r = rng.random()
        if k == 0 and r < 0.3:  # the target's shape in a near colour
            d_shape, (d_colour, rgb), kind = shape, NEAR_COLOURS[colour], "near_colour"
        elif k == 0 and r < 0.6:  # the target's colour on another shape
            d_shape = [s for s in SHAPES if s != shape][int(rng.integers(len(SHAPES) - 1))]
            d_colour, rgb, kind = colour, TARGET_COLOURS[colour], "same_colour"
        else:  # another domain's target
            d_shape, d_colour = HIGHLIGHT_DOMAINS[others[int(rng.integers(len(others)))]]
            rgb, kind = TARGET_COLOURS[d_colour], "other_domain"
        length = _grid(rng, *HIGHLIGHT_EVENT_LENGTH)
        start = _grid(rng, 0.0, duration - length)
        span = [start, round(start + length, 2)]
        objects.append(_object(rng, "distractor", d_shape, d_colour, rgb, rng.uniform(0.6, 1.0), span,
                               quadrants[1 + k], rng.uniform(8.0, 10.0), lookalike=kind))
        distractors.append({"shape": d_shape, "colour": d_colour, "description": f"{d_colour} {d_shape}",
                            "span": span, "kind": kind})
    labels = highlight_labels(occurrences, duration)
    meta = {
        "world": TASK_WORLD_VERSION, "task": TASK_HIGHLIGHT, "seed": seed, "index": index, "domain": domain,
        "target": {"shape": shape, "colour": colour, "description": f"{colour} {shape}"},
        "occurrences": occurrences, "distractors": distractors, "contrast": round(float(contrast), 3),
        "target_fraction": [round(visible_fraction(occurrences, c), 4) for c in label_clips(duration)],
        "render": _render_params(rng, fps, objects),
    }
    return {"index": index, "duration": duration, "query": f"{colour} {shape}",
            "clip_labels": [[x] for x in labels], "meta": meta}


def plan_task_sample(task: str, seed: int, index: int, fps: int = DEFAULT_FPS, annotators: int = DEFAULT_ANNOTATORS,
                     annotator_noise: float = DEFAULT_ANNOTATOR_NOISE) -> dict:
    if task == TASK_SUMMARIZATION:
        return plan_summary_sample(seed, index, fps, annotators, annotator_noise)
    if task == TASK_HIGHLIGHT:
        return plan_highlight_sample(seed, index, fps)
    raise ValueError(f"task {task!r}: plan_task_sample makes {TASK_SUMMARIZATION!r} or {TASK_HIGHLIGHT!r} samples")


def _ids(task: str, seed: int, index: int) -> tuple[str, str]:
    tag = "s" if task == TASK_SUMMARIZATION else "h"
    return f"q{tag}{seed}_{index:06d}", f"{tag}{seed}_{index:06d}"


def make_task_sample(task: str, plan: dict, seed: int, video_path: Path) -> VTGSample:
    qid, vid = _ids(task, seed, plan["index"])
    return VTGSample(qid=qid, vid=vid, duration=plan["duration"], query=plan["query"], windows=[],
                     video_path=str(video_path), meta=plan["meta"], task=task, clip_length=LABEL_CLIP_SECONDS,
                     clip_labels=plan["clip_labels"])


def _check(n, seed, task, fps, annotators, annotator_noise) -> None:
    if task not in TASKS:
        raise ValueError(f"task={task!r}: choose one of {TASKS}")
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n={n!r}: the world needs at least one sample")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be a non-negative integer")
    if not isinstance(fps, numbers.Integral) or fps < 2:
        raise ValueError(f"fps={fps!r}: write at least 2 frames per second (4 by default)")
    if not isinstance(annotators, numbers.Integral) or annotators < 1:
        raise ValueError(f"annotators={annotators!r}: at least one")
    if not 0.0 <= float(annotator_noise) <= 5.0:
        raise ValueError(f"annotator_noise={annotator_noise!r}: must be in [0, 5] (score points)")


def _existing(out_dir: Path, params: dict, task: str) -> Optional[dict[str, Path]]:
    world_file = out_dir / "world.json"
    if not world_file.is_file():
        return None
    try:
        if json.loads(world_file.read_text()).get("params") != params:
            return None
    except json.JSONDecodeError:
        return None
    paths = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    videos = [out_dir / "videos" / f"{_ids(task, params['seed'], i)[1]}.mp4" for i in range(params["n"])]
    return paths if all(p.is_file() for p in list(paths.values()) + videos) else None


def generate_task_world(out_dir: str | os.PathLike, n: int, seed: int, task: str = TASK_SUMMARIZATION,
                        fps: int = DEFAULT_FPS, split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                        annotators: int = DEFAULT_ANNOTATORS, annotator_noise: float = DEFAULT_ANNOTATOR_NOISE,
                        workers: Optional[int] = None, codec: str = "auto", overwrite: bool = False,
                        progress: bool = False, **grounding_kwargs) -> dict[str, Path]:
    """Generate (or reuse) a synthetic world for ``task``; returns ``{"train"|"val"|"test": jsonl Path}``.

    ``task="grounding"`` is :func:`vtg_rl.data.synthetic.generate_world` (``grounding_kwargs``: its
    ``partial_rate``, ``qa``, ``hard_rate``). ``annotators`` / ``annotator_noise`` (score points, the
    standard deviation of each annotator's per-clip noise) shape the summarisation labels only.
    Reuses ``out_dir`` when its ``world.json`` records the same parameters (unless ``overwrite``).
    """
    if task == TASK_GROUNDING:
        return generate_world(out_dir, n=n, seed=seed, fps=fps, split_fractions=split_fractions, workers=workers,
                              codec=codec, overwrite=overwrite, progress=progress, **grounding_kwargs)
    if grounding_kwargs:
        raise ValueError(f"{sorted(grounding_kwargs)}: options of the grounding world, not of task {task!r}")
    _check(n, seed, task, fps, annotators, annotator_noise)
    n, seed, fps, annotators = int(n), int(seed), int(fps), int(annotators)
    out_dir = Path(out_dir)
    sizes = split_sizes(n, split_fractions)
    codec = pick_codec(codec)
    params = {"version": TASK_WORLD_VERSION, "task": task, "n": n, "seed": seed, "fps": fps,
              "frame_size": FRAME_SIZE, "clip_length": LABEL_CLIP_SECONDS,
              "split_fractions": [float(f) for f in split_fractions], "codec": codec}
    if task == TASK_SUMMARIZATION:
        params.update(annotators=annotators, annotator_noise=float(annotator_noise))
    if not overwrite:
        existing = _existing(out_dir, params, task)
        if existing is not None:
            return existing
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "world.json").unlink(missing_ok=True)  # written last: marks a complete world

    t0 = time.perf_counter()
    samples, jobs = [], []
    for i in range(n):
        plan = plan_task_sample(task, seed, i, fps, annotators, annotator_noise)
        path = (out_dir / "videos" / f"{_ids(task, seed, i)[1]}.mp4").resolve()
        samples.append(make_task_sample(task, plan, seed, path))
        jobs.append({"render": plan["meta"]["render"], "duration": plan["duration"], "noise_seed": [seed, i, 11],
                     "path": str(path), "codec": codec})
    render_videos(jobs, workers, progress)
    paths = write_splits(samples, sizes, out_dir)
    domains: dict[str, int] = {}
    for s in samples:
        domains[s.meta["domain"]] = domains.get(s.meta["domain"], 0) + 1
    labels = np.concatenate([np.asarray(s.clip_labels, dtype=float).mean(1) for s in samples])
    summary = {"params": params, "splits": sizes, "domains": dict(sorted(domains.items())),
               "clips": int(labels.size), "mean_label": round(float(labels.mean()), 4),
               "generation_seconds": round(time.perf_counter() - t0, 2), "workers": workers}
    if task == TASK_HIGHLIGHT:
        summary["highlight_fraction"] = round(float(labels.mean()), 4)
    atomic_write_text(out_dir / "world.json", json.dumps(summary, indent=2) + "\n")
    return paths
