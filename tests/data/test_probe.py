"""Video probing: every kind of broken file is found before a run, stated durations are checked against
the real ones, results are cached, and the pre-flight refuses or skips as asked."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import av
import numpy as np
import pytest

from vtg_rl.data import probe as P
from vtg_rl.data.schema import VTGSample
from vtg_rl.data.validate import Location
from vtg_rl.data.video import write_video

N_FRAMES, FPS = 26, 2.0  # a 13 s video


def make_good(path: Path, n: int = N_FRAMES, faststart: bool = False) -> Path:
    frames = np.random.default_rng(0).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    write_video(path, frames, fps=FPS)
    return path


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    good = make_good(d / "good.mp4")
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 2 // 3])
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    make_audio_only(d / "audio.mp4")
    make_good(d / "one_frame.mp4", n=1)
    os.symlink(d / "loop_b.mp4", d / "loop_a.mp4")
    os.symlink(d / "loop_a.mp4", d / "loop_b.mp4")
    return {"good": good, "truncated": d / "truncated.mp4", "empty": d / "empty.mp4", "text": d / "text.mp4",
            "audio": d / "audio.mp4", "one_frame": d / "one_frame.mp4", "loop": d / "loop_a.mp4",
            "missing": d / "missing.mp4"}


EXPECTED = {"truncated": P.VIDEO_UNDECODABLE, "empty": P.VIDEO_EMPTY, "text": P.VIDEO_UNDECODABLE,
            "audio": P.VIDEO_NO_STREAM, "one_frame": P.VIDEO_TOO_SHORT, "loop": P.VIDEO_MISSING,
            "missing": P.VIDEO_MISSING}


def test_a_good_video_reports_its_real_duration_frames_and_fps(videos):
    f = P.probe_video(videos["good"])
    assert f.ok and f.kind is None
    assert f.frames == N_FRAMES and f.fps == pytest.approx(FPS)
    assert f.duration == pytest.approx(N_FRAMES / FPS, abs=0.01)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_kind_is_found(videos, name):
    f = P.probe_video(videos[name])
    assert not f.ok
    assert f.kind == EXPECTED[name], f.reason
    assert f.reason


def sample(qid: str, video: Path, duration: float = N_FRAMES / FPS) -> VTGSample:
    return VTGSample(qid=qid, vid=video.stem, duration=duration, query="the red circle appears",
                     windows=[[1.0, 3.0]], video_path=str(video))


def test_stated_duration_must_match_the_real_one(videos, tmp_path):
    cache = P.ProbeCache(tmp_path / "cache.json")
    ok = sample("q0", videos["good"], 13.4)            # within the tolerance
    long = sample("q1", videos["good"], 600.0)         # the stated duration is far from the 13 s video
    short = sample("q2", videos["good"], 10.0)
    locs = [Location("d.jsonl", 1), Location("d.jsonl", 2), Location("d.jsonl", 3)]
    problems = P.video_problems([ok, long, short], locs, cache=cache)
    assert set(problems) == {1, 2}
    assert problems[1][0].kind == P.DURATION_MISMATCH
    assert str(problems[1][0]).startswith("d.jsonl:2: [duration_mismatch] qid=q1")
    assert "600 s but the video lasts 13 s" in problems[1][0].message
    assert P.is_probe_ok(videos["good"], 13.0, cache=cache) == (True, None)
    assert not P.is_probe_ok(videos["good"], 600.0, cache=cache)[0]
    ok_flag, why = P.is_probe_ok(videos["truncated"], cache=cache)
    assert not ok_flag and "truncated.mp4" in why


def test_second_run_is_served_by_the_cache_and_an_edited_file_is_probed_again(videos, tmp_path):
    paths = [str(p) for p in videos.values()]
    first = P.ProbeCache(tmp_path / "c" / "probe.json")
    facts1 = P.probe_videos(paths, cache=first)
    assert first.probed == len(paths) and first.hits == 0
    second = P.ProbeCache(tmp_path / "c" / "probe.json")
    facts2 = P.probe_videos(paths, cache=second)
    # everything that exists is cached; a missing file / a symlink loop has nothing to key a cache entry on
    uncacheable = {str(videos["missing"]), str(videos["loop"])}
    assert second.hits == len(paths) - len(uncacheable) and second.probed == len(uncacheable)
    assert {k: (v.ok, v.kind, v.duration) for k, v in facts1.items()} == \
           {k: (v.ok, v.kind, v.duration) for k, v in facts2.items()}
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(videos["good"].read_bytes())
    third = P.ProbeCache(tmp_path / "c" / "probe.json")
    assert third.get(copy).ok and third.probed == 1
    third.save()
    copy.write_bytes(b"")  # the same path, now broken: size and mtime changed
    fourth = P.ProbeCache(tmp_path / "c" / "probe.json")
    assert fourth.get(copy).kind == P.VIDEO_EMPTY and fourth.probed == 1


def test_preflight_refuses_listing_every_bad_row(videos, tmp_path):
    samples = [sample(f"q{i}", v) for i, v in enumerate([videos["good"], videos["truncated"], videos["audio"]])]
    locs = [Location("train.jsonl", i + 1) for i in range(3)]
    with pytest.raises(P.BadVideosError) as info:
        P.preflight(samples, locs, what="--data train.jsonl", cache=P.ProbeCache(tmp_path / "c.json"))
    msg = str(info.value)
    assert "train.jsonl:2: [video_undecodable] qid=q1" in msg
    assert "train.jsonl:3: [video_no_stream] qid=q2" in msg
    assert "qid=q0" not in msg
    assert "--on_bad_video skip" in msg


def test_preflight_skip_drops_the_bad_rows_and_logs_the_count(videos, tmp_path, caplog):
    samples = [sample(f"q{i}", v) for i, v in enumerate([videos["good"], videos["empty"], videos["good"]])]
    with caplog.at_level(logging.WARNING, logger="vtg_rl.data.probe"):
        kept = P.preflight(samples, what="data", on_bad_video="skip", cache=P.ProbeCache(tmp_path / "c.json"))
    assert [s.qid for s in kept] == ["q0", "q2"]
    assert "skipping 1 of 3 row(s)" in caplog.text
    assert P.preflight(samples, probe=False) == samples


def test_preflight_loaded_names_file_and_line(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("VTG_RL_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "train.jsonl"
    rows = [sample("a", videos["good"]).to_dict(), sample("b", videos["one_frame"]).to_dict()]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from vtg_rl.data.loaders import load_samples

    samples, _ = load_samples(data, "unified")
    with pytest.raises(P.BadVideosError, match=rf"{data}:2: \[video_too_short\] qid=b"):
        P.preflight_loaded(samples, str(data), "unified", what="train")
    assert (tmp_path / "cache" / P.CACHE_FILE).is_file()


def test_llm_recipes_preflight_in_load_split(videos, tmp_path, monkeypatch):
    from vtg_rl.mllm.recipe_common import DataArguments, load_split

    monkeypatch.setenv("VTG_RL_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "train.jsonl"
    rows = [sample("a", videos["good"]).to_dict(), sample("b", videos["truncated"]).to_dict(),
            sample("c", videos["good"], 40.0).to_dict()]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = DataArguments(dataset="unified", dataset_path=str(data))
    with pytest.raises(P.BadVideosError) as info:
        load_split(args, "train")
    assert f"{data}:2: [video_undecodable] qid=b" in str(info.value)
    assert f"{data}:3: [duration_mismatch] qid=c" in str(info.value)
    args.on_bad_video = "skip"
    assert [s.qid for s in load_split(args, "train")] == ["a"]
    args.probe_videos = False
    assert len(load_split(args, "train")) == 3


def test_the_synthetic_world_passes_its_own_preflight(synthetic_world, tmp_path):
    from vtg_rl.data.schema import read_jsonl

    samples = read_jsonl(synthetic_world["train"])
    assert P.preflight(samples, cache=P.ProbeCache(tmp_path / "c.json")) == samples


def test_data_check_probe_videos(videos, tmp_path, monkeypatch, capsys):
    from vtg_rl.cli import main

    monkeypatch.setenv("VTG_RL_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "d.jsonl"
    rows = [sample("a", videos["good"]).to_dict(), sample("b", videos["audio"]).to_dict(),
            sample("c", videos["good"], 60.0).to_dict(), sample("d", videos["empty"]).to_dict()]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "check", str(data), "--format", "unified"]) == 0  # without probing: all rows look fine
    capsys.readouterr()
    assert main(["data", "check", str(data), "--format", "unified", "--probe-videos"]) == 1
    out = capsys.readouterr().out
    assert f"{data}:2: [video_no_stream] qid=b" in out
    assert f"{data}:3: [duration_mismatch] qid=c" in out
    assert f"{data}:4: [video_empty] qid=d" in out
    assert "rows: 4  with problems: 3" in out
    assert main(["data", "check", str(data), "--format", "unified", "--probe-videos", "--policy", "drop"]) == 0
    assert "samples: 1 " in capsys.readouterr().out


def test_feature_extraction_probes_before_computing(videos, tiny_clip_dir, tmp_path, monkeypatch):
    from vtg_rl.heads.features import ClipFeatureExtractor

    monkeypatch.setenv("VTG_RL_CACHE_DIR", str(tmp_path / "cache"))
    samples = [sample("a", videos["good"]), sample("b", videos["truncated"])]
    extractor = ClipFeatureExtractor(tiny_clip_dir, clip_len=2.0, frames_per_clip=1)
    with pytest.raises(P.BadVideosError, match="qid=b"):
        extractor.extract(samples, tmp_path / "feat", progress=False)
    assert not (tmp_path / "feat").exists()  # nothing was computed
    counts = extractor.extract(samples, tmp_path / "feat", progress=False, on_bad_video="skip")
    assert counts["videos_computed"] == 1 and counts["videos_skipped"] == 1
