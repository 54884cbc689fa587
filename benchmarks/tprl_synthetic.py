"""Does TPRL lift R1@0.7 of a converged supervised GIRL-DETR on held-out synthetic data?

    python benchmarks/tprl_synthetic.py            # full measurement: 3 seeds x {full, no CMI, no TGG}
    python benchmarks/tprl_synthetic.py --seeds-for no_cmi=0   # what the README reports (no-CMI on one seed)
    python benchmarks/tprl_synthetic.py --seeds 0 --ablation-seeds 0 --sup-steps 300   # a quick look
    python benchmarks/tprl_synthetic.py --variants no_tgg --seeds 1 2 --sup-only          # train heads ahead

Per (variant, seed): supervised training from the recipe's YAML (recipes/configs/girl_detr_synthetic.yaml),
then TPRL from that model (recipes/configs/tprl_synthetic.yaml). Both are scored with vtg_rl.metrics on two
held-out splits that play different roles: ``val`` (120 queries) is where TPRL's settings were *chosen*,
``test`` (360 queries) is what is *reported*; the supervised training never looks at either.

Supervised heads are cached per (variant, seed, steps) under ``--out-root``; TPRL rows per (variant, seed,
TPRL config hash), so changing the TPRL YAML or ``--tprl-set`` re-runs only TPRL. Prints a table and writes
benchmarks/results/tprl_synthetic.json (metrics in percent, on test): ``r1_05_sup``, ``r1_07_sup``,
``miou_sup``, ``*_tprl`` (means over seeds, ``*_std`` across seeds), the paired gain, its spread and whether it
exceeds both the seed-to-seed spread and the paired spread, ``trainable_params``, ``total_params``, the
same on val under ``val``, and ``ablation_no_cmi`` / ``ablation_no_tgg`` blocks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from vtg_rl.heads.head_recipe import build_datasets, run_girl_detr, run_tprl
from vtg_rl.heads.head_trainer import GirlDetrTrainingConfig, TPRLTrainingConfig

RESULT = Path("benchmarks/results/tprl_synthetic.json")
VARIANTS = {"full": {}, "no_cmi": {"use_cmi": "false"}, "no_tgg": {"use_tgg": "false"}}
KEYS = {"r1_05": "R1@0.5", "r1_07": "R1@0.7", "miou": "mIoU", "map": "MR-full-mAP"}
SPLITS = ("val", "test")  # val: TPRL settings chosen here; test: reported
QUIET = ["--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]


def parse(cls, yaml: str, overrides: dict):
    from trl import TrlParser

    argv = ["--config", yaml] + [a for k, v in overrides.items() for a in (f"--{k}", str(v))] + QUIET
    (cfg,) = TrlParser((cls,)).parse_args_and_config(args=argv)
    return cfg


def oracle_r1_07(rows: list[dict], samples) -> float:
    """R1@0.7 if the best of the submitted windows (all queries) were ranked first: the room left in ranking."""
    from vtg_rl.spans import cross_temporal_iou

    hits = 0
    for row, sample in zip(rows, samples):
        windows = [w[:2] for w in row["pred_relevant_windows"]]
        if windows and sample.windows:
            hits += float(cross_temporal_iou(np.array(windows), np.array(sample.windows)).max()) >= 0.7
    return round(100.0 * hits / len(rows), 2)


def score(model, eval_sets: dict, cfg) -> dict:
    from vtg_rl.heads.predictions import predict, score_predictions

    out = {}
    for split, ds in eval_sets.items():
        rows = predict(model, ds, batch_size=cfg.per_device_eval_batch_size, top_k=cfg.top_k_windows)
        out[split] = {k: score_predictions(rows, ds.samples, cfg.eval_protocol)[m] for k, m in KEYS.items()}
        out[split]["oracle_r1_07"] = oracle_r1_07(rows, ds.samples)
    return out


# --------------------------------------------------------------------------- re-ranking probe
def rerank_probe(model, train_ds, eval_sets: dict, passes: int = 3, epochs: int = 30, seed: int = 0) -> dict:
    """How much R1@0.7 can *any* head-only re-ranking recover from the frozen backbone?

    Collects the decoder's last hidden states (what the class / IoU heads read) plus each query's span-pooled
    encoder memory (inside / outside the span, times the sentence vector: features the heads do not even
    see) on the training videos, with the backbone's dropout on (``passes`` draws, so training errors look
    like held-out ones), and fits a residual scorer on top of the submitted score with a listwise loss toward
    the best-IoU query, directly (no RL). Held-out R1@0.7 of the re-ranked top-1 vs the model's own, and the
    best-of-queries oracle, bound what TPRL's ranking stages could gain on these features.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader

    from vtg_rl.heads.feature_dataset import collate_features
    from vtg_rl.heads.losses import batched_best_iou, pad_targets
    from vtg_rl.heads.tprl import query_scores

    cap: dict = {}
    hooks = [model.encoder[-1].register_forward_hook(lambda m, i, o: cap.__setitem__("memory", o)),
             model.decoder_norm.register_forward_hook(lambda m, i, o: cap.__setitem__("hs", o))]

    @torch.no_grad()
    def collect(ds, train_mode: bool, n: int) -> dict:
        model.train(train_mode)
        parts = []
        for _ in range(n):
            for b in DataLoader(ds, batch_size=128, collate_fn=collate_features):
                out = model(**b["model_inputs"])
                mem, vm, sp = cap["memory"], b["model_inputs"]["video_mask"].bool(), out["pred_spans"]
                pos = (torch.arange(mem.shape[1])[None] + 0.5) / vm.sum(1, keepdim=True)
                lo, hi = (sp[..., :1] - sp[..., 1:] / 2), (sp[..., :1] + sp[..., 1:] / 2)
                inside = ((pos[:, None] >= lo) & (pos[:, None] <= hi) & vm[:, None]).float()
                outside = (1 - inside) * vm[:, None].float()
                p_in = inside @ mem / inside.sum(-1, keepdim=True).clamp(min=1)
                p_out = outside @ mem / outside.sum(-1, keepdim=True).clamp(min=1)
                text = model.text_proj(b["model_inputs"]["text_feats"])
                tm = b["model_inputs"]["text_mask"].bool()
                sent = text.masked_fill(~tm[..., None], float("-inf")).max(1).values[:, None]
                gt, gm = pad_targets(b["targets"], sp)
                iou, _ = batched_best_iou(sp, gt, gm)
                parts.append({"x": torch.cat([cap["hs"], p_in, p_in * sent, p_out * sent, sp], -1),
                              "score": query_scores(out), "iou": iou})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    try:
        train = collect(train_ds, True, passes)
        held = {split: collect(ds, False, 1) for split, ds in eval_sets.items()}
    finally:
        for h in hooks:
            h.remove()
        model.eval()
    torch.manual_seed(seed)
    dim = train["x"].shape[-1]
    net = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        for idx in torch.randperm(len(train["x"])).split(64):
            s = train["score"][idx] + net(train["x"][idx]).squeeze(-1)
            target = F.softmax(train["iou"][idx] / 0.05, -1)
            loss = -(target * F.log_softmax(s, -1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    def r1_07(d, s):
        return round(100.0 * float((d["iou"][torch.arange(len(s)), s.argmax(1)] >= 0.7).float().mean()), 2)

    out = {"scorer_params": sum(p.numel() for p in net.parameters())}
    with torch.no_grad():
        for split, d in held.items():
            out[split] = {"r1_07_model": r1_07(d, d["score"]), "r1_07_reranked": r1_07(d, d["score"] + net(d["x"]).squeeze(-1)),
                          "r1_07_oracle": round(100.0 * float((d["iou"].max(1).values >= 0.7).float().mean()), 2)}
    return out


def supervised(variant: str, seed: int, args, datasets, eval_sets) -> tuple[Path, dict]:
    """Train (or reuse) the supervised head; returns its folder and its val / test scores."""
    from vtg_rl.heads.girl_detr import GirlDetr

    out = Path(args.out_root) / f"{variant}_s{seed}_sup{args.sup_steps}"
    cached = out / "supervised_scores.json"
    if cached.is_file() and "oracle_r1_07" in json.loads(cached.read_text())["test"]:
        return out, json.loads(cached.read_text())
    t0 = time.perf_counter()
    cfg = parse(GirlDetrTrainingConfig, args.sup_config, {"seed": seed, "eval_split": "test", **VARIANTS[variant],
                                                          "max_steps": args.sup_steps, "output_dir": out / "supervised"})
    if not (out / "supervised" / "final").is_dir():
        run_girl_detr(cfg, (datasets[0], eval_sets["test"]))
    scores = score(GirlDetr.load(out / "supervised" / "final"), eval_sets, cfg)
    scores["seconds"] = round(time.perf_counter() - t0, 1)
    cached.write_text(json.dumps(scores, indent=2) + "\n")
    return out, scores


def probe(variant: str, seed: int, args, datasets, eval_sets) -> dict:
    from vtg_rl.heads.girl_detr import GirlDetr

    sup_dir = Path(args.out_root) / f"{variant}_s{seed}_sup{args.sup_steps}"
    cached = sup_dir / "rerank_probe.json"
    if not cached.is_file():
        res = rerank_probe(GirlDetr.load(sup_dir / "supervised" / "final"), datasets[0], eval_sets, seed=seed)
        cached.write_text(json.dumps(res, indent=2) + "\n")
    return json.loads(cached.read_text())


def tprl_overrides(args) -> dict:
    return dict(kv.split("=", 1) for kv in args.tprl_set)


def tprl_tag(args) -> str:
    """Identifies a TPRL setting by its resolved values (YAML + overrides), so moving a chosen override
    into the YAML keeps the cached runs."""
    cfg = parse(TPRLTrainingConfig, args.tprl_config, {"max_steps": args.tprl_steps, "output_dir": args.out_root,
                                                       **tprl_overrides(args)})
    keys = ["max_steps", "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps", "max_grad_norm",
            "per_device_train_batch_size"] + sorted(k for k in vars(cfg) if k.startswith("tprl_"))
    text = json.dumps({k: str(getattr(cfg, k)) for k in keys}, sort_keys=True)
    return f"rl{args.tprl_steps}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def one_run(variant: str, seed: int, args, datasets, eval_sets) -> dict:
    from vtg_rl.heads.girl_detr import GirlDetr

    sup_dir, sup = supervised(variant, seed, args, datasets, eval_sets)
    if args.sup_only:
        return {}
    out = sup_dir / f"tprl_{tprl_tag(args)}"
    cached = out / "row.json"
    if cached.is_file():  # finished earlier (e.g. by a parallel invocation with other --variants)
        row = json.loads(cached.read_text())
        if all("oracle_r1_07_tprl" in row[split] for split in SPLITS):
            return row
    t0 = time.perf_counter()
    cfg = parse(TPRLTrainingConfig, args.tprl_config, {"seed": seed, "eval_split": "val", "max_steps": args.tprl_steps,
                                                       "output_dir": out, "supervised_checkpoint": sup_dir / "supervised" / "final",
                                                       **tprl_overrides(args)})
    old = json.loads(cached.read_text()) if cached.is_file() and (out / "final").is_dir() else None
    if old is not None:  # a row from before the oracle column: re-score only
        tprl = json.loads((out / "metrics.json").read_text())
    else:
        tprl = run_tprl(cfg, (datasets[0], eval_sets["val"]), model=GirlDetr.load(sup_dir / "supervised" / "final"))
    after = score(GirlDetr.load(out / "final"), eval_sets, cfg)
    row = {"variant": variant, "seed": seed, "tprl_tag": out.name, "tprl_overrides": tprl_overrides(args),
           "sup_seconds": sup["seconds"], "tprl_seconds": old["tprl_seconds"] if old else round(time.perf_counter() - t0, 1),
           "trainable_params": tprl["trainable_params"], "total_params": tprl["total_params"]}
    for split in SPLITS:
        row[split] = {**{f"{k}_sup": sup[split][k] for k in (*KEYS, "oracle_r1_07")},
                      **{f"{k}_tprl": after[split][k] for k in (*KEYS, "oracle_r1_07")}}
    cached.write_text(json.dumps(row, indent=2) + "\n")
    return row


def summarise(rows: list[dict]) -> dict:
    """Means / stds over seeds of one split's per-seed blocks (``{"r1_07_sup": .., "r1_07_tprl": ..}``)."""
    out = {}
    for k in KEYS:
        for stage in ("sup", "tprl"):
            vals = [r[f"{k}_{stage}"] for r in rows]
            out[f"{k}_{stage}"] = round(statistics.mean(vals), 2)
            out[f"{k}_{stage}_std"] = round(statistics.stdev(vals), 2) if len(vals) > 1 else None
        gains = [r[f"{k}_tprl"] - r[f"{k}_sup"] for r in rows]
        out[f"gain_{k}"] = round(statistics.mean(gains), 2)
        out[f"gain_{k}_std"] = round(statistics.stdev(gains), 2) if len(gains) > 1 else None
        out[f"gain_{k}_per_seed"] = [round(g, 2) for g in gains]
    if len(rows) > 1:
        # two yardsticks: the supervised model's seed-to-seed spread, and the spread of the paired gain itself
        out["gain_r1_07_exceeds_seed_std"] = bool(out["gain_r1_07"] > out["r1_07_sup_std"])
        out["gain_r1_07_exceeds_gain_std"] = bool(out["gain_r1_07"] > out["gain_r1_07_std"])
        out["gain_r1_07_positive_every_seed"] = all(g > 0 for g in out["gain_r1_07_per_seed"])
    out["num_seeds"] = len(rows)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ablation-seeds", type=int, nargs="*", default=None, help="default: --seeds")
    ap.add_argument("--seeds-for", nargs="*", default=[], metavar="VARIANT=S1,S2",
                    help="seeds of one ablation, overriding --ablation-seeds, e.g. no_cmi=0")
    ap.add_argument("--sup-steps", type=int, default=3000)
    ap.add_argument("--tprl-steps", type=int, default=None, help="default: max_steps of the TPRL YAML")
    ap.add_argument("--tprl-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TPRL config overrides, e.g. learning_rate=1e-4 tprl_temperature=0.1 (for tuning on val)")
    ap.add_argument("--sup-config", default="recipes/configs/girl_detr_synthetic.yaml")
    ap.add_argument("--tprl-config", default="recipes/configs/tprl_synthetic.yaml")
    ap.add_argument("--out-root", default="runs/bench/tprl_synthetic")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="run only these (finished runs are cached: a later full invocation reuses them)")
    ap.add_argument("--sup-only", action="store_true", help="only train / score the supervised heads")
    ap.add_argument("--results", default=str(RESULT))
    ap.add_argument("--no-probe", action="store_true", help="skip the head-only re-ranking probe (rerank_probe)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ablation_seeds = args.seeds if args.ablation_seeds is None else args.ablation_seeds
    if args.tprl_steps is None:
        args.tprl_steps = parse(TPRLTrainingConfig, args.tprl_config, {"output_dir": args.out_root}).max_steps

    from vtg_rl.heads.feature_dataset import make_dataset
    from vtg_rl.data.schema import read_jsonl

    base = parse(GirlDetrTrainingConfig, args.sup_config, {"eval_split": "+".join(SPLITS), "output_dir": args.out_root})
    datasets = build_datasets(base)  # extracts features for train, val and test once
    root = base.feature_root
    eval_sets = {s: make_dataset(read_jsonl(Path(base.synthetic_dir) / f"{s}.jsonl"), root, clip_len=base.clip_len,
                                 max_video_len=base.max_video_len) for s in SPLITS}
    runs = {"full": [one_run("full", s, args, datasets, eval_sets) for s in args.seeds] if "full" in args.variants else []}
    seeds_for = {v: [int(x) for x in seeds.split(",")] for v, seeds in (kv.split("=", 1) for kv in args.seeds_for)}
    for variant in ("no_cmi", "no_tgg"):
        runs[variant] = ([one_run(variant, s, args, datasets, eval_sets) for s in seeds_for.get(variant, ablation_seeds)]
                         if variant in args.variants else [])
    if args.sup_only or not runs["full"]:
        print("partial invocation (supervised only or no full model): results cached under", args.out_root)
        return 0

    result = summarise([r["test"] for r in runs["full"]])
    result.update({"trainable_params": runs["full"][0]["trainable_params"], "total_params": runs["full"][0]["total_params"]})
    result["trainable_fraction"] = round(result["trainable_params"] / result["total_params"], 4)
    result["val"] = summarise([r["val"] for r in runs["full"]])
    for split in SPLITS:
        for stage in ("sup", "tprl"):
            vals = [r[split][f"oracle_r1_07_{stage}"] for r in runs["full"]]
            (result if split == "test" else result["val"])[f"oracle_r1_07_{stage}"] = round(statistics.mean(vals), 2)
    if not args.no_probe:
        probes = [probe("full", s, args, datasets, eval_sets) for s in args.seeds]
        result["rerank_probe"] = {"per_seed": probes, **{
            f"{split}_{k}": round(statistics.mean(p[split][k] for p in probes), 2)
            for split in SPLITS for k in ("r1_07_model", "r1_07_reranked", "r1_07_oracle")}}
    for variant in ("no_cmi", "no_tgg"):
        if runs[variant]:
            result[f"ablation_{variant}"] = summarise([r["test"] for r in runs[variant]])
    result.update({"units": "percent", "reported_split": "test", "selection_split": "val",
                   "num_test": len(eval_sets["test"]), "num_val": len(eval_sets["val"]), "num_train": len(datasets[0]),
                   "sup_steps": args.sup_steps, "tprl_steps": args.tprl_steps, "tprl_tag": tprl_tag(args),
                   "tprl_overrides": tprl_overrides(args), "runs": [r for rs in runs.values() for r in rs]})
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    header = (f"{'variant':8} {'seed':>4} | {'R1@.5 sup':>9} {'R1@.7 sup':>9} {'mIoU sup':>8} | "
              f"{'R1@.5 RL':>8} {'R1@.7 RL':>8} {'mIoU RL':>7} | {'val R1@.7 sup->RL':>17}")
    print(header)
    print("-" * len(header))
    for r in result["runs"]:
        t, v = r["test"], r["val"]
        print(f"{r['variant']:8} {r['seed']:>4} | {t['r1_05_sup']:9.2f} {t['r1_07_sup']:9.2f} {t['miou_sup']:8.2f} | "
              f"{t['r1_05_tprl']:8.2f} {t['r1_07_tprl']:8.2f} {t['miou_tprl']:7.2f} | "
              f"{v['r1_07_sup']:7.2f} -> {v['r1_07_tprl']:6.2f}")
    print(f"\nfull model, {result['num_seeds']} seeds, test: R1@0.7 {result['r1_07_sup']} -> {result['r1_07_tprl']} "
          f"(paired gain {result['gain_r1_07']} +- {result['gain_r1_07_std']}, per seed {result['gain_r1_07_per_seed']}; "
          f"seed std of supervised {result['r1_07_sup_std']}); "
          f"trainable {result['trainable_params']}/{result['total_params']} = {result['trainable_fraction']:.2%}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
