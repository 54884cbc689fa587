"""Does TPRL lift R1@0.7 of a converged supervised GIRL-DETR on held-out synthetic data?

    python benchmarks/tprl_synthetic.py            # full measurement (what the README reports)
    python benchmarks/tprl_synthetic.py --seeds 0 --ablation-seeds --seeds-for --arms tprl   # a quick look
    python benchmarks/tprl_synthetic.py --tprl-set learning_rate=1e-4 --arms tprl control \
        --ablation-seeds --seeds-for --results runs/bench/candidate.json     # a candidate, judged on val

Data. The supervised head trains on the recipe's world (``runs/data/synthetic``: 1,920 train queries;
recipes/configs/girl_detr_synthetic.yaml, 3,000 steps, cosine to zero = converged). Post-training on
*those* queries gives TPRL less to learn from: the head already fits them better than held-out ones
(seed 0: train R1@0.7 87.0 vs test 79.2, and the best-of-queries room is 4.1 points on train vs 6.6 on
test), and what it learns there did not transfer (earlier protocol: test R1@0.7 -0.4 +- 0.2). So a
second world of the same generator with another seed (``--rl-world``, generated and featurised once)
supplies an *RL split* the supervised stage never saw, plus more val / test queries:

* RL split: the second world's train (1,600 queries): what TPRL and its control arm train on;
* val = both worlds' val (520): where TPRL's settings are *chosen*;
* test = both worlds' test (1,560; one query = 0.064 points): what is *reported*.

Arms per (variant, seed), all from the same supervised head, same steps / optimiser, backbone frozen and
checked bit-identical, only the span / class / IoU heads trainable:

* ``tprl``: TPRL (recipes/configs/tprl_synthetic.yaml) on the RL split;
* ``control``: the supervised set-prediction loss on the same head parameters and the same RL split
  (is it TPRL, or just more data for the head?);
* ``tprl_sup_train``: TPRL on the supervised train split (the earlier protocol), for comparison.

Writes benchmarks/results/tprl_synthetic.json (percent, on test): ``r1_05_sup``, ``r1_07_sup``,
``miou_sup``, ``*_tprl`` (means over seeds, ``*_std`` across seeds), paired gains with their spread and
whether they exceed the seed-to-seed spread, queries won / lost, ``trainable_params``, ``total_params``,
the control and old-protocol arms, TPRL minus control per seed, the reward signal TPRL sees on each
training set, the same on val under ``val``, and ``ablation_no_cmi`` / ``ablation_no_tgg`` blocks.
Everything is cached under ``--out-root``; a re-run only computes what is missing.
``benchmarks/tprl_ceiling.py`` reuses these supervised heads to bound what *any* head can gain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from vtg_rl.heads.girl_detr.recipe import run_girl_detr
from vtg_rl.heads.girl_detr.trainer import GirlDetrTrainingConfig
from vtg_rl.heads.recipe import build_datasets
from vtg_rl.heads.tprl.recipe import run_head_finetune, run_tprl
from vtg_rl.heads.tprl.trainer import TPRLTrainingConfig

RESULT = Path("benchmarks/results/tprl_synthetic.json")
VARIANTS = {"full": {}, "no_cmi": {"use_cmi": "false"}, "no_tgg": {"use_tgg": "false"}}
KEYS = {"r1_05": "R1@0.5", "r1_07": "R1@0.7", "miou": "mIoU", "map": "MR-full-mAP"}
SPLITS = ("val", "test")  # val: TPRL settings chosen here; test: reported
ARMS = ("tprl", "control", "tprl_sup_train")
# the second world: same generator, another seed; its train split is the RL split
RL_WORLD_SPLITS = (0.5, 0.125, 0.375)
QUIET = ["--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]


def parse(cls, yaml: str, overrides: dict):
    from trl import TrlParser

    argv = ["--config", yaml] + [a for k, v in overrides.items() for a in (f"--{k}", str(v))] + QUIET
    (cfg,) = TrlParser((cls,)).parse_args_and_config(args=argv)
    return cfg


# --------------------------------------------------------------------------- data
class JoinedDataset(torch.utils.data.ConcatDataset):
    """Feature datasets of several worlds (each with its own feature root) scored as one split."""

    def __init__(self, parts):
        super().__init__(parts)
        self.samples = [s for p in parts for s in p.samples]


def rl_world_datasets(args, base) -> dict:
    """The second world (generated and featurised once, cached): {"train"|"val"|"test": FeatureDataset}."""
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.data.synthetic import generate_world
    from vtg_rl.heads.feature_dataset import make_dataset
    from vtg_rl.heads.features import ClipFeatureExtractor
    from vtg_rl.heads.recipe import ensure_clip

    paths = generate_world(args.rl_world, n=args.rl_world_n, seed=args.rl_world_seed, split_fractions=RL_WORLD_SPLITS,
                           workers=1, progress=True)
    samples = {s: read_jsonl(p) for s, p in paths.items()}
    root = Path(args.rl_world) / "features"
    extractor = ClipFeatureExtractor(ensure_clip(base.clip_model), clip_len=base.clip_len,
                                     frames_per_clip=base.frames_per_clip, patch_grid=base.patch_grid)
    extractor.extract([x for s in samples.values() for x in s], root, progress=True)
    return {s: make_dataset(x, root, clip_len=base.clip_len, max_video_len=base.max_video_len) for s, x in samples.items()}


def eval_tag(eval_sets: dict) -> str:
    """Names the held-out sets by their qids, so cached scores are never reused for other queries."""
    text = json.dumps({s: [x.qid for x in ds.samples] for s, ds in eval_sets.items()})
    return hashlib.sha1(text.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- scoring
def top1_ious(rows: list[dict], samples) -> tuple[np.ndarray, np.ndarray]:
    """Per query: tIoU of the top-ranked window, and of the best of all submitted windows (the oracle)."""
    from vtg_rl.spans import cross_temporal_iou

    top, best = [], []
    for row, sample in zip(rows, samples):
        windows = [w[:2] for w in row["pred_relevant_windows"]]
        if windows and sample.windows:
            iou = cross_temporal_iou(np.array(windows), np.array(sample.windows)).max(1)
            top.append(float(iou[0]))
            best.append(float(iou.max()))
        else:
            top.append(0.0)
            best.append(0.0)
    return np.array(top), np.array(best)


def score(model, eval_sets: dict, cfg) -> dict:
    """Per split: the headline numbers (percent), the best-of-queries oracle, and per-query R1@0.7 hits
    (kept so that arms can be compared query by query)."""
    from vtg_rl.heads.predictions import predict, score_predictions

    out = {}
    for split, ds in eval_sets.items():
        rows = predict(model, ds, batch_size=cfg.per_device_eval_batch_size, top_k=cfg.top_k_windows)
        out[split] = {k: score_predictions(rows, ds.samples, cfg.eval_protocol)[m] for k, m in KEYS.items()}
        top, best = top1_ious(rows, ds.samples)
        out[split]["oracle_r1_07"] = round(100.0 * float((best >= 0.7).mean()), 2)
        out[split]["hits_r1_07"] = [int(x) for x in (top >= 0.7)]
    return out


@torch.no_grad()
def reward_signal(model, dataset, tprl_cfg, seed: int = 0) -> dict:
    """What TPRL's reward looks like on a training set, for the supervised head (backbone as TPRL runs it):
    how often its top-1 misses tIoU 0.7, how much the best-of-queries would gain, and how often a stage-3
    draw (softmax(confidence / T), ``num_samples`` draws) beats the greedy query (a positive advantage:
    the only draws that teach the ranking something new) or differs from it at all."""
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from vtg_rl.heads.feature_dataset import collate_features
    from vtg_rl.heads.protocol import query_confidence, query_scores
    from vtg_rl.heads.span_losses import batched_best_iou, pad_targets

    g = torch.Generator().manual_seed(seed)
    model.train(tprl_cfg.backbone_dropout)
    greedy, best, pos, nonzero = [], [], [], []
    try:
        for b in DataLoader(dataset, batch_size=128, collate_fn=collate_features):
            out = model(**b["model_inputs"])
            gt, gm = pad_targets(b["targets"], out["pred_spans"])
            iou, _ = batched_best_iou(out["pred_spans"], gt, gm)
            ar = torch.arange(len(iou))
            g_iou = iou[ar, query_scores(out).argmax(1)]
            probs = F.softmax(query_confidence(out) / tprl_cfg.temperature, -1)
            draws = torch.multinomial(probs, tprl_cfg.num_samples, replacement=True, generator=g)
            adv = iou[ar[:, None], draws] - g_iou[:, None]
            greedy.append(g_iou), best.append(iou.max(1).values)
            pos.append((adv > 1e-6).any(1)), nonzero.append((adv.abs() > 1e-6).any(1))
    finally:
        model.eval()
    greedy, best, pos, nonzero = (torch.cat(x).float() for x in (greedy, best, pos, nonzero))
    hit, best_hit = (greedy >= 0.7).float(), (best >= 0.7).float()
    return {"n": len(greedy), "r1_07": round(100 * float(hit.mean()), 2), "miou": round(100 * float(greedy.mean()), 2),
            "frac_top1_below_07": round(float(1 - hit.mean()), 4),
            "oracle_gap_r1_07": round(100 * float(best_hit.mean() - hit.mean()), 2),
            "frac_groups_positive_advantage": round(float(pos.mean()), 4),
            "frac_groups_nonzero_advantage": round(float(nonzero.mean()), 4)}


# --------------------------------------------------------------------------- runs
def sup_dir(variant: str, seed: int, args) -> Path:
    return Path(args.out_root) / f"{variant}_s{seed}_sup{args.sup_steps}"


def supervised(variant: str, seed: int, args, train_ds, eval_sets) -> dict:
    """Train (or reuse) the supervised head; returns its scores on the held-out sets."""
    from vtg_rl.heads.girl_detr.model import GirlDetr

    out = sup_dir(variant, seed, args)
    cached = out / f"supervised_scores_{eval_tag(eval_sets)}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    t0 = time.perf_counter()
    cfg = parse(GirlDetrTrainingConfig, args.sup_config, {"seed": seed, "eval_split": "test", **VARIANTS[variant],
                                                          "max_steps": args.sup_steps, "output_dir": out / "supervised"})
    if not (out / "supervised" / "final").is_dir():
        run_girl_detr(cfg, (train_ds, eval_sets["test"]))
    scores = score(GirlDetr.load(out / "supervised" / "final"), eval_sets, cfg)
    scores["seconds"] = round(time.perf_counter() - t0, 1)
    cached.write_text(json.dumps(scores, allow_nan=False) + "\n")
    return scores


def tprl_overrides(args) -> dict:
    return dict(kv.split("=", 1) for kv in args.tprl_set)


def tprl_cfg(args, overrides: dict) -> TPRLTrainingConfig:
    return parse(TPRLTrainingConfig, args.tprl_config, {"max_steps": args.tprl_steps, **tprl_overrides(args), **overrides})


def tprl_tag(args) -> str:
    """Identifies a TPRL setting by its resolved values (YAML + overrides), so moving a chosen override
    into the YAML keeps the cached runs."""
    from vtg_rl.heads.tprl.trainer import TPRLArguments

    cfg = tprl_cfg(args, {"output_dir": args.out_root})
    keys = ["max_steps", "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps", "max_grad_norm",
            "per_device_train_batch_size"]
    # tprl_* knobs count only where they differ from their defaults, so adding a knob keeps the cached runs
    knobs = {f.name: f.default for f in fields(TPRLArguments)}
    keys += sorted(k for k in knobs if getattr(cfg, k) != knobs[k])
    values = {k: str(getattr(cfg, k)) for k in keys}
    # v2: stage 1 refines only overlapping top-1 windows by default; runs cached under v1 tags (the
    # old default, with the knob absent) must not be reused for it
    values["tprl_loss_version"] = "2"
    text = json.dumps(values, sort_keys=True)
    return f"rl{args.tprl_steps}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def control_cfg(args, seed: int, variant: str, out: Path) -> GirlDetrTrainingConfig:
    """The supervised recipe's losses with TPRL's optimiser settings and step count."""
    rl = tprl_cfg(args, {"output_dir": out})
    same = {k: getattr(getattr(rl, k), "value", getattr(rl, k)) for k in ("max_steps", "learning_rate", "weight_decay", "lr_scheduler_type",
                                         "warmup_steps", "max_grad_norm", "per_device_train_batch_size")}
    return parse(GirlDetrTrainingConfig, args.sup_config, {"seed": seed, "eval_split": "val", **VARIANTS[variant],
                                                           **same, "output_dir": out})


def arm_run(arm: str, variant: str, seed: int, args, data: dict, eval_sets: dict) -> dict:
    """One post-training arm from the supervised head (cached); returns its scores on the held-out sets."""
    from vtg_rl.heads.girl_detr.model import GirlDetr

    base = sup_dir(variant, seed, args)
    train_ds = data["rl"] if arm in ("tprl", "control") else data["sup_train"]
    name = {"tprl": "tprl_rlsplit", "control": "control_rlsplit", "tprl_sup_train": "tprl_suptrain"}[arm]
    out = base / f"{name}_{tprl_tag(args)}"
    cached = out / f"scores_{eval_tag(eval_sets)}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    t0 = time.perf_counter()
    model = GirlDetr.load(base / "supervised" / "final")
    if not (out / "final").is_dir():
        if arm == "control":
            rl = tprl_cfg(args, {"output_dir": out})
            metrics = run_head_finetune(control_cfg(args, seed, variant, out), (train_ds, eval_sets["val"]), model,
                                        backbone_dropout=rl.tprl_backbone_dropout)
        else:
            cfg = tprl_cfg(args, {"seed": seed, "eval_split": "val", "output_dir": out,
                                  "supervised_checkpoint": base / "supervised" / "final"})
            metrics = run_tprl(cfg, (train_ds, eval_sets["val"]), model=model)
        (out / "run_info.json").write_text(json.dumps({
            "train_seconds": round(time.perf_counter() - t0, 1), "trainable_params": metrics["trainable_params"],
            "total_params": metrics["total_params"], "backbone_bit_identical": metrics["backbone_bit_identical"]},
            allow_nan=False) + "\n")
    cfg = tprl_cfg(args, {"output_dir": out})
    scores = {**score(GirlDetr.load(out / "final"), eval_sets, cfg), **json.loads((out / "run_info.json").read_text())}
    cached.write_text(json.dumps(scores, allow_nan=False) + "\n")
    return scores


def signal(variant: str, seed: int, args, data: dict) -> dict:
    """The reward signal TPRL sees on each training set, for this supervised head (cached)."""
    from vtg_rl.heads.girl_detr.model import GirlDetr

    cached = sup_dir(variant, seed, args) / f"reward_signal_{args.rl_world_seed}_{args.rl_world_n}.json"
    if not cached.is_file():
        model = GirlDetr.load(sup_dir(variant, seed, args) / "supervised" / "final")
        rl = tprl_cfg(args, {"output_dir": args.out_root}).tprl_config()
        values = {k: reward_signal(model, data[k], rl, seed) for k in ("sup_train", "rl")}
        cached.write_text(json.dumps(values, allow_nan=False) + "\n")
    return json.loads(cached.read_text())


def one_run(variant: str, seed: int, args, data: dict, eval_sets: dict, arms) -> dict:
    sup = supervised(variant, seed, args, data["sup_train"], eval_sets)
    row = {"variant": variant, "seed": seed, "sup_seconds": sup["seconds"], "reward_signal": signal(variant, seed, args, data)}
    for arm in arms:
        res = arm_run(arm, variant, seed, args, data, eval_sets)
        row.update({"trainable_params": res["trainable_params"], "total_params": res["total_params"]})
        row[f"{arm}_seconds"] = res["train_seconds"]
        row[f"{arm}_backbone_bit_identical"] = res["backbone_bit_identical"]
        for split in SPLITS:
            block = row.setdefault(split, {f"{k}_sup": sup[split][k] for k in (*KEYS, "oracle_r1_07")})
            block.update({f"{k}_{arm}": res[split][k] for k in (*KEYS, "oracle_r1_07")})
            hits_sup, hits_arm = np.array(sup[split]["hits_r1_07"]), np.array(res[split]["hits_r1_07"])
            block[f"r1_07_won_{arm}"] = int(((hits_arm == 1) & (hits_sup == 0)).sum())
            block[f"r1_07_lost_{arm}"] = int(((hits_arm == 0) & (hits_sup == 1)).sum())
    return row


# --------------------------------------------------------------------------- summary
def mean_std(vals: list[float]) -> tuple[float, float | None]:
    return round(statistics.mean(vals), 2), (round(statistics.stdev(vals), 2) if len(vals) > 1 else None)


def summarise(rows: list[dict], arm: str = "tprl") -> dict:
    """Means / stds over seeds of one split's per-seed blocks, for the supervised head and one arm
    (keys ``{metric}_sup``, ``{metric}_tprl`` for ``arm="tprl"``), with the paired gains."""
    out = {}
    for k in KEYS:
        for stage in ("sup", arm):
            out[f"{k}_{stage}"], out[f"{k}_{stage}_std"] = mean_std([r[f"{k}_{stage}"] for r in rows])
        gains = [r[f"{k}_{arm}"] - r[f"{k}_sup"] for r in rows]
        out[f"gain_{k}"], out[f"gain_{k}_std"] = mean_std(gains)
        out[f"gain_{k}_per_seed"] = [round(g, 2) for g in gains]
    out["oracle_r1_07_sup"], _ = mean_std([r["oracle_r1_07_sup"] for r in rows])
    out[f"oracle_r1_07_{arm}"], _ = mean_std([r[f"oracle_r1_07_{arm}"] for r in rows])
    out["r1_07_queries_won_per_seed"] = [r[f"r1_07_won_{arm}"] for r in rows]
    out["r1_07_queries_lost_per_seed"] = [r[f"r1_07_lost_{arm}"] for r in rows]
    if len(rows) > 1:
        # two yardsticks: the supervised model's seed-to-seed spread, and the spread of the paired gain itself
        out["gain_r1_07_exceeds_seed_std"] = bool(out["gain_r1_07"] > out["r1_07_sup_std"])
        out["gain_r1_07_exceeds_gain_std"] = bool(out["gain_r1_07"] > out["gain_r1_07_std"])
        out["gain_r1_07_positive_every_seed"] = all(g > 0 for g in out["gain_r1_07_per_seed"])
    out["num_seeds"] = len(rows)
    return out


def versus(rows: list[dict], a: str, b: str) -> dict:
    """Arm ``a`` minus arm ``b``, paired per seed (e.g. TPRL minus its control)."""
    out = {}
    for k in KEYS:
        diffs = [r[f"{k}_{a}"] - r[f"{k}_{b}"] for r in rows]
        out[f"diff_{k}"], out[f"diff_{k}_std"] = mean_std(diffs)
        out[f"diff_{k}_per_seed"] = [round(d, 2) for d in diffs]
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ablation-seeds", type=int, nargs="*", default=None, help="default: --seeds; none: skip ablations")
    ap.add_argument("--seeds-for", nargs="*", default=["no_cmi=0"], metavar="VARIANT=S1,S2",
                    help="seeds of one ablation, overriding --ablation-seeds (default: no CMI on seed 0 only, "
                         "to keep the full run within the 2-core budget)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                    help="post-training arms of the full model (the ablations run tprl only)")
    ap.add_argument("--sup-steps", type=int, default=3000)
    ap.add_argument("--tprl-steps", type=int, default=None, help="default: max_steps of the TPRL YAML")
    ap.add_argument("--tprl-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TPRL config overrides, e.g. learning_rate=1e-4 tprl_temperature=0.1 (for tuning on val)")
    ap.add_argument("--sup-config", default="recipes/configs/girl_detr_synthetic.yaml")
    ap.add_argument("--tprl-config", default="recipes/configs/tprl_synthetic.yaml")
    ap.add_argument("--rl-world", default="runs/bench/tprl_world_s1", help="the second world (RL split + more val / test)")
    ap.add_argument("--rl-world-n", type=int, default=3200)
    ap.add_argument("--rl-world-seed", type=int, default=1, help="must differ from the supervised world's seed")
    ap.add_argument("--out-root", default="runs/bench/tprl_synthetic")
    ap.add_argument("--results", default=str(RESULT))
    return ap


def load_data(args) -> tuple:
    """(supervised config, {"sup_train", "rl"}: training sets, {"val", "test"}: held-out sets of both worlds)."""
    from vtg_rl.data.schema import read_jsonl
    from vtg_rl.heads.feature_dataset import make_dataset

    base = parse(GirlDetrTrainingConfig, args.sup_config, {"eval_split": "+".join(SPLITS), "output_dir": args.out_root})
    if args.rl_world_seed == base.synthetic_seed:
        raise ValueError(f"--rl-world-seed {args.rl_world_seed} is the supervised world's seed: its videos would repeat")
    sup_train = build_datasets(base)[0]  # extracts features for train, val and test once
    sup_eval = {s: make_dataset(read_jsonl(Path(base.synthetic_dir) / f"{s}.jsonl"), base.feature_root,
                                clip_len=base.clip_len, max_video_len=base.max_video_len) for s in SPLITS}
    rl_world = rl_world_datasets(args, base)
    data = {"sup_train": sup_train, "rl": rl_world["train"]}
    eval_sets = {s: JoinedDataset([sup_eval[s], rl_world[s]]) for s in SPLITS}
    print(f"supervised train {len(sup_train)}, RL split {len(data['rl'])}, "
          + ", ".join(f"{s} {len(ds)}" for s, ds in eval_sets.items()), flush=True)
    return base, data, eval_sets


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    t_start = time.perf_counter()
    ablation_seeds = args.seeds if args.ablation_seeds is None else args.ablation_seeds
    if args.tprl_steps is None:
        args.tprl_steps = parse(TPRLTrainingConfig, args.tprl_config, {"output_dir": args.out_root}).max_steps
    base, data, eval_sets = load_data(args)
    sup_train = data["sup_train"]

    runs = {"full": [one_run("full", s, args, data, eval_sets, args.arms) for s in args.seeds]}
    seeds_for = {v: [int(x) for x in seeds.split(",")] for v, seeds in (kv.split("=", 1) for kv in args.seeds_for)}
    for variant in ("no_cmi", "no_tgg"):
        runs[variant] = [one_run(variant, s, args, data, eval_sets, ["tprl"]) for s in seeds_for.get(variant, ablation_seeds)]

    full = runs["full"]
    result = summarise([r["test"] for r in full]) if "tprl" in args.arms else {}
    result.update({"trainable_params": full[0]["trainable_params"], "total_params": full[0]["total_params"],
                   "backbone_bit_identical_every_run": all(r[k] for rs in runs.values() for r in rs
                                                           for k in r if k.endswith("_backbone_bit_identical"))})
    result["trainable_fraction"] = round(result["trainable_params"] / result["total_params"], 4)
    for arm, key in (("control", "control_head_supervised"), ("tprl_sup_train", "tprl_on_supervised_train")):
        if arm in args.arms:
            result[key] = summarise([r["test"] for r in full], arm)
            if "tprl" in args.arms:
                result[f"tprl_minus_{arm}"] = versus([r["test"] for r in full], "tprl", arm)
    result["val"] = {arm: summarise([r["val"] for r in full], arm) for arm in args.arms}
    result["reward_signal"] = {k: {m: mean_std([r["reward_signal"][k][m] for r in full])[0]
                                   for m in full[0]["reward_signal"][k]} for k in ("sup_train", "rl")}
    for variant in ("no_cmi", "no_tgg"):
        if runs[variant]:
            result[f"ablation_{variant}"] = summarise([r["test"] for r in runs[variant]])
    result.update({"units": "percent", "reported_split": "test", "selection_split": "val",
                   "num_test": len(eval_sets["test"]), "num_val": len(eval_sets["val"]),
                   "num_sup_train": len(sup_train), "num_rl_split": len(data["rl"]),
                   "rl_world": {"dir": args.rl_world, "n": args.rl_world_n, "seed": args.rl_world_seed,
                                "split_fractions": list(RL_WORLD_SPLITS)},
                   "sup_steps": args.sup_steps, "tprl_steps": args.tprl_steps, "tprl_tag": tprl_tag(args),
                   "tprl_overrides": tprl_overrides(args), "arms": list(args.arms),
                   "wall_seconds": round(time.perf_counter() - t_start, 1),
                   "runs": [{k: v for k, v in r.items()} for rs in runs.values() for r in rs]})
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")

    print(f"{'variant':8} {'seed':>4} | test R1@0.7: sup " + " ".join(f"{a:>14}" for a in args.arms)
          + " | val R1@0.7: sup " + " ".join(f"{a:>14}" for a in args.arms))
    for r in result["runs"]:
        arms = [a for a in args.arms if f"r1_07_{a}" in r["test"]]
        print(f"{r['variant']:8} {r['seed']:>4} | {r['test']['r1_07_sup']:6.2f} "
              + " ".join(f"{r['test'][f'r1_07_{a}']:14.2f}" for a in arms)
              + f" | {r['val']['r1_07_sup']:6.2f} " + " ".join(f"{r['val'][f'r1_07_{a}']:14.2f}" for a in arms))
    for arm in args.arms:
        s = summarise([r["test"] for r in full], arm)
        print(f"full, {len(full)} seeds, test, {arm}: R1@0.7 {s['r1_07_sup']} -> {s[f'r1_07_{arm}']} "
              f"(paired gain {s['gain_r1_07']} +- {s['gain_r1_07_std']}, per seed {s['gain_r1_07_per_seed']}; "
              f"supervised seed std {s['r1_07_sup_std']}); mIoU gain {s['gain_miou']}, mAP gain {s['gain_map']}")
    print(f"trainable {result['trainable_params']}/{result['total_params']} = {result['trainable_fraction']:.2%}; "
          f"wall {result['wall_seconds']} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
