"""``runs/demo/REPORT.md`` and ``runs/demo/index.html``: what every demo stage achieved on held-out data.

The report opens with the trivial answer-free baselines (the train split's mean span, the whole video, a
random span) on the held-out split, then one row per stage with its top-1 mIoU and standard error, its
gain over the better baseline and over the stage it continues (paired standard errors on the same
queries), and says in words when a change is within noise. Per-query IoUs come from each stage's
prediction file (a QVHighlights-style submission); the recipe's own metrics JSON fills the full metrics
table and stands in when a stage wrote no prediction file. Stages whose files are missing are listed as
"not run" rather than silently left out.

    python -m vtg_rl.report runs/demo
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from vtg_rl.data.schema import atomic_write_text
from vtg_rl.report.stats import NOISE_SE, baseline_ious, describe_gain, load_split, paired, submission_ious, summary

#: the metrics shown, in order, and how they are printed (fractions in [0, 1] unless noted)
COLUMNS = [("miou", "mIoU"), ("r1_03", "R1@0.3"), ("r1_05", "R1@0.5"), ("r1_07", "R1@0.7"),
           ("format_rate", "format"), ("map_avg", "mAP"), ("hd_hit1", "HL HIT@1"), ("hd_map", "HL mAP")]
#: held-out and training annotations, relative to the run folder
HELDOUT = "world/test.jsonl"
TRAIN = "world/train.jsonl"


@dataclass
class Stage:
    name: str
    metrics_file: str
    #: a key path into the JSON (e.g. ["after"]) where the flat metrics dict lives
    key_path: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    note: str = ""
    #: the stage's predictions on the held-out split (a submission jsonl): per-query IoUs, standard errors
    submission: Optional[str] = None
    #: the stage this one continues from: its gain is measured against it, query by query
    previous: Optional[str] = None
    #: further stages to compare with on the same queries (e.g. TPRL against its control arm)
    versus: list[str] = field(default_factory=list)
    #: the name of its predictions in the viewer page (None: not shown there)
    view_name: Optional[str] = None


def _dig(obj, path: list[str]) -> Optional[dict]:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj if isinstance(obj, dict) else None


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def stage_metrics(root: Path, st: Stage) -> Optional[dict]:
    path = root / st.metrics_file
    return _dig(json.loads(path.read_text()), st.key_path) if path.is_file() else None


# --------------------------------------------------------------------------- baselines and gains
def gains(root: str | Path, stages: list[Stage], heldout: str = HELDOUT, train: str = TRAIN) -> Optional[dict]:
    """Per-query IoUs of the baselines and of every stage with a prediction file, on the held-out split,
    and the summaries / paired gains the report prints. None when the held-out split is missing."""
    root = Path(root)
    test, train_samples = load_split(root / heldout), load_split(root / train)
    if not test:
        return None
    ious = baseline_ious(train_samples or test, test)
    base = {f"baseline: {k}": summary(v) for k, v in ious.items()}
    better = max(base, key=lambda k: base[k]["miou"])
    out = {"heldout": heldout, "n": len(test), "baselines": base, "better_baseline": better,
           "mean_span_from": train if train_samples else heldout, "stages": {}}
    for st in stages:
        if not st.submission or not (root / st.submission).is_file():
            continue
        iou, missing = submission_ious(root / st.submission, test)
        ious[st.name] = iou
        row = {**summary(iou), "missing": missing, "submission": st.submission}
        row["vs_better_baseline"] = paired(iou, ious[better.removeprefix("baseline: ")])
        out["stages"][st.name] = row
    for st in stages:
        row = out["stages"].get(st.name)
        if row is None:
            continue
        for other in ([st.previous] if st.previous else []) + st.versus:
            if other in ious:
                row.setdefault("vs", {})[other] = paired(ious[st.name], ious[other])
    return out


def _gain_cell(pair) -> str:
    return describe_gain(*pair) if pair else "-"


def render_gains(g: dict, stages: list[Stage]) -> list[str]:
    better = g["better_baseline"]
    lines = ["## Baselines and gains", "",
             f"Top-1 mIoU on the held-out split ({g['heldout']}, n = {g['n']} queries), ± its standard error "
             "(std of the per-query IoU / sqrt(n)). Gains are paired over the same queries (± the standard "
             f"error of the per-query difference); a gain smaller than {NOISE_SE:g} standard errors is marked "
             "*within noise*. Baselines answer without looking at the video: the mean span (the train split's "
             "mean normalised start and end), the whole video, and a uniformly random span (mean of 20 draws).",
             "", "| stage | mIoU ± SE | R1@0.5 | R1@0.7 | vs better baseline | vs previous stage | note |",
             "|---|---|---|---|---|---|---|"]
    for name, b in g["baselines"].items():
        mark = " (better)" if name == better else ""
        lines.append(f"| {name}{mark} | {b['miou']:.3f} ± {b['miou_se']:.3f} | {b['r1_05']:.3f} | {b['r1_07']:.3f} | - | - | |")
    for st in stages:
        row = g["stages"].get(st.name)
        if row is None:
            lines.append(f"| {st.name} | - | - | - | - | - | no predictions ({st.submission or 'none'}) |")
            continue
        prev = "-"
        if st.previous:
            pair = row.get("vs", {}).get(st.previous)
            prev = f"{_gain_cell(pair)} vs {st.previous}" if pair else f"- ({st.previous} not run)"
        note = st.note
        if row["missing"]:
            note += f"{'; ' if note else ''}{row['missing']} queries without a prediction (scored 0)"
        lines.append(f"| {st.name} | {row['miou']:.3f} ± {row['miou_se']:.3f} | {row['r1_05']:.3f} | {row['r1_07']:.3f} "
                     f"| {_gain_cell(row['vs_better_baseline'])} | {prev} | {note} |")
    lines += ["", "What the numbers say:", ""] + verdicts(g, stages) + [""]
    return lines


def _say(a: str, b: str, pair) -> str:
    diff, err = pair
    if abs(diff) < NOISE_SE * err or (err == 0 and diff == 0):
        return f"- {a} vs {b}: {diff:+.3f} ± {err:.3f} mIoU, **within noise** (|difference| < {NOISE_SE:g} SE): no measured change."
    word = "better" if diff > 0 else "worse"
    return f"- {a} vs {b}: {diff:+.3f} ± {err:.3f} mIoU, {word} by {abs(diff) / err:.1f} SE."


def verdicts(g: dict, stages: list[Stage]) -> list[str]:
    out = []
    better = g["better_baseline"]
    for st in stages:
        row = g["stages"].get(st.name)
        if row is None:
            continue
        out.append(_say(st.name, better, row["vs_better_baseline"]))
        for other, pair in row.get("vs", {}).items():
            out.append(_say(st.name, other, pair))
    return out or ["- no stage has predictions on the held-out split yet."]


# --------------------------------------------------------------------------- stage times
def stage_times(root: Path) -> list[tuple[str, Optional[int], str]]:
    """(stage, seconds of its last run that did the work or None if it was only ever reused, the load
    average when it ended) from the ``stage_times.tsv`` scripts/demo.sh appends to, in first-seen order."""
    path = root / "stage_times.tsv"
    if not path.is_file():
        return []
    times: dict[str, tuple[Optional[int], str]] = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) not in (3, 4) or not parts[1].isdigit():
            continue
        name, secs, state = parts[:3]
        load = parts[3] if len(parts) == 4 else "-"
        if state == "ran":
            times[name] = (int(secs), load)
        else:
            times.setdefault(name, (None, "-"))
    return [(name, secs, load) for name, (secs, load) in times.items()]


def _mins(secs: int) -> str:
    return f"{secs // 60}m{secs % 60:02d}s"


def render_times(times: list[tuple[str, Optional[int], str]]) -> list[str]:
    if not times:
        return []
    lines = ["## Stage times", "", "Wall time of the last run of each stage that did its work (scripts/demo.sh), "
             "and the machine's load average (1, 5, 15 min) when it ended: on a shared machine the times grow with it.",
             "", "| stage | wall time | load average at its end |", "|---|---|---|"]
    for name, secs, load in times:
        lines.append(f"| {name} | {'reused (no measured run)' if secs is None else _mins(secs)} | {load} |")
    total = sum(s for _, s, _ in times if s is not None)
    lines += [f"| total | {_mins(total)} | |", ""]
    return lines


# --------------------------------------------------------------------------- the report
def render_report(root: str | Path, stages: list[Stage], title: str = "vtg-rl demo report",
                  heldout: str = HELDOUT, train: str = TRAIN) -> str:
    root = Path(root)
    lines = [f"# {title}", ""]
    g = gains(root, stages, heldout, train)
    if g is not None:
        lines += render_gains(g, stages)
    lines += ["## All metrics", "", "Held-out metrics of every stage as its recipe wrote them (synthetic world, test split).", "",
              "| stage | " + " | ".join(label for _, label in COLUMNS) + " | note |",
              "|---|" + "---|" * len(COLUMNS) + "---|"]
    plots = []
    for st in stages:
        metrics = stage_metrics(root, st)
        if metrics is None:
            lines.append(f"| {st.name} | " + " | ".join("-" for _ in COLUMNS) + f" | not run ({st.metrics_file} missing) |")
            continue
        lines.append(f"| {st.name} | " + " | ".join(_cell(metrics.get(k)) for k, _ in COLUMNS) + f" | {st.note} |")
        for p in st.plots:
            if (root / p).is_file():
                plots.append((st.name, p))
    lines.append("")
    lines += render_times(stage_times(root))
    if plots:
        lines += ["## Plots", ""]
        for name, p in plots:
            lines += [f"### {name}: {Path(p).name}", "", f"![{name}]({p})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(root: str | Path, stages: list[Stage], title: str = "vtg-rl demo report") -> Path:
    out = Path(root) / "REPORT.md"
    atomic_write_text(out, render_report(root, stages, title))
    g = gains(root, stages)
    if g is not None:  # the same numbers, for scripts
        atomic_write_text(Path(root) / "report.json", json.dumps(g, indent=2, default=float, allow_nan=False) + "\n")
    return out


def demo_stages() -> list[Stage]:
    """The stages of ``make demo`` and where their recipes leave their metrics (paths relative to runs/demo)."""
    return [
        Stage("cold-start SFT", "sft/eval_after.json", plots=["sft/training_curves.png"],
              submission="sft/eval_after_submission.jsonl", view_name="SFT"),
        Stage("GRPO --curriculum (cleaned data)", "grpo/eval_after.json", plots=["grpo/reward_curves.png"],
              note="from the SFT checkpoint", submission="grpo/eval_after_submission.jsonl",
              previous="cold-start SFT", view_name="GRPO"),
        Stage("GIRL-DETR supervised", "girl_detr/metrics.json", key_path=["eval"],
              plots=["girl_detr/training_curves.png"], note="own branch (CLIP features), half of the train split",
              submission="girl_detr/predictions_eval.jsonl", view_name="GIRL-DETR"),
        Stage("GIRL-DETR + TPRL", "tprl/metrics.json", key_path=["eval"], plots=["tprl/training_curves.png"],
              note="backbone frozen; RL split: the other half, never seen by the supervised head",
              submission="tprl/predictions_eval.jsonl", previous="GIRL-DETR supervised",
              versus=["GIRL-DETR + control arm"], view_name="GIRL-DETR + TPRL"),
        Stage("GIRL-DETR + control arm", "head_control/metrics.json", key_path=["eval"],
              plots=["head_control/training_curves.png"],
              note="supervised loss, same head parameters, RL split, steps and optimiser as TPRL",
              submission="head_control/predictions_eval.jsonl", previous="GIRL-DETR supervised"),
    ]


__all__ = ["COLUMNS", "Stage", "demo_stages", "gains", "render_report", "write_report"]
