"""The data agents against careless use: two runs on one --out, --out equal to --data, bad input rows,
and NaN in what they write."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vtg_rl.agents.difficulty import DifficultyConfig, DifficultyEstimationAgent
from vtg_rl.agents.runner import OutputLockedError, output_lock
from vtg_rl.data.schema import VTGSample, read_jsonl, write_jsonl
from vtg_rl.spans import format_answer

REPO = Path(__file__).resolve().parents[2]


class FakeGenerator:
    """K completions per sample, each the answer ``[1, 5]``; never decodes a video."""

    def __init__(self, k: int = 2):
        self.k = k

    def __call__(self, samples, frame_transform=None):
        return [[f"<think>look</think>{format_answer(1.0, 5.0)}"] * self.k for _ in samples]


def good_row(i: int, folder: Path, duration: float = 13.0, windows=None) -> dict:
    video = folder / f"v{i}.mp4"
    video.write_bytes(b"stand-in: the fake generator never decodes it")
    return {"qid": f"q{i}", "vid": f"v{i}", "duration": duration, "query": "the red circle appears",
            "windows": windows if windows is not None else [[1.0, 4.0]], "video_path": video.name}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes NaN for float('nan')
    return path


def agent_main(kind: str):
    spec = importlib.util.spec_from_file_location(f"{kind}_cli", REPO / "data_agents" / f"{kind}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def fake_model(monkeypatch):
    """The agents' model loader returns the fake generator (the CLI logic around it is what is tested)."""
    import vtg_rl.agents.common as common

    monkeypatch.setattr(common, "load_generator", lambda *a, **k: FakeGenerator())


COMMON = ["--model", "unused", "--num_rollouts", "2", "--no_progress", "--probe_videos", "false"]
EXTRA = {"reflect": ["--verify", "none"], "difficulty": []}  # the fake generator has no vision features


# --------------------------------------------------------------------------- one run per output
def test_a_second_run_on_the_same_out_refuses_naming_the_holder(tmp_path):
    out = tmp_path / "train.difficulty.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from vtg_rl.agents.runner import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        samples = [VTGSample(qid="q1", vid="v1", duration=13.0, query="x", windows=[[1.0, 4.0]],
                             video_path=str(tmp_path / "v1.mp4"))]
        (tmp_path / "v1.mp4").write_bytes(b"x")
        agent = DifficultyEstimationAgent(FakeGenerator(), DifficultyConfig(num_rollouts=2))
        with pytest.raises(OutputLockedError, match=rf"pid {holder.pid} on .*started 20"):
            agent.run(samples, out, progress=False)
        assert not (tmp_path / "train.difficulty.partial.jsonl").exists()  # it wrote nothing
    finally:
        holder.communicate("\n", timeout=30)
    summary = DifficultyEstimationAgent(FakeGenerator(), DifficultyConfig(num_rollouts=2)).run(samples, out, progress=False)
    assert summary["n_scored"] == 1  # the lock went with the holder


def test_the_lock_is_released_after_the_block_and_is_exclusive_within_a_process_too(tmp_path):
    out = tmp_path / "o.jsonl"
    with output_lock(out):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            with output_lock(out):
                pass
    with output_lock(out):
        pass


def test_cli_reports_a_held_lock_as_a_message(tmp_path, fake_model, capsys):
    data = write_rows(tmp_path / "train.jsonl", [good_row(i, tmp_path) for i in range(3)])
    out = tmp_path / "clean.jsonl"
    with output_lock(out):
        assert agent_main("reflect")(["--data", str(data), "--out", str(out), *COMMON, *EXTRA["reflect"]]) == 2
    assert "another run is writing this output" in capsys.readouterr().err


# --------------------------------------------------------------------------- --out must not be --data
@pytest.mark.parametrize("kind", ["reflect", "difficulty"])
def test_out_equal_to_data_is_refused_and_the_data_is_untouched(tmp_path, fake_model, capsys, kind):
    rows = [good_row(i, tmp_path) for i in range(24)]
    data = write_rows(tmp_path / "train.jsonl", rows)
    before = data.read_bytes()
    main = agent_main(kind)
    assert main(["--data", str(data), "--out", str(data), *COMMON, *EXTRA[kind]]) == 2
    assert "is the input dataset" in capsys.readouterr().err
    (tmp_path / "alias.jsonl").symlink_to(data)  # the same file under another name
    assert main(["--data", str(data), "--out", str(tmp_path / "sub" / ".." / "alias.jsonl"), *COMMON, *EXTRA[kind]]) == 2
    assert data.read_bytes() == before


# --------------------------------------------------------------------------- input validation
def bad_rows(folder: Path) -> list[dict]:
    return [good_row(0, folder),
            good_row(1, folder, windows=[[8.5, 6.5]]),
            good_row(2, folder, windows=[[float("nan"), 8.5]]),
            good_row(3, folder, windows=[[0.0, 600.0]]),
            good_row(4, folder)]


@pytest.mark.parametrize("kind", ["reflect", "difficulty"])
def test_bad_input_rows_refuse_the_run_by_default(tmp_path, fake_model, capsys, kind):
    data = write_rows(tmp_path / "train.jsonl", bad_rows(tmp_path))
    out = tmp_path / "out.jsonl"
    assert agent_main(kind)(["--data", str(data), "--out", str(out), *COMMON, *EXTRA[kind]]) == 2
    err = capsys.readouterr().err
    assert f"{data}:2: [start_ge_end] qid=q1" in err
    assert f"{data}:3: [non_finite] qid=q2" in err
    assert f"{data}:4: [end_beyond_duration] qid=q3" in err
    assert "--data_policy drop" in err
    assert not out.exists()


def test_drop_policy_keeps_only_valid_rows_and_writes_no_nan(tmp_path, fake_model):
    data = write_rows(tmp_path / "train.jsonl", bad_rows(tmp_path))
    out = tmp_path / "out.difficulty.jsonl"
    assert agent_main("difficulty")(["--data", str(data), "--out", str(out), "--data_policy", "drop", *COMMON]) == 0
    assert [s.qid for s in read_jsonl(out)] == ["q0", "q4"]
    for f in tmp_path.glob("out.difficulty*.json*"):
        text = f.read_text()
        assert "NaN" not in text and "Infinity" not in text, f
        for line in text.splitlines() if f.suffix == ".jsonl" else [text]:
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{f}: {c} written"))


def test_dataset_writer_refuses_nan(tmp_path):
    s = VTGSample(qid="q", vid="v", duration=10.0, query="x", windows=[[math.nan, 2.0]])
    with pytest.raises(ValueError, match="JSON"):
        write_jsonl([s], tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
