"""`vtg-rl data check`: counts, problems with file:line, exit status per policy."""

from __future__ import annotations

from pathlib import Path

from vtg_rl.cli import main

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"
DURATIONS = str(DATA / "charades" / "Charades_v1_test.csv")


def test_clean_file_exit_0_and_counts(capsys):
    rc = main(["data", "check", str(DATA / "charades/charades_sta_test.txt"), "--format", "charades",
               "--durations", DURATIONS])
    out = capsys.readouterr().out
    assert rc == 0
    assert "samples: 5  videos: 3  labeled: 5  unlabeled: 0" in out and "problems: 0" in out


def test_unlabeled_release_is_fine(capsys):
    rc = main(["data", "check", str(DATA / "qvhighlights/highlight_test_release.jsonl"), "--format", "qvhighlights"])
    assert rc == 0 and "labeled: 0  unlabeled: 3" in capsys.readouterr().out


def test_strict_problems_exit_1_with_file_line(capsys):
    bad = DATA / "charades/charades_sta_bad.txt"
    rc = main(["data", "check", str(bad), "--format", "charades", "--durations", DURATIONS])
    captured = capsys.readouterr()
    assert rc == 1
    assert "problems: 7" in captured.out and "start_ge_end: 1" in captured.out
    assert f"{bad}:2: [start_ge_end] qid=1" in captured.out
    assert f"{bad}:8: [parse_error]" in captured.out
    assert "--policy drop" in captured.err


def test_drop_policy_exit_0_and_reports_dropped(capsys):
    rc = main(["data", "check", str(DATA / "nextgqa/val_bad.csv"), "--format", "nextgqa", "--policy", "drop"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "rows: 5  with problems: 4  dropped: 4" in out and "samples: 1  videos: 1" in out
    assert "no_windows: 2" in out


def test_video_dir_and_show_limit(tmp_path, capsys):
    (tmp_path / "3MSZA.mp4").write_bytes(b"x")
    rc = main(["data", "check", str(DATA / "charades/charades_sta_test.txt"), "--format", "charades",
               "--durations", DURATIONS, "--video-dir", str(tmp_path), "--show", "1"])
    out = capsys.readouterr().out
    assert rc == 1 and "unknown_video: 3" in out and "... and 2 more" in out


def test_unusable_input_exit_2(tmp_path, capsys):
    rc = main(["data", "check", str(tmp_path / "nope.jsonl"), "--format", "tacos"])
    assert rc == 2 and "nope.jsonl: no such dataset file" in capsys.readouterr().err
