"""The synthetic VTG world: truthful spans, decodable videos that show what the jsonl says, knobs."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from vtg_rl.cli import main as cli_main
from vtg_rl.data.schema import read_jsonl
from vtg_rl.data.synthetic import _render_in_workers, generate_world, reasoning_trace
from vtg_rl.data.synthetic_plan import QUERY_TEMPLATES, SHAPES, TARGET_COLOURS, plan_sample
from vtg_rl.data.synthetic_render import background_image, verify_video
from vtg_rl.spans import span_problem, temporal_iou

N_WORLD = 30  # >= 24 so that the world is rendered by the 2-process pool


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    paths = generate_world(out, n=N_WORLD, seed=7, partial_rate=0.3, hard_rate=0.5, workers=2)
    samples = {split: read_jsonl(p) for split, p in paths.items()}
    return out, paths, samples


def _all(samples):
    return [s for split in ("train", "val", "test") for s in samples[split]]


def test_layout_and_schema(world):
    out, paths, samples = world
    assert set(paths) == {"train", "val", "test"}
    assert [len(samples[s]) for s in ("train", "val", "test")] == [24, 3, 3]
    info = json.loads((out / "world.json").read_text())
    assert info["params"]["n"] == N_WORLD and info["params"]["seed"] == 7 and info["params"]["fps"] >= 4
    raw = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert all(not Path(r["video_path"]).is_absolute() for r in raw)  # the folder can be moved
    qids = [s.qid for s in _all(samples)]
    assert len(set(qids)) == N_WORLD
    for s in _all(samples):
        m = s.meta
        assert Path(s.video_path).is_file()
        assert 8.0 <= s.duration <= 24.0
        assert len(s.windows) == 1 and span_problem(*s.windows[0], duration=s.duration) is None
        assert 2.0 <= s.windows[0][1] - s.windows[0][0] <= 8.0
        assert all(x * 2 == int(x * 2) for x in s.windows[0])  # 0.5 s grid
        assert m["target"]["description"] in s.query
        assert any(t.format(d=m["target"]["description"]) == s.query for t in QUERY_TEMPLATES)
        for occ in m["occurrences"]:
            assert span_problem(*occ, duration=s.duration) is None
        for d in m["distractors"]:
            assert span_problem(*d["span"], duration=s.duration) is None
            assert d["description"] != m["target"]["description"]
            if d["lookalike"] is None:  # an ordinary distractor differs in shape *and* colour
                assert d["shape"] != m["target"]["shape"] and d["colour"] != m["target"]["colour"]
        assert len(m["distractors"]) == m["n_distractors"] <= 3
        quadrants = [o["quadrant"] for o in m["render"]["objects"] if o["role"] == "distractor"]
        quadrants.append(next(o["quadrant"] for o in m["render"]["objects"] if o["role"] == "target"))
        assert len(set(quadrants)) == len(quadrants)  # objects never share space
        assert 0.0 <= m["true_difficulty"] <= 1.0
        assert m["hard"] == bool(m["hard_reasons"])
        assert m["lookalike"] == (m["lookalike_kind"] is not None)


def test_saliency_follows_the_window(world):
    _, _, samples = world
    for s in _all(samples):
        (ws, we), n_clips = s.windows[0], int(np.ceil(s.duration / 2))
        overlapping = [k for k in range(n_clips) if min(2 * k + 2, s.duration) > ws and 2 * k < we]
        assert s.relevant_clip_ids == overlapping
        assert len(s.saliency_scores) == len(overlapping)
        assert all(len(a) == 3 and all(0 <= x <= 4 for x in a) for a in s.saliency_scores)
        inside = [np.mean(a) for k, a in zip(s.relevant_clip_ids, s.saliency_scores) if ws <= 2 * k and 2 * k + 2 <= we]
        assert all(x >= 3 for x in inside)  # fully covered clips are rated high by every annotator


def test_videos_show_the_target_exactly_in_its_occurrences(world):
    _, _, samples = world
    checked = _all(samples)[:10]
    faint = [s for s in _all(samples) if "short_faint" in s.meta["hard_reasons"]]
    for s in checked + faint[:2]:
        assert verify_video(s.video_path, s.meta, s.duration) == [], s.qid
    # the check can fail: shift the truth by 1.5 s and it must notice
    s = checked[0]
    shifted = json.loads(json.dumps(s.meta))
    for obj in shifted["render"]["objects"]:
        if obj["role"] == "target":
            obj["span"] = [obj["span"][0] + 1.5, obj["span"][1] + 1.5]
    assert verify_video(s.video_path, shifted, s.duration)


def _target_pixel_count(frame, sample):
    """Pixels of the target's quadrant within 25 grey levels (per channel) of its rendered colour."""
    render = sample.meta["render"]
    obj = next(o for o in render["objects"] if o["role"] == "target")
    bg = background_image(render)
    colour = bg + obj["contrast"] * (np.asarray(obj["rgb"], dtype=np.float32) - bg)
    qx, qy = (obj["quadrant"] % 2) * 28, (obj["quadrant"] // 2) * 28
    crop = frame[qy:qy + 28, qx:qx + 28].astype(np.float32)
    close = np.abs(crop - colour[qy:qy + 28, qx:qx + 28]).max(-1) <= 25
    return int(close.sum())


def test_decoded_colour_inside_and_not_outside(world):
    """Independent of verify_video: count target-coloured pixels in decoded frames."""
    _, _, samples = world
    clear = [s for s in _all(samples) if s.meta["contrast"] >= 0.6][:4]
    assert clear
    for s in clear:
        fps = s.meta["render"]["fps"]
        with av.open(s.video_path) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == round(s.duration * fps)
        occ = s.meta["occurrences"]
        for i, frame in enumerate(frames):
            t = i / fps
            if any(a + 0.25 <= t < b - 0.25 for a, b in occ):
                assert _target_pixel_count(frame, s) >= 60, (s.qid, t)
            elif all(t < a - 0.25 or t >= b + 0.25 for a, b in occ):
                assert _target_pixel_count(frame, s) <= 5, (s.qid, t)


def test_partial_annotations_are_truthful(tmp_path):
    paths = generate_world(tmp_path, n=5, seed=3, partial_rate=1.0)
    samples = [s for p in paths.values() for s in read_jsonl(p)]
    for s in samples:
        m = s.meta
        assert m["partially_annotated"] and len(m["occurrences"]) == 2
        a, b = m["occurrences"]
        assert b[0] - a[1] >= 1.0  # two separate events
        assert s.windows == [m["occurrences"][m["annotated_occurrence"]]]
        other = m["occurrences"][1 - m["annotated_occurrence"]]
        assert float(temporal_iou(np.array(s.windows[0]), np.array(other))) == 0.0
        assert verify_video(s.video_path, m, s.duration) == []  # the unannotated event is really there
    plans = [plan_sample(0, i, 0.0, 0.25, 4) for i in range(50)]
    assert not any(p["meta"]["partially_annotated"] or len(p["meta"]["occurrences"]) != 1 for p in plans)


@pytest.mark.parametrize("rate, n", [(0.0, 100), (0.25, 1000), (1.0, 100)])
def test_hard_and_partial_rates(rate, n):
    plans = [plan_sample(11, i, rate, rate, 4)["meta"] for i in range(n)]
    hard = np.mean([m["hard"] for m in plans])
    partial = np.mean([m["partially_annotated"] for m in plans])
    assert abs(hard - rate) < 0.045 and abs(partial - rate) < 0.045  # 3.3 standard errors at n=1000
    if 0 < rate < 1:
        d = np.array([m["true_difficulty"] for m in plans])
        h = np.array([m["hard"] for m in plans])
        assert d[h].mean() > d[~h].mean() + 0.15
        easy_short = [m for m in plans if not m["hard"] and m["event_length"] <= 3.0]
        assert all(m["contrast"] >= 0.6 for m in easy_short)  # outside the hard split events are clear


def test_deterministic_bytes(world, tmp_path):
    out, paths, _ = world
    again = generate_world(tmp_path / "again", n=N_WORLD, seed=7, partial_rate=0.3, hard_rate=0.5, workers=1)
    for split in paths:
        assert again[split].read_bytes() == paths[split].read_bytes()
    other = read_jsonl(generate_world(tmp_path / "other", n=3, seed=8)["train"])
    mine = read_jsonl(paths["train"])[:len(other)]
    assert [(s.duration, s.windows, s.query) for s in other] != [(s.duration, s.windows, s.query) for s in mine]


def test_reuse_and_bad_arguments(tmp_path):
    paths = generate_world(tmp_path, n=3, seed=1)
    stamp = (tmp_path / "world.json").stat().st_mtime_ns
    assert generate_world(tmp_path, n=3, seed=1) == paths
    assert (tmp_path / "world.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    generate_world(tmp_path, n=3, seed=1, partial_rate=1.0)  # other parameters: regenerated
    assert json.loads((tmp_path / "world.json").read_text())["params"]["partial_rate"] == 1.0
    for bad in ({"n": 0}, {"partial_rate": 1.5}, {"hard_rate": -0.1}, {"fps": 1}):
        kwargs = {"n": 3, "seed": 1, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            generate_world(tmp_path / "bad", **kwargs)


def test_grounded_qa(tmp_path):
    qa = [s for p in generate_world(tmp_path / "qa", n=6, seed=5, qa=True).values() for s in read_jsonl(p)]
    plain = [plan_sample(5, i, 0.0, 0.25, 4) for i in range(6)]
    for s, p in zip(qa, plain):
        assert s.windows == p["windows"] and s.duration == p["duration"]  # same world, other question
        assert len(s.options) == 4 and len(set(s.options)) == 4 and s.answer in "ABCD"
        correct, kind = s.meta["qa"]["correct"], s.meta["qa"]["type"]
        assert s.options["ABCD".index(s.answer)] == correct
        target, others = s.meta["target"], s.meta["distractors"]
        if kind == "colour_of_shape":
            assert correct == target["colour"] and all(d["shape"] != target["shape"] for d in others)
            assert set(s.options) <= set(TARGET_COLOURS)
        elif kind == "shape_of_colour":
            assert correct == target["shape"] and all(d["colour"] != target["colour"] for d in others)
            assert set(s.options) == set(SHAPES)
        else:
            assert correct == f"the {target['description']}"
            assert s.meta["qa"]["anchor_span"][1] <= s.windows[0][0]
        assert correct in reasoning_trace(s)


def test_mpeg4_encoder_keeps_colours(tmp_path):
    paths = generate_world(tmp_path, n=3, seed=2, codec="mpeg4", hard_rate=1.0)
    for s in read_jsonl(paths["train"]):
        assert verify_video(s.video_path, s.meta, s.duration) == []


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--n", "4", "--seed", "9", "--partial-rate", "0.5",
                     "--qa", "--quiet"]) == 0
    assert "wrote synthetic world" in capsys.readouterr().out
    assert all((out / f"{split}.jsonl").is_file() for split in ("train", "val", "test"))
    assert json.loads((out / "world.json").read_text())["params"]["qa"] is True
    assert cli_main(["synth", "--out", str(out), "--n", "4", "--seed", "9", "--partial-rate", "0.5",
                     "--qa", "--quiet"]) == 0
    assert "reused" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["synth", "--out", str(out), "--partial-rate", "2"])
    assert cli_main(["synth", "--out", str(out), "--n", "0", "--quiet"]) == 2
    assert "n=0" in capsys.readouterr().err


def test_worker_failure_names_the_video(tmp_path):
    plan = plan_sample(0, 0, 0.0, 0.0, 4)
    job = {"render": plan["meta"]["render"], "duration": plan["duration"], "noise_seed": [0, 0, 1],
           "path": str(tmp_path / "missing_dir" / "v.mp4"), "codec": "libx264"}
    with pytest.raises(RuntimeError, match="missing_dir/v.mp4"):
        _render_in_workers([job, dict(job, path=str(tmp_path / "ok.mp4"))], workers=2, bar=None)
    assert (tmp_path / "ok.mp4").is_file()  # the other worker finished its video
