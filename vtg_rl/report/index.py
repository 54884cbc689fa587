"""``index.html``: one page that links the demo's report, plots, held-out viewer and flagged samples.

The viewer pages are written by :func:`vtg_rl.view.write_view` (docs/viewer.md): the held-out split
with every stage's predictions, and the reflection agent's reviewed samples with its flags.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Optional

from vtg_rl.data.schema import atomic_write_text

log = logging.getLogger(__name__)

HELDOUT_VIEW = "view_heldout.html"
FLAGGED_VIEW = "view_flagged.html"


def write_views(root: str | Path, stages, heldout: str = "world/test.jsonl") -> dict[str, str]:
    """Write the viewer pages that have data; returns ``{label: page path relative to root}``."""
    from vtg_rl.view import write_view

    root = Path(root)
    pages = {}
    preds = {st.view_name: root / st.submission for st in stages
             if st.view_name and st.submission and (root / st.submission).is_file()}
    if (root / heldout).is_file():
        write_view(root / heldout, preds, out=root / HELDOUT_VIEW,
                   title=f"held-out split: {', '.join(preds) or 'no predictions yet'}")
        pages["held-out samples with " + (", ".join(preds) or "no") + " predictions"] = HELDOUT_VIEW
    flagged = sorted((root / "agents").glob("*.flagged.jsonl")) if (root / "agents").is_dir() else []
    if flagged:
        clean = root / "agents" / flagged[0].name.replace(".flagged.jsonl", ".jsonl")
        scored = root / "agents" / "with_difficulty.jsonl"  # the same samples, with the difficulty agent's scores
        clean = scored if scored.is_file() else clean
        if clean.is_file():
            write_view(clean, {}, out=root / FLAGGED_VIEW, flagged=flagged[0],
                       title="reflection agent: reviewed train samples (filter: flagged)")
            pages["reflection agent's flagged samples, for review"] = FLAGGED_VIEW
    return pages


def _table(g: Optional[dict]) -> str:
    if not g:
        return "<p>No held-out split yet.</p>"
    from vtg_rl.report.stats import describe_gain

    rows = [(f"{name}{' (better)' if name == g['better_baseline'] else ''}", b, "-", "-")
            for name, b in g["baselines"].items()]
    for name, s in g["stages"].items():
        vs = "; ".join(f"{describe_gain(*p)} vs {o}" for o, p in s.get("vs", {}).items()) or "-"
        rows.append((name, s, describe_gain(*s["vs_better_baseline"]), vs))
    body = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{s['miou']:.3f} ± {s['miou_se']:.3f}</td><td>{s['r1_07']:.3f}</td>"
        f"<td>{html.escape(b)}</td><td>{html.escape(v)}</td></tr>" for n, s, b, v in rows)
    return ("<table><tr><th>stage</th><th>mIoU ± SE</th><th>R1@0.7</th><th>vs better baseline</th>"
            f"<th>vs previous / control</th></tr>{body}</table>"
            f"<p>held-out: {html.escape(g['heldout'])}, n = {g['n']}; ± = standard error; "
            "“within noise”: the difference is smaller than 2 standard errors.</p>")


def write_index(root: str | Path, stages, g: Optional[dict], views: dict[str, str],
                title: str = "vtg-rl demo") -> Path:
    root = Path(root)
    links = [("the report (REPORT.md)", "REPORT.md")]
    if (root / "report.json").is_file():
        links.append(("the report's numbers (report.json)", "report.json"))
    links += [(label, page) for label, page in views.items()]
    plots = [(f"{st.name}: {Path(p).name}", p) for st in stages for p in st.plots if (root / p).is_file()]
    files = [(f"{st.name}: {Path(st.submission).name}", st.submission) for st in stages
             if st.submission and (root / st.submission).is_file()]

    def ul(items):
        return "<ul>" + "".join(f'<li><a href="{html.escape(h)}">{html.escape(t)}</a></li>' for t, h in items) + "</ul>"

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:.25em .6em;text-align:left}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<h2>Held-out results</h2>
{_table(g)}
<h2>Pages</h2>
{ul(links)}
<h2>Plots</h2>
{ul(plots) if plots else "<p>none yet</p>"}
<h2>Prediction files (held-out split)</h2>
{ul(files) if files else "<p>none yet</p>"}
</body></html>
"""
    out = root / "index.html"
    atomic_write_text(out, page)
    return out
