"""Frozen-CLIP feature extraction, the npz layout, and the padded feature dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vtg_rl.data.schema import VTGSample, read_jsonl
from vtg_rl.heads.feature_dataset import FeatureDataset, clip_overlap_targets, collate_features, make_dataset
from vtg_rl.heads.features import (ClipFeatureExtractor, encode_query, encode_video_frames, load_clip_encoder,
                                   load_video_features, pool_frames_to_clips, preprocess_frames, save_npz)
from vtg_rl.heads.predictions import to_qvh_clips


def test_pool_frames_to_clips_means_and_fills_empty_clips():
    values = np.array([[1.0], [3.0], [10.0], [20.0]])
    out = pool_frames_to_clips(values, np.array([0.0, 1.0, 2.5, 7.9]), duration=8.0, clip_len=2.0)
    # clip 0 holds frames at 0 and 1 s; clip 2 (4-6 s) has none: nearest frame to 5 s is the one at 2.5 s
    np.testing.assert_allclose(out[:, 0], [2.0, 10.0, 10.0, 20.0])
    assert pool_frames_to_clips(np.zeros((3, 2, 5)), np.array([0, 1, 2.0]), 3.0, 1.0).shape == (3, 2, 5)
    with pytest.raises(ValueError):
        pool_frames_to_clips(values, np.array([0.0]), 8.0, 2.0)


def test_preprocess_resizes_short_side_and_centre_crops():
    frames = np.zeros((2, 40, 80, 3), dtype=np.uint8)
    frames[:, :, 30:50] = 255  # a white centre band survives the crop, the sides are cut
    x = preprocess_frames(frames, 56, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (2, 3, 56, 56)
    assert x[:, :, :, 20:36].min() > 0.9 and x[:, :, :, 0].max() < -0.9


def test_clip_encoders_give_content_dependent_features(tiny_clip_dir):
    enc = load_clip_encoder(tiny_clip_dir)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 56, 56, 3), dtype=np.uint8)
    out = encode_video_frames(enc, frames, hidden_layers=4, batch_size=2)
    dim = enc.model.config.projection_dim
    assert out["image_embeds"].shape == (3, dim)
    assert out["hidden_states"].shape[:2] == (4, 3) and out["hidden_states"].shape[2] == 1 + (56 // 14) ** 2
    assert not np.allclose(out["image_embeds"][0], out["image_embeds"][1])
    q = encode_query(enc, "when does the red circle appear?", hidden_layers=2)
    assert q["last_hidden_state"].ndim == 2 and q["pooler_output"].shape == (dim,)
    assert q["hidden_states"].shape[0] == 2
    assert not np.allclose(q["pooler_output"], encode_query(enc, "when does the blue square appear?")["pooler_output"])
    with pytest.raises(ValueError, match="empty"):
        encode_query(enc, "  ")


def test_extract_writes_the_moment_detr_layout_and_reuses_it(tiny_clip_dir, synthetic_world, tmp_path):
    samples = read_jsonl(synthetic_world["val"]) + read_jsonl(synthetic_world["test"])
    ex = ClipFeatureExtractor(tiny_clip_dir, clip_len=2.0, frames_per_clip=1)
    counts = ex.extract(samples, tmp_path, progress=False)
    assert counts["videos_computed"] == len({s.vid for s in samples})
    s = samples[0]
    with np.load(tmp_path / "clip_features" / f"{s.vid}.npz", allow_pickle=False) as f:
        assert f["features"].shape == (math.ceil(s.duration / 2.0 - 1e-6), ex.manifest()["video_dim"])
    with np.load(tmp_path / "clip_text_features" / f"qid{s.qid}.npz", allow_pickle=False) as f:
        assert f["last_hidden_state"].shape[1] == ex.manifest()["text_dim"] and f["pooler_output"].ndim == 1
    again = ex.extract(samples, tmp_path, progress=False)
    assert again["videos_computed"] == 0 and again["queries_computed"] == 0
    with pytest.raises(ValueError, match="refusing to mix"):
        ClipFeatureExtractor(tiny_clip_dir, clip_len=1.0).extract(samples, tmp_path, progress=False)
    # the event is visible in the features: clips inside the window differ from clips outside
    ds = make_dataset(samples, tmp_path)
    assert ds.clip_len == 2.0 and ds.video_dim == ex.manifest()["video_dim"]
    item = ds[0]
    assert item["video_feats"].shape[0] == item["saliency"].shape[0]


def test_cli_runs_the_extractor(tiny_clip_dir, synthetic_world, tmp_path, capsys):
    from vtg_rl.cli import main

    assert main(["features", "--data", str(synthetic_world["test"]), "--clip", str(tiny_clip_dir),
                 "--out", str(tmp_path), "--clip-len", "1.0", "--frames-per-clip", "1"]) == 0
    assert '"videos_computed"' in capsys.readouterr().out
    assert any((tmp_path / "clip_features").glob("*.npz"))


def _write(root, vid, qid, n_clips, dims=(4, 3), n_tok=5, seed=0):
    rng = np.random.default_rng(seed)
    save_npz(root / "a" / f"{vid}.npz", features=rng.normal(size=(n_clips, dims[0])))
    save_npz(root / "b" / f"{vid}.npz", features=rng.normal(size=(n_clips + 1, dims[1])))
    save_npz(root / "t" / f"qid{qid}.npz", last_hidden_state=rng.normal(size=(n_tok, 6)), pooler_output=np.ones(6))


def test_feature_dirs_concatenate_and_dataset_pads(tmp_path):
    samples = [VTGSample(qid="1", vid="v1", duration=10.0, query="x", windows=[[2.0, 6.0]]),
               VTGSample(qid="2", vid="v2", duration=6.0, query="y", windows=[[0.0, 2.0], [4.0, 6.0]],
                         relevant_clip_ids=[0, 2], saliency_scores=[[4, 4, 4], [2, 2, 2]])]
    _write(tmp_path, "v1", "1", 5)
    _write(tmp_path, "v2", "2", 3, n_tok=3)
    feats = load_video_features([tmp_path / "a", tmp_path / "b"], "v1")
    assert feats.shape == (5, 7)  # 4 + 3 dims; the longer folder is cut to the shorter
    np.testing.assert_allclose(np.linalg.norm(feats[:, :4], axis=1), 1.0, rtol=1e-5)
    ds = FeatureDataset(samples, [tmp_path / "a", tmp_path / "b"], [tmp_path / "t"], clip_len=2.0)
    torch.testing.assert_close(ds[0]["spans"], torch.tensor([[0.4, 0.4]]))
    torch.testing.assert_close(ds[1]["saliency"], torch.tensor([1.0, 0.0, 0.5]))  # QVH scores / 4
    batch = collate_features([ds[0], ds[1]])
    m = batch["model_inputs"]
    assert m["video_feats"].shape == (2, 5, 7) and m["video_mask"].sum(1).tolist() == [5, 3]
    assert m["text_mask"].sum(1).tolist() == [5, 3]
    assert len(batch["targets"][1]["spans"]) == 2 and batch["meta"][0]["qid"] == "1"


def test_dataset_errors_name_the_sample(tmp_path):
    _write(tmp_path, "v1", "1", 5)
    good = VTGSample(qid="1", vid="v1", duration=10.0, query="x", windows=[[2.0, 6.0]])
    with pytest.raises(FileNotFoundError, match="vmissing"):
        FeatureDataset([VTGSample(qid="1", vid="vmissing", duration=10.0, query="x", windows=[[1, 2]])],
                       [tmp_path / "a"], [tmp_path / "t"])
    with pytest.raises(ValueError, match="qid=9.*start 6.0 >= end 2.0"):
        FeatureDataset([VTGSample(qid="9", vid="v1", duration=10.0, query="x", windows=[[6.0, 2.0]])],
                       [tmp_path / "a"], [tmp_path / "t"])
    with pytest.raises(ValueError, match="no ground-truth windows"):
        FeatureDataset([VTGSample(qid="1", vid="v1", duration=10.0, query="x")], [tmp_path / "a"], [tmp_path / "t"])
    (tmp_path / "a" / "v1.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="v1.npz"):
        FeatureDataset([good], [tmp_path / "a"], [tmp_path / "t"])


def test_clip_targets_and_2s_resampling():
    np.testing.assert_allclose(clip_overlap_targets([[1.5, 3.0]], 4, 1.0, 4.0), [0.0, 0.5, 1.0, 0.0])
    assert to_qvh_clips(np.array([1.0, 3.0, 5.0, 7.0, 9.0]), 1.0, 5.0) == [2.0, 6.0, 9.0]
    assert to_qvh_clips(np.array([1.0, 2.0]), 2.0, 4.0) == [1.0, 2.0]
