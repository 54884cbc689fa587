"""Time the viewer on a large synthetic dataset: page generation in Python and rendering in Chromium.

    OMP_NUM_THREADS=1 .venv/bin/python -m vtg_rl.view.bench --n 10000 --dir /tmp/view-bench

Writes ``n`` samples (all pointing at one short mp4), two prediction files (10 windows per query), a
flagged file, builds the page with :func:`vtg_rl.view.write_view`, then opens it in headless Chromium
and prints the timings as JSON (``--no-browser``: generation only).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vtg_rl.data.schema import VTGSample, write_jsonl
from vtg_rl.data.video import write_video
from vtg_rl.view.page import write_view

_WORDS = ("red", "blue", "green", "circle", "square", "cross", "appears", "moves", "left", "right", "person",
          "opens", "door", "dog", "runs", "ball", "table", "kitchen", "car", "stops")


def make_inputs(folder: Path, n: int, seed: int = 0) -> dict:
    """A dataset of ``n`` samples with difficulty / reflection meta, two prediction files, a flagged file."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    frames[:, 8:24, 8:24] = 200
    video = write_video(folder / "clip.mp4", frames, fps=4)
    samples, preds, flagged = [], {"model_a": [], "model_b": []}, []
    for i in range(n):
        duration = round(rng.uniform(20, 150), 1)
        s = round(rng.uniform(0, duration - 6), 1)
        e = round(min(duration, s + rng.uniform(2, 30)), 1)
        query = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 12)))
        is_flagged = rng.random() < 0.05
        meta = {"difficulty": round(rng.random(), 3), "zero_shot_iou_mean": round(rng.random(), 3),
                "reflection": {"flagged": is_flagged, "agreement": round(rng.random(), 2),
                               "found_span": [round(rng.uniform(0, duration / 2), 1), round(duration / 2, 1)]
                               if is_flagged else None}}
        samples.append(VTGSample(qid=str(i), vid=f"v{i % 2000}", duration=duration, query=query, windows=[[s, e]],
                                 video_path=str(video.resolve()), meta=meta))
        for name in preds:
            rows = []
            for _ in range(10):
                a = round(max(0.0, s + rng.uniform(-10, 10)), 2)
                rows.append([a, round(min(duration, a + rng.uniform(1, 30)), 2), round(rng.random(), 4)])
            rows.sort(key=lambda r: -r[2])
            preds[name].append({"qid": str(i), "pred_relevant_windows": rows})
        if is_flagged:
            flagged.append({"qid": str(i), "found_span": meta["reflection"]["found_span"], "verification": 0.5})
    write_jsonl(samples, folder / "data.jsonl")
    paths = {}
    for name, rows in preds.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "data.flagged.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flagged))
    return {"data": folder / "data.jsonl", "preds": paths, "flagged": folder / "data.flagged.jsonl"}


def time_generation(inputs: dict, out: Path, repeats: int = 3) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        write_view(inputs["data"], inputs["preds"], out, flagged=inputs["flagged"], title="bench")
        times.append(time.perf_counter() - t0)
    return times


def time_browser(page_path: Path, repeats: int = 3) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from vtg_rl.view.browser import launch

    runs = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = launch(p, profile)
        try:
            for _ in range(repeats):
                page = ctx.new_page()
                page.goto(page_path.resolve().as_uri(), wait_until="load")
                page.wait_for_function("window.__view && window.__view.timings.first_page_ms !== undefined")
                r = page.evaluate("""() => {
                    const nav = performance.getEntriesByType('navigation')[0];
                    return {...window.__view.timings, dom_content_loaded_ms: nav.domContentLoadedEventEnd,
                            load_ms: nav.loadEventEnd, rows: document.querySelectorAll('#rows .row').length,
                            dom_nodes: document.getElementsByTagName('*').length};
                }""")
                page.fill("#f-text", "red door")
                page.wait_for_function("window.__view.state.text === 'red door'")
                r["text_filter_ms"] = page.evaluate("window.__view.timings.filter_ms")
                page.fill("#f-text", "")
                page.select_option("#f-sort", "iou-asc")
                r["sort_by_iou_ms"] = page.evaluate("window.__view.timings.filter_ms")
                page.click("#next")
                r["next_page_render_ms"] = page.evaluate("window.__view.timings.render_ms")
                runs.append(r)
                page.close()
        finally:
            ctx.close()
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="view-bench-"))
    inputs = make_inputs(folder, args.n)
    out = folder / "page.html"
    gen = time_generation(inputs, out, args.repeats)
    report = {"n": args.n, "page_mb": round(out.stat().st_size / 1e6, 2),
              "generation_s": {"median": round(statistics.median(gen), 3), "runs": [round(t, 3) for t in gen]}}
    if not args.no_browser:
        runs = time_browser(out, args.repeats)
        report["browser_ms"] = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
    report["page"] = str(out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
