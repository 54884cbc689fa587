"""Data agents: decision rules with injected predictions, resume after crashes, skipping bad videos,
and end-to-end runs on the tiny model."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vtg_rl.agents.common import AgentConfig
from vtg_rl.agents.difficulty import (DifficultyConfig, DifficultyEstimationAgent, difficulty_from_ious,
                                      select_training_subset)
from vtg_rl.agents.reflection import (BoundaryReflectionAgent, ReflectionConfig, annotated_frame_mask,
                                      mask_annotated, overlap_fraction, reflect_on_predictions)
from vtg_rl.agents.verification import pixel_features, span_appearance_scores
from vtg_rl.agents.runner import ResumableRunner, read_partial
from vtg_rl.data.schema import VTGSample, read_jsonl
from vtg_rl.data.video import SampledVideo
from vtg_rl.mllm.dataset import sample_difficulty
from vtg_rl.spans import format_answer

REPO = Path(__file__).resolve().parents[2]


def answer(s: float, e: float) -> str:
    return f"<think>look</think>{format_answer(s, e)}"


class FakeGenerator:
    """Returns chosen completions per qid; records calls and the frames it was shown."""

    def __init__(self, completions_by_qid, fail_after_calls=None):
        self.completions_by_qid = completions_by_qid
        self.calls: list[list[str]] = []
        self.fail_after_calls = fail_after_calls

    def __call__(self, samples, frame_transform=None):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise KeyboardInterrupt("simulated crash")
        self.calls.append([s.qid for s in samples])
        return [list(self.completions_by_qid[s.qid]) for s in samples]


def toy_sample(qid: str, windows, duration=20.0, tmp_path=None, **meta) -> VTGSample:
    video = tmp_path / f"{qid}.mp4" if tmp_path is not None else None
    if video is not None:
        video.write_bytes(b"stand-in: the fake generator never decodes it")
    return VTGSample(qid=qid, vid=f"v_{qid}", duration=duration, query="when does the red circle appear?",
                     windows=windows, video_path=str(video) if video else None, meta=dict(meta))


def fake_video(n=16, fps=2.0):
    frames = np.full((n, 4, 4, 3), 200, dtype=np.uint8)
    frames[:, 0, 0] = 0
    return SampledVideo(frames=frames, timestamps=np.arange(n) / fps, metadata=None, path="x.mp4")


# --------------------------------------------------------------------------- masking + decision rule
def test_mask_blanks_annotated_frames_in_whole_patches_and_keeps_time():
    video = fake_video(n=16, fps=2.0)  # frame i shown during [i/2, (i+1)/2)
    hide = annotated_frame_mask(video.timestamps, [[2.0, 3.2]], temporal_patch_size=2)
    # frames 4,5,6 overlap [2.0, 3.2): frame 7 joins as the other half of patch (6, 7)
    assert np.flatnonzero(hide).tolist() == [4, 5, 6, 7]
    masked, fraction = mask_annotated(video, [[2.0, 3.2]], fill="black")
    assert fraction == pytest.approx(4 / 16)
    assert (masked.frames[4:8] == 0).all() and (masked.frames[:4] == video.frames[:4]).all()
    assert (masked.frames[8:] == video.frames[8:]).all()
    np.testing.assert_array_equal(masked.timestamps, video.timestamps)
    assert masked.frames.shape == video.frames.shape
    assert (video.frames[4:8] == 200).any(), "the input video must not be modified"
    # a margin widens the hidden part; two windows are both hidden
    assert annotated_frame_mask(video.timestamps, [[2.0, 3.2]], margin=1.0).sum() == 8
    assert np.flatnonzero(annotated_frame_mask(video.timestamps, [[0, 0.5], [7.5, 8.0]])).tolist() == [0, 1, 14, 15]


def test_overlap_fraction():
    assert overlap_fraction([0, 10], [[5, 20]]) == pytest.approx(0.5)
    assert overlap_fraction([0, 10], [[2, 4], [3, 6]]) == pytest.approx(0.4)  # overlapping windows counted once
    assert overlap_fraction([12, 14], [[2, 4]]) == 0.0


def test_reflection_rule_flags_only_agreeing_outside_spans():
    cfg = ReflectionConfig(agreement_iou=0.5, min_agreement=0.5, max_overlap=0.2, verify="none")
    gt = [[2.0, 6.0]]
    agree = [[10.0, 14.0], [10.5, 14.0], [10.0, 13.5], [9.5, 14.0], [1.0, 5.0], None, [16.0, 18.0], [2.5, 6.0]]
    r = reflect_on_predictions(agree, gt, cfg)
    assert r["flagged"] and r["support"] == 4 and r["agreement"] == pytest.approx(0.5)
    assert r["found_span"] == [10.0, 14.0]
    assert r["outside"] == [True, True, True, True, False, False, True, False]
    # the same 4 outside answers are not enough when the rule asks for 5 of 8
    assert not reflect_on_predictions(agree, gt, ReflectionConfig(min_agreement=0.6, verify="none"))["flagged"]
    # outside but scattered: no agreement
    scattered = [[8, 9], [10, 11], [12, 13], [14, 15], [16, 17], [18, 19], [7, 8], [19, 20]]
    r = reflect_on_predictions(scattered, gt, cfg)
    assert not r["flagged"] and r["agreement"] == pytest.approx(1 / 8)
    # agreeing, but on the (masked) annotation itself or mostly overlapping it: not a new moment
    assert not reflect_on_predictions([[2, 6]] * 8, gt, cfg)["flagged"]
    assert not reflect_on_predictions([[5, 9]] * 8, gt, cfg)["flagged"]  # 1/4 of it overlaps > 0.2
    # all malformed
    r = reflect_on_predictions([None] * 8, gt, cfg)
    assert not r["flagged"] and r["found_span"] is None


def test_reflection_agent_with_injected_predictions(tmp_path):
    """Flags, cleaned dataset, flagged list for review and precision/recall against planted truth."""
    gt = [[2.0, 6.0]]
    samples = [toy_sample(f"q{i}", gt, tmp_path=tmp_path, partially_annotated=i in (0, 1, 2),
                          occurrences=[[2.0, 6.0], [12.0, 16.0]] if i in (0, 1, 2) else [[2.0, 6.0]])
               for i in range(6)]
    consistent = [answer(12.0, 16.0)] * 3 + [answer(12.5, 16.0)] * 2 + [answer(3, 5)] * 3
    scattered = [answer(8 + i, 9 + i) for i in range(8)]
    preds = {"q0": consistent, "q1": consistent, "q2": scattered,  # q2: a miss
             "q3": scattered, "q4": [answer(2, 6)] * 8, "q5": consistent}  # q5: a false alarm
    cfg = ReflectionConfig(num_rollouts=8, batch_size=4, verify="none")  # the agreement rule alone
    out = tmp_path / "out" / "train.clean.jsonl"
    summary = BoundaryReflectionAgent(FakeGenerator(preds), cfg).run(samples, out, progress=False)

    kept = read_jsonl(out)
    assert [s.qid for s in kept] == ["q2", "q3", "q4"]
    assert all(s.meta["reflection"]["flagged"] is False for s in kept)
    flagged = [json.loads(line) for line in (out.parent / "train.clean.flagged.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in flagged] == ["q0", "q1", "q5"]
    assert flagged[0]["found_span"] == [12.0, 16.0] and flagged[0]["agreement"] == pytest.approx(5 / 8)
    assert flagged[0]["windows"] == gt and len(flagged[0]["predictions"]) == 8
    assert Path(out.parent, flagged[0]["video_path"]).resolve() == Path(samples[0].video_path).resolve()
    truth = summary["truth"]
    assert (truth["tp"], truth["fp"], truth["fn"], truth["tn"]) == (2, 1, 1, 2)
    assert truth["precision"] == pytest.approx(2 / 3) and truth["recall"] == pytest.approx(2 / 3)
    assert truth["found_span_miou"] == pytest.approx(1.0)
    on_disk = json.loads((out.parent / "train.clean.summary.json").read_text())
    assert on_disk["n_flagged"] == 3 and on_disk["n_kept"] == 3


# --------------------------------------------------------------------------- verification
def blob_video(duration=12.0, fps=2.0, events=(), cells=3, cell_px=6, seed=0):
    """Noisy grey frames on a ``cells`` x ``cells`` layout; ``events`` = (span, cell (row, col), rgb): a square
    fills the cell during the span."""
    rng = np.random.default_rng(seed)
    n, size = int(duration * fps), cells * cell_px
    frames = np.clip(110 + rng.normal(0, 4, size=(n, size, size, 3)), 0, 255).astype(np.uint8)
    ts = np.arange(n) / fps
    for (s, e), (r, c), rgb in events:
        on = (ts + 1 / fps > s) & (ts < e)
        frames[on, r * cell_px + 1:(r + 1) * cell_px - 1, c * cell_px + 1:(c + 1) * cell_px - 1] = rgb
    return SampledVideo(frames=frames, timestamps=ts, metadata=None, path="blob.mp4")


RED, ORANGE, BLUE, GREEN = (220, 40, 40), (240, 125, 30), (40, 80, 235), (40, 190, 70)


def test_appearance_score_separates_a_second_occurrence_from_look_alikes():
    # target (red, cell 0,0) annotated at [2, 4] and again at [8, 10]; an orange look-alike at [5, 7]; a red
    # square in another cell at [10.5, 11.5]; a blue distractor through the annotation's second half and
    # beyond ([3, 6]); a green one over the whole annotation that outlasts it on both sides ([1, 5.5])
    video = blob_video(events=[((2, 4), (0, 0), RED), ((8, 10), (0, 0), RED), ((5, 7), (0, 1), ORANGE),
                               ((10.5, 11.5), (1, 0), RED), ((3, 6), (1, 1), BLUE), ((1, 5.5), (2, 2), GREEN)])
    feats = pixel_features(video, grid=3)
    assert feats[0].shape == (24, 9, 3)
    second, lookalike, elsewhere, background, blue_tail, green_tail, overshoot = span_appearance_scores(
        *feats, [[2.0, 4.0]], [[8, 10], [5, 7], [10.5, 11.5], [11.5, 12], [4.5, 6], [4.5, 5.5], [7, 11]])
    assert second == pytest.approx(1.0, abs=0.1)
    assert overshoot > 0.8  # half of it is the occurrence: the 75% quantile still sees it
    # the blue one is not there through all of [2, 4]; the green one is, but also right before and after it
    for other in (lookalike, elsewhere, background, blue_tail, green_tail):
        assert abs(other) < 0.2
    # no step outside both spans to tell the background from: unverifiable, not a guess
    assert span_appearance_scores(*feats, [[0.0, 6.0]], [[6.0, 12.0], None]) == [None, None]


class FramesGenerator(FakeGenerator):
    """A fake generator that shows each sample's video through the agent's frame_transform, like the model does."""

    def __init__(self, completions_by_qid, videos_by_qid):
        super().__init__(completions_by_qid)
        self.videos_by_qid = videos_by_qid
        self.shown = {}

    def __call__(self, samples, frame_transform=None):
        for s in samples:
            self.shown[s.qid] = frame_transform(s, self.videos_by_qid[s.qid]) if frame_transform else None
        return super().__call__(samples, frame_transform)


def test_verification_drops_a_consistent_look_alike_and_keeps_a_second_occurrence(tmp_path):
    gt = [[2.0, 4.0]]
    videos = {"partial": blob_video(events=[((2, 4), (0, 0), RED), ((8, 10), (0, 0), RED), ((5, 7), (0, 1), ORANGE)]),
              "clean": blob_video(events=[((2, 4), (0, 0), RED), ((8, 10), (0, 1), ORANGE)], seed=1)}
    samples = [toy_sample("partial", gt, duration=12.0, tmp_path=tmp_path, partially_annotated=True,
                          occurrences=[[2.0, 4.0], [8.0, 10.0]]),
               toy_sample("clean", gt, duration=12.0, tmp_path=tmp_path, partially_annotated=False,
                          occurrences=[[2.0, 4.0]])]
    # both times the K answers agree on one outside span: the second occurrence, or the look-alike
    preds = {"partial": [answer(8, 10)] * 3 + [answer(8.5, 10)], "clean": [answer(8, 10)] * 3 + [answer(2, 4)]}
    base = dict(num_rollouts=4, batch_size=2, verify_features="pixels", verify_grid=3)

    unverified = BoundaryReflectionAgent(FramesGenerator(preds, videos), ReflectionConfig(verify="none", **base))
    summary = unverified.run(samples, tmp_path / "a" / "clean.jsonl", progress=False)
    assert summary["truth"]["fp"] == 1, "agreement alone flags the look-alike"

    gen = FramesGenerator(preds, videos)
    out = tmp_path / "b" / "clean.jsonl"
    summary = BoundaryReflectionAgent(gen, ReflectionConfig(**base)).run(samples, out, progress=False)
    truth = summary["truth"]
    assert (truth["tp"], truth["fp"], truth["fn"], truth["tn"]) == (1, 0, 0, 1)
    assert summary["n_flagged_by_agreement"] == 2 and summary["n_flagged"] == 1
    assert (gen.shown["partial"].frames[4:8] != videos["partial"].frames[4:8]).any(), "the model saw it masked"
    flagged = [json.loads(line) for line in (out.parent / "clean.flagged.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in flagged] == ["partial"]
    row = flagged[0]  # what a person reviews: the score of the finding and of every prediction
    assert row["verification"] == pytest.approx(1.0, abs=0.15) and row["verified_fraction"] == 1.0
    assert len(row["verification_scores"]) == 4 and row["found_span"] == [8.0, 10.0]
    kept = read_jsonl(out)
    assert kept[0].qid == "clean" and abs(kept[0].meta["reflection"]["verification"] or 0.0) < 0.2

    # the threshold decides: at min_verified 1.0 three agreeing answers of four are not enough
    strict = BoundaryReflectionAgent(FramesGenerator(preds, videos), ReflectionConfig(min_verified=1.0, **base))
    assert strict.run(samples, tmp_path / "c" / "clean.jsonl", progress=False)["n_flagged"] == 1
    stricter = dict(preds, partial=[answer(8, 10)] * 2 + [answer(2, 4)] * 2)
    strict = BoundaryReflectionAgent(FramesGenerator(stricter, videos), ReflectionConfig(min_verified=0.75, **base))
    assert strict.run(samples, tmp_path / "d" / "clean.jsonl", progress=False)["n_flagged"] == 0


def test_verification_needs_the_frames():
    with pytest.raises(ValueError, match="vision_features"):
        BoundaryReflectionAgent(FakeGenerator({}), ReflectionConfig())  # vision features need the model
    agent = BoundaryReflectionAgent(FakeGenerator({"q0": [answer(8, 10)]}),
                                    ReflectionConfig(num_rollouts=1, verify_features="pixels"))
    with pytest.raises(RuntimeError, match="sample q0: the generator never passed its video"):
        agent.process_batch([toy_sample("q0", [[2.0, 4.0]])])
    with pytest.raises(ValueError, match="one appearance score per prediction"):
        reflect_on_predictions([[8, 10]], [[2, 4]], ReflectionConfig())


# --------------------------------------------------------------------------- difficulty
def test_difficulty_numbers_and_ordering_with_fake_rollouts(tmp_path):
    assert difficulty_from_ious([1.0, 0.5, 0.0, 0.5]) == pytest.approx(
        {"zero_shot_iou_mean": 0.5, "zero_shot_iou_std": np.std([1, 0.5, 0, 0.5]), "difficulty": 0.5})
    gt = [[4.0, 8.0]]
    # sample i's rollouts are shifted by 0.75 i seconds: more shift -> lower IoU -> higher difficulty
    samples = [toy_sample(f"q{i}", gt, tmp_path=tmp_path, true_difficulty=i / 10) for i in range(6)]
    preds = {f"q{i}": [answer(4 + 0.75 * i, 8 + 0.75 * i)] * 3 + [answer(4.5 + 0.75 * i, 8 + 0.75 * i)]
             for i in range(6)}
    preds["q5"] = ["no answer"] * 4  # malformed: IoU 0
    cfg = DifficultyConfig(num_rollouts=4, batch_size=4)
    out = tmp_path / "d" / "train.difficulty.jsonl"
    summary = DifficultyEstimationAgent(FakeGenerator(preds), cfg).run(samples, out, progress=False)

    scored = read_jsonl(out)
    d = [s.meta["difficulty"] for s in scored]
    assert all(0.0 <= v <= 1.0 for v in d)
    assert d == sorted(d) and d[0] < 0.1 and d[-1] == 1.0 and len(set(d)) == 6
    expected0 = difficulty_from_ious([1.0, 1.0, 1.0, 3.5 / 4])
    assert scored[0].meta["zero_shot_iou_mean"] == pytest.approx(expected0["zero_shot_iou_mean"])
    assert scored[0].meta["zero_shot_iou_std"] == pytest.approx(expected0["zero_shot_iou_std"])
    assert sample_difficulty(scored[3]) == pytest.approx(d[3])  # what the GRPO dataset reads
    assert summary["spearman_vs_true_difficulty"] == pytest.approx(1.0)
    assert summary["all_miss_fraction"] == pytest.approx(1 / 6)  # only q5: q4 still overlaps a little
    assert summary["malformed_rate"] == pytest.approx(4 / 24)
    assert sum(summary["histogram"]["counts"]) == 6
    assert (out.parent / "train.difficulty.hist.png").stat().st_size > 1000


def test_training_subset_leaves_out_too_easy_samples():
    samples = [toy_sample(f"q{i}", [[1.0, 2.0]], difficulty=i / 20) for i in range(20)]
    subset, report = select_training_subset(samples, 5, min_difficulty=0.25, seed=3)
    assert len(subset) == 5 and all(s.meta["difficulty"] >= 0.25 for s in subset)
    assert len({s.qid for s in subset}) == 5
    assert report["eligible"] == 15 and report["too_easy"] == 5
    assert [s.qid for s in select_training_subset(samples, 5, 0.25, seed=3)[0]] == [s.qid for s in subset]
    assert len(select_training_subset(samples, 50, 0.25)[0]) == 15  # fewer eligible than asked: all of them
    with pytest.raises(ValueError, match="no meta.difficulty"):
        select_training_subset([toy_sample("x", [[1.0, 2.0]])], 1)


# --------------------------------------------------------------------------- resume
def test_resume_after_crash_with_torn_line_loses_and_duplicates_nothing(tmp_path):
    gt = [[4.0, 8.0]]
    samples = [toy_sample(f"q{i}", gt, tmp_path=tmp_path) for i in range(10)]
    preds = {s.qid: [answer(4, 8), answer(5, 8)] for s in samples}
    cfg = DifficultyConfig(num_rollouts=2, batch_size=3)
    out = tmp_path / "r" / "train.difficulty.jsonl"
    partial = out.parent / "train.difficulty.partial.jsonl"

    crashing = FakeGenerator(preds, fail_after_calls=2)  # dies while processing the 3rd batch
    with pytest.raises(KeyboardInterrupt):
        DifficultyEstimationAgent(crashing, cfg).run(samples, out, progress=False)
    assert not out.exists(), "no final output from a crashed run"
    done, _ = read_partial(partial)
    assert sorted(done) == [f"q{i}" for i in range(6)]
    # a kill in the middle of a write leaves half a record of q6 without its newline
    with open(partial, "ab") as f:
        f.write(b'{"qid": "q6", "ious": [1.0, 0.7')

    resumed = FakeGenerator(preds)
    summary = DifficultyEstimationAgent(resumed, cfg).run(samples, out, progress=False)
    assert sorted(q for call in resumed.calls for q in call) == ["q6", "q7", "q8", "q9"]
    assert summary["resumed"] == 6 and summary["processed"] == 4
    lines = partial.read_bytes().decode().splitlines()
    qids = [json.loads(line)["qid"] for line in lines]  # every line parses: the torn tail was cut
    assert sorted(qids) == [f"q{i}" for i in range(10)]
    assert [s.qid for s in read_jsonl(out)] == [f"q{i}" for i in range(10)]

    # a third run has nothing left to generate, and the same records are read back
    again = FakeGenerator(preds)
    DifficultyEstimationAgent(again, cfg).run(samples, out, progress=False)
    assert again.calls == []
    # resuming with another configuration is refused instead of mixing results
    with pytest.raises(ValueError, match="another configuration.*num_rollouts"):
        DifficultyEstimationAgent(again, DifficultyConfig(num_rollouts=3)).run(samples, out, progress=False)


def test_duplicate_records_and_corrupt_middle_lines(tmp_path):
    path = tmp_path / "x.partial.jsonl"
    path.write_text('{"qid": "a", "v": 1}\n{"qid": "a", "v": 2}\n{"qid": "b", "v": 3}\n')
    records, intact = read_partial(path)
    assert records == {"a": {"qid": "a", "v": 1}, "b": {"qid": "b", "v": 3}} and intact == path.stat().st_size
    path.write_text('{"qid": "a"}\n{"qid": \n{"qid": "b"}\n')
    with pytest.raises(ValueError, match=r"x.partial.jsonl:2: corrupt"):
        read_partial(path)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from vtg_rl.agents.runner import ResumableRunner
    from vtg_rl.data.schema import VTGSample
    samples = [VTGSample(qid=f"q{i}", vid="v", duration=10.0, query="q", windows=[[1.0, 2.0]],
                         video_path=sys.argv[2]) for i in range(40)]
    def slow(batch):
        time.sleep(0.2)
        return [{"value": int(s.qid[1:]) * 2} for s in batch]
    ResumableRunner(sys.argv[1], {"k": 1}, batch_size=2, progress=False).run(samples, slow)
""")


def test_kill_9_then_rerun_completes_exactly_once(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    partial = tmp_path / "job.partial.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(partial), str(video)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not partial.exists() or partial.read_bytes().count(b"\n") < 4):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = partial.read_bytes().count(b"\n")
    assert 4 <= n_before < 40, "the job must have been killed part-way"
    subprocess.run([sys.executable, str(script), str(partial), str(video)], env=env, check=True, timeout=120)
    records = [json.loads(line) for line in partial.read_text().splitlines()]
    assert sorted(r["qid"] for r in records) == sorted(f"q{i}" for i in range(40))  # no loss, no duplicate
    assert all(r["value"] == int(r["qid"][1:]) * 2 for r in records)


# --------------------------------------------------------------------------- the tiny model, end to end
@pytest.fixture(scope="module")
def broken_samples(synthetic_world, tmp_path_factory):
    """Three good samples, one whose video is missing and one whose video is corrupt."""
    tmp = tmp_path_factory.mktemp("broken")
    samples = read_jsonl(synthetic_world["train"])[:5]
    samples[1].video_path = str(tmp / "gone.mp4")
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    samples[3].video_path = str(corrupt)
    return samples


def test_difficulty_on_tiny_model_skips_missing_and_unreadable_videos(tiny_qwen_dir, broken_samples, tmp_path):
    from vtg_rl.agents.common import load_generator

    cfg = DifficultyConfig(num_rollouts=2, batch_size=4, max_new_tokens=24)
    gen = load_generator(str(tiny_qwen_dir), cfg, device="cpu")
    out = tmp_path / "train.difficulty.jsonl"
    summary = DifficultyEstimationAgent(gen, cfg).run(broken_samples, out, progress=False)
    skipped = {r["qid"]: r["reason"] for r in summary["skipped"]}
    assert set(skipped) == {broken_samples[1].qid, broken_samples[3].qid}
    assert "no such video file" in skipped[broken_samples[1].qid]
    assert "corrupt.mp4" in skipped[broken_samples[3].qid]
    good = [broken_samples[i].qid for i in (0, 2, 4)]
    assert [s.qid for s in read_jsonl(out)] == good
    assert gen.generations == 2 * len(good)  # the batch that failed to decode generated nothing
    assert summary["generations"] == gen.generations


def test_cli_reflect_on_tiny_model(tiny_qwen_dir, synthetic_world, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("reflect_cli", REPO / "data_agents" / "reflect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main = module.main
    out = tmp_path / "clean.jsonl"
    argv = ["--model", str(tiny_qwen_dir), "--data", str(synthetic_world["train"]), "--out", str(out),
            "--max_samples", "4", "--num_rollouts", "2", "--max_new_tokens", "24", "--device", "cpu",
            "--no_progress"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "clean.summary.json").read_text())
    assert summary["n_processed"] == 4 and summary["n_kept"] + summary["n_flagged"] == 4
    records, _ = read_partial(tmp_path / "clean.partial.jsonl")
    assert all(0 < r["masked_fraction"] < 1 for r in records.values())  # the annotation was hidden
    # the default verification ran on the model's vision tokens: one score (or None) per prediction
    assert all(len(r["verification_scores"]) == 2 for r in records.values())
    assert all(r["verified"] == [o and s is not None and s >= 0.4 for o, s in zip(r["outside"], r["verification_scores"])]
               for r in records.values())
    assert (tmp_path / "clean.flagged.jsonl").is_file()
    assert main(["--model", str(tmp_path / "no_model"), "--data", str(synthetic_world["train"])]) == 2
    assert "no model checkpoint here" in capsys.readouterr().err


def test_config_validation():
    with pytest.raises(ValueError, match="num_rollouts"):
        AgentConfig(num_rollouts=0)
    with pytest.raises(ValueError, match="min_agreement"):
        ReflectionConfig(min_agreement=1.5)
    with pytest.raises(ValueError, match="verify must be"):
        ReflectionConfig(verify="yes")
    with pytest.raises(ValueError, match="verify_features"):
        ReflectionConfig(verify_features="clip")
    with pytest.raises(ValueError, match="min_verified"):
        ReflectionConfig(min_verified=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        ResumableRunner("x.partial.jsonl", {}, batch_size=0)
