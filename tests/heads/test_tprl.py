"""TPRL: stage schedule, gradient isolation (through the real Trainer), and that REINFORCE helps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vtg_rl.heads.feature_dataset import collate_features
from vtg_rl.heads.girl_detr.model import GirlDetr, GirlDetrConfig
from vtg_rl.heads.protocol import query_scores
from vtg_rl.heads.span_losses import best_target_iou
from vtg_rl.heads.tprl.loss import TPRLConfig, backbone_snapshot, changed_backbone_tensors, freeze_backbone, tprl_loss

SMALL = dict(video_dim=12, text_dim=10, hidden_dim=32, num_heads=4, ffn_dim=64, num_queries=6,
             num_encoder_layers=2, num_decoder_layers=2)


def items(n=8, seed=0):
    """Dataset items as FeatureDataset yields them (random features, one span each)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        lv = 6 + i % 4
        c, w = 0.2 + 0.6 * torch.rand(1, generator=g).item(), 0.1 + 0.2 * torch.rand(1, generator=g).item()
        out.append({"video_feats": torch.randn(lv, 12, generator=g), "text_feats": torch.randn(4, 10, generator=g),
                    "clip_centers": (torch.arange(lv) + 0.5) / lv, "spans": torch.tensor([[c, w]]),
                    "saliency": torch.zeros(lv), "meta": {"qid": str(i), "vid": f"v{i}", "query": "q",
                                                          "duration": 10.0, "clip_len": 1.0, "n_clips": lv}})
    return out


def test_stage_schedule_ramps_in():
    cfg = TPRLConfig(stage2_start=0.2, stage2_ramp=0.2, stage3_start=0.5)
    assert cfg.stage_weights(0.0) == (1.0, 0.0, 0.0)
    assert cfg.stage_weights(0.3) == pytest.approx((1.0, 0.5, 0.0))
    assert cfg.stage_weights(0.45) == (1.0, 1.0, 0.0)
    assert cfg.stage_weights(0.5) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        TPRLConfig(temperature=0.0)


@pytest.mark.parametrize("stage,moving", [
    ("refine", {"span_head"}), ("topk", {"span_head"}), ("rl", {"class_head", "iou_head"})])
def test_each_stage_updates_only_the_head(stage, moving):
    torch.manual_seed(0)
    model = GirlDetr(GirlDetrConfig(**SMALL))
    trainable, total = freeze_backbone(model)
    assert trainable == sum(p.numel() for p in model.head_parameters())
    snap = backbone_snapshot(model)
    head_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = TPRLConfig(refine_weight=float(stage == "refine"), topk_weight=float(stage == "topk"),
                     rl_weight=float(stage == "rl"), iou_head_weight=0.0, stage2_start=0.0, stage2_ramp=0.0,
                     stage3_start=0.0)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    batch = collate_features(items())
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        loss, _ = tprl_loss(model(**batch["model_inputs"]), batch["targets"], 1.0, cfg, generator=g)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        opt.step()
    assert changed_backbone_tensors(model, snap) == []
    changed = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, head_before[n])}
    assert changed == moving


@pytest.mark.parametrize("backbone_dropout", [False, True])
def test_tprl_trainer_keeps_the_backbone_bit_identical(tmp_path, backbone_dropout):
    from vtg_rl.heads.tprl.trainer import TPRLTrainer, TPRLTrainingConfig

    torch.manual_seed(0)
    model = GirlDetr(GirlDetrConfig(**SMALL))
    args = TPRLTrainingConfig(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4,
                              learning_rate=1e-2, logging_steps=2, save_strategy="no", report_to=[],
                              disable_tqdm=True, tprl_stage2_start=0.2, tprl_stage3_start=0.5, use_cpu=True,
                              tprl_backbone_dropout=backbone_dropout)
    with pytest.raises(ValueError, match="freeze_backbone"):
        TPRLTrainer(model=model, args=args, train_dataset=items(), data_collator=collate_features)
    trainable, total = freeze_backbone(model)
    snap = backbone_snapshot(model)
    head_before = [p.detach().clone() for p in model.head_parameters()]
    trainer = TPRLTrainer(model=model, args=args, train_dataset=items(), data_collator=collate_features,
                          tprl_config=args.tprl_config())
    trainer.train()
    assert changed_backbone_tensors(model, snap) == []  # every backbone tensor, buffers included
    assert all(not torch.equal(a, b) for a, b in zip(head_before, model.head_parameters()))
    assert trainable / total < 0.06  # this toy size; the paper size (hidden 256) is 3.3%, see test_girl_detr
    logged = {k for h in trainer.state.log_history for k in h}
    assert {"tprl/refine", "tprl/topk", "tprl/rl", "tprl/greedy_iou"} <= logged


def test_head_only_supervised_control_keeps_the_backbone_bit_identical(tmp_path):
    """TPRL's control arm (the supervised loss on the same head) obeys the same isolation."""
    from vtg_rl.heads.girl_detr.losses import DetrGroundingLoss
    from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig
    from vtg_rl.heads.tprl.trainer import HeadOnlySupervisedTrainer

    torch.manual_seed(0)
    model = GirlDetr(GirlDetrConfig(**SMALL))
    args = GirlDetrTrainingConfig(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                                  learning_rate=1e-2, logging_steps=2, save_strategy="no", report_to=[],
                                  disable_tqdm=True, use_cpu=True)
    with pytest.raises(ValueError, match="freeze_backbone"):
        HeadOnlySupervisedTrainer(model=model, args=args, train_dataset=items(), data_collator=collate_features)
    freeze_backbone(model)
    snap = backbone_snapshot(model)
    head_before = [p.detach().clone() for p in model.head_parameters()]
    HeadOnlySupervisedTrainer(model=model, args=args, train_dataset=items(), data_collator=collate_features,
                              criterion=DetrGroundingLoss()).train()
    assert changed_backbone_tensors(model, snap) == []
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head_parameters()))


def test_control_arm_config_takes_tprls_data_and_optimiser_and_the_supervised_losses(tmp_path):
    """recipes/tprl.py --control_arm trains what TPRL trains, on the same data, with the same optimiser:
    only the loss differs (the GIRL-DETR recipe's supervised losses)."""
    from trl import TrlParser

    from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig
    from vtg_rl.heads.tprl.recipe import control_arm_config
    from vtg_rl.heads.tprl.trainer import TPRLTrainingConfig

    (rl,) = TrlParser((TPRLTrainingConfig,)).parse_args_and_config(args=[
        "--config", "recipes/configs/tprl_synthetic.yaml", "--control_arm", "--output_dir", str(tmp_path / "c"),
        "--max_steps", "37", "--learning_rate", "3e-4", "--seed", "5", "--train_file", "rl.jsonl",
        "--eval_file", "test.jsonl", "--dataset", "unified", "--feature_root", str(tmp_path / "f")])
    assert rl.control_arm
    cfg = control_arm_config(rl)
    assert isinstance(cfg, GirlDetrTrainingConfig)
    for name in ("output_dir", "max_steps", "learning_rate", "seed", "train_file", "eval_file", "dataset",
                 "feature_root", "warmup_steps", "weight_decay", "max_grad_norm", "per_device_train_batch_size",
                 "lr_scheduler_type", "clip_model", "eval_protocol"):
        assert getattr(cfg, name) == getattr(rl, name), name
    defaults = GirlDetrTrainingConfig(output_dir="x")
    for name in ("loss_span_l1", "loss_label", "loss_saliency", "cost_class", "loss_aux"):
        assert getattr(cfg, name) == getattr(defaults, name), name


class ToyHead(nn.Module):
    """A non-DETR head that follows the protocol: fixed candidate spans, a frozen 'backbone' and a
    linear scorer. Only REINFORCE can improve it (the spans never move)."""

    def __init__(self, n_candidates=8, dim=16):
        super().__init__()
        self.backbone = nn.Linear(dim, dim)
        self.scorer = nn.Linear(dim, n_candidates)
        self.register_buffer("candidates", torch.stack([torch.linspace(0.1, 0.9, n_candidates),
                                                        torch.full((n_candidates,), 0.2)], -1))

    def head_parameters(self):
        return self.scorer.parameters()

    def forward(self, x, query_mask=None):
        b = x.shape[0]
        out = {"pred_spans": self.candidates[None].expand(b, -1, -1), "pred_logits": self.scorer(torch.tanh(self.backbone(x)))}
        if query_mask is not None:
            out["query_mask"] = query_mask
        return out


def greedy_iou(model, x, targets):
    with torch.no_grad():
        out = model(x)
        top = query_scores(out).argmax(1)
        return sum(float(best_target_iou(out["pred_spans"][b, top[b]][None], t["spans"])[0][0])
                   for b, t in enumerate(targets)) / len(targets)


def test_reinforce_alone_raises_the_mean_tiou_of_a_toy_head():
    torch.manual_seed(0)
    model = ToyHead()
    freeze_backbone(model)
    x = torch.randn(64, 16)
    # the right candidate is a function of the input the scorer can read
    right = (x[:, :8].argmax(1))
    targets = [{"spans": model.candidates[r][None].clone()} for r in right]
    before = greedy_iou(model, x, targets)
    cfg = TPRLConfig(refine_weight=0.0, topk_weight=0.0, iou_head_weight=0.0, stage3_start=0.0)
    opt = torch.optim.Adam(model.scorer.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss, logs = tprl_loss(model(x), targets, 1.0, cfg, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = greedy_iou(model, x, targets)
    assert before < 0.4 and after > before + 0.3


def test_masked_candidates_are_never_chosen():
    model = ToyHead()
    x = torch.randn(4, 16)
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, :2] = True
    out = model(x, query_mask=mask)
    assert torch.isinf(query_scores(out)[:, 2:]).all()
    targets = [{"spans": model.candidates[5][None]} for _ in range(4)]
    loss, logs = tprl_loss(out, targets, 1.0, TPRLConfig(stage3_start=0.0, num_samples=16),
                           generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    assert logs["tprl/sampled_iou"] == 0.0  # only the two unmasked candidates (no overlap) were drawn
    with pytest.raises(ValueError, match="masked out"):
        tprl_loss(model(x, query_mask=torch.zeros(4, 8, dtype=torch.bool)), targets, 1.0, TPRLConfig())


@pytest.mark.slow
def test_recipes_end_to_end(tiny_clip_dir, synthetic_world, tmp_path):
    """Supervised GIRL-DETR then TPRL through the recipe code: checkpoints, resume, submission, metrics, plot."""
    import dataclasses
    import json
    import os

    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.heads.girl_detr.recipe import run_girl_detr
    from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig
    from vtg_rl.heads.tprl.recipe import run_tprl
    from vtg_rl.heads.tprl.trainer import TPRLTrainingConfig
    from vtg_rl.metrics import evaluate

    data = dict(synthetic_dir=str(os.path.dirname(synthetic_world["train"])), clip_model=str(tiny_clip_dir),
                feature_root=str(tmp_path / "features"), clip_len=1.0, eval_split="val+test",
                per_device_train_batch_size=8, per_device_eval_batch_size=16, logging_steps=2, save_steps=4,
                eval_strategy="steps", eval_steps=4, report_to=[], disable_tqdm=True, use_cpu=True)
    sup_cfg = GirlDetrTrainingConfig(output_dir=str(tmp_path / "sup"), max_steps=8, learning_rate=1e-3,
                                     hidden_dim=32, num_heads=4, ffn_dim=64, **data)
    sup = run_girl_detr(sup_cfg)
    assert (tmp_path / "sup" / "checkpoint-8" / "model.safetensors").is_file()
    assert (tmp_path / "sup" / "checkpoint-8" / "girl_detr_config.json").is_file()
    assert (tmp_path / "sup" / "training_curves.png").is_file()
    submission = tmp_path / "sup" / "predictions_val+test.jsonl"
    truth = read_jsonl(synthetic_world["val"]) + read_jsonl(synthetic_world["test"])
    rescored = evaluate(str(submission), truth, protocol="qvhighlights")  # what `vtg-rl eval` computes
    assert rescored["brief"]["MR-full-R1@0.7"] == sup["eval"]["MR-full-R1@0.7"]
    assert sup["val+test"]["r1_07"] == pytest.approx(sup["eval"]["R1@0.7"] / 100)  # headline block, fractions
    logged = {k for h in json.loads((tmp_path / "sup" / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
              for k in h}
    assert {"loss/span_l1", "loss/label", "eval_R1@0.7"} <= logged
    # resume: a longer run continues from checkpoint-8 instead of starting over
    resumed_cfg = dataclasses.replace(sup_cfg, max_steps=10, resume_from_checkpoint="auto")
    resumed = run_girl_detr(resumed_cfg)
    state = json.loads((tmp_path / "sup" / "checkpoint-10" / "trainer_state.json").read_text())
    assert state["global_step"] == 10 and sum(1 for h in state["log_history"] if "loss" in h) == 5
    tprl_cfg = TPRLTrainingConfig(output_dir=str(tmp_path / "tprl"), max_steps=6, learning_rate=1e-3,
                                  supervised_checkpoint=str(tmp_path / "sup" / "final"), max_trainable_fraction=0.2,
                                  **data)
    tprl = run_tprl(tprl_cfg)
    assert tprl["backbone_bit_identical"] and tprl["trainable_params"] < tprl["total_params"]
    assert tprl["eval_before"]["R1@0.7"] == resumed["eval"]["R1@0.7"]
    assert (tmp_path / "tprl" / "final" / "model.safetensors").is_file()


def test_policy_top_k_draws_only_among_the_best_scored_queries():
    model = ToyHead()
    with torch.no_grad():
        model.scorer.weight.zero_()
        model.scorer.bias.copy_(torch.tensor([2.0, 1.9, 0, 0, 0, 0, 0, 0]))  # queries 0 and 1 rank first
    x = torch.randn(4, 16)
    targets = [{"spans": model.candidates[5][None]} for _ in range(4)]  # far from queries 0 and 1
    g = torch.Generator().manual_seed(0)
    _, logs = tprl_loss(model(x), targets, 1.0, TPRLConfig(stage3_start=0.0, num_samples=64, policy_top_k=2), generator=g)
    assert logs["tprl/sampled_iou"] == 0.0
    _, logs = tprl_loss(model(x), targets, 1.0, TPRLConfig(stage3_start=0.0, num_samples=64), generator=g)
    assert logs["tprl/sampled_iou"] > 0.0


def test_refinement_pulls_only_a_top1_window_that_overlaps_its_ground_truth():
    """Stage 1 with ``refine_overlap_only``: a top-1 window on another moment is left alone (no loss, no
    gradient); one that overlaps is pulled toward its ground truth. Without the flag both are pulled."""
    spans = torch.tensor([[[0.2, 0.1], [0.8, 0.1]], [[0.75, 0.2], [0.2, 0.1]]], requires_grad=True)
    outputs = {"pred_spans": spans, "pred_logits": torch.tensor([[3.0, 0.0], [3.0, 0.0]])}  # query 0 ranks first
    targets = [{"spans": torch.tensor([[0.8, 0.1]])},  # item 0: top-1 at 0.2 misses it entirely
               {"spans": torch.tensor([[0.7, 0.2]])}]  # item 1: top-1 at 0.75 overlaps it
    only = TPRLConfig(refine_overlap_only=True, iou_head_weight=0.0)
    loss, logs = tprl_loss(outputs, targets, 0.0, only)  # progress 0: stage 1 alone
    (grad,) = torch.autograd.grad(loss, spans)
    assert grad[0].abs().sum() == 0 and grad[1, 0].abs().sum() > 0 and grad[1, 1].abs().sum() == 0
    loss_all, _ = tprl_loss(outputs, targets, 0.0, TPRLConfig(refine_overlap_only=False, iou_head_weight=0.0))
    (grad_all,) = torch.autograd.grad(loss_all, spans)
    assert grad_all[0, 0].abs().sum() > 0 and grad_all[1, 0].abs().sum() > 0
