"""`vtg-rl data split`: parts by video, deterministic, every row kept once, bad rows named by file:line."""

from __future__ import annotations

import json

from vtg_rl.cli import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n_videos=7, per_video=(1, 3)):
    rows = []
    for v in range(n_videos):
        for q in range(per_video[v % len(per_video)]):
            rows.append({"qid": f"v{v}_q{q}", "vid": f"vid{v:02d}", "duration": 10.0, "windows": [[1.0, 2.0]],
                         "query": "a query"})
    return rows


def test_parts_hold_disjoint_videos_and_every_row_once(tmp_path, capsys):
    src = _write(tmp_path / "train.jsonl", _rows())
    assert main(["data", "split", str(src), "--names", "sup,rl"]) == 0
    parts = {name: [json.loads(line) for line in (tmp_path / f"train_{name}.jsonl").read_text().splitlines()]
             for name in ("sup", "rl")}
    vids = {name: {r["vid"] for r in rows} for name, rows in parts.items()}
    assert not vids["sup"] & vids["rl"]
    # sorted video ids dealt in turn: even positions to the first part, odd to the second
    assert vids["sup"] == {"vid00", "vid02", "vid04", "vid06"} and vids["rl"] == {"vid01", "vid03", "vid05"}
    kept = sorted(r["qid"] for rows in parts.values() for r in rows)
    assert kept == sorted(r["qid"] for r in _rows())
    assert "train_rl.jsonl: 9 queries of 3 videos (rl)" in capsys.readouterr().out
    # the same input splits the same way on every run, whatever the row order
    (tmp_path / "other").mkdir()
    shuffled = _write(tmp_path / "other" / "train.jsonl", list(reversed(_rows())))
    assert main(["data", "split", str(shuffled), "--names", "sup,rl"]) == 0
    again = {r["vid"] for r in map(json.loads, (tmp_path / "other" / "train_rl.jsonl").read_text().splitlines())}
    assert again == vids["rl"]


def test_bad_rows_and_names_are_refused_with_the_place(tmp_path, capsys):
    src = tmp_path / "train.jsonl"
    src.write_text(json.dumps(_rows()[0]) + "\n" + json.dumps({"qid": "x"}) + "\n")
    assert main(["data", "split", str(src), "--names", "a,b"]) == 2
    assert f"{src}:2: a row needs a JSON object with a 'vid'" in capsys.readouterr().err
    assert not (tmp_path / "train_a.jsonl").exists()
    good = _write(tmp_path / "good.jsonl", _rows())
    for names in ("a", "a,a", "../x,b"):
        assert main(["data", "split", str(good), "--names", names]) == 2
        assert "--names needs two or more distinct names" in capsys.readouterr().err
    assert not list(tmp_path.glob("good_*.jsonl")) and not (tmp_path.parent / "x.jsonl").exists()
