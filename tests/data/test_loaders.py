"""Loaders from the public release formats and the validation policy.

Fixtures under tests/fixtures/data/<format>/ are written in each release's real layout; the
``*_bad*`` files hold deliberately broken rows whose line numbers the tests pin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtg_rl.data.formats.common import load_durations
from vtg_rl.data.formats.nextgqa import answer_letter
from vtg_rl.data.loaders import FORMATS, load_samples
from vtg_rl.data.schema import VTGSample, write_jsonl
from vtg_rl.data.validate import DataValidationError, Location, validate_samples

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"
CHARADES_CSV = DATA / "charades" / "Charades_v1_test.csv"


def test_registry_names():
    assert set(FORMATS) == {"charades", "charades-jsonl", "qvhighlights", "tacos", "nextgqa", "rextime", "unified",
                            "activitynet", "ego4d-nlq", "tvsum", "youtube_highlight"}


# --------------------------------------------------------------------------- clean files, strict
@pytest.mark.parametrize("rel, fmt, kwargs, n, n_videos, n_labeled", [
    ("charades/charades_sta_test.txt", "charades", {"durations": CHARADES_CSV}, 5, 3, 5),
    ("charades-jsonl/charades_sta_test.jsonl", "charades-jsonl", {}, 4, 3, 4),
    ("tacos/tacos_test.jsonl", "tacos", {}, 3, 2, 3),
    ("qvhighlights/highlight_val_release.jsonl", "qvhighlights", {}, 3, 3, 3),
    ("qvhighlights/highlight_test_release.jsonl", "qvhighlights", {}, 3, 2, 0),
    ("nextgqa/val.csv", "nextgqa", {}, 4, 2, 4),
    ("nextgqa/train.csv", "nextgqa", {"durations": DATA / "nextgqa" / "durations.json"}, 2, 1, 0),
    ("rextime/rextime_val.json", "rextime", {}, 3, 3, 3),
    ("rextime/rextime_val.jsonl", "rextime", {}, 3, 3, 3),
    ("rextime/rextime_test_release.json", "rextime", {}, 2, 2, 0),
    ("unified/samples.jsonl", "unified", {}, 3, 3, 2),
])
def test_clean_files_load_strict(rel, fmt, kwargs, n, n_videos, n_labeled):
    samples, report = load_samples(DATA / rel, fmt, **kwargs)
    assert report.ok and report.n_bad_rows == 0 and report.n_dropped == 0
    assert len(samples) == report.n_samples == report.n_rows == n
    assert report.n_videos == n_videos and report.n_labeled == n_labeled
    assert report.n_unlabeled == n - n_labeled
    assert all(isinstance(s, VTGSample) for s in samples)
    # label-free releases are flagged, labeled ones are not
    assert all(s.meta.get("unlabeled", False) == (not s.windows) for s in samples if fmt != "unified")


def test_charades_txt_fields_and_durations_from_csv():
    samples, _ = load_samples(DATA / "charades/charades_sta_test.txt", "charades", durations=CHARADES_CSV)
    s = samples[2]
    assert (s.qid, s.vid, s.duration, s.windows) == ("2", "AO8RW", 33.67, [[0.0, 6.9]])
    assert s.query == "a person is putting a book on a shelf."
    assert [x.qid for x in samples] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("durations", [
    CHARADES_CSV, DATA / "charades/durations.txt", DATA / "charades/durations.json",
    {"3MSZA": 31.96, "AO8RW": 33.67, "Y6R7T": 22.0},
])
def test_durations_forms_agree(durations):
    assert load_durations(durations) == {"3MSZA": 31.96, "AO8RW": 33.67, "Y6R7T": 22.0}


def test_durations_several_files_and_bad_files(tmp_path):
    extra = tmp_path / "more.txt"
    extra.write_text("NEW01 12.5\n")
    assert load_durations([CHARADES_CSV, extra])["NEW01"] == 12.5
    bad = tmp_path / "bad.txt"
    bad.write_text("A 1.0\nB one\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: duration 'one' is not a number"):
        load_durations(bad)
    csv_no_length = tmp_path / "x.csv"
    csv_no_length.write_text("id,subject\nA,B\n")
    with pytest.raises(ValueError, match="duration column"):
        load_durations(csv_no_length)


def test_bom_csv_and_empty_file(tmp_path):
    bom = tmp_path / "Charades_v1_test.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + CHARADES_CSV.read_bytes())
    assert load_durations(bom)["Y6R7T"] == 22.0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl: the file holds no tacos rows"):
        load_samples(empty, "tacos")


def test_charades_txt_needs_durations():
    with pytest.raises(ValueError, match="no durations"):
        load_samples(DATA / "charades/charades_sta_test.txt", "charades")


def test_qvhighlights_keeps_saliency():
    samples, _ = load_samples(DATA / "qvhighlights/highlight_val_release.jsonl", "qvhighlights")
    s = samples[1]
    assert s.qid == "8737" and s.duration == 126.0 and s.windows == [[0.0, 16.0]]
    assert s.relevant_clip_ids == list(range(8)) and s.saliency_scores[2] == [4, 2, 1]


def test_nextgqa_answers_options_and_qids():
    samples, report = load_samples(DATA / "nextgqa/val.csv", "nextgqa")
    assert report.files[1].endswith("gsub_val.json")  # found next to the csv by its stem
    by_qid = {s.qid: s for s in samples}
    a = by_qid["4882821564_1"]
    assert a.answer == "C" and a.options[2] == "unwrap it" and len(a.options) == 5
    assert a.duration == 90.0 and a.windows == [[13.8, 29.8]] and a.meta["nextgqa_qid"] == "1"
    quoted = by_qid["4882821564_3"]  # the question holds a comma inside csv quotes
    assert quoted.query == "what did the boy do after he sat on the sofa, near the end"
    assert quoted.windows == [[85.1, 88.1], [88.5, 90.0]] and quoted.answer == "A"
    assert by_qid["2435100235_9"].answer == "C"  # answer given as option index 2


def test_nextgqa_answer_letter():
    opts = ["Wave him off", "smile", "smile ", "take the watch"]
    assert answer_letter("wave  him off", opts) == ("A", None)  # case/space-insensitive fallback
    assert answer_letter("take the watch", opts) == ("D", None)
    assert answer_letter("3", opts) == ("D", None)
    letter, why = answer_letter("smile", opts)  # exact match wins over the near-duplicate
    assert letter == "B" and why is None
    assert answer_letter("Smile", opts)[0] is None and "several options" in answer_letter("Smile", opts)[1]
    assert answer_letter("dance", opts)[0] is None


def test_nextgqa_without_gsub_or_durations_is_reported():
    with pytest.raises(DataValidationError) as info:
        load_samples(DATA / "nextgqa/train.csv", "nextgqa")
    assert info.value.report.counts == {"unknown_duration": 2}


def test_rextime_release_fields():
    samples, _ = load_samples(DATA / "rextime/rextime_val.json", "rextime")
    s = samples[1]
    assert s.answer == "C" and s.options[2] == "she brushes the girl's hair" and s.windows == [[5.0, 8.0]]
    assert s.meta["category"] == "sequential" and s.query.startswith("What does the woman do")
    gt, _ = load_samples(DATA / "rextime/rextime_val.jsonl", "rextime")
    assert gt[0].options is None and gt[0].answer == "A" and gt[0].windows == [[0.0, 28.0]]


# --------------------------------------------------------------------------- bad files
BAD = [
    ("charades/charades_sta_bad.txt", "charades", {"durations": CHARADES_CSV},
     {"start_ge_end": 1, "end_beyond_duration": 1, "negative_start": 1, "non_finite": 1, "empty_query": 1,
      "unknown_duration": 1, "parse_error": 1}, [2, 3, 4, 5, 6, 7, 8], 9),
    ("charades-jsonl/charades_sta_bad.jsonl", "charades-jsonl", {},
     {"missing_field": 1, "parse_error": 1, "duplicate_qid": 1, "bad_duration": 1, "start_ge_end": 1,
      "non_finite": 1}, [2, 3, 4, 5, 6, 8], 7),
    ("tacos/tacos_bad.jsonl", "tacos", {}, {"empty_query": 1, "parse_error": 1, "end_beyond_duration": 1},
     [1, 2, 3], 4),
    ("qvhighlights/highlight_bad.jsonl", "qvhighlights", {}, {"bad_saliency": 3, "missing_field": 1},
     [1, 2, 3, 5], 5),
    ("nextgqa/val_bad.csv", "nextgqa", {}, {"bad_answer": 1, "no_windows": 2, "end_beyond_duration": 1},
     [3, 4, 5, 6], 5),
    ("rextime/rextime_bad.json", "rextime", {}, {"bad_answer": 1, "start_ge_end": 1, "missing_field": 1},
     [2, 3, 4], 4),
    ("unified/samples_bad.jsonl", "unified", {}, {"bad_answer": 1, "missing_field": 1, "bad_duration": 1,
                                                   "parse_error": 1}, [2, 3, 4, 5], 5),
]


@pytest.mark.parametrize("rel, fmt, kwargs, counts, bad_lines, n_rows", BAD)
def test_bad_rows_strict_raises_with_file_and_line(rel, fmt, kwargs, counts, bad_lines, n_rows):
    with pytest.raises(DataValidationError) as info:
        load_samples(DATA / rel, fmt, **kwargs)
    report = info.value.report
    assert report.counts == counts
    assert sorted({p.location.line for p in report.problems}) == bad_lines
    assert report.n_rows == n_rows and report.n_dropped == 0
    message = str(info.value)
    for line in bad_lines:
        assert f"{DATA / rel}:{line}: [" in message


@pytest.mark.parametrize("rel, fmt, kwargs, counts, bad_lines, n_rows", BAD)
def test_bad_rows_drop_policy_keeps_the_rest(rel, fmt, kwargs, counts, bad_lines, n_rows):
    samples, report = load_samples(DATA / rel, fmt, policy="drop", **kwargs)
    assert report.counts == counts and report.n_dropped == report.n_bad_rows == len(bad_lines)
    assert len(samples) == report.n_samples == n_rows - len(bad_lines)
    for s in samples:  # everything kept is valid on its own
        _, r = validate_samples([s], policy="strict", check_videos=False)
        assert r.ok


def test_duplicate_qid_keeps_the_first():
    samples, report = load_samples(DATA / "charades-jsonl/charades_sta_bad.jsonl", "charades-jsonl", policy="drop")
    first = [s for s in samples if s.qid == "0"]
    assert len(first) == 1 and first[0].query == "person turn a light on."
    dup = [p for p in report.problems if p.kind == "duplicate_qid"][0]
    assert dup.location.line == 4 and "charades_sta_bad.jsonl:1" in dup.message


def test_tolerance_is_applied_and_nothing_is_clamped():
    samples, _ = load_samples(DATA / "charades/charades_sta_test.txt", "charades", durations=CHARADES_CSV)
    assert samples[4].windows == [[16.0, 22.4]] and samples[4].duration == 22.0  # 0.4 s over: kept as is
    with pytest.raises(DataValidationError, match=r"charades_sta_test.txt:5: \[end_beyond_duration\]"):
        load_samples(DATA / "charades/charades_sta_test.txt", "charades", durations=CHARADES_CSV, tolerance=0.0)


def test_error_lists_first_twenty(tmp_path):
    f = tmp_path / "many.jsonl"
    f.write_text("".join(json.dumps({"qid": i, "query": "q", "duration": 10, "vid": "v",
                                     "relevant_windows": [[5, 1]]}) + "\n" for i in range(25)))
    with pytest.raises(DataValidationError) as info:
        load_samples(f, "tacos")
    msg = str(info.value)
    assert "25 problem(s)" in msg and f"{f}:20:" in msg and f"{f}:21:" not in msg and "... and 5 more" in msg
    assert len(info.value.report.problems) == 25


def test_bad_arguments_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'charades-txt'"):
        load_samples(DATA / "charades/charades_sta_test.txt", "charades-txt")
    with pytest.raises(ValueError, match="gsub="):
        load_samples(DATA / "tacos/tacos_test.jsonl", "tacos", gsub=DATA / "nextgqa/gsub_val.json")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_samples(tmp_path / "missing.jsonl", "tacos")
    with pytest.raises(ValueError, match="policy"):
        load_samples(DATA / "tacos/tacos_test.jsonl", "tacos", policy="lenient")


# --------------------------------------------------------------------------- videos
def test_video_dir_fills_paths_and_reports_missing(tmp_path):
    (tmp_path / "3MSZA.mp4").write_bytes(b"x")
    (tmp_path / "AO8RW.webm").write_bytes(b"x")
    (tmp_path / "AO8RW.mp4.part").write_bytes(b"x")  # not a candidate name
    kw = dict(durations=CHARADES_CSV, video_dir=tmp_path)
    with pytest.raises(DataValidationError) as info:
        load_samples(DATA / "charades/charades_sta_test.txt", "charades", **kw)
    assert info.value.report.counts == {"unknown_video": 1}
    assert "charades_sta_test.txt:5: [unknown_video] qid=4 no video Y6R7T" in str(info.value)
    samples, report = load_samples(DATA / "charades/charades_sta_test.txt", "charades", policy="drop", **kw)
    assert report.n_dropped == 1 and {s.vid for s in samples} == {"3MSZA", "AO8RW"}
    paths = {s.vid: Path(s.video_path) for s in samples}
    assert paths["3MSZA"] == (tmp_path / "3MSZA.mp4").resolve()
    assert paths["AO8RW"] == (tmp_path / "AO8RW.webm").resolve()
    samples, _ = load_samples(DATA / "charades/charades_sta_test.txt", "charades", policy="drop",
                              video_extensions=(".mp4",), **kw)
    assert {s.vid for s in samples} == {"3MSZA"}
    with pytest.raises(FileNotFoundError, match="video directory"):
        load_samples(DATA / "tacos/tacos_test.jsonl", "tacos", video_dir=tmp_path / "nope")


def test_video_map_for_nested_releases(tmp_path):
    (tmp_path / "0024").mkdir()
    (tmp_path / "0024" / "4882821564.mp4").write_bytes(b"x")
    (tmp_path / "0011").mkdir()
    (tmp_path / "0011" / "2435100235.mp4").write_bytes(b"x")
    vmap = tmp_path / "map_vid_vidorID.json"
    vmap.write_text(json.dumps({"4882821564": "0024/4882821564", "2435100235": "0011/2435100235"}))
    samples, _ = load_samples(DATA / "nextgqa/val.csv", "nextgqa", video_dir=tmp_path, video_map=vmap)
    assert all(Path(s.video_path).is_file() for s in samples)
    assert samples[0].video_path.endswith("0024/4882821564.mp4")


def test_unified_video_paths_resolve_and_must_exist(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    f = tmp_path / "set.jsonl"
    write_jsonl([VTGSample(qid="a", vid="a", duration=5.0, query="q", windows=[[1, 2]],
                           video_path=str(tmp_path / "videos" / "a.mp4")),
                 VTGSample(qid="b", vid="b", duration=5.0, query="q", windows=[[1, 2]], video_path="videos/b.mp4")], f)
    assert json.loads(f.read_text().splitlines()[0])["video_path"] == "videos/a.mp4"  # stored relative
    with pytest.raises(DataValidationError, match=r"set.jsonl:2: \[unknown_video\] qid=b"):
        load_samples(f, "unified")
    samples, report = load_samples(f, "unified", check_videos=False)
    assert report.ok and samples[0].video_path == str((tmp_path / "videos" / "a.mp4").resolve())


def test_loaded_samples_round_trip_through_unified_jsonl(tmp_path):
    samples, _ = load_samples(DATA / "nextgqa/val.csv", "nextgqa")
    write_jsonl(samples, tmp_path / "nextgqa.jsonl")
    again, report = load_samples(tmp_path / "nextgqa.jsonl", "unified")
    assert report.ok and [s.to_dict() for s in again] == [s.to_dict() for s in samples]


# --------------------------------------------------------------------------- validate_samples directly
def _s(**kw) -> VTGSample:
    base = dict(qid="q", vid="v", duration=20.0, query="when?", windows=[[1.0, 3.0]])
    base.update(kw)
    return VTGSample(**base)


@pytest.mark.parametrize("sample, kind", [
    (_s(relevant_clip_ids=[0, 1], saliency_scores=None), "bad_saliency"),
    (_s(relevant_clip_ids=[0, 0], saliency_scores=[[1], [2]]), "bad_saliency"),
    (_s(relevant_clip_ids=[0, 1], saliency_scores=[[1, 2], []]), "bad_saliency"),
    (_s(relevant_clip_ids=[0, 1], saliency_scores=[[1, float("nan")], [1, 2]]), "bad_saliency"),
    (_s(answer="b", options=["x", "y"]), "bad_answer"),
    (_s(answer="A", options=["x", ""]), "bad_answer"),
    (_s(answer="C", options=["x", "y"]), "bad_answer"),
    (_s(duration=float("inf")), "bad_duration"),
    (_s(query=" \t"), "empty_query"),
    (_s(windows=[[1.0, float("nan")]]), "non_finite"),
])
def test_sample_level_checks(sample, kind):
    original = sample.to_dict()
    kept, report = validate_samples([sample], [Location("f.jsonl", 7)], policy="drop")
    assert kept == [] and list(report.counts) == [kind]
    assert str(report.problems[0]).startswith("f.jsonl:7: [" + kind + "] qid=q")
    assert sample.to_dict() == original  # reported, never modified


def test_valid_saliency_and_answer_pass():
    kept, report = validate_samples([_s(relevant_clip_ids=[0, 1, 9], saliency_scores=[[4, 3, 2]] * 3,
                                        answer="B", options=["x", "y"])])
    assert report.ok and len(kept) == 1


def test_synthetic_world_passes_strict_validation(synthetic_world):
    """The generated world (the default data of every recipe) is valid unified data, videos included."""
    for split, path in synthetic_world.items():
        samples, report = load_samples(path, "unified")
        assert report.ok and samples, split
        assert all(Path(s.video_path).is_file() for s in samples)
