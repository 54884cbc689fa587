"""How much can *any* detection head on a frozen GIRL-DETR backbone lift held-out R1@0.7?

    python benchmarks/tprl_ceiling.py              # the 3 supervised heads of benchmarks/tprl_synthetic.py
    python benchmarks/tprl_ceiling.py --seeds 0    # one head

TPRL trains only the span / class / IoU heads, which read one thing: each query's final decoder state.
This measures what that input allows at best, without TPRL's objective in the way. For each supervised
head (trained and cached by benchmarks/tprl_synthetic.py under the same ``--out-root``; trained here if
missing) it collects every query's frozen final decoder state, the supervised ranking score, the window
and its tIoU on all labelled queries the supervised stage never saw (the RL split, val and test of both
worlds: 3,680), then cross-fits fresh heads on them: 5 folds, each head trained on 4 and scored on the
held-out fifth, so every query is scored by a head that never saw it, with 1.8x the data TPRL has
(2,944 training queries per fold vs the 1,600 of the RL split).

* re-rankers choose which query to output, from (decoder state, supervised score): stage 3's objective
  in its exact form (expected tIoU under softmax(score), no sampling), and a listwise cross-entropy
  toward the best query, each for 500 and 1,500 steps;
* refiners move the top-1 window (offset from (decoder state, window), L1 + GIoU toward its ground
  truth as in stage 1): on every query for 500 steps, and only on windows that overlap their ground
  truth (as stage 2 does) for 500 and 1,500 steps.

The best of the settings per seed is reported as the ceiling. That choice is made after seeing the
scored folds, so it is an optimistic bound: a head trained honestly would do no better on average.

Writes benchmarks/results/tprl_ceiling.json (percent): per seed and mean over seeds ``r1_07_sup``,
``oracle_r1_07`` (the best of the 10 windows), ``ceiling_rerank_gain`` / ``ceiling_refine_gain``
(best setting's paired gain) with their standard errors, and every setting's gain under ``settings``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tprl_synthetic as bench  # noqa: E402  (the supervised heads, worlds and splits are that benchmark's)

RESULT = Path("benchmarks/results/tprl_ceiling.json")
RERANKERS = [("expected_tiou", 500), ("expected_tiou", 1500), ("listwise_ce", 500), ("listwise_ce", 1500)]
REFINERS = [("l1_giou", 500), ("l1_giou_overlap", 500), ("l1_giou_overlap", 1500)]
HIDDEN, BATCH, LR = 64, 256, 1e-3


@torch.no_grad()
def collect(model, dataset) -> dict[str, torch.Tensor]:
    """Per query: final decoder states (N, Q, H), supervised scores (N, Q), windows (N, Q, 2) cxw, their
    tIoU (N, Q), and the padded ground truth (N, G, 2) with its mask, for the frozen model."""
    from vtg_rl.heads.feature_dataset import collate_features
    from vtg_rl.heads.protocol import query_scores
    from vtg_rl.heads.span_losses import batched_best_iou, pad_targets

    states = []
    hook = model.span_head.register_forward_hook(lambda m, args, out: states.append(args[0]))
    cols = {k: [] for k in ("state", "score", "span", "iou", "gt", "gt_mask")}
    model.eval()
    try:
        for batch in DataLoader(dataset, batch_size=128, collate_fn=collate_features):
            states.clear()
            out = model(**batch["model_inputs"])
            gt, gt_mask = pad_targets(batch["targets"], out["pred_spans"])
            cols["state"].append(states[-1])  # the last decoder layer's: what the span / class / IoU heads read
            cols["score"].append(query_scores(out))
            cols["span"].append(out["pred_spans"])
            cols["iou"].append(batched_best_iou(out["pred_spans"], gt, gt_mask)[0])
            cols["gt"].append(gt)
            cols["gt_mask"].append(gt_mask)
    finally:
        hook.remove()
    width = max(g.shape[1] for g in cols["gt"])
    cols["gt"] = [F.pad(g, (0, 0, 0, width - g.shape[1]), value=0.5) for g in cols["gt"]]
    cols["gt_mask"] = [F.pad(m, (0, width - m.shape[1])) for m in cols["gt_mask"]]
    return {k: torch.cat(v) for k, v in cols.items()}


def mlp(in_dim: int, out_dim: int, zero_last: bool = False) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(in_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, out_dim))
    if zero_last:  # a refiner starts as the identity
        nn.init.zeros_(net[-1].weight)
        nn.init.zeros_(net[-1].bias)
    return net


def rerank_hits(d: dict, train: torch.Tensor, test: torch.Tensor, loss: str, steps: int) -> torch.Tensor:
    """Fit a re-ranker on the ``train`` queries; R1@0.7 hits (0/1) of its top-1 on the ``test`` queries."""
    x = torch.cat([d["state"], d["score"].clamp(min=-30)[..., None]], -1)
    net = mlp(x.shape[-1], 1)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
    for _ in range(steps):
        idx = train[torch.randint(0, len(train), (BATCH,))]
        s, iou = net(x[idx]).squeeze(-1), d["iou"][idx]
        if loss == "expected_tiou":  # the exact gradient of E_{q ~ softmax(s)}[tIoU(q)]: stage 3 without sampling
            value = -(F.softmax(s, -1) * iou).sum(-1).mean()
        else:
            value = F.cross_entropy(s, iou.argmax(1))
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        pick = net(x[test]).squeeze(-1).argmax(1)
    return (d["iou"][test][torch.arange(len(test)), pick] >= 0.7).float()


def refine_hits(d: dict, train: torch.Tensor, test: torch.Tensor, loss: str, steps: int) -> torch.Tensor:
    """Fit a refiner of the supervised top-1 window on ``train``; R1@0.7 hits of the refined window on
    ``test``. ``l1_giou_overlap`` trains only on windows that overlap their ground truth (a window on
    another moment is not a poor localisation of this one; dragging it over is what stage 2 avoids)."""
    from vtg_rl.heads.span_losses import batched_best_iou, span_losses

    n = len(d["iou"])
    top = d["score"].argmax(1)
    state, span = d["state"][torch.arange(n), top], d["span"][torch.arange(n), top]
    if loss == "l1_giou_overlap":
        train = train[d["iou"][train, top[train]] > 0]
    net = mlp(state.shape[-1] + 2, 2, zero_last=True)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)

    def refined(idx):
        return torch.sigmoid(net(torch.cat([state[idx], span[idx]], -1)) + torch.logit(span[idx].clamp(1e-4, 1 - 1e-4)))

    for _ in range(steps):
        idx = train[torch.randint(0, len(train), (BATCH,))]
        pred = refined(idx)
        with torch.no_grad():
            _, best = batched_best_iou(pred[:, None], d["gt"][idx], d["gt_mask"][idx])
        l1, giou = span_losses(pred, d["gt"][idx][torch.arange(len(idx)), best[:, 0]])
        value = (10 * l1 + giou).mean()
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        iou, _ = batched_best_iou(refined(test)[:, None], d["gt"][test], d["gt_mask"][test])
    return (iou[:, 0] >= 0.7).float()


def cross_fit(d: dict, fit, folds: int, seed: int) -> torch.Tensor:
    """R1@0.7 hits for every query, each from a head fitted on the other folds."""
    n = len(d["iou"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    hits = torch.zeros(n)
    for k, test in enumerate(order.chunk(folds)):
        train = order[torch.isin(order, test, invert=True)]
        torch.manual_seed(1000 * seed + k)
        hits[test] = fit(train, test)
    return hits


def gain(hits: torch.Tensor, base: torch.Tensor) -> dict:
    diff = hits - base
    return {"r1_07": round(100 * float(hits.mean()), 2), "gain": round(100 * float(diff.mean()), 2),
            "gain_se": round(100 * float(diff.std() / len(diff) ** 0.5), 2),
            "won": int((diff > 0).sum()), "lost": int((diff < 0).sum())}


def one_seed(seed: int, args, data: dict, eval_sets: dict) -> dict:
    from vtg_rl.heads.girl_detr.model import GirlDetr

    cached = bench.sup_dir("full", seed, args) / f"ceiling_{bench.eval_tag(eval_sets)}_{args.folds}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    t0 = time.perf_counter()
    bench.supervised("full", seed, args, data["sup_train"], eval_sets)  # trains the head if it is not cached
    model = GirlDetr.load(bench.sup_dir("full", seed, args) / "supervised" / "final")
    d = collect(model, ConcatDataset([data["rl"], eval_sets["val"], eval_sets["test"]]))
    n = len(d["iou"])
    base = (d["iou"][torch.arange(n), d["score"].argmax(1)] >= 0.7).float()
    row = {"seed": seed, "n": n, "r1_07_sup": round(100 * float(base.mean()), 2),
           "oracle_r1_07": round(100 * float((d["iou"].max(1).values >= 0.7).float().mean()), 2), "settings": {}}
    with torch.enable_grad():
        for loss, steps in RERANKERS:
            hits = cross_fit(d, lambda tr, te: rerank_hits(d, tr, te, loss, steps), args.folds, seed)
            row["settings"][f"rerank_{loss}_{steps}"] = gain(hits, base)
        for loss, steps in REFINERS:
            hits = cross_fit(d, lambda tr, te: refine_hits(d, tr, te, loss, steps), args.folds, seed)
            row["settings"][f"refine_{loss}_{steps}"] = gain(hits, base)
    for kind in ("rerank", "refine"):
        name, best = max(((k, v) for k, v in row["settings"].items() if k.startswith(kind)), key=lambda kv: kv[1]["gain"])
        row[f"ceiling_{kind}"] = name
        row[f"ceiling_{kind}_gain"], row[f"ceiling_{kind}_gain_se"] = best["gain"], best["gain_se"]
    row["seconds"] = round(time.perf_counter() - t0, 1)
    cached.write_text(json.dumps(row, allow_nan=False) + "\n")
    return row


def main(argv=None) -> int:
    ap = bench.parser()
    ap.description = __doc__.splitlines()[0]
    ap.add_argument("--folds", type=int, default=5)
    ap.set_defaults(results=str(RESULT))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    _, data, eval_sets = bench.load_data(args)
    rows = [one_seed(s, args, data, eval_sets) for s in args.seeds]

    def mean(key):
        return round(statistics.mean(r[key] for r in rows), 2)

    result = {"r1_07_sup": mean("r1_07_sup"), "oracle_r1_07": mean("oracle_r1_07"),
              "ceiling_rerank_gain": mean("ceiling_rerank_gain"), "ceiling_refine_gain": mean("ceiling_refine_gain"),
              "settings": {k: round(statistics.mean(r["settings"][k]["gain"] for r in rows), 2) for k in rows[0]["settings"]},
              "num_queries": rows[0]["n"], "folds": args.folds, "seeds": args.seeds, "units": "percent",
              "wall_seconds": round(time.perf_counter() - t0, 1), "per_seed": rows}
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")

    print(f"{'seed':>4} {'sup R1@0.7':>10} {'oracle':>7} | " + " ".join(f"{k:>26}" for k in rows[0]["settings"]))
    for r in rows:
        print(f"{r['seed']:>4} {r['r1_07_sup']:10.2f} {r['oracle_r1_07']:7.2f} | "
              + " ".join(f"{v['gain']:+12.2f} +- {v['gain_se']:4.2f} ({v['won']:3d}/{v['lost']:3d})" for v in r["settings"].values()))
    print(f"mean over {len(rows)} seeds, {rows[0]['n']} unseen queries: supervised R1@0.7 {result['r1_07_sup']}, "
          f"best of 10 windows {result['oracle_r1_07']}; optimistic ceiling of a fresh head: re-rank "
          f"{result['ceiling_rerank_gain']:+.2f}, refine {result['ceiling_refine_gain']:+.2f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
