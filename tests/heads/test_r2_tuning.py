"""R2-Tuning: shapes, a frozen CLIP that stays bit-identical, the trainable fraction, NMS, the contrastive
losses, moment target assignment, the feature cache, TPRL through the shared loop, and the recipe end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vtg_rl.heads.r2_tuning.heads import nms_spans
from vtg_rl.heads.r2_tuning.losses import assign_moment_targets, layer_contrastive_loss, video_contrastive_loss
from vtg_rl.heads.r2_tuning.model import R2ModelConfig, R2Tuning, load_r2, save_r2
from vtg_rl.heads.tprl.loss import backbone_snapshot, changed_backbone_tensors, freeze_backbone

K, P, C = 4, 17, 64  # tiny CLIP: 4 layers kept, CLS + 4x4 patches, width 64


def toy_batch(b=4, t=12, length=7, seed=0, durations=(12.0, 9.0, 12.0, 10.0)):
    g = torch.Generator().manual_seed(seed)
    video_mask = torch.ones(b, t, dtype=torch.bool)
    video_mask[1, 9:] = False
    video_mask[3, 10:] = False
    query_mask = torch.ones(b, length, dtype=torch.bool)
    query_mask[0, 5:] = False
    windows = [torch.tensor([[0.2, 0.5]]), torch.tensor([[0.1, 0.3], [0.6, 0.9]]), torch.tensor([[0.0, 0.1]]),
               torch.tensor([[0.5, 1.0]])][:b]
    clip_len_norm = 1.0 / torch.tensor(durations[:b])
    centres = (torch.arange(t) + 0.5)[None] * clip_len_norm[:, None]
    moment = torch.zeros(b, t, dtype=torch.bool)
    for i, w in enumerate(windows):
        for s, e in w.tolist():
            moment[i] |= (centres[i] >= s) & (centres[i] <= e)
    moment &= video_mask
    inputs = {"video_layers": torch.randn(b, t, K, P, C, generator=g), "video_mask": video_mask,
              "query_layers": torch.randn(b, K, length, C, generator=g), "query_mask": query_mask,
              "clip_len_norm": clip_len_norm}
    supervision = {"windows": windows, "saliency": moment.float() * 0.75, "moment_mask": moment,
                   "same_pair": torch.eye(b, dtype=torch.bool)}
    return inputs, supervision


def test_shapes_and_protocol():
    torch.manual_seed(0)
    model = R2Tuning(R2ModelConfig(hidden_size=16)).eval()
    inputs, supervision = toy_batch()
    out = model(**inputs, **supervision)
    q = 12 + 6 + 3 + 2  # anchors of the strides 1, 2, 4, 8 over 12 clips
    assert out["pred_spans"].shape == (4, q, 2) and out["pred_logits"].shape == (4, q)
    assert out["pred_iou"].shape == (4, q) and out["query_mask"].shape == (4, q)
    assert out["saliency_scores"].shape == (4, 12)
    # padding clips give padding anchors, masked and never preferred
    assert not out["query_mask"][1, 9:12].any() and out["query_mask"][1, :9].all()
    assert (out["pred_logits"][~out["query_mask"]] <= -1e3).all()
    start = out["pred_spans"][..., 0] - out["pred_spans"][..., 1] / 2
    end = out["pred_spans"][..., 0] + out["pred_spans"][..., 1] / 2
    assert (start >= -1e-6).all() and (end <= 1 + 1e-6).all() and (out["pred_spans"][..., 1] >= 0).all()
    for key in ("loss", "loss_cls", "loss_l1", "loss_giou", "loss_iou", "loss_saliency", "loss_video_contrastive",
                "loss_layer_contrastive"):
        assert torch.isfinite(out[key]), key
    preds = model.predict(inputs, [12.0, 9.0, 12.0, 10.0])
    assert len(preds) == 4 and len(preds[1]["pred_saliency_scores"]) == 9
    for p, d in zip(preds, [12.0, 9.0, 12.0, 10.0]):
        assert 1 <= len(p["pred_relevant_windows"]) <= 10
        assert all(0 <= s < e <= d for s, e, _ in p["pred_relevant_windows"])
        scores = [w[2] for w in p["pred_relevant_windows"]]
        assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="built for 4 CLIP layers"):
        model(**dict(inputs, video_layers=inputs["video_layers"][:, :, :3]))
    with pytest.raises(ValueError, match="CLIP widths vision 64"):
        model(**dict(inputs, video_layers=inputs["video_layers"][..., :32]))


def test_prediction_does_not_depend_on_batch_padding():
    """A video's moments and saliency are the same alone and padded into a batch with a longer one."""
    torch.manual_seed(0)
    model = R2Tuning(R2ModelConfig(hidden_size=16)).eval()
    inputs, _ = toy_batch()
    alone = {k: v[1:2] for k, v in inputs.items()}
    n = int(alone["video_mask"].sum())
    alone["video_layers"], alone["video_mask"] = alone["video_layers"][:, :n], alone["video_mask"][:, :n]
    in_batch = model.predict(inputs, [12.0, 9.0, 12.0, 10.0])[1]
    by_itself = model.predict(alone, [9.0])[0]
    np.testing.assert_allclose(in_batch["pred_relevant_windows"], by_itself["pred_relevant_windows"], atol=1e-3)
    np.testing.assert_allclose(in_batch["pred_saliency_scores"], by_itself["pred_saliency_scores"], atol=1e-3)


def test_frozen_clip_stays_bit_identical_and_trainable_fraction(tiny_clip_dir):
    from transformers import AutoTokenizer, CLIPModel

    from vtg_rl.heads.features import encode_video_frames, load_clip_encoder
    from vtg_rl.heads.r2_tuning.features import clip_layer_states

    clip = CLIPModel.from_pretrained(str(tiny_clip_dir))
    tok = AutoTokenizer.from_pretrained(str(tiny_clip_dir))
    torch.manual_seed(0)
    model = R2Tuning(R2ModelConfig(hidden_size=16), clip=clip)
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    adapter_before = [p.detach().clone() for p in model.adapter_parameters()]
    ids = tok(["when does the red circle appear?", "the blue square"], padding=True, return_tensors="pt")
    pixels = torch.randn(2, 6, 3, 56, 56)
    batch = {"pixel_values": pixels, "input_ids": ids["input_ids"], "query_mask": ids["attention_mask"].bool(),
             "video_mask": torch.ones(2, 6, dtype=torch.bool), "clip_len_norm": torch.tensor([1 / 6, 1 / 6]),
             "windows": [torch.tensor([[0.2, 0.6]]), torch.tensor([[0.5, 1.0]])]}
    # an optimizer over *all* parameters: the frozen tower must still not move
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model.train()
    assert not clip.training  # dropout never switches on in the frozen tower
    for _ in range(3):
        loss = model(**batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in clip.state_dict().items())
    assert all(p.grad is None for p in clip.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(adapter_before, model.adapter_parameters()))
    counts = model.parameter_counts()
    print(f"R2-Tuning trains {counts['trainable_params']} of {counts['trainable_params'] + counts['frozen_params']} "
          f"parameters ({100 * counts['trainable_fraction']:.2f}%)")
    assert counts["frozen_params"] == sum(p.numel() for p in clip.parameters())
    assert counts["trainable_fraction"] < 0.05
    # the on-the-fly layer states are exactly what the feature cache stores (same CLIP, same pixels)
    encoder = load_clip_encoder(tiny_clip_dir)
    frames = np.random.default_rng(0).integers(0, 255, size=(3, 56, 56, 3), dtype=np.uint8)
    from vtg_rl.heads.features import preprocess_frames

    cached = encode_video_frames(encoder, frames, hidden_layers=K)["hidden_states"]             # (K, T, P, H)
    px = preprocess_frames(frames, encoder.image_size, encoder.mean, encoder.std)[None]
    online, _ = clip_layer_states(encoder.model, px, ids["input_ids"][:1], ids["attention_mask"][:1], K)
    np.testing.assert_allclose(online[0].permute(1, 0, 2, 3).numpy(), cached, atol=1e-5)


def test_nms_keeps_the_best_of_overlapping_spans():
    spans = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0], [0.0, 9.0], [25.0, 40.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.1])
    # [0, 9] (best) suppresses [0, 10] (IoU 0.9); [1, 10] has IoU 0.8 with [0, 9]: suppressed too
    assert nms_spans(spans, scores, 0.7).tolist() == [3, 2, 4]
    assert nms_spans(spans, scores, 0.95).tolist() == [3, 0, 1, 2, 4]  # nothing overlaps that much
    assert nms_spans(spans, scores, 0.7, max_out=2).tolist() == [3, 2]
    assert nms_spans(torch.zeros(0, 2), torch.zeros(0), 0.7).numel() == 0
    with pytest.raises(ValueError, match="spans \\(N, 2\\)"):
        nms_spans(spans, scores[:3])


def test_moment_targets_give_every_window_a_positive_anchor():
    model = R2Tuning(R2ModelConfig(hidden_size=16))
    inputs, supervision = toy_batch()
    from vtg_rl.heads.r2_tuning.heads import make_anchors

    _, level_masks = model.pyramid(torch.zeros(4, 12, 16), inputs["video_mask"])
    anchors = make_anchors(level_masks, model.pyramid.strides)
    pos, target = assign_moment_targets(anchors, supervision["windows"], inputs["clip_len_norm"], 4)
    for b, w in enumerate(supervision["windows"]):
        assert (pos[b] & ~anchors.mask[b]).sum() == 0  # never on padding
        for g in w:
            assert (pos[b] & (target[b] == g).all(-1)).any(), f"window {g.tolist()} of sample {b} has no anchor"
    # a 1.2 s moment (item 2: [0, 1.2] s) is regressed by the finest level only
    assert set(anchors.levels[pos[2]].tolist()) == {0}


def test_contrastive_losses_finite_and_decreasing():
    torch.manual_seed(0)
    cfg = R2ModelConfig(hidden_size=16, dropout=0.0, w_cls=0, w_l1=0, w_giou=0, w_iou=0, w_saliency=0,
                        w_video_contrastive=1.0, w_layer_contrastive=1.0)
    model = R2Tuning(cfg)
    inputs, supervision = toy_batch(b=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        out = model(**inputs, **supervision)
        history.append((out["loss_video_contrastive"].item(), out["loss_layer_contrastive"].item()))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    video, layer = zip(*history)
    assert all(np.isfinite(video)) and all(np.isfinite(layer))
    assert video[-1] < 0.5 * video[0] and layer[-1] < 0.5 * layer[0], history[::10]
    # pairs marked as "same" (same video or same sentence) are not negatives: nothing left to contrast
    x = torch.randn(3, 5, 8)
    moment = torch.ones(3, 5, dtype=torch.bool)
    assert float(video_contrastive_loss(x, torch.randn(3, 8), moment, torch.ones(3, 3, dtype=torch.bool), 0.1)) == 0
    # aligned towers score lower than shuffled ones
    s = torch.randn(3, 8)
    aligned = video_contrastive_loss(s[:, None].expand(3, 5, 8), s, moment, None, 0.1)
    shuffled = video_contrastive_loss(s[[1, 2, 0], None].expand(3, 5, 8), s, moment, None, 0.1)
    assert aligned < shuffled
    frames = [torch.randn(2, 6, 8)]
    inside = torch.zeros(2, 6, dtype=torch.bool)
    inside[:, 1:3] = True
    assert torch.isfinite(layer_contrastive_loss(frames, [torch.randn(2, 8)], inside, torch.ones(2, 6, dtype=torch.bool), 0.1))


class ToyR2Dataset(torch.utils.data.Dataset):
    """Items shaped like :class:`R2FeatureDataset`'s, from random tensors."""

    def __init__(self, n=16, seed=0):
        from vtg_rl.data.schema import VTGSample

        rng = np.random.default_rng(seed)
        self.clip_len, self.items, self.samples = 1.0, [], []
        for i in range(n):
            t = int(rng.integers(8, 14))
            s = float(rng.integers(0, t - 3))
            e = s + float(rng.integers(2, 4))
            clips = list(range(int(s // 2), int(np.ceil(e / 2))))
            self.samples.append(VTGSample(qid=f"q{i}", vid=f"v{i}", duration=float(t), query=f"query {i % 3}",
                                          windows=[[s, e]], relevant_clip_ids=clips,
                                          saliency_scores=[[4, 3, 4]] * len(clips)))
            moment = (np.arange(t) + 0.5 >= s) & (np.arange(t) + 0.5 <= e)
            self.items.append({"video_layers": rng.standard_normal((t, K, P, C)).astype(np.float32),
                               "query_layers": rng.standard_normal((K, 6, C)).astype(np.float32),
                               "windows": np.array([[s / t, e / t]], np.float32), "moment_mask": moment,
                               "saliency": moment.astype(np.float32), "clip_len_norm": 1.0 / t, "qid": f"q{i}",
                               "vid": f"v{i}", "duration": float(t), "query": f"query {i % 3}", "clip_len": 1.0})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_tprl_runs_on_the_r2_head_through_the_shared_loop(tmp_path):
    from vtg_rl.heads.r2_tuning.trainer import R2TPRLTrainer, R2TuningConfig
    from vtg_rl.heads.tprl.trainer import TPRLTrainer

    assert R2TPRLTrainer.compute_loss is TPRLTrainer.compute_loss  # no head-specific copy of the RL loop
    torch.manual_seed(0)
    model = R2Tuning(R2ModelConfig(hidden_size=16))
    trainable, total = freeze_backbone(model)
    assert trainable == sum(p.numel() for p in model.moment_head.parameters()) < total
    snapshot = backbone_snapshot(model)
    head_before = [p.detach().clone() for p in model.head_parameters()]
    data = ToyR2Dataset()
    cfg = R2TuningConfig(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=8, learning_rate=1e-3,
                         logging_steps=2, save_strategy="no", report_to=[], disable_tqdm=True,
                         tprl_stage2_start=0.0, tprl_stage3_start=0.3, per_device_eval_batch_size=8)
    trainer = R2TPRLTrainer(model=model, args=cfg, train_dataset=data, eval_dataset=data,
                            tprl_config=cfg.tprl_config())
    trainer.train()
    assert changed_backbone_tensors(model, snapshot) == []
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head_parameters()))
    logs = {k for h in trainer.state.log_history for k in h}
    assert {"tprl/greedy_iou", "tprl/rl", "tprl/topk"} <= logs
    metrics = trainer.evaluate()
    assert "eval_MR-full-R1@0.5" in metrics and "eval_HL-min-VeryGood-Hit1" in metrics


def test_feature_dataset_targets_and_errors(tmp_path):
    from vtg_rl.data.schema import VTGSample
    from vtg_rl.heads.features import save_npz
    from vtg_rl.heads.r2_tuning.features import R2FeatureDataset, clip_targets, collate_r2

    s = VTGSample(qid="7", vid="a", duration=6.0, query="red circle", windows=[[1.0, 3.0]],
                  relevant_clip_ids=[0, 1], saliency_scores=[[2, 2, 2], [4, 4, 4]])
    moment, saliency = clip_targets(s, 6, 1.0)
    assert moment.tolist() == [False, True, True, False, False, False]
    assert saliency.tolist() == [0.5, 0.5, 1.0, 1.0, 0.0, 0.0]  # 1 s clips take their 2 s clip's mean score / 4
    (tmp_path / "features.json").write_text(json.dumps({"clip_len": 1.0, "num_layers": K, "vision_dim": C,
                                                        "text_dim": C}))
    save_npz(tmp_path / "r2_video_layers" / "a.npz", hidden_states=np.zeros((6, K, P, C), np.float16))
    save_npz(tmp_path / "r2_text_layers" / "qid7.npz", hidden_states=np.zeros((K, 4, C), np.float16))
    missing = VTGSample(qid="8", vid="b", duration=6.0, query="x", windows=[[0.0, 1.0]])
    ds = R2FeatureDataset([s, missing], tmp_path)
    batch = collate_r2([ds[0], ds[0]])
    assert batch["model_inputs"]["video_layers"].shape == (2, 6, K, P, C)
    assert batch["targets"][0]["spans"].tolist() == [[pytest.approx(2 / 6), pytest.approx(2 / 6)]]
    assert batch["supervision"]["same_pair"].all()  # same video: not a contrastive negative
    with pytest.raises(FileNotFoundError, match="qid=8"):
        ds[1]


def test_recipe_end_to_end(tmp_path, tiny_clip_dir, synthetic_world):
    """Feature extraction, supervised training, TPRL, submission, metrics, curves, checkpoints, reload."""
    from vtg_rl.heads.r2_tuning.recipe import build_r2_datasets, run_r2_tuning
    from vtg_rl.heads.r2_tuning.trainer import R2TuningConfig, predict_rows
    from vtg_rl.metrics import read_submission

    world = synthetic_world["train"].parent
    cfg = R2TuningConfig(output_dir=str(tmp_path / "run"), synthetic_dir=str(world), clip_model=str(tiny_clip_dir),
                         feature_root=str(tmp_path / "features"), max_steps=12, per_device_train_batch_size=8,
                         per_device_eval_batch_size=16, learning_rate=1e-3, logging_steps=4, eval_strategy="steps",
                         eval_steps=6, save_steps=6, report_to=["tensorboard"], disable_tqdm=True, tprl_max_steps=4,
                         eval_split="val+test")
    datasets = build_r2_datasets(cfg)
    metrics = run_r2_tuning(cfg, datasets)
    out = tmp_path / "run"
    assert metrics["trainable_fraction"] < 0.05 and metrics["tprl"]["backbone_bit_identical"]
    for key in ("MR-full-R1@0.5", "MR-full-mAP", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"):
        assert key in metrics["eval"] and key in metrics["tprl"]["eval"]
    rows = read_submission(out / "predictions_val+test.jsonl")
    assert len(rows) == len(datasets[1]) and all("pred_saliency_scores" in r for r in rows)
    assert (out / "curves.png").stat().st_size > 0 and (out / "tprl" / "curves.png").is_file()
    assert (out / "checkpoint-12" / "model.safetensors").is_file() and (out / "checkpoint-12" / "r2_config.json").is_file()
    assert list(out.rglob("events.out.tfevents*"))
    assert json.loads((out / "metrics.json").read_text())["tprl"]["stage"] == "tprl"
    reloaded = load_r2(out / "tprl" / "final")
    assert predict_rows(reloaded.eval(), datasets[1]) == read_submission(out / "tprl" / "predictions_val+test.jsonl")
    save_r2(reloaded, tmp_path / "again")
    assert (tmp_path / "again" / "model.safetensors").is_file()
    # from a raw video: the final folder alone (head_config.json names the frozen CLIP) grounds a query
    from vtg_rl.heads.r2_tuning.grounder import R2Grounder

    grounder = R2Grounder.from_pretrained(out / "tprl" / "final")
    sample, row = datasets[1].samples[0], read_submission(out / "tprl" / "predictions_val+test.jsonl")[0]
    got = grounder.ground(sample.video_path, sample.query)
    assert got["duration"] == pytest.approx(sample.duration, abs=0.3)
    # the same windows as the cached-feature path (both see float16-rounded CLIP states)
    np.testing.assert_allclose(got["pred_relevant_windows"], row["pred_relevant_windows"], atol=0.011)
    spans = grounder.predict(sample.video_path, sample.query, top_k=3)
    assert len(spans) == 3 and spans[0].score >= spans[1].score >= spans[2].score


# --------------------------------------------------------------------------- highlight-only / summarisation
def test_clip_label_targets_and_pooling():
    from vtg_rl.data.schema import VTGSample
    from vtg_rl.heads.r2_tuning.features import clip_targets, label_saliency, pool_to_label_clips

    tvsum = VTGSample(qid="s", vid="s", duration=6.0, query="a video about fire", task="summarization",
                      clip_length=2.0, clip_labels=[[1, 1], [5, 3], [3, 2]])
    assert label_saliency(tvsum).tolist() == [0.0, 1.0, 0.5]  # annotator means 1, 4, 2.5 min-max'd in the video
    moment, saliency = clip_targets(tvsum, 6, 1.0)  # 1 s feature clips on 2 s labelled clips
    assert saliency.tolist() == [0.0, 0.0, 1.0, 1.0, 0.5, 0.5]
    assert moment.tolist() == [False, False, True, True, True, True]
    flat = VTGSample(qid="f", vid="f", duration=4.0, query="q", task="summarization", clip_length=2.0,
                     clip_labels=[[2, 2], [2, 2]])
    assert label_saliency(flat).tolist() == [0.5, 0.5]
    youtube = VTGSample(qid="y", vid="y", duration=3.0, query="dog", task="highlight", clip_length=1.0,
                        clip_labels=[[0], [1], [0]])
    moment, saliency = clip_targets(youtube, 2, 2.0)  # 2 s feature clips on 1 s labels: the clip at the centre
    assert saliency.tolist() == [1.0, 0.0] and moment.tolist() == [True, False]
    assert pool_to_label_clips(np.array([1.0, 3.0, 5.0, 7.0]), 1.0, 2.0, 2) == [2.0, 6.0]
    # 2 s feature clips (centres 1 s, 3 s) on 1 s labels: label 0 has no centre and takes the clip covering it
    assert pool_to_label_clips(np.array([1.0, 3.0]), 2.0, 1.0, 3) == [1.0, 1.0, 3.0]


def test_samples_without_windows_add_no_moment_loss():
    """Highlight-only samples train saliency (and the alignment terms) only; a mixed batch's moment losses are
    those of its grounding samples alone."""
    torch.manual_seed(0)
    model = R2Tuning(R2ModelConfig(hidden_size=16)).eval()
    inputs, supervision = toy_batch()
    none = dict(supervision, windows=[torch.zeros(0, 2)] * 4)
    out = model(**inputs, **none)
    assert not any(k in out for k in ("loss_cls", "loss_l1", "loss_giou", "loss_iou"))
    assert torch.isfinite(out["loss"]) and "loss_saliency" in out
    out["loss"].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.moment_head.parameters())
    assert model.saliency_head.frame.weight.grad.abs().sum() > 0
    mixed = dict(supervision, windows=[supervision["windows"][0], torch.zeros(0, 2), supervision["windows"][2],
                                       torch.zeros(0, 2)])
    both = model(**inputs, **mixed)
    keep = [0, 2]
    alone = model(**{k: v[keep] for k, v in inputs.items()},
                  windows=[supervision["windows"][i] for i in keep])
    for key in ("loss_cls", "loss_l1", "loss_giou", "loss_iou"):
        assert torch.allclose(both[key], alone[key], atol=1e-6), key


def test_recipe_on_highlight_only_world(tmp_path, tiny_clip_dir):
    """The synthetic highlight world end to end: saliency-only training, per-clip rows, the YouTube
    Highlights protocol chosen for the split, the --domain filter, and the guards."""
    from vtg_rl.data.synthetic_highlight import generate_task_world
    from vtg_rl.heads.r2_tuning.recipe import build_r2_datasets, load_r2_annotations, run_r2_tuning
    from vtg_rl.heads.r2_tuning.trainer import R2TuningConfig
    from vtg_rl.metrics import read_submission

    world = tmp_path / "world"
    generate_task_world(world, n=16, seed=1, task="highlight")
    common = dict(synthetic_dir=str(world), synthetic_task="highlight", synthetic_n=16, synthetic_seed=1,
                  clip_model=str(tiny_clip_dir), clip_len=2.0, feature_root=str(tmp_path / "features"),
                  per_device_train_batch_size=8, per_device_eval_batch_size=16, logging_steps=2, disable_tqdm=True,
                  report_to=[], eval_split="train")
    cfg = R2TuningConfig(output_dir=str(tmp_path / "run"), max_steps=4, eval_strategy="steps", eval_steps=4,
                         save_steps=4, **common)
    datasets = build_r2_datasets(cfg)
    assert all(s.task == "highlight" for s in datasets[1].samples)
    metrics = run_r2_tuning(cfg, datasets)
    domains = {s.meta["domain"] for s in datasets[1].samples}
    assert set(metrics["eval"]) == domains | {"mAP"} and 0 <= metrics["eval"]["mAP"] <= 100
    history = json.loads((tmp_path / "run" / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    logs = {k for h in history for k in h}
    assert "loss/saliency" in logs and "loss/cls" not in logs and "eval_mAP" in logs
    rows = read_submission(tmp_path / "run" / "predictions_train.jsonl")
    for row, s in zip(rows, datasets[1].samples):
        assert row["qid"] == s.qid and len(row["pred_saliency_scores"]) == len(s.clip_labels)
        assert "pred_relevant_windows" not in row
    one = sorted(domains)[0]
    train, evals = load_r2_annotations(R2TuningConfig(output_dir=str(tmp_path / "d"), domain=one, **common))
    assert train and {s.meta["domain"] for s in train + evals} == {one}
    with pytest.raises(ValueError, match="no sample has that meta"):
        load_r2_annotations(R2TuningConfig(output_dir=str(tmp_path / "d"), domain="dog", **common))
    with pytest.raises(ValueError, match="tprl_max_steps"):
        run_r2_tuning(R2TuningConfig(output_dir=str(tmp_path / "t"), max_steps=1, tprl_max_steps=2, **common),
                      datasets)
    with pytest.raises(ValueError, match="'highlight' world, not 'summarization'"):
        load_r2_annotations(R2TuningConfig(output_dir=str(tmp_path / "s"), **dict(common,
                                                                                   synthetic_task="summarization")))



def test_recipe_reads_the_tvsum_release_layout(tmp_path, tiny_clip_dir):
    """--dataset tvsum: a lighthouse-style tvsum jsonl and a videos folder (here the synthetic summarisation
    world's, written in the release's format) train, predict one score per labelled clip, score per
    category, and --domain keeps one category of both files."""
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.data.synthetic_highlight import generate_task_world
    from vtg_rl.heads.r2_tuning.recipe import build_r2_datasets, load_r2_annotations, run_r2_tuning
    from vtg_rl.heads.r2_tuning.trainer import R2TuningConfig
    from vtg_rl.metrics import read_submission

    paths = generate_task_world(tmp_path / "world", n=10, seed=2, task="summarization")
    samples = [s for p in paths.values() for s in read_jsonl(p)]
    for name, part in (("tvsum_train.jsonl", samples[:7]), ("tvsum_val.jsonl", samples[7:])):
        (tmp_path / name).write_text("".join(json.dumps({"qid": s.qid, "query": s.query, "duration": s.duration,
                                                         "vid": s.vid, "domain": s.meta["domain"],
                                                         "label": s.clip_labels}) + "\n" for s in part))
    common = dict(dataset="tvsum", train_file=str(tmp_path / "tvsum_train.jsonl"),
                  eval_file=str(tmp_path / "tvsum_val.jsonl"), video_dir=str(tmp_path / "world" / "videos"),
                  clip_model=str(tiny_clip_dir), clip_len=2.0, frames_per_clip=1,
                  feature_root=str(tmp_path / "features"), per_device_train_batch_size=4, disable_tqdm=True,
                  report_to=[], eval_strategy="no", save_strategy="no")
    cfg = R2TuningConfig(output_dir=str(tmp_path / "run"), max_steps=2, **common)
    datasets = build_r2_datasets(cfg)
    assert all(s.task == "summarization" and s.video_path for s in datasets[0].samples + datasets[1].samples)
    metrics = run_r2_tuning(cfg, datasets)  # the default protocol becomes tvsum for this split
    assert set(metrics["eval"]) == {s.meta["domain"] for s in samples[7:]} | {"mAP"}
    rows = read_submission(tmp_path / "run" / "predictions_eval.jsonl")
    assert [len(r["pred_saliency_scores"]) for r in rows] == [len(s.clip_labels) for s in samples[7:]]
    one = next(s.meta["domain"] for s in samples[7:] if s.meta["domain"] in {t.meta["domain"] for t in samples[:7]})
    train, evals = load_r2_annotations(R2TuningConfig(output_dir=str(tmp_path / "d"), domain=one, **common))
    assert {s.qid for s in train + evals} == {s.qid for s in samples if s.meta["domain"] == one}
