"""`vtg-rl predict` / Grounder and the demo report."""

from __future__ import annotations

import json

import pytest

from vtg_rl.cli import main as cli_main
from vtg_rl.grounders import Grounder, vote_spans
from vtg_rl.mllm.grounder import LLMGrounder
from vtg_rl.report import Stage, render_report


def test_vote_spans_ranks_by_agreement_and_keeps_greedy_first_on_ties():
    spans = vote_spans([[1, 3], [5, 9], [5.1, 9], [1, 3.1], [12, 13]], top_k=3)
    assert [round(s.score, 2) for s in spans] == [0.4, 0.4, 0.2]
    assert (spans[0].start, spans[0].end) == (1, 3)  # the greedy answer leads its tie
    assert (spans[2].start, spans[2].end) == (12, 13)


def test_grounder_rejects_what_it_cannot_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        Grounder.from_pretrained(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a video-LLM checkpoint"):
        Grounder.from_pretrained(str(tmp_path / "empty"))
    (tmp_path / "head").mkdir()
    (tmp_path / "head" / "head_config.json").write_text(json.dumps({"kind": "mystery"}))
    with pytest.raises(ValueError, match="unknown head kind"):
        Grounder.from_pretrained(str(tmp_path / "head"))


def test_predict_cli_on_a_tiny_llm(tiny_qwen_dir, synthetic_world, capsys):
    from vtg_rl.data.schema import read_jsonl

    sample = read_jsonl(synthetic_world["test"])[0]
    grounder = Grounder.from_pretrained(str(tiny_qwen_dir))
    assert isinstance(grounder, LLMGrounder)
    spans = grounder.predict(sample.video_path, sample.query, top_k=2)
    for s in spans:  # an untrained model may give no well-formed answer; any span it gives is valid
        assert 0 <= s.start < s.end <= sample.duration and 0 < s.score <= 1
    code = cli_main(["predict", "--model", str(tiny_qwen_dir), sample.video_path, sample.query, "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["query"] == sample.query and isinstance(out["spans"], list)


def test_predict_cli_fails_clearly_on_an_unreadable_video(tiny_qwen_dir, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    code = cli_main(["predict", "--model", str(tiny_qwen_dir), str(bad), "when?"])
    err = capsys.readouterr().err
    assert code == 1 and "broken.mp4" in err and "Traceback" not in err


def test_report_table_lists_every_stage(tmp_path):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "eval_after.json").write_text(json.dumps({"miou": 0.5, "r1_05": 0.6, "format_rate": 1.0}))
    (tmp_path / "sft" / "curves.png").write_bytes(b"\x89PNG fake")
    text = render_report(tmp_path, [Stage("SFT", "sft/eval_after.json", plots=["sft/curves.png"]),
                                    Stage("GRPO", "grpo/eval_after.json")])
    assert "| SFT | 0.500 | - | 0.600 |" in text
    assert "| GRPO |" in text and "not run (grpo/eval_after.json missing)" in text
    assert "![SFT](sft/curves.png)" in text


@pytest.mark.slow
def test_predict_with_a_trained_girl_detr_head(tiny_clip_dir, synthetic_world, tmp_path, capsys):
    import os

    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.heads.girl_detr.recipe import run_girl_detr
    from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig

    cfg = GirlDetrTrainingConfig(
        output_dir=str(tmp_path / "sup"), max_steps=2, learning_rate=1e-3, hidden_dim=32, num_heads=4, ffn_dim=64,
        synthetic_dir=str(os.path.dirname(synthetic_world["train"])), clip_model=str(tiny_clip_dir),
        feature_root=str(tmp_path / "features"), clip_len=1.0, per_device_train_batch_size=8, report_to=[],
        disable_tqdm=True, use_cpu=True, save_strategy="no", eval_strategy="no")
    run_girl_detr(cfg)
    final = tmp_path / "sup" / "final"
    assert json.loads((final / "head_config.json").read_text())["kind"] == "girl_detr"
    sample = read_jsonl(synthetic_world["test"])[0]
    spans = Grounder.from_pretrained(str(final)).predict(sample.video_path, sample.query, top_k=3)
    assert 1 <= len(spans) <= 3
    assert all(0 <= s.start <= s.end <= sample.duration + 1e-6 for s in spans)
    assert cli_main(["predict", "--model", str(final), sample.video_path, sample.query, "--top-k", "2"]) == 0
    assert "1." in capsys.readouterr().out


def test_a_registered_kind_loads_through_the_front_door(tmp_path):
    from vtg_rl import grounders

    class Echo:
        @classmethod
        def from_pretrained(cls, folder, **kwargs):
            return (cls, folder, kwargs)

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "head_config.json").write_text(json.dumps({"kind": "echo"}))
    import sys
    import types

    sys.modules["echo_grounder_module"] = types.SimpleNamespace(Echo=Echo)
    try:
        grounders.register_grounder("echo", "echo_grounder_module:Echo")
        assert Grounder.from_pretrained(tmp_path / "m", device="cpu") == (Echo, str(tmp_path / "m"), {"device": "cpu"})
    finally:
        grounders.GROUNDERS.pop("echo", None)
        sys.modules.pop("echo_grounder_module", None)
