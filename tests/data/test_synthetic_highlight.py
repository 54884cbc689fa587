"""The synthetic summarisation and highlight-only worlds: labels that follow the generator's truth, videos
that show it, deterministic bytes, schema round trip, the CLI."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from vtg_rl.cli import main as cli_main
from vtg_rl.data.loaders import load_samples
from vtg_rl.data.schema import read_jsonl
from vtg_rl.data.synthetic_highlight import (HIGHLIGHT_DOMAINS, SUMMARY_CATEGORIES, generate_task_world,
                                             label_clips, object_importance, plan_summary_sample)
from vtg_rl.data.synthetic_render import background_image, expected_colour, object_center, verify_video

N = 12


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    out = {}
    for task in ("summarization", "highlight"):
        root = tmp_path_factory.mktemp(task)
        paths = generate_task_world(root, n=N, seed=3, task=task, workers=1)
        out[task] = (root, paths, [s for split in ("train", "val", "test") for s in read_jsonl(paths[split])])
    return out


def test_layout_and_schema_round_trip(worlds):
    for task, (root, paths, samples) in worlds.items():
        info = json.loads((root / "world.json").read_text())
        assert info["params"]["task"] == task and info["params"]["n"] == N
        assert sum(info["splits"].values()) == N == len(samples)
        assert sum(info["domains"].values()) == N
        loaded, report = load_samples(paths["train"], "unified")  # strict validation
        assert report.n_labeled == len(loaded) == info["splits"]["train"]
        for s in samples:
            assert s.task == task and s.windows == [] and s.clip_length == 2.0
            assert len(s.clip_labels) == len(label_clips(s.duration))
            assert s.vid in s.video_path and s.meta["domain"] in (SUMMARY_CATEGORIES if task == "summarization"
                                                                    else HIGHLIGHT_DOMAINS)
        assert len({s.qid for s in samples}) == N


def test_highlight_labels_follow_the_target(worlds):
    _, _, samples = worlds["highlight"]
    for s in samples:
        m = s.meta
        assert s.query == m["target"]["description"]
        assert (m["target"]["shape"], m["target"]["colour"]) == HIGHLIGHT_DOMAINS[m["domain"]]
        for k, ((a, b), row) in enumerate(zip(label_clips(s.duration), s.clip_labels)):
            covered = sum(max(0.0, min(b, e) - max(a, st)) for st, e in m["occurrences"])
            assert row == [int(covered >= 0.5 * (b - a))], (s.qid, k)
        assert 0 < sum(r[0] for r in s.clip_labels) < len(s.clip_labels)  # positives and negatives
        for d in m["distractors"]:
            assert d["description"] != m["target"]["description"]
        # the decoded video shows the target exactly during its occurrences
        assert verify_video(s.video_path, m, s.duration) == []


def test_summary_labels_follow_the_importance(worlds):
    _, _, samples = worlds["summarization"]
    correlations = []
    for s in samples:
        m = s.meta
        query, key, secondary = SUMMARY_CATEGORIES[m["domain"]]
        assert s.query == query and m["events"][0]["colour"] == key
        for e in m["events"]:
            assert e["importance"] == object_importance(m["domain"], e["colour"], e["size"])
        for other in m["events"]:  # two events on screen together never share a quadrant
            clash = [o for o in m["events"] if o is not other and o["quadrant"] == other["quadrant"]
                     and o["span"][0] < other["span"][1] and other["span"][0] < o["span"][1]]
            assert not clash
        for (a, b), imp in zip(label_clips(s.duration), m["true_importance"]):
            expected = max([e["importance"] * max(0.0, min(b, e["span"][1]) - max(a, e["span"][0])) / (b - a)
                            for e in m["events"]] + [0.0])
            assert imp == pytest.approx(expected, abs=1e-4)
        labels = np.asarray(s.clip_labels)
        assert labels.shape[1] == 20 and labels.min() >= 1 and labels.max() <= 5
        correlations.append(np.corrcoef(labels.mean(1), m["true_importance"])[0, 1])
        # the clip with the key-colour event scores above the clips where nothing is shown
        imp = np.asarray(m["true_importance"])
        if (imp == 0).any():
            assert labels.mean(1)[imp.argmax()] > labels.mean(1)[imp == 0].mean() + 1.0
    assert np.mean(correlations) > 0.85
    # noise-free annotators (gain aside) reproduce the importance exactly: 1 + 4 * gain * importance + bias
    clean = plan_summary_sample(3, 0, 4, annotators=3, annotator_noise=0.0)
    gain, bias = np.array(clean["meta"]["annotator_gain"]), np.array(clean["meta"]["annotator_bias"])
    raw = 1 + 4 * gain[None] * np.asarray(clean["meta"]["true_importance"])[:, None] + bias[None]
    assert np.array_equal(np.asarray(clean["clip_labels"]), np.clip(np.rint(raw), 1, 5))


def test_summary_video_shows_its_events(worlds):
    _, _, samples = worlds["summarization"]
    for s in samples[:4]:
        render = s.meta["render"]
        with av.open(s.video_path) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        fps = render["fps"]
        assert len(frames) == int(round(s.duration * fps))
        for obj in render["objects"]:
            st, e = obj["span"]
            i = int(round((st + e) / 2 * fps))  # the middle of the event
            cx, cy = object_center(obj, i / fps)
            x, y = int(cx), int(cy)
            seen = frames[i][y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(float).mean(0)
            inside = expected_colour(render, obj, x, y, True)
            assert np.abs(seen - inside).max() < 25, (s.qid, obj["description"])
            if st >= 1.0:  # before the event the spot shows the background (no other object shares it then)
                j = int(round((st - 1.0) * fps))
                others = [o for o in render["objects"] if o["quadrant"] == obj["quadrant"]
                          and o["span"][0] <= j / fps < o["span"][1]]
                if not others:
                    before = frames[j][y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(float).mean(0)
                    assert np.abs(before - background_image(render)[y, x]).max() < 25


def test_deterministic_and_reused(worlds, tmp_path):
    for task, (root, paths, _) in worlds.items():
        again = generate_task_world(tmp_path / task, n=N, seed=3, task=task, workers=2)
        for split in paths:
            assert again[split].read_bytes() == paths[split].read_bytes()
        stamp = (root / "world.json").stat().st_mtime_ns
        assert generate_task_world(root, n=N, seed=3, task=task) == paths
        assert (root / "world.json").stat().st_mtime_ns == stamp
    other = read_jsonl(generate_task_world(tmp_path / "other", n=3, seed=4, task="highlight")["train"])
    mine = worlds["highlight"][2][:len(other)]
    assert [s.clip_labels for s in other] != [s.clip_labels for s in mine]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="task="):
        generate_task_world(tmp_path, n=3, seed=0, task="captioning")
    with pytest.raises(ValueError, match="partial_rate"):
        generate_task_world(tmp_path, n=3, seed=0, task="highlight", partial_rate=0.5)
    with pytest.raises(ValueError, match="annotators"):
        generate_task_world(tmp_path, n=3, seed=0, task="summarization", annotators=0)
    grounding = generate_task_world(tmp_path / "g", n=3, seed=0, task="grounding")
    assert read_jsonl(grounding["train"])[0].windows  # the grounding world, unchanged


def test_cli_task(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--n", "4", "--task", "summarization", "--quiet"]) == 0
    assert "task summarization" in capsys.readouterr().out
    assert json.loads((out / "world.json").read_text())["params"]["task"] == "summarization"
    assert read_jsonl(out / "train.jsonl")[0].task == "summarization"
    assert cli_main(["synth", "--out", str(out), "--n", "4", "--task", "highlight", "--qa", "--quiet"]) == 2
    assert "--qa" in capsys.readouterr().err
