"""Random planning of one synthetic VTG sample: what appears when, where, and how hard it is.

Everything random about a sample is decided here, from a generator seeded by ``(seed, index)``, so a
sample does not depend on how many workers render the world or in which order. The plan is a plain
dict that :mod:`vtg_rl.data.synthetic_render` draws and that :mod:`vtg_rl.data.synthetic` turns into
a :class:`~vtg_rl.data.schema.VTGSample` (the plan's ``meta`` is stored verbatim, so every sample
carries its full truth).

World rules:
* one *target* object (shape x colour) visible during its occurrence(s), 2-8 s on a 0.5 s grid;
* 0-3 *distractors* at other (possibly overlapping) times; an ordinary distractor differs from the
  target in both shape and colour; a *look-alike* has the target's shape in a near colour
  (``near_colour``) or the target's colour on another shape (``same_colour``);
* every object owns one quadrant of the frame, so objects never overlap in space;
* *partial annotation*: the target occurs twice, only one occurrence is in ``windows``.
"""

from __future__ import annotations

import math

import numpy as np

FRAME_SIZE = 56
SHAPES = ("circle", "square", "triangle", "cross")
#: Target colours: far apart in hue so that they survive 4:2:0 chroma subsampling and a tiny encoder.
TARGET_COLOURS = {
    "red": (220, 40, 40),
    "yellow": (235, 215, 40),
    "green": (40, 190, 70),
    "blue": (40, 80, 235),
    "magenta": (210, 50, 205),
}
#: Near colour of each target colour, used only by ``near_colour`` look-alike distractors.
NEAR_COLOURS = {
    "red": ("orange", (240, 125, 30)),
    "yellow": ("lime", (165, 225, 40)),
    "green": ("teal", (30, 165, 150)),
    "blue": ("purple", (125, 60, 225)),
    "magenta": ("pink", (245, 120, 175)),
}
QUERY_TEMPLATES = (
    "when does the {d} appear?",
    "the {d} appears.",
    "a {d} is shown on the screen.",
    "when is the {d} visible?",
    "the {d} comes into view.",
)
QUADRANT_CENTRES = ((14.0, 14.0), (42.0, 14.0), (14.0, 42.0), (42.0, 42.0))
CLIP_SECONDS = 2.0  # QVHighlights saliency clip length
MIN_EVENT, MAX_EVENT = 2.0, 8.0
MIN_DURATION, MAX_DURATION = 8.0, 24.0
EASY_CONTRAST = (0.6, 1.0)
FAINT_CONTRAST = (0.3, 0.5)  # "short and faint" hard events
SHORT_EVENT_MAX = 3.0
DISTRACTOR_COUNT_P = (0.25, 0.35, 0.25, 0.15)  # 0, 1, 2, 3 distractors (non-look-alike samples)


def _grid(rng: np.random.Generator, lo: float, hi: float, step: float = 0.5) -> float:
    """Uniform value on the ``step`` grid in ``[lo, hi]``."""
    n = int(math.floor((hi - lo) / step + 1e-9))
    return round(lo + step * int(rng.integers(0, n + 1)), 2)


def _overlaps(a, b, gap: float = 0.0) -> bool:
    return a[0] < b[1] + gap and b[0] < a[1] + gap


def _place(rng, duration: float, length: float, avoid: list, gap: float, tries: int = 40):
    """A span of ``length`` on the 0.5 s grid avoiding ``avoid`` (with ``gap``), or None."""
    for _ in range(tries):
        start = _grid(rng, 0.0, duration - length)
        span = [start, round(start + length, 2)]
        if not any(_overlaps(span, o, gap) for o in avoid):
            return span
    return None


def true_difficulty(event_length: float, contrast: float, n_distractors: int, lookalike_kind,
                    partial: bool = False) -> float:
    """Scalar difficulty in [0, 1] from the knobs, meant to rank samples by how hard they are to ground.

    Terms (each in [0, 1]): shortness ``(8 - L) / 6`` (a boundary error costs more IoU on a short
    event), faintness ``(0.6 - c) / 0.3`` (only below the easy contrast range, 0 for c >= 0.6), the
    distractor count ``n / 3``, the look-alike kind (near colour 1.0, same colour 0.8), and
    ambiguity for partially annotated samples (a correct answer on the unannotated occurrence scores
    0). Weights 0.3 / 0.2 / 0.15 / 0.3 / 0.2, clipped to 1.
    """
    length_term = (MAX_EVENT - min(max(event_length, MIN_EVENT), MAX_EVENT)) / (MAX_EVENT - MIN_EVENT)
    faint_term = min(max((EASY_CONTRAST[0] - contrast) / (EASY_CONTRAST[0] - FAINT_CONTRAST[0]), 0.0), 1.0)
    look_term = {None: 0.0, "same_colour": 0.8, "near_colour": 1.0}[lookalike_kind]
    d = (0.3 * length_term + 0.2 * faint_term + 0.15 * (n_distractors / 3) + 0.3 * look_term
         + 0.2 * float(partial))
    return round(min(max(d, 0.0), 1.0), 4)


def saliency(duration: float, windows: list, rng: np.random.Generator, annotators: int = 3):
    """QVHighlights-style saliency: clips overlapping the annotated windows, 0-4 per annotator,
    driven by the overlapped fraction of the clip plus small annotator noise."""
    n_clips = int(math.ceil(duration / CLIP_SECONDS - 1e-9))
    clip_ids, scores = [], []
    for k in range(n_clips):
        clip = (k * CLIP_SECONDS, min((k + 1) * CLIP_SECONDS, duration))
        inter = sum(max(0.0, min(clip[1], e) - max(clip[0], s)) for s, e in windows)
        if inter <= 0:
            continue
        frac = inter / (clip[1] - clip[0])
        base = 1.0 + 3.0 * frac
        noise = rng.choice([-1, 0, 1], size=annotators, p=[0.15, 0.7, 0.15])
        clip_ids.append(k)
        scores.append([int(min(4, max(0, round(base) + int(n)))) for n in noise])
    return clip_ids, scores


def _hard_config(rng, hard: bool):
    """(lookalike_kind, short_faint) for a sample; hard == look-alike or short-and-faint."""
    if not hard:
        return None, False
    r = rng.random()
    kind = "near_colour" if r < 0.35 else "same_colour" if r < 0.7 else None
    short_faint = True if kind is None else bool(rng.random() < 0.3)
    return kind, short_faint


def _object(rng, role, shape, colour, rgb, contrast, span, quadrant, lookalike=None) -> dict:
    cx, cy = QUADRANT_CENTRES[quadrant]
    c0 = [round(cx + rng.uniform(-2, 2), 2), round(cy + rng.uniform(-2, 2), 2)]
    c1 = [round(c0[0] + rng.uniform(-2, 2), 2), round(c0[1] + rng.uniform(-2, 2), 2)]  # slight drift
    return {"role": role, "shape": shape, "colour": colour, "description": f"{colour} {shape}",
            "rgb": list(rgb), "contrast": round(float(contrast), 3), "span": span, "quadrant": quadrant,
            "center_start": c0, "center_end": c1, "radius": round(float(rng.uniform(8.0, 10.0)), 2),
            "lookalike": lookalike}


def plan_sample(seed: int, index: int, partial_rate: float, hard_rate: float, fps: int) -> dict:
    """Decide everything about sample ``index`` of the world with ``seed``."""
    rng = np.random.default_rng([seed, index, 0])
    hard = bool(rng.random() < hard_rate)
    partial = bool(rng.random() < partial_rate)
    lookalike_kind, short_faint = _hard_config(rng, hard)

    duration = _grid(rng, MIN_DURATION, MAX_DURATION)
    max_len = min(MAX_EVENT, math.floor(((duration - 1.0) / 2 if partial else duration) * 2) / 2)
    length = _grid(rng, MIN_EVENT, min(SHORT_EVENT_MAX, max_len) if short_faint else max_len)
    if not hard and length <= SHORT_EVENT_MAX:
        contrast = rng.uniform(*EASY_CONTRAST)  # never short *and* faint outside the hard split
    else:
        contrast = rng.uniform(*(FAINT_CONTRAST if short_faint else EASY_CONTRAST))

    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour = list(TARGET_COLOURS)[int(rng.integers(len(TARGET_COLOURS)))]
    quadrants = [int(q) for q in rng.permutation(4)]

    if partial:  # two occurrences of the same object, same length, >= 1 s apart
        free = duration - 2 * length - 1.0  # >= 0 by the choice of max_len
        a, b = sorted([_grid(rng, 0.0, free), _grid(rng, 0.0, free)])
        second_start = round(b + length + 1.0, 2)
        occurrences = [[a, round(a + length, 2)], [second_start, round(second_start + length, 2)]]
    else:
        occurrences = [_place(rng, duration, length, [], 0.0)]
    annotated = int(rng.integers(len(occurrences))) if partial else 0

    objects = [_object(rng, "target", shape, colour, TARGET_COLOURS[colour], contrast, span, quadrants[0])
               for span in occurrences]
    # distractors
    if lookalike_kind is not None:
        n_distractors = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    else:
        n_distractors = int(rng.choice(4, p=DISTRACTOR_COUNT_P))
    used = {(shape, colour)}
    distractors = []
    for k in range(n_distractors):
        if k == 0 and lookalike_kind == "near_colour":
            d_shape, (d_colour, rgb), kind = shape, NEAR_COLOURS[colour], lookalike_kind
        elif k == 0 and lookalike_kind == "same_colour":
            d_shape = [s for s in SHAPES if s != shape][int(rng.integers(len(SHAPES) - 1))]
            d_colour, rgb, kind = colour, TARGET_COLOURS[colour], lookalike_kind
        else:  # ordinary: differs in both shape and colour, and from every other distractor
            choices = [(s, c) for s in SHAPES for c in TARGET_COLOURS
                       if s != shape and c != colour and (s, c) not in used]
            d_shape, d_colour = choices[int(rng.integers(len(choices)))]
            rgb, kind = TARGET_COLOURS[d_colour], None
        used.add((d_shape, d_colour))
        if kind is not None:  # a look-alike at *other* times than the target, with a similar length
            d_len = min(max(MIN_EVENT - 0.5, length + _grid(rng, -1.0, 1.0)), math.floor(duration) / 2)
            span = _place(rng, duration, d_len, occurrences, 0.5) or _place(rng, duration, d_len, [], 0.0)
        else:
            d_len = _grid(rng, 1.5, min(6.0, duration / 2))
            span = _place(rng, duration, d_len, [], 0.0)
        d_contrast = rng.uniform(*EASY_CONTRAST)
        distractors.append(_object(rng, "distractor", d_shape, d_colour, rgb, d_contrast, span,
                                   quadrants[1 + k], lookalike=kind))

    windows = [occurrences[annotated]]
    difficulty = true_difficulty(length, contrast, n_distractors, lookalike_kind, partial)
    hard_reasons = ([f"lookalike_{lookalike_kind}"] if lookalike_kind else []) + \
        (["short_faint"] if (length <= SHORT_EVENT_MAX and contrast <= FAINT_CONTRAST[1]) else [])
    template = int(rng.integers(len(QUERY_TEMPLATES)))
    clip_ids, scores = saliency(duration, windows, rng)
    render = {
        "fps": fps, "size": FRAME_SIZE,
        "background": int(rng.integers(80, 141)),
        "gradient": [round(float(rng.uniform(-8, 8)), 2), round(float(rng.uniform(-8, 8)), 2)],
        "noise_sigma": round(float(rng.uniform(2.0, 5.0)), 2), "temporal_noise": int(rng.integers(1, 3)),
        "objects": objects + distractors,
    }
    meta = {
        "world": "vtg-rl-synthetic/1", "seed": seed, "index": index,
        "target": {"shape": shape, "colour": colour, "description": f"{colour} {shape}"},
        "occurrences": occurrences, "annotated_occurrence": annotated, "partially_annotated": partial,
        "distractors": [{k: d[k] for k in ("shape", "colour", "description", "span", "lookalike")}
                        for d in distractors],
        "event_length": length, "contrast": round(float(contrast), 3), "n_distractors": n_distractors,
        "lookalike": lookalike_kind is not None, "lookalike_kind": lookalike_kind,
        "true_difficulty": difficulty, "hard": bool(hard_reasons), "hard_reasons": hard_reasons,
        "query_template": template, "render": render,
    }
    return {"index": index, "duration": duration, "windows": windows,
            "query": QUERY_TEMPLATES[template].format(d=f"{colour} {shape}"),
            "relevant_clip_ids": clip_ids, "saliency_scores": scores, "meta": meta}
