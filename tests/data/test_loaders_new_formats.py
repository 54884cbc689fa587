"""Loaders of ActivityNet Captions, Ego4D-NLQ, TVSum and YouTube Highlights, and the schema's
highlight-only fields (``task`` / ``clip_length`` / ``clip_labels``).

The fixtures under tests/fixtures/data/<format>/ are written in each release's layout; the ``*_bad*``
files hold one broken row per kind whose locations (line, or json path) the tests pin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtg_rl.data.check import add_arguments, run
from vtg_rl.data.loaders import FORMATS, load_samples
from vtg_rl.data.schema import SCHEMA_FIELDS, VTGSample, from_hf_row, read_jsonl, to_hf_dataset, write_jsonl
from vtg_rl.data.validate import DataValidationError, Location, sample_problems

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"


# --------------------------------------------------------------------------- schema
def test_schema_fields_appended_at_the_end_with_defaults():
    assert SCHEMA_FIELDS[-3:] == ("task", "clip_length", "clip_labels")
    s = VTGSample.from_dict({"qid": 3, "vid": "v", "duration": 10, "query": "q", "windows": [[1, 2]]})
    assert (s.task, s.clip_length, s.clip_labels) == ("grounding", None, None)


def test_old_unified_jsonl_without_the_new_keys_loads_unchanged():
    samples, report = load_samples(DATA / "unified/samples.jsonl", "unified")
    assert report.ok and len(samples) == 3
    assert all(s.task == "grounding" and s.clip_labels is None and s.clip_length is None for s in samples)


def _hl(**kw) -> VTGSample:
    base = dict(qid="q", vid="v", duration=6.0, query="dog", task="highlight", clip_length=2.0,
                clip_labels=[[0], [1], [0]])
    base.update(kw)
    return VTGSample(**base)


@pytest.mark.parametrize("kw, kinds", [
    ({}, []),
    ({"task": "summarization", "clip_labels": [[1, 5], [2, 3], [4, 4]]}, []),
    ({"task": "detection"}, ["bad_task"]),
    ({"clip_labels": None}, ["bad_clip_labels"]),
    ({"clip_length": None}, ["bad_clip_labels"]),
    ({"clip_length": 0.0}, ["bad_clip_labels"]),
    ({"clip_length": True}, ["bad_clip_labels"]),
    ({"clip_labels": []}, ["bad_clip_labels"]),
    ({"clip_labels": [[0], [1, 1], [0]]}, ["bad_clip_labels"]),        # ragged annotator counts
    ({"clip_labels": [[0], [True], [0]]}, ["bad_clip_labels"]),        # booleans are not labels
    ({"clip_labels": [[0], [float("nan")], [0]]}, ["bad_clip_labels"]),
    ({"clip_labels": [[0], ["1"], [0]]}, ["bad_clip_labels"]),
    ({"clip_labels": [[0]] * 4}, []),                                  # clip 3 starts at 6 s < 6 + 0.5 s tolerance
    ({"clip_labels": [[0]] * 5}, ["bad_clip_labels"]),                 # clip 4 starts at 8 s > 6.5
    ({"windows": [[0.0, 2.0]]}, ["unexpected_windows"]),               # a highlight sample has no span
])
def test_clip_label_validation(kw, kinds):
    assert [k for k, _ in sample_problems(_hl(**kw))] == kinds


def test_grounding_keeps_todays_rules_and_checks_given_clip_labels():
    g = VTGSample("q", "v", 10.0, "a person sits", windows=[[1.0, 2.0]])
    assert sample_problems(g) == []
    assert sample_problems(g, require_windows=True) == []
    assert [k for k, _ in sample_problems(VTGSample("q", "v", 10.0, "x"), require_windows=True)] == ["no_windows"]
    # a highlight sample is not "missing windows" even where a format requires them
    assert sample_problems(_hl(), require_windows=True) == []
    g.clip_length, g.clip_labels = 1.0, [[1], [2, 3]]
    assert [k for k, _ in sample_problems(g)] == ["bad_clip_labels"]


def test_clip_label_samples_round_trip_jsonl_and_hf(tmp_path):
    samples = [_hl(meta={"domain": "dog"}), VTGSample("g", "v2", 5.0, "x", windows=[[1.0, 2.0]])]
    write_jsonl(samples, tmp_path / "x.jsonl")
    back = read_jsonl(tmp_path / "x.jsonl")
    assert back == samples
    ds = to_hf_dataset(samples)
    rows = [from_hf_row(r) for r in ds]
    assert rows[0].task == "highlight" and rows[0].clip_labels == [[0.0], [1.0], [0.0]]
    assert rows[0].clip_length == 2.0 and rows[0].meta == {"domain": "dog"}
    assert rows[1].task == "grounding" and rows[1].clip_labels is None
    # an HF row written before the columns existed gets the defaults
    old = {k: v for k, v in ds[1].items() if k not in ("task", "clip_length", "clip_labels")}
    assert from_hf_row(old).task == "grounding"


def test_registry_has_the_new_formats():
    assert {"activitynet", "ego4d-nlq", "tvsum", "youtube_highlight"} <= set(FORMATS)


# --------------------------------------------------------------------------- clean files
@pytest.mark.parametrize("rel, fmt, n, n_videos", [
    ("activitynet/activitynet_val_release.jsonl", "activitynet", 3, 2),
    ("activitynet/val_1.json", "activitynet", 5, 2),
    ("ego4d-nlq/nlq_val.json", "ego4d-nlq", 4, 3),
    ("tvsum/tvsum_val.jsonl", "tvsum", 3, 3),
    ("youtube_highlight/youtube_valid.jsonl", "youtube_highlight", 3, 3),
])
def test_clean_files_load_strict(rel, fmt, n, n_videos):
    samples, report = load_samples(DATA / rel, fmt)
    assert report.ok and len(samples) == report.n_samples == report.n_rows == n
    assert report.n_videos == n_videos and report.n_labeled == n and report.n_unlabeled == 0


def test_activitynet_captions_one_sample_per_sentence():
    samples, _ = load_samples(DATA / "activitynet/val_1.json", "activitynet")
    assert [s.qid for s in samples] == ["v_QOlSCBRmfWY_0", "v_QOlSCBRmfWY_1", "v_QOlSCBRmfWY_2",
                                        "v_ehGHCYKzyZ8_0", "v_ehGHCYKzyZ8_1"]
    s = samples[1]
    assert (s.vid, s.duration, s.windows) == ("v_QOlSCBRmfWY", 82.73, [[17.37, 60.81]])
    assert s.query == "The girl dances around the room while the camera captures her movements."
    assert s.meta == {"dataset": "activitynet", "layout": "captions", "sentence_index": 1}
    # 62.0 > 61.72 by 0.28 s: within the default tolerance, and not clamped
    assert samples[4].windows == [[11.47, 62.0]]
    with pytest.raises(DataValidationError, match="end_beyond_duration"):
        load_samples(DATA / "activitynet/val_1.json", "activitynet", tolerance=0.1)


def test_activitynet_jsonl_layout_fields():
    samples, _ = load_samples(DATA / "activitynet/activitynet_val_release.jsonl", "activitynet")
    assert (samples[2].qid, samples[2].vid, samples[2].windows) == ("2", "v_ehGHCYKzyZ8", [[0.0, 12.55]])
    assert samples[0].meta["layout"] == "jsonl" and samples[0].task == "grounding"


def test_activitynet_broken_single_document_is_an_error(tmp_path):
    bad = tmp_path / "val_1.json"
    bad.write_text('{\n  "v_a": {"duration": 3, "timestamps": [[0, 1]],\n  "sentences": ["x"]\n')
    with pytest.raises(ValueError, match=r"val_1.json:\d+: not valid JSON"):
        load_samples(bad, "activitynet")


def test_ego4d_nlq_clip_is_the_unit():
    samples, _ = load_samples(DATA / "ego4d-nlq/nlq_val.json", "ego4d-nlq")
    assert [s.qid for s in samples] == ["ann-1_0", "ann-1_1", "ann-2_0", "ann-3_0"]
    s = samples[1]
    assert (s.vid, s.duration, s.windows, s.query) == ("clip-a1", 480.0, [[200.0, 212.5]], "how many cups did I wash?")
    assert s.meta["video_uid"] == "vid-aaaa" and s.meta["video_start_sec"] == 227.0
    assert s.meta["template"] == "Objects: How many X's?"
    assert samples[3].duration == 300.0 and samples[3].vid == "clip-b1"


def test_tvsum_and_youtube_samples():
    tv, _ = load_samples(DATA / "tvsum/tvsum_val.jsonl", "tvsum")
    s = tv[0]
    assert (s.task, s.windows, s.clip_length, s.meta["domain"]) == ("summarization", [], 2.0, "VT")
    assert len(s.clip_labels) == 6 and all(len(r) == 20 for r in s.clip_labels)
    raw = json.loads((DATA / "tvsum/tvsum_val.jsonl").read_text().splitlines()[0])
    assert s.clip_labels == raw["label"]  # kept as written: clips x annotators
    yt, _ = load_samples(DATA / "youtube_highlight/youtube_valid.jsonl", "youtube_highlight")
    assert (yt[0].task, yt[0].clip_length, yt[0].clip_labels) == ("highlight", 1.0, [[0], [1], [1], [0], [0], [1]])
    assert yt[2].meta == {"dataset": "youtube_highlight", "domain": "surfing", "match": 1}
    yt2, _ = load_samples(DATA / "youtube_highlight/youtube_valid.jsonl", "youtube_highlight", clip_length=0.5)
    assert yt2[0].clip_length == 0.5
    with pytest.raises(ValueError, match="clip_length= is for the per-clip label formats"):
        load_samples(DATA / "ego4d-nlq/nlq_val.json", "ego4d-nlq", clip_length=2.0)
    with pytest.raises(ValueError, match="clip_length must be a positive"):
        load_samples(DATA / "tvsum/tvsum_val.jsonl", "tvsum", clip_length=-1)


# --------------------------------------------------------------------------- broken rows
NLQ = "$.videos[0].clips[0].annotations[0].language_queries"
BAD = [
    ("activitynet/activitynet_bad.jsonl", "activitynet",
     [("2", "start_ge_end", "1"), ("3", "missing_field", "2"), ("4", "empty_query", "3")], 4),
    ("activitynet/val_bad.json", "activitynet",
     [('$["v_QOlSCBRmfWY"].sentences[1]', "start_ge_end", "v_QOlSCBRmfWY_1"),
      ('$["v_ehGHCYKzyZ8"].sentences[1]', "end_beyond_duration", "v_ehGHCYKzyZ8_1"),
      ('$["v_ehGHCYKzyZ8"].sentences[2]', "parse_error", "v_ehGHCYKzyZ8_2"),
      ('$["v_nodurationX"].sentences[0]', "missing_field", "v_nodurationX_0")], 6),
    ("ego4d-nlq/nlq_bad.json", "ego4d-nlq",
     [(f"{NLQ}[1]", "empty_query", "ann-1_1"), (f"{NLQ}[2]", "empty_query", "ann-1_2"),
      (f"{NLQ}[3]", "start_ge_end", "ann-1_3"), (f"{NLQ}[4]", "end_beyond_duration", "ann-1_4"),
      ("$.videos[0].clips[1]", "missing_field", None)], 6),
    ("tvsum/tvsum_bad.jsonl", "tvsum",
     [("2", "bad_clip_labels", "GA_1"), ("3", "bad_clip_labels", "GA_2"), ("4", "missing_field", "GA_3"),
      ("5", "bad_clip_labels", "GA_4"), ("5", "bad_clip_labels", "GA_4"), ("6", "bad_clip_labels", "GA_5"),
      ("7", "bad_clip_labels", "GA_6"), ("8", "bad_clip_labels", "GA_7")], 8),
    ("youtube_highlight/youtube_bad.jsonl", "youtube_highlight",
     [("2", "bad_clip_labels", "skiing_1"), ("3", "bad_clip_labels", "skiing_2"),
      ("4", "bad_clip_labels", "skiing_3"), ("4", "bad_clip_labels", "skiing_3"),
      ("5", "bad_clip_labels", "skiing_4"), ("6", "missing_field", "skiing_5"),
      ("7", "missing_field", "skiing_6"), ("8", "bad_clip_labels", "skiing_7")], 8),
]


@pytest.mark.parametrize("rel, fmt, expected, n_rows", BAD)
def test_bad_rows_are_located_and_never_fixed(rel, fmt, expected, n_rows):
    with pytest.raises(DataValidationError) as info:
        load_samples(DATA / rel, fmt)
    report = info.value.report
    where = [(p.location.json_path or str(p.location.line), p.kind, p.qid) for p in report.problems]
    assert sorted(where, key=str) == sorted(expected, key=str)
    assert all(p.location.file == str(DATA / rel) for p in report.problems)
    assert report.n_rows == n_rows
    kept, dropped = load_samples(DATA / rel, fmt, policy="drop")
    assert len(kept) == n_rows - len({w[0] for w in expected})
    assert dropped.n_dropped == len({w[0] for w in expected})


def test_json_path_locations_print_as_file_colon_path():
    loc = Location("nlq_val.json", json_path="$.videos[0].clips[1]")
    assert str(loc) == "nlq_val.json:$.videos[0].clips[1]"
    with pytest.raises(DataValidationError) as info:
        load_samples(DATA / "ego4d-nlq/nlq_bad.json", "ego4d-nlq")
    assert (f"nlq_bad.json:{NLQ}[1]: [empty_query] qid=ann-1_1" in str(info.value))
    # document order: the clip-level problem (clips[1]) comes after clips[0]'s queries
    paths = [p.location.json_path for p in info.value.report.problems]
    assert paths[-1] == "$.videos[0].clips[1]"


def test_reversed_captions_timestamp_is_kept_reversed():
    kept, _ = load_samples(DATA / "activitynet/val_bad.json", "activitynet", policy="drop")
    assert [s.qid for s in kept] == ["v_QOlSCBRmfWY_0", "v_ehGHCYKzyZ8_0"]


def test_transposed_tvsum_labels_are_named():
    with pytest.raises(DataValidationError) as info:
        load_samples(DATA / "tvsum/tvsum_bad.jsonl", "tvsum")
    msgs = [p.message for p in info.value.report.problems if p.qid == "GA_4"]
    assert any("20 rows of 4 scores look like annotators x clips" in m for m in msgs)


@pytest.mark.parametrize("rel, fmt, status", [
    ("tvsum/tvsum_val.jsonl", "tvsum", 0), ("youtube_highlight/youtube_bad.jsonl", "youtube_highlight", 1),
    ("ego4d-nlq/nlq_bad.json", "ego4d-nlq", 1), ("activitynet/val_1.json", "activitynet", 0),
])
def test_data_check_cli(rel, fmt, status, capsys):
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(DATA / rel), "--format", fmt])) == status
    out = capsys.readouterr().out
    assert f"(format {fmt})" in out
    if status:
        assert "problems:" in out and ":" in out.splitlines()[-1]
    # 3 s clips: VT_0's 6th clip would start at 15 s, past its 12 s duration
    args = parser.parse_args([str(DATA / "tvsum/tvsum_val.jsonl"), "--format", "tvsum", "--clip-length", "3"])
    assert run(args) == 1
    assert "clip 5 starts at 15 s, beyond the duration 12.0" in capsys.readouterr().out
