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
