"""Metanetwork quality: statistics baseline vs NFN (``nfn`` package) vs ours, same splits.

For each zoo and seed: StatNN (gradient-boosted trees on per-tensor statistics), NFN-NP
(Zhou et al. 2023, layers from the ``nfn`` package, where its weight space applies), and
our graph metanetwork, all trained on the zoo's train split, early-stopped/calibrated on
val and measured on test. Prints one table (mean ± std over seeds) and the conformal
interval's measured test coverage. ``--ship DIR`` also ships each zoo's seed-0 metanetwork.

NFN needs one fixed weight space: SIREN INRs have one; digits-cnn nets (2-3 conv layers of
4-16 channels) are zero-padded to 16 channels (an exact, function-preserving embedding)
and get one NFN per depth (digits-backdoor too: clean vs backdoored, same networks); the
mixed zoo (MLPs, ResNets, BN) has no NFN weight space.

``--scale-invariant`` also trains our metanetwork on canonicalized weights
(``MetanetConfig.scale_invariant``: ReLU scaling and sign flips removed) in the same process,
on the same split with the same seed, as the column ``ours (scale-inv.)``.

    .venv/bin/python -m bench.quality --zoos zoos --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from graphs import Checkpoint
from models import StatNN, TrainConfig
from models.data import Zoo, load_checkpoints, read_zoo
from models.fit import default_config, ship, train_on_zoo
from models.metrics import accuracy, kendall_tau_b, r2
from zoo.data import digits_split

ZOOS = {
    "digits-inr": "digits-inr-classifier",
    "digits-cnn": "digits-cnn-generalization",
    "digits-mixed": "digits-mixed-generalization",
    "digits-backdoor": "digits-cnn-backdoor",
}
PAD_WIDTH = 16
METHODS = ("statnn", "nfn", "ours", "ours_si")


#: test accuracy at or below this is chance on the ten digits (a network that did not learn)
CHANCE = 0.12


def scores(task: str, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return {"accuracy": accuracy(pred, y)}
    return {"tau_b": kendall_tau_b(pred, y), "r2": r2(pred, y), **chance_scores(pred, y)}


def chance_scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Where a τ-b is won or lost when many networks sit at chance: τ-b among the networks
    above chance, and the AUC of predicting a learned network above one at chance (pairs of
    networks both at chance are ordered by test-set noise, which caps every τ-b)."""
    pred, y = np.asarray(pred, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    learned = y > CHANCE
    out = {"tau_b_learned": kendall_tau_b(pred[learned], y[learned]) if learned.sum() > 1
           else float("nan")}
    out["auc_learned"] = (float(roc_auc_score(learned, pred)) if 0 < learned.sum() < len(y)
                          else float("nan"))
    return out


# --- NFN (nfn package) -------------------------------------------------------------------


def weight_space(c: Checkpoint) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
    """(weights, biases) of a plain conv/linear chain, hidden widths zero-padded, or None."""
    names = list(c.tensors)
    if any("bn" in n or "running" in n or "block" in n for n in names):
        return None
    ws = [c.tensors[n] for n in names if n.endswith("weight")]
    bs = [c.tensors[n] for n in names if n.endswith("bias")]
    if len(ws) != len(bs):
        return None
    out_w, out_b = [], []
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        rows = w.shape[0] if i == len(ws) - 1 else max(w.shape[0], PAD_WIDTH)
        cols = w.shape[1] if i == 0 else max(w.shape[1], PAD_WIDTH)
        if w.dim() == 2 and ws[0].dim() == 2:  # INR MLP: hidden widths are fixed already
            rows, cols = w.shape
        pw = w.new_zeros((rows, cols, *w.shape[2:]))
        pw[: w.shape[0], : w.shape[1]] = w
        pb = b.new_zeros(rows)
        pb[: b.shape[0]] = b
        out_w.append(pw)
        out_b.append(pb)
    return out_w, out_b


class NFNModel(nn.Module):
    """NP equivariant layers -> invariant pooling -> MLP head (the NFN paper's recipe)."""

    def __init__(self, spec, channels: int, outputs: int) -> None:
        from nfn import layers

        super().__init__()
        self.body = nn.Sequential(
            layers.NPLinear(spec, 1, channels, io_embed=True),
            layers.TupleOp(nn.ReLU()),
            layers.NPLinear(spec, channels, channels, io_embed=True),
            layers.TupleOp(nn.ReLU()),
            layers.NPPool(spec),
            nn.Flatten(start_dim=-2),
        )
        self.head = nn.Sequential(
            nn.Linear(layers.NPPool.get_num_outs(spec) * channels, 256),
            nn.ReLU(),
            nn.Linear(256, outputs),
        )

    def forward(self, wsfeat) -> torch.Tensor:
        return self.head(self.body(wsfeat))


def nfn_fit_predict(
    task: str, train: list, val: list, test: list, classes: int, seed: int, epochs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train NFN-NP on (weights, biases, target) triples; predictions on val and test."""
    from nfn.common import NetworkSpec, WeightSpaceFeatures
    from nfn.common.data import ArraySpec

    torch.manual_seed(seed)
    ws0, bs0 = train[0][0], train[0][1]
    spec = NetworkSpec(
        [ArraySpec(tuple(w.shape)) for w in ws0], [ArraySpec(tuple(b.shape)) for b in bs0]
    )
    scale = [torch.stack([t[0][i] for t in train]).std().clamp_min(1e-6) for i in range(len(ws0))]

    def batch(items: list) -> tuple[WeightSpaceFeatures, torch.Tensor]:
        ws = [torch.stack([t[0][i] for t in items])[:, None] / scale[i] for i in range(len(ws0))]
        bs = [torch.stack([t[1][i] for t in items])[:, None] / scale[i] for i in range(len(ws0))]
        y = torch.tensor([t[2] for t in items])
        return WeightSpaceFeatures(ws, bs), y

    model = NFNModel(spec, 32, classes if task == "classification" else 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)

    def predict(items: list) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = torch.cat(
                [model(batch(items[i : i + 256])[0]) for i in range(0, len(items), 256)]
            )
        return (out.argmax(-1) if task == "classification" else out[:, 0].sigmoid()).numpy()

    y_val = np.array([t[2] for t in val])
    best = (-np.inf, None)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=g).tolist()
        for i in range(0, len(order), 64):
            wsf, y = batch([train[j] for j in order[i : i + 64]])
            out = model(wsf)
            loss = (
                nn.functional.cross_entropy(out, y.long())
                if task == "classification"
                else nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.float())
            )
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
        metric = next(iter(scores(task, predict(val), y_val).values()))
        if metric > best[0]:
            best = (metric, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    return predict(val), predict(test)


def nfn_run(zoo: Zoo, ckpts: list[Checkpoint], seed: int, epochs: int) -> dict | None:
    """NFN test scores on the whole test split (one NFN per weight space), or None."""
    spaces = [weight_space(c) for c in ckpts]
    if any(s is None for s in spaces):
        return None
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    test_order = []
    for i, (s, row) in enumerate(zip(spaces, zoo.rows, strict=True)):
        key = tuple(tuple(w.shape) for w in s[0])
        groups[key][row["split"]].append((s[0], s[1], row["target"], i))
        if row["split"] == "test":
            test_order.append(i)
    classes = 1 + max(int(r["target"]) for r in zoo.rows)
    preds: dict[int, float] = {}
    for parts in groups.values():
        if not parts["train"] or not parts["val"] or not parts["test"]:
            return None
        _, pred = nfn_fit_predict(
            zoo.task, parts["train"], parts["val"], parts["test"], classes, seed, epochs
        )
        preds.update({t[3]: p for t, p in zip(parts["test"], pred, strict=True)})
    y = np.array([zoo.rows[i]["target"] for i in test_order])
    return scores(zoo.task, np.array([preds[i] for i in test_order]), y)


# --- the table ---------------------------------------------------------------------------


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def run(zoo_name: str, zoo_dir: Path, seed: int, args: argparse.Namespace) -> dict:
    """One seed on one zoo: every method's test scores (and our interval's coverage)."""
    zoo = read_zoo(zoo_dir)
    ckpts = load_checkpoints(zoo)
    idx = {s: zoo.split_indices(s) for s in ("train", "val", "test")}
    y = np.array(zoo.targets())
    out: dict = {
        "zoo": zoo_name,
        "seed": seed,
        "n_test": len(idx["test"]),
        "n_train": len(idx["train"]),
        "task": zoo.task,
    }
    t0 = time.perf_counter()
    out["statnn"] = out["nfn"] = out["ours"] = out["ours_si"] = None
    if "statnn" in args.methods:
        stat = StatNN(zoo.task, seed=seed).fit([ckpts[i] for i in idx["train"]], y[idx["train"]])
        test_pred = stat.predict([ckpts[i] for i in idx["test"]])
        out["statnn"] = scores(zoo.task, test_pred, y[idx["test"]])
    t1 = time.perf_counter()
    if "nfn" in args.methods and args.nfn_epochs:
        out["nfn"] = nfn_run(zoo, ckpts, seed, args.nfn_epochs)
    t2 = time.perf_counter()
    out["seconds"] = {"statnn": round(t1 - t0, 1), "nfn": round(t2 - t1, 1)}
    tcfg = replace(TrainConfig(), epochs=args.epochs, seed=seed, warmup_epochs=1)
    for method, scale_invariant in (("ours", False), ("ours_si", True)):
        if method not in args.methods:
            continue
        started = time.perf_counter()
        mcfg = replace(default_config(zoo.task, zoo.name), scale_invariant=scale_invariant)
        model, card, _ = train_on_zoo(zoo_dir, ZOOS[zoo_name], mcfg, tcfg, progress=False)
        out[method] = {
            k: v
            for k, v in card["metrics"]["test"].items()
            if k in ("accuracy", "tau_b", "r2", "mae", "target_ties")
        }
        if "conformal" in card:
            out[method]["coverage"] = card["conformal"]["test_coverage"]
            out[method]["half_width"] = card["conformal"]["half_width"]
        out["seconds"][method] = round(time.perf_counter() - started, 1)
        if args.ship and seed == 0 and method == "ours":
            if out["statnn"]:  # the card shows its metrics beside the baseline's, same split
                card = {**card, "baseline": {"name": "statnn", "test": out["statnn"]}}
            ship(model, card, zoo_dir, args.ship)
    return out


def table(results: list[dict]) -> None:
    seeds = sorted({r["seed"] for r in results})
    print(f"\nseeds {seeds}; mean ± std over seeds; each zoo's own test split")
    header = (
        "zoo",
        "n_test",
        "seeds",
        "metric",
        "statistics",
        "NFN-NP",
        "ours (graph)",
        "ours-best",
        "ours (scale-inv.)",
    )
    widths = [17, 7, 6, 15, 16, 16, 16, 10, 18]
    print("".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for zoo_name in ZOOS:
        rs = [r for r in results if r["zoo"] == zoo_name]
        if not rs:
            continue
        metrics = ["accuracy"] if rs[0]["task"] == "classification" else ["tau_b", "r2"]
        ours = [r["ours"] for r in rs if r["ours"]]
        for m in metrics + (["coverage"] if ours and "coverage" in ours[0] else []):
            col = {
                k: [r[k][m] for r in rs if r.get(k) and m in r[k]]
                for k in ("statnn", "nfn", "ours", "ours_si")
            }
            best = [np.mean(col[k]) for k in ("statnn", "nfn") if col[k]]
            gap = (
                f"{np.mean(col['ours']) - max(best):+.3f}"
                if best and col["ours"] and m != "coverage"
                else ""
            )
            name = "coverage@0.90" if m == "coverage" else m
            print(
                "".join(
                    str(c).ljust(w)
                    for c, w in zip(
                        (
                            zoo_name,
                            rs[0]["n_test"],
                            len(rs),
                            name,
                            fmt(col["statnn"]),
                            fmt(col["nfn"]),
                            fmt(col["ours"]),
                            gap,
                            fmt(col["ours_si"]),
                        ),
                        widths,
                        strict=True,
                    )
                )
            )


# --- leave-one-recipe-out (digits-cnn-recipes) --------------------------------------------

SHIPPED_GENERALIZATION = ("digits-cnn-generalization", "digits-mixed-generalization")


def recipe_of(row: dict) -> str:
    return row["hparams"]["recipe"]


def loro_split(zoo: Zoo, held_out: str) -> dict[str, list[int]]:
    """Train/val: the other recipes' networks of the zoo's train/val splits; test: every
    network of the held-out recipe (none of which any method sees before testing)."""
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, row in enumerate(zoo.rows):
        if recipe_of(row) == held_out:
            out["test"].append(i)
        elif row["split"] in ("train", "val"):
            out[row["split"]].append(i)
    return out


def loro_run(zoo_dir: Path, held_out: str, seed: int, args: argparse.Namespace) -> dict:
    """One held-out recipe, one seed: τ-b on the held-out networks for each method."""
    from models.data import zoo_graphs
    from models.metrics import regression_metrics
    from models.train import predict_graphs, train_metanet

    zoo = read_zoo(zoo_dir)
    idx = loro_split(zoo, held_out)
    y = np.array(zoo.targets())
    out: dict = {"loro": zoo.name, "held_out": held_out, "seed": seed,
                 "n_train": len(idx["train"]), "n_val": len(idx["val"]),
                 "n_test": len(idx["test"]), "seconds": {}}
    for method in METHODS:
        out[method] = None
    if "statnn" in args.methods:
        t0 = time.perf_counter()
        ckpts = load_checkpoints(zoo)
        stat = StatNN(zoo.task, seed=seed).fit([ckpts[i] for i in idx["train"]],
                                               y[idx["train"]])
        pred = stat.predict([ckpts[i] for i in idx["test"]])
        out["statnn"] = scores(zoo.task, pred, y[idx["test"]])
        out["seconds"]["statnn"] = round(time.perf_counter() - t0, 1)
    if "nfn" in args.methods and args.nfn_epochs:
        t0 = time.perf_counter()
        relabelled = replace(zoo, rows=[{**r, "split": s} for s in idx for r in
                                        [zoo.rows[i] for i in idx[s]]])
        ckpts = load_checkpoints(relabelled)
        out["nfn"] = nfn_run(relabelled, ckpts, seed, args.nfn_epochs)
        out["seconds"]["nfn"] = round(time.perf_counter() - t0, 1)
    if "ours" in args.methods:
        t0 = time.perf_counter()
        mcfg = replace(default_config(zoo.task, "digits-cnn"), **json.loads(args.config))
        tcfg = replace(TrainConfig(), epochs=args.epochs, seed=seed, warmup_epochs=1,
                       **json.loads(args.train_config))
        graph_list = zoo_graphs(zoo, mcfg.max_kernel, scale_invariant=mcfg.scale_invariant)
        part = {s: [graph_list[i] for i in v] for s, v in idx.items()}
        result = train_metanet(part["train"], part["val"], mcfg, tcfg, progress=False)
        pred = predict_graphs(result.model, part["test"])
        metrics = regression_metrics(pred, y[idx["test"]])
        out["ours"] = {k: metrics[k] for k in ("tau_b", "r2", "mae")}
        out["ours"].update(chance_scores(pred, y[idx["test"]]))
        out["ours"]["best_epoch"] = result.best_epoch
        out["ours"]["config"] = json.loads(args.config)
        out["ours"]["train_config"] = json.loads(args.train_config)
        out["seconds"]["ours"] = round(time.perf_counter() - t0, 1)
    return out


def shipped_on_recipes(zoo_dir: Path) -> list[dict]:
    """τ-b of each shipped generalization predictor on each recipe's networks of the zoo,
    and whether that recipe was in the zoo it was trained on (digits-cnn and digits-mixed
    train with ``adamw-constant``'s recipe)."""
    from models.data import zoo_graphs
    from models.metrics import regression_metrics
    from models.registry import BUILTIN_DIR, load_from
    from models.train import predict_graphs

    zoo = read_zoo(zoo_dir)
    y = np.array(zoo.targets())
    out = []
    for name in SHIPPED_GENERALIZATION:
        loaded = load_from(BUILTIN_DIR, name, torch.device("cpu"))
        card_zoo = loaded.card["zoo"]
        graph_list = zoo_graphs(zoo, loaded.model.config.max_kernel,
                                scale_invariant=loaded.model.config.scale_invariant)
        for recipe in sorted({recipe_of(r) for r in zoo.rows}):
            same_zoo = card_zoo["name"] == zoo.name and card_zoo["seed"] == zoo.seed
            # a predictor trained on this zoo is scored on its test split only
            idx = [i for i, r in enumerate(zoo.rows) if recipe_of(r) == recipe
                   and (not same_zoo or r["split"] == "test")]
            pred = predict_graphs(loaded.model, [graph_list[i] for i in idx])
            m = regression_metrics(pred, y[idx])
            out.append({"shipped": name, "trained_on": f"{card_zoo['name']} seed "
                        f"{card_zoo['seed']}", "recipe": recipe, "n": len(idx),
                        "seen_recipe": same_zoo or (recipe == "adamw-constant" and card_zoo[
                            "name"] in ("digits-cnn", "digits-mixed")),
                        "tau_b": m["tau_b"], "r2": m["r2"], **chance_scores(pred, y[idx])})
    return out


def loro_table(results: list[dict], shipped: list[dict] | None) -> None:
    seeds = sorted({r["seed"] for r in results})
    print(f"\nleave-one-recipe-out on {results[0]['loro'] if results else '?'}: train on the "
          f"other recipes, Kendall τ-b on every network of the held-out recipe; seeds {seeds}, "
          "mean ± sd over seeds")
    header = ("held-out recipe", "n_train", "n_test", "seeds", "statistics", "NFN-NP",
              "ours (graph)", "ours-stat")
    widths = [20, 9, 8, 7, 16, 16, 16, 10]
    print("".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    merged = merge_loro(results)
    recipes = sorted({r["held_out"] for r in merged})
    per_method: dict[str, list[float]] = defaultdict(list)
    for recipe in recipes:
        rs = [r for r in merged if r["held_out"] == recipe]
        col = {k: [r[k]["tau_b"] for r in rs if r.get(k)] for k in ("statnn", "nfn", "ours")}
        for k, v in col.items():
            per_method[k] += v
        gap = (f"{np.mean(col['ours']) - np.mean(col['statnn']):+.3f}"
               if col["ours"] and col["statnn"] else "")
        print("".join(str(c).ljust(w) for c, w in zip(
            (recipe, rs[0]["n_train"], rs[0]["n_test"], len(rs), fmt(col["statnn"]),
             fmt(col["nfn"]), fmt(col["ours"]), gap), widths, strict=True)))
    if recipes:
        gap = (f"{np.mean(per_method['ours']) - np.mean(per_method['statnn']):+.3f}"
               if per_method["ours"] and per_method["statnn"] else "")
        print("".join(str(c).ljust(w) for c, w in zip(
            ("all (recipe, seed)", "", "", "", fmt(per_method["statnn"]),
             fmt(per_method["nfn"]), fmt(per_method["ours"]), gap), widths, strict=True)))
    if shipped:
        print("\nshipped generalization predictors on each recipe's networks (τ-b; 'seen': "
              "the recipe was in the predictor's training zoo, scored on its test split)")
        for s in shipped:
            print(f"  {s['shipped']:<30}{s['recipe']:<20}n={s['n']:<6}tau_b {s['tau_b']:.3f}  "
                  f"r2 {s['r2']:+.3f}  {'seen' if s['seen_recipe'] else 'held out'}"
                  f"  (trained on {s['trained_on']})")
            print(f"  {'':<30}{'':<20}above chance: tau_b {s['tau_b_learned']:.3f}, AUC "
                  f"learned over chance {s['auc_learned']:.3f}")
    chance_table(merge_loro(results))


def chance_table(merged: list[dict]) -> None:
    """Per held-out recipe and method (runs that recorded it): τ-b above chance and the AUC
    of learned over chance networks, mean over seeds."""
    rows = [(r["held_out"], k, r[k]) for r in merged for k in ("statnn", "ours")
            if r.get(k) and "auc_learned" in r[k]]
    if not rows:
        return
    print(f"\nwhere τ-b is lost (test accuracy ≤ {CHANCE} is chance): τ-b among the networks "
          "above chance, AUC of a learned network over one at chance; mean over seeds")
    for recipe, method in sorted({(a, b) for a, b, _ in rows}):
        got = [m for a, b, m in rows if (a, b) == (recipe, method)]
        print(f"  {recipe:<20}{method:<8}seeds {len(got)}  above chance "
              f"{np.mean([m['tau_b_learned'] for m in got]):.3f}  AUC "
              f"{np.mean([m['auc_learned'] for m in got]):.3f}")


def merge_loro(results: list[dict]) -> list[dict]:
    """One result per (held-out recipe, seed); the latest line of each method wins."""
    merged: dict[tuple[str, int], dict] = {}
    for r in results:
        key = (r["held_out"], r["seed"])
        if key not in merged:
            merged[key] = dict(r)
            continue
        for method in METHODS:
            if r.get(method) is not None:
                merged[key][method] = r[method]
    return list(merged.values())


def loro_main(args: argparse.Namespace) -> None:
    zoo_dir = Path(args.loro)
    results: list[dict] = []
    if not args.table_only:
        zoo = read_zoo(zoo_dir)
        held = args.held_out or sorted({recipe_of(r) for r in zoo.rows})
        for recipe in held:
            for seed in args.seeds:
                r = loro_run(zoo_dir, recipe, seed, args)
                print(json.dumps(r), flush=True)
                results.append(r)
                if args.results:
                    with open(args.results, "a") as f:
                        f.write(json.dumps(r) + "\n")
    if args.results and Path(args.results).exists():
        lines = Path(args.results).read_text().splitlines()
        results = [json.loads(line) for line in lines if line.strip()]
        results = [r for r in results if "loro" in r]
    loro_table(results, shipped_on_recipes(zoo_dir) if args.shipped else None)
    measured_on_recipes(read_zoo(zoo_dir))


def measured_on_recipes(zoo: Zoo) -> None:
    """τ-b of what the zoo measured while training (not predicted from weights): how far a
    network's own training accuracy and its test loss order each recipe's test accuracy,
    a reference for what a function-level reading could reach (near-chance networks, whose
    order is noise, cap every column). Beside them, each network's accuracy on training
    digits: 64 of them (a seeded draw, as ``query_classes`` queries start) and all 1,347."""
    from models.data import zoo_graphs

    graph_list = zoo_graphs(zoo)
    x_train, y_train = digits_split().x_train.flatten(1), digits_split().y_train
    pick = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))[:64]
    print("\nmeasured, not predicted (τ-b against test accuracy on every network of the recipe)")
    for recipe in sorted({recipe_of(r) for r in zoo.rows}):
        idx = [i for i, r in enumerate(zoo.rows) if recipe_of(r) == recipe]
        rows = [zoo.rows[i] for i in idx]
        y = np.array([r["target"] for r in rows])
        train_acc = np.array([r["metrics"]["train_accuracy"] for r in rows])
        test_loss = np.array([r["metrics"]["test_loss"] for r in rows])
        nets = [graph_list[i] for i in idx]
        few = digit_accuracy(nets, x_train[pick], y_train[pick])
        every = digit_accuracy(nets, x_train, y_train)
        print(f"  {recipe:<20}n={len(rows):<6}own train accuracy {kendall_tau_b(train_acc, y):.3f}"
              f"  -test loss {kendall_tau_b(-test_loss, y):.3f}  accuracy on 64 / all training "
              f"digits {kendall_tau_b(few, y):.3f} / {kendall_tau_b(every, y):.3f}  at chance "
              f"(≤ {CHANCE}) {int((y <= CHANCE).sum())}")


@torch.no_grad()
def digit_accuracy(nets: list, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Each network's accuracy on these ``(N, 64)`` digits, run on its parameter graph."""
    from torch_geometric.data import Batch

    from models.queries import chain_activations, output_logits

    out = []
    for start in range(0, len(nets), 256):
        chunk = nets[start:start + 256]
        batch = Batch.from_data_list(chunk)
        values = chain_activations(batch, len(chunk), images)
        if values is None:
            raise ValueError("digit_accuracy reads plain conv/linear chains only")
        logits, _ = output_logits(batch, len(chunk), values, 10)
        out.append((logits.argmax(1) == labels).float().mean(1))
    return torch.cat(out).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", default="zoos", help="folder holding one folder per zoo")
    parser.add_argument("--only", nargs="*", default=list(ZOOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--nfn-epochs", type=int, default=60, help="0 skips NFN")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ship", default=None, help="ship the seed-0 metanetworks here")
    parser.add_argument(
        "--results",
        default=None,
        help="append per-seed results (JSON lines) here, so seeds can run as "
        "separate processes; the table covers every line in the file",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[m for m in METHODS if m != "ours_si"],
        choices=METHODS,
        help="run only these (e.g. the slow NFN in its own process); result lines of one "
        "zoo and seed are merged in the table",
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--scale-invariant",
        action="store_true",
        help="also train ours on canonicalized weights (method ours_si), same split and seed",
    )
    parser.add_argument(
        "--loro",
        default=None,
        help="a digits-cnn-recipes zoo: leave-one-recipe-out τ-b rows instead of the table",
    )
    parser.add_argument("--held-out", nargs="*", default=None,
                        help="with --loro: only these held-out recipes (default: all)")
    parser.add_argument("--config", default="{}",
                        help="with --loro: JSON of MetanetConfig fields that replace the "
                        "digits-cnn-generalization configuration's for ours")
    parser.add_argument("--train-config", default="{}",
                        help="with --loro: JSON of TrainConfig fields for ours (e.g. "
                        '\'{"rank_loss": 2.0}\')')
    parser.add_argument("--shipped", action="store_true",
                        help="with --loro: also score the shipped generalization predictors "
                        "on each recipe's networks")
    args = parser.parse_args()
    if args.loro:
        torch.set_num_threads(args.threads)
        loro_main(args)
        return
    if args.scale_invariant and "ours_si" not in args.methods:
        args.methods.append("ours_si")
    torch.set_num_threads(args.threads)
    results: list[dict] = []
    if not args.table_only:
        for zoo_name in args.only:
            for seed in args.seeds:
                r = run(zoo_name, Path(args.zoos) / zoo_name, seed, args)
                print(json.dumps(r), flush=True)
                results.append(r)
                if args.results:
                    with open(args.results, "a") as f:
                        f.write(json.dumps(r) + "\n")
    if args.results:
        lines = Path(args.results).read_text().splitlines()
        results = merge([json.loads(line) for line in lines if line.strip()])
    table(results)


def merge(results: list[dict]) -> list[dict]:
    """One result per (zoo, seed): methods run in separate processes are combined (the
    latest line of a method wins)."""
    merged: dict[tuple[str, int], dict] = {}
    for r in results:
        key = (r["zoo"], r["seed"])
        if key not in merged:
            merged[key] = dict(r)
            continue
        for method in METHODS:
            if r.get(method) is not None:
                merged[key][method] = r[method]
    return list(merged.values())


if __name__ == "__main__":
    main()
