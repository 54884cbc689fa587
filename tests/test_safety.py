"""What a careless or hostile input must not be able to do: run a model folder's code, write outside the
output folder, point a dataset at files outside its root, slip booleans in as numbers, crash a check on a
symlink loop or one bad byte, or leave files readable by nobody else."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VTG_RL = Path(sys.executable).parent / "vtg-rl"


# --------------------------------------------------------------------------- trust_remote_code
def booby_trapped_model(folder: Path, marker: Path) -> Path:
    """A model folder whose configs name its own Python file; importing that file writes ``marker``."""
    folder.mkdir(parents=True)
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoProcessor": "evil.EvilProcessor",
                "AutoModelForImageTextToText": "evil.EvilModel"}
    cfg = {"model_type": "evil_vl", "architectures": ["EvilModel"], "auto_map": auto_map}
    for name in ("config.json", "preprocessor_config.json", "processor_config.json"):
        (folder / name).write_text(json.dumps(cfg))
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('the folder ran its code')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil_vl'\n")
    return folder


def run_in_terminal(argv: list[str], env: dict, answer: bytes = b"y\n", timeout: float = 240.0) -> tuple[int, str]:
    """Run ``argv`` under a pseudo-terminal, answering ``answer`` to every ``[y/N]`` prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal session, as a user at a shell would have
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
        if b"[y/N]" in data or b"[y/n]" in data.lower():
            os.write(fd, answer)
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_predict_never_runs_a_model_folders_code_even_when_the_user_says_yes(tmp_path):
    marker = tmp_path / "MARKER"
    model = booby_trapped_model(tmp_path / "model", marker)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf"),
               HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    code, out = run_in_terminal([str(VTG_RL), "predict", "--model", str(model), str(tmp_path / "v.mp4"), "a query"],
                                env)
    assert not marker.exists(), out
    assert code != 0
    assert "--trust_remote_code" in out and str(model) in out
    assert "Traceback" not in out


def test_agents_refuse_a_model_folder_with_custom_code(tmp_path):
    from vtg_rl.agents.common import AgentConfig, load_generator

    marker = tmp_path / "MARKER"
    model = booby_trapped_model(tmp_path / "model", marker)
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_generator(str(model), AgentConfig(), device="cpu")
    assert not marker.exists()


def test_clip_loader_refuses_a_model_folder_with_custom_code(tmp_path):
    from vtg_rl.heads.features import load_clip_encoder

    marker = tmp_path / "MARKER"
    model = booby_trapped_model(tmp_path / "clip", marker)
    with pytest.raises(ValueError, match="auto_map"):
        load_clip_encoder(model)
    assert not marker.exists()


# --------------------------------------------------------------------------- ids that become file names
def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def row(qid="q1", vid="v1", **kw) -> dict:
    return {"qid": qid, "vid": vid, "duration": 10.0, "query": "a person opens a door", "windows": [[1.0, 3.0]],
            "video_path": kw.pop("video_path", "v1.mp4"), **kw}


@pytest.mark.parametrize("field,value", [("vid", "../../escaped"), ("vid", "/tmp/abs_escaped"),
                                         ("qid", "/../../escaped"), ("vid", ""), ("vid", "a\x00b"), ("vid", "..")])
def test_features_refuses_ids_that_are_not_file_names(tmp_path, capsys, field, value):
    from vtg_rl.cli import main

    work = tmp_path / "work"
    work.mkdir()
    (work / "v1.mp4").write_bytes(b"not decoded: the ids are checked first")
    bad = row(qid="q2")
    bad[field] = value
    data = write_rows(work / "d.jsonl", [row(), bad])
    out = work / "deep" / "out"
    code = main(["features", "--data", str(data), "--clip", str(tmp_path / "no_clip"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"sample 1 (qid={bad['qid']!r}): {field} {value!r} cannot be a file name" in err
    assert "Traceback" not in err
    written = [p for p in tmp_path.rglob("*") if p.is_file()] + list(Path("/tmp").glob("abs_escaped*"))
    assert sorted(p.name for p in written) == ["d.jsonl", "v1.mp4"]


def test_feature_paths_refuse_unsafe_ids(tmp_path):
    from vtg_rl.heads.features import text_feature_path, video_feature_path
    from vtg_rl.safe_paths import UnsafePathError

    assert video_feature_path(tmp_path, "v_1.2") == tmp_path / "v_1.2.npz"
    for bad in ("../x", "/abs/x", "a/b", "a\\b", "", ".."):
        with pytest.raises(UnsafePathError, match="cannot be used as a file name"):
            video_feature_path(tmp_path, bad)
        with pytest.raises(UnsafePathError, match="qid"):
            text_feature_path(tmp_path, bad if bad else "/")


def test_safe_paths_helpers(tmp_path):
    from vtg_rl.safe_paths import UnsafePathError, ensure_inside, inside, safe_file_stem

    assert safe_file_stem(12, "qid") == "12"
    with pytest.raises(UnsafePathError, match="sample 3: vid '../x' cannot be used as a file name: .*separator"):
        safe_file_stem("../x", "sample 3: vid")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "root", "a/b.mp4")
    assert not inside(tmp_path / "root", "../x.mp4")
    assert not inside(tmp_path / "root", "link/x.mp4")  # a symlink out of the root is outside
    assert not inside(tmp_path / "root", "/etc/passwd")
    with pytest.raises(UnsafePathError, match="outside"):
        ensure_inside(tmp_path / "root", "/etc/passwd", "video")


# --------------------------------------------------------------------------- videos outside the dataset folder
def test_a_relative_video_path_leaving_the_dataset_folder_is_refused_unless_allowed(tmp_path, capsys):
    from vtg_rl.cli import main
    from vtg_rl.data.loaders import load_samples
    from vtg_rl.data.validate import DataValidationError

    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    (folder / "v1.mp4").write_bytes(b"x")
    data = write_rows(folder / "d.jsonl", [row(), row(qid="q2", video_path="../../../../../../etc/passwd")])
    with pytest.raises(DataValidationError) as info:
        load_samples(data, "unified")
    assert info.value.report.counts == {"video_outside_root": 1}
    assert f"{data}:2: [video_outside_root] qid=q2" in str(info.value)
    samples, _ = load_samples(data, "unified", allow_outside_root=True)
    assert [s.qid for s in samples] == ["q1", "q2"]
    assert main(["data", "check", str(data), "--format", "unified"]) == 1
    assert "video_outside_root" in capsys.readouterr().out
    assert main(["data", "check", str(data), "--format", "unified", "--allow-outside-videos"]) == 0


# --------------------------------------------------------------------------- umask
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    from vtg_rl.data.schema import VTGSample, atomic_write_text, write_jsonl

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}\n")
        write_jsonl([VTGSample(qid="q", vid="v", duration=3.0, query="x")], tmp_path / "b.jsonl")
        (tmp_path / "plain.txt").write_text("x")  # what an ordinary write gets
    finally:
        os.umask(old)
    for name in ("a.json", "b.jsonl", "plain.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# --------------------------------------------------------------------------- booleans are not numbers
@pytest.mark.parametrize("field,value", [("windows", [[True, 5]]), ("windows", [[0.5, False]]), ("duration", True)])
def test_booleans_are_refused_as_numbers(tmp_path, field, value):
    from vtg_rl.data.loaders import load_samples
    from vtg_rl.data.schema import VTGSample, read_jsonl
    from vtg_rl.data.validate import DataValidationError

    (tmp_path / "v1.mp4").write_bytes(b"x")
    r = row()
    r[field] = value
    with pytest.raises(ValueError, match="must be a number, got (true|false)"):
        VTGSample.from_dict({k: v for k, v in r.items()})
    data = write_rows(tmp_path / "d.jsonl", [row(qid="q0"), r])
    with pytest.raises(ValueError, match=rf"{data}:2: .*must be a number"):
        read_jsonl(data)
    with pytest.raises(DataValidationError, match=rf"{data}:2: \[parse_error\]"):
        load_samples(data, "unified")


# --------------------------------------------------------------------------- one bad byte, one bad row
def write_with_bad_byte(path: Path) -> Path:
    good = json.dumps(row(qid="q1")).encode()
    bad = json.dumps(row(qid="q2", query="caf\u00e9"), ensure_ascii=False).encode()
    bad = bad.replace("\u00e9".encode(), b"\xe9")  # a latin-1 byte in a utf-8 file
    path.write_bytes(good + b"\n" + bad + b"\n" + json.dumps(row(qid="q3")).encode() + b"\n")
    return path


def test_data_check_names_the_non_utf8_line_and_keeps_the_rest(tmp_path, capsys):
    from vtg_rl.cli import main
    from vtg_rl.data.loaders import load_samples

    (tmp_path / "v1.mp4").write_bytes(b"x")
    data = write_with_bad_byte(tmp_path / "d.jsonl")
    assert main(["data", "check", str(data), "--format", "unified"]) == 1
    out = capsys.readouterr().out
    assert f"{data}:2: [parse_error] not UTF-8 text (byte 0xe9 at column" in out
    samples, report = load_samples(data, "unified", policy="drop")
    assert [s.qid for s in samples] == ["q1", "q3"] and report.n_dropped == 1


def test_charades_txt_with_a_non_utf8_line(tmp_path):
    from vtg_rl.data.loaders import load_samples

    data = tmp_path / "charades_sta_test.txt"
    data.write_bytes(b"V1 0.0 3.0##a person opens a door.\nV1 1.0 4.0##caf\xe9 time.\n")
    samples, report = load_samples(data, "charades", durations={"V1": 10.0}, policy="drop")
    assert len(samples) == 1
    assert [str(p) for p in report.problems] == [f"{data}:2: [parse_error] qid=1 not UTF-8 text (byte 0xe9 at column 16)"]


def test_read_jsonl_and_eval_pred_name_the_non_utf8_line(tmp_path):
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.metrics.submission import SubmissionError, read_submission

    data = write_with_bad_byte(tmp_path / "d.jsonl")
    with pytest.raises(ValueError, match=rf"{data}:2: not UTF-8 text \(byte 0xe9"):
        read_jsonl(data)
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(b'{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}\n{"qid": 2, "note": "\xff"}\n')
    with pytest.raises(SubmissionError, match=rf"{pred}:2: not UTF-8 text \(byte 0xff"):
        read_submission(pred)


# --------------------------------------------------------------------------- symlink loop
def test_a_symlink_loop_is_a_row_problem_not_a_crash(tmp_path, capsys):
    from vtg_rl.cli import main
    from vtg_rl.data.schema import read_jsonl

    (tmp_path / "v1.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "loop_b.mp4", tmp_path / "loop_a.mp4")
    os.symlink(tmp_path / "loop_a.mp4", tmp_path / "loop_b.mp4")
    data = write_rows(tmp_path / "d.jsonl", [row(), row(qid="q2", video_path="loop_a.mp4")])
    assert main(["data", "check", str(data), "--format", "unified"]) == 1
    captured = capsys.readouterr()
    assert f"{data}:2: [unknown_video] qid=q2" in captured.out and "Traceback" not in captured.err
    assert len(read_jsonl(data)) == 2  # reading never resolves through the loop
    assert main(["data", "check", str(data), "--format", "unified", "--probe-videos", "--policy", "drop"]) == 0


# --------------------------------------------------------------------------- reward errors name the sample
def test_a_ragged_ground_truth_window_names_the_sample():
    from vtg_rl.rewards import iou_boundary_reward, iou_reward

    answers = ["<answer>1 to 2</answer>"] * 3
    windows = [[[0, 4]], [[0, 4]], [[1, 2], [3]]]
    with pytest.raises(ValueError, match=r"iou_reward: sample 2 \(qid=c\): ground-truth windows"):
        iou_reward(answers, windows=windows, qid=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"iou_reward: sample 1: ground-truth windows .* not \[start, end\] pairs"):
        iou_reward(answers[:2], windows=[[[0, 4]], [[1, 2, 3, 4]]])  # a triple / quadruple is not reshaped
    with pytest.raises(ValueError, match=r"iou_boundary_reward: sample 2"):
        iou_boundary_reward(answers, windows=windows, duration=[10.0] * 3)
    assert iou_reward(answers[:1], windows=[[0, 4]]) == [0.25]  # one flat pair is still one window
