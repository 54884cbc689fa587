"""`vtg-rl view`: the HTML builder (escaping, embedded data, flags) and the page in headless Chromium.

The browser tests drive Debian's Chromium through Playwright (``executable_path``, no browser
download). Without Chromium or Playwright they skip locally; in CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from vtg_rl.cli import main as cli_main
from vtg_rl.data.schema import VTGSample, read_jsonl, write_jsonl
from vtg_rl.view import build_page, collect_view_data, write_view

EVIL = "</script><script>alert(1)</script> <!-- & \u2028 é"


def _iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def _embedded(page: str):
    m = re.search(r'<script type="application/json" id="view-data">(.*?)</script>', page, re.S)
    assert m, "no embedded data element"
    return json.loads(m.group(1))


def _write_preds(path: Path, rows: dict) -> Path:
    path.write_text("".join(json.dumps({"qid": q, "pred_relevant_windows": w}) + "\n" for q, w in rows.items()))
    return path


# ------------------------------------------------------------------ builder (no browser)
def test_page_escapes_data_and_embedded_json_round_trips(tmp_path):
    samples = [VTGSample(qid="q<1>", vid="v", duration=10.0, query=EVIL, windows=[[1.0, 2.0]],
                         meta={"difficulty": 0.25, "note": "</script>"})]
    write_jsonl(samples, tmp_path / "d.jsonl")
    preds = {"</script>": _write_preds(tmp_path / "p.jsonl", {"q<1>": [[1.0, 2.0, 0.5]]})}
    out = write_view(tmp_path / "d.jsonl", preds, tmp_path / "page.html", title="<b>T</b> & co")
    page = out.read_text(encoding="utf-8")

    # the only </script> tags are the two the template closes its own elements with
    assert page.count("</script>") == 2
    assert "<script>alert(1)" not in page
    assert "<b>T</b>" not in page and "&lt;b&gt;T&lt;/b&gt; &amp; co" in page
    data = _embedded(page)
    assert data == json.loads(json.dumps(collect_view_data(tmp_path / "d.jsonl", preds, tmp_path / "page.html",
                                                           title="<b>T</b> & co")))
    s = data["samples"][0]
    assert s["query"] == EVIL and s["qid"] == "q<1>"
    assert s["extra"]["note"] == "</script>" and s["difficulty"] == 0.25
    assert data["preds"][0]["name"] == "</script>"
    assert s["iou"] == [1.0]


def test_title_with_a_placeholder_is_not_substituted_twice():
    page = build_page({"title": "{{DATA}}", "samples": [], "preds": []})
    assert "<title>{{DATA}}</title>" in page
    assert _embedded(page)["title"] == "{{DATA}}"


def test_flagged_set_verdicts_and_found_spans(tmp_path):
    samples = [
        VTGSample(qid="a", vid="v", duration=20.0, query="in the flagged file", windows=[[1.0, 4.0]]),
        VTGSample(qid="b", vid="v", duration=20.0, query="flagged by its meta", windows=[[1.0, 4.0]],
                  meta={"reflection": {"flagged": True, "agreement": 0.8, "found_span": [9.0, 12.0],
                                       "verification": 0.7}}),
        VTGSample(qid="c", vid="v", duration=20.0, query="reflected, clean", windows=[[1.0, 4.0]],
                  meta={"reflection": {"flagged": False, "agreement": 0.1, "found_span": None},
                        "difficulty": 0.9, "zero_shot_iou_mean": 0.1}),
        VTGSample(qid="d", vid="v", duration=20.0, query="never reflected", windows=[[1.0, 4.0]]),
    ]
    write_jsonl(samples, tmp_path / "d.jsonl")
    flagged = tmp_path / "d.flagged.jsonl"
    flagged.write_text(
        json.dumps({"qid": "a", "found_span": [10.0, 15.0], "agreement": 0.75, "verification": 0.62}) + "\n"
        + json.dumps({"qid": "zz", "vid": "w", "video_path": "videos/w.mp4", "duration": 30.0,
                      "query": "dropped from the cleaned set", "windows": [[2.0, 3.0]], "found_span": [20.0, 25.0]}) + "\n")
    data = collect_view_data(tmp_path / "d.jsonl", {}, tmp_path / "out" / "page.html", flagged=flagged)
    by = {s["qid"]: s for s in data["samples"]}
    assert [q for q, s in by.items() if s["flagged"]] == ["a", "b", "zz"]
    assert (by["a"]["verdict"], by["a"]["found"], by["a"]["verification"], by["a"]["agreement"]) == \
        (None, [10.0, 15.0], 0.62, 0.75)
    assert (by["b"]["verdict"], by["b"]["found"], by["b"]["verification"]) == ("flagged", [9.0, 12.0], 0.7)
    assert (by["c"]["verdict"], by["c"]["found"], by["c"]["difficulty"], by["c"]["zero_shot_iou"]) == \
        ("clean", None, 0.9, 0.1)
    assert by["d"]["verdict"] is None and not by["d"]["flagged"]
    # a flagged sample missing from the dataset comes from the flagged file, its video relative to that file
    assert by["zz"]["from_flagged_file"] and by["zz"]["windows"] == [[2.0, 3.0]]
    assert by["zz"]["src"] == "../videos/w.mp4"
    assert data["has_flagged_file"]


def test_top_spans_iou_and_video_links(tmp_path):
    (tmp_path / "videos").mkdir()
    samples = [VTGSample(qid="1", vid="v", duration=30.0, query="q", windows=[[0.0, 10.0], [20.0, 30.0]],
                         video_path=str(tmp_path / "videos" / "my clip.mp4")),
               VTGSample(qid="2", vid="v", duration=30.0, query="q", windows=[[5.0, 6.0]])]
    write_jsonl(samples, tmp_path / "d.jsonl")
    # integer qid in the file; windows deliberately not sorted by score: top-1 is the first listed
    (tmp_path / "p.jsonl").write_text(json.dumps(
        {"qid": 1, "pred_relevant_windows": [[22.0, 30.0, 0.1], [0, 10, 0.9], [1, 2, 0.5], [3, 4, 0.4], [5, 6, 0.3]]}) + "\n")
    data = collect_view_data(tmp_path / "d.jsonl", {"m": tmp_path / "p.jsonl"}, tmp_path / "site" / "page.html")
    one, two = data["samples"]
    assert one["preds"] == [[[22.0, 30.0, 0.1], [0.0, 10.0, 0.9], [1.0, 2.0, 0.5]]]
    assert one["iou"] == [round(_iou([22.0, 30.0], [20.0, 30.0]), 4)]
    assert two["preds"] == [None] and two["iou"] == [None]
    assert one["src"] == "../videos/my%20clip.mp4" and two["src"] is None


def test_cli_writes_the_page(tmp_path, capsys):
    write_jsonl([VTGSample(qid="1", vid="v", duration=5.0, query="q", windows=[[1.0, 2.0]])], tmp_path / "d.jsonl")
    _write_preds(tmp_path / "p.jsonl", {"1": [[1.0, 2.0, 1.0]]})
    assert cli_main(["view", str(tmp_path / "d.jsonl"), "--pred", f"mine={tmp_path / 'p.jsonl'}",
                     "--pred", str(tmp_path / "p.jsonl"), "--title", "T"]) == 0
    out = tmp_path / "d.view.html"
    assert str(out) in capsys.readouterr().out
    data = _embedded(out.read_text(encoding="utf-8"))
    assert [p["name"] for p in data["preds"]] == ["mine", "p"] and data["title"] == "T"
    with pytest.raises(SystemExit):
        cli_main(["view", str(tmp_path / "d.jsonl"), "--pred", f"x={tmp_path / 'p.jsonl'}",
                  "--pred", f"x={tmp_path / 'p.jsonl'}"])


# ------------------------------------------------------------------ in the browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from vtg_rl.view.browser import find_chromium, launch

    in_ci = os.environ.get("CI", "").lower() == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("playwright is not installed (pip install -e '.[dev]'); CI must run the browser test")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if find_chromium() is None:
        if in_ci:
            pytest.fail("no Chromium found (scripts/setup_env.sh installs Debian's chromium); CI must run the browser test")
        pytest.skip("no Chromium found: install Debian's 'chromium' (scripts/setup_env.sh does as root) "
                    "or set VTG_RL_CHROMIUM")
    with sync_playwright() as p:
        ctx = launch(p, str(tmp_path_factory.mktemp("chromium-profile")), width=1280, height=900)
        try:
            yield ctx
        finally:
            ctx.close()


class _Page:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, ctx, path: Path):
        self.errors: list[str] = []
        self.page = ctx.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        self.page.wait_for_function("window.__view && window.__view.timings.first_page_ms !== undefined")

    def rows(self) -> list[str]:
        return self.page.eval_on_selector_all("#rows .row", "rs => rs.map(r => r.dataset.qid)")


N_BROWSER = 120
KNOWN = {"qid": "s000", "windows": [[1.0, 3.5], [6.0, 8.25]],
         "alpha": [[5.5, 8.0, 0.9], [0.5, 2.0, 0.6], [9.0, 11.0, 0.3], [2.0, 3.0, 0.1]], "beta": [[1.25, 3.0, 0.8]]}


@pytest.fixture(scope="module")
def browser_page_inputs(synthetic_world, tmp_path_factory):
    """120 samples over the synthetic world's mp4s: a known first sample, predictable IoUs and flags."""
    world = read_jsonl(synthetic_world["train"])
    assert world[0].duration >= 12.0, "the known sample's spans need a video of 12 s or more"
    folder = tmp_path_factory.mktemp("view")
    samples, alpha, beta, flagged = [], {}, {}, []
    for i in range(N_BROWSER):
        src = world[i % len(world)]
        d = src.duration
        qid = f"s{i:03d}"
        if i == 0:
            windows = KNOWN["windows"]
            alpha[qid], beta[qid] = KNOWN["alpha"], KNOWN["beta"]
        else:
            g = [round(d * 0.2, 2), round(d * 0.6, 2)]
            windows = [g]
            shift = round(d * 0.4 * (i % 5) / 4, 2)  # IoU falls with i % 5
            alpha[qid] = [[g[0] + shift, min(d, g[1] + shift), 0.5]]
            if i % 2:
                beta[qid] = [[g[0], g[1], 1.0]]
        query = ("the ladder is climbed" if i % 7 == 0 else src.query) + f" [{qid}]"
        meta = {"difficulty": round((i % 10) / 10, 2)}
        if i % 6 == 0:
            meta["reflection"] = {"flagged": True, "agreement": 0.8, "found_span": [0.0, round(d / 4, 2)],
                                  "verification": 0.55}
        samples.append(VTGSample(qid=qid, vid=src.vid, duration=d, query=query, windows=windows,
                                 video_path=src.video_path, meta=meta))
        if i % 9 == 4:
            flagged.append({"qid": qid, "found_span": [0.0, 1.0], "verification": 0.4})
    samples[1].query = EVIL + " [s001]"
    write_jsonl(samples, folder / "data" / "data.jsonl")
    preds = {"alpha": _write_preds(folder / "alpha.jsonl", alpha), "beta": _write_preds(folder / "beta.jsonl", beta)}
    (folder / "data.flagged.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flagged))
    return {"data": folder / "data" / "data.jsonl", "preds": preds, "flagged": folder / "data.flagged.jsonl",
            "samples": samples, "alpha": alpha, "flagged_rows": flagged, "out": folder / "site" / "page.html"}


def _screenshot(page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("VTG_RL_SCREENSHOT_DIR"):
        dest = Path(os.environ["VTG_RL_SCREENSHOT_DIR"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / name)
    return path


def test_page_in_chromium(browser, browser_page_inputs, tmp_path):
    inp = browser_page_inputs
    out = write_view(inp["data"], inp["preds"], inp["out"], flagged=inp["flagged"], title="viewer test")
    view = _Page(browser, out)
    page = view.page
    samples = inp["samples"]

    # --- first page: 50 rows in dataset order; the <script> query is shown as text, not run
    assert view.rows() == [s.qid for s in samples[:50]]
    assert page.text_content("#pageinfo") == "page 1 of 3"
    assert page.eval_on_selector('#rows .row[data-qid="s001"] .query', "e => e.textContent") == samples[1].query
    assert page.evaluate("document.querySelectorAll('script').length") == 2  # the template's own two
    # videos get their source only near the viewport
    has_src = "q => document.querySelector(`#rows .row[data-qid=\"${q}\"] video`).hasAttribute('src')"
    page.wait_for_function(has_src, arg="s000")
    assert not page.evaluate(has_src, "s049")

    # --- timeline of the known sample: spans at the right pixels
    known = samples[0]
    row = page.locator('#rows .row[data-qid="s000"]')

    def check_lane(selector, spans):
        track = row.locator(selector)
        box = track.bounding_box()
        boxes = [track.locator(".span").nth(k).bounding_box() for k in range(track.locator(".span").count())]
        assert len(boxes) == len(spans)
        for b, (s, e, *_) in zip(boxes, spans):
            assert b["x"] == pytest.approx(box["x"] + s / known.duration * box["width"], abs=1.0)
            assert b["width"] == pytest.approx((e - s) / known.duration * box["width"], abs=1.0)

    check_lane(".track.gt", KNOWN["windows"])
    check_lane('.track.pred[data-pred="0"]', KNOWN["alpha"][:3])  # top 3 of 4
    check_lane('.track.pred[data-pred="1"]', KNOWN["beta"])
    assert row.locator('.fact[data-pred="0"]').text_content() == \
        f"alpha top-1 IoU {max(_iou(KNOWN['alpha'][0], w) for w in KNOWN['windows']):.2f}"

    # --- clicking a span seeks the (real, decodable) video to its start
    video_state = "() => { const v = document.querySelector('#rows .row[data-qid=\"s000\"] video'); " \
                  "return {t: v.currentTime, ready: v.readyState, dur: v.duration, err: v.error && v.error.code}; }"
    row.locator(".track.gt .span").nth(1).click()
    page.wait_for_function("() => Math.abs(document.querySelector('#rows .row[data-qid=\"s000\"] video').currentTime"
                           " - 6.0) < 0.01")
    gt_box = row.locator(".track.gt").bounding_box()
    playhead = row.locator(".track.gt .ph")
    page.wait_for_function("e => e.style.display === 'block'", arg=playhead.element_handle())
    assert playhead.bounding_box()["x"] + 1 == pytest.approx(gt_box["x"] + 6.0 / known.duration * gt_box["width"], abs=1.0)
    row.locator('.track.pred[data-pred="0"] .span').nth(1).click()  # alpha's rank 2: 0.5 s
    page.wait_for_function("() => { const v = document.querySelector('#rows .row[data-qid=\"s000\"] video');"
                           " return v.readyState >= 1 && Math.abs(v.currentTime - 0.5) < 0.01; }")
    state = page.evaluate(video_state)
    assert state["err"] is None and state["dur"] == pytest.approx(known.duration, abs=0.3)
    shot = _screenshot(page, "view.png", tmp_path)
    assert shot.stat().st_size > 10_000

    # --- paging
    page.click("#next")
    assert view.rows() == [s.qid for s in samples[50:100]]
    page.click("#next")
    assert view.rows() == [s.qid for s in samples[100:]]
    assert page.text_content("#pageinfo") == "page 3 of 3" and page.is_disabled("#next")
    page.select_option("#f-size", "100")
    assert len(view.rows()) == 100 and page.text_content("#pageinfo") == "page 1 of 2"
    page.select_option("#f-size", "50")

    # --- filters change the visible rows
    page.fill("#f-text", "LADDER")
    page.wait_for_function("window.__view.state.text === 'ladder'")
    assert view.rows() == [s.qid for s in samples if "ladder" in s.query.lower()]
    page.fill("#f-text", "")
    page.wait_for_function("window.__view.state.text === ''")

    flagged_qids = {r["qid"] for r in inp["flagged_rows"]} | {s.qid for s in samples if s.meta.get("reflection")}
    page.select_option("#f-flag", "flagged")
    assert view.rows() == [s.qid for s in samples if s.qid in flagged_qids]
    page.select_option("#f-flag", "clean")
    assert view.rows() == [s.qid for s in samples if s.qid not in flagged_qids][:50]
    page.select_option("#f-flag", "all")

    page.fill("#f-dmin", "0.85")
    page.dispatch_event("#f-dmin", "change")
    assert view.rows() == [s.qid for s in samples if s.meta["difficulty"] >= 0.85]
    page.fill("#f-dmin", "")
    page.dispatch_event("#f-dmin", "change")

    top1 = {q: max(_iou(w[0], g) for g in s.windows) for s in samples for q, w in [(s.qid, inp["alpha"][s.qid])]}
    page.fill("#f-imin", "0.5")
    page.dispatch_event("#f-imin", "change")
    expected = [s.qid for s in samples if top1[s.qid] >= 0.5]
    assert 0 < len(expected) < N_BROWSER
    assert view.rows() == expected[:50]
    assert page.text_content("#count") == f"{len(expected)} of {N_BROWSER} samples match"
    page.fill("#f-imin", "")
    page.dispatch_event("#f-imin", "change")

    page.select_option("#f-sort", "iou-asc")
    ranked = sorted(range(N_BROWSER), key=lambda i: (round(top1[samples[i].qid], 4), i))
    assert view.rows() == [samples[i].qid for i in ranked[:50]]
    assert view.errors == []


def test_ten_thousand_samples_keep_one_page_in_the_dom(browser, tmp_path):
    n = 10_000
    samples = [VTGSample(qid=str(i), vid="v", duration=60.0, query=f"query number {i}", windows=[[10.0, 20.0]],
                         meta={"difficulty": (i % 100) / 100}) for i in range(n)]
    write_jsonl(samples, tmp_path / "big.jsonl")
    _write_preds(tmp_path / "p.jsonl", {str(i): [[10.0, 20.0 + (i % 10), 1.0], [0.0, 5.0, 0.5]] for i in range(n)})
    t0 = time.perf_counter()
    out = write_view(tmp_path / "big.jsonl", {"p": tmp_path / "p.jsonl"}, tmp_path / "big.html")
    generation_s = time.perf_counter() - t0
    view = _Page(browser, out)
    timings = view.page.evaluate("window.__view.timings")
    assert len(view.rows()) == 50 and view.page.text_content("#pageinfo") == "page 1 of 200"
    assert view.page.evaluate("document.getElementsByTagName('*').length") < 5_000
    view.page.fill("#f-text", "number 999")  # 999, 9990..9999
    view.page.wait_for_function("window.__view.state.text === 'number 999'")
    assert view.rows() == ["999"] + [str(i) for i in range(9990, 10_000)]
    assert view.errors == []
    print(f"\n10,000 samples: page generated in {generation_s:.2f} s; browser: {timings}")


def test_page_without_predictions_or_videos(browser, tmp_path):
    samples = [VTGSample(qid=f"n{i}", vid="v", duration=30.0, query=f"q{i}", windows=[[1.0, 2.0]],
                         meta={"difficulty": d}) for i, d in enumerate([0.2, 0.9, 0.5])]
    write_jsonl(samples, tmp_path / "d.jsonl")
    view = _Page(browser, write_view(tmp_path / "d.jsonl", {}, tmp_path / "p.html"))
    assert not view.page.is_visible("#f-pred") and view.page.locator("#rows video").count() == 0
    view.page.select_option("#f-sort", "diff-desc")
    assert view.rows() == ["n1", "n2", "n0"]
    assert view.errors == []
