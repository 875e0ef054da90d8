"""Counterfactual benchmark: SparseShiftVI.predict against the `mean` and `additive` baselines.

One command reproduces the tables::

    python benchmarks/counterfactual/run.py                 # full run, writes results here
    python benchmarks/counterfactual/run.py --quick --out /tmp/cf   # tiny CI smoke run

Two tasks:

``simulated_pairs``
    Default-protocol simulated screens with ``"A+B"`` pairs (3 seeds). The model trains on
    all single perturbations, the controls and half of the pairs; the other pairs are held out
    and predicted from control cells (abduction-action-prediction, the union of the members'
    masks and the sum of their shifts).
``papalexi_seen``
    Papalexi et al. 2021 (ECCITE-seq, confident cells): 80 % of each perturbation's cells
    train the model (controls all in training), the other 20 % are compared with the
    prediction made from the control cells.

For every test perturbation the log fold change (LFC) against control of the prediction
(predicted perturbation vs predicted control, both decoded from the same control cells) is
compared with the observed LFC (held-out cells vs observed controls): Pearson r and R^2 on all
genes and on the 20 genes most changed in the observations, and the energy distance between
predicted and observed cells in ``log1p(1e4 * proportions)`` space. Baselines by the same
code: ``mean`` (the control mean: LFC 0, control cells as prediction) and ``additive`` (sum of
the members' LFCs observed in training cells; for a seen single perturbation, its own training
LFC). ``additive`` predicts an LFC, not cells, so it has no energy distance. The model is
scored twice: ``SparseShiftVI`` moves the cells by the learned sparse shifts (``predict(...,
shift="model")``, only identified targets move) and ``SparseShiftVI-latent`` by the mean latent
shift of each perturbation's training cells (``shift="latent"``, latent arithmetic in the same
model).

Runs can be split over processes (``--tasks``/``--seeds``, one ``--out`` each) and re-tabulated
with ``--from-csv a/results.csv b/results.csv --out benchmarks/counterfactual``.

Writes ``results.csv`` (one row per test perturbation, method and seed), ``RESULTS.md`` and
``results.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TASKS = ["simulated_pairs", "papalexi_seen"]
METRICS = ["pearson_top", "pearson_all", "r2_top", "r2_all", "energy_distance"]


def _log_expr(x: np.ndarray) -> np.ndarray:
    return np.log1p(1e4 * x)


def evaluate(model, adata, test: dict[str, np.ndarray], train_lfc: dict[str, np.ndarray],
             control_expr: np.ndarray, seed: int, task: str, delimiter: str = "+",
             method: str = "SparseShiftVI") -> list[dict]:
    """Score model predictions and both baselines on the held-out groups in ``test``."""
    from scvi_causal.metrics._counterfactual import (
        baseline_lfc,
        energy_distance,
        log_fold_change,
        logfc_agreement,
        normalize_counts,
    )

    perts = list(test)
    control = model.control_categories_[0]
    model_predictions = {}
    for shift, name in (("model", method), ("latent", f"{method}-latent")):
        pred = model.predict(adata, perturbations=perts + [control], shift=shift)
        labels = pred.obs["perturbation"].astype(str).to_numpy()
        pred_ctrl = pred.X[labels == control]
        # cells for the energy distance: counts sampled from the likelihood, as observed are
        sampled = model.predict(adata, perturbations=perts, return_counts=True, shift=shift)
        sampled_expr = normalize_counts(sampled.X)
        sampled_labels = sampled.obs["perturbation"].astype(str).to_numpy()
        model_predictions[name] = {
            p: (log_fold_change(pred.X[labels == p], pred_ctrl),
                sampled_expr[sampled_labels == p]) for p in perts
        }
    rows = []
    for p in perts:
        observed = log_fold_change(test[p], control_expr)
        predictions = {
            **{name: by_pert[p] for name, by_pert in model_predictions.items()},
            "mean": (baseline_lfc("mean", p, train_lfc, delimiter), control_expr),
            "additive": (baseline_lfc("additive", p, train_lfc, delimiter), None),
        }
        for name, (lfc, cells) in predictions.items():
            scores = logfc_agreement(lfc, observed, top_k=20)
            scores["energy_distance"] = (
                energy_distance(_log_expr(cells), _log_expr(test[p]), max_cells=500, seed=seed)
                if cells is not None else np.nan
            )
            rows.append({"task": task, "seed": seed, "perturbation": p, "method": name,
                         "n_test_cells": len(test[p]), **scores})
    return rows


def _normalized(adata) -> np.ndarray:
    from scvi_causal.metrics._counterfactual import normalize_counts

    return normalize_counts(adata.X)


def run_simulated(seed: int, quick: bool, max_epochs: int | None,
                  model_kwargs: dict | None = None) -> list[dict]:
    import scvi

    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.metrics._counterfactual import log_fold_change
    from scvi_causal.model import SparseShiftVI

    scvi.settings.seed = seed
    size = ({"n_perturbations": 6, "n_cells_per_perturbation": 40, "n_pairs": 4,
             "n_control_cells": 120, "n_genes": 60} if quick else
            {"n_perturbations": 20, "n_cells_per_perturbation": 200, "n_pairs": 20,
             "n_control_cells": 1000})
    adata = simulate_sparse_shift(seed=seed, **size)
    labels = adata.obs["perturbation"].astype(str)
    pairs = sorted(p for p in labels.unique() if "+" in p)
    rng = np.random.default_rng(seed)
    held_out = sorted(rng.choice(pairs, len(pairs) // 2, replace=False).tolist())
    is_test = labels.isin(held_out).to_numpy()
    train, test_adata = adata[~is_test].copy(), adata[is_test]
    train.obs["perturbation"] = train.obs["perturbation"].cat.remove_unused_categories()
    expr = _normalized(train)
    tlabels = train.obs["perturbation"].astype(str).to_numpy()
    control_expr = expr[tlabels == "control"]
    train_lfc = {p: log_fold_change(expr[tlabels == p], control_expr)
                 for p in np.unique(tlabels) if p != "control"}
    test_expr = _normalized(test_adata)
    test_labels = test_adata.obs["perturbation"].astype(str).to_numpy()
    test = {p: test_expr[test_labels == p] for p in held_out}

    SparseShiftVI.setup_anndata(train, perturbation_key="perturbation", control_category="control")
    model = SparseShiftVI(train, n_latent=adata.obsm["z_true"].shape[1], **(model_kwargs or {}))
    start = time.perf_counter()
    model.train(max_epochs=max_epochs or (30 if quick else None), enable_progress_bar=False)
    seconds = time.perf_counter() - start
    rows = evaluate(model, train, test, train_lfc, control_expr, seed, "simulated_pairs")
    for r in rows:
        r["train_seconds"] = seconds
    return rows


def run_papalexi(seed: int, quick: bool, max_epochs: int | None,
                 model_kwargs: dict | None = None) -> list[dict]:
    import scvi

    from scvi_causal.data import papalexi_2021
    from scvi_causal.metrics._counterfactual import log_fold_change
    from scvi_causal.model import SparseShiftVI

    scvi.settings.seed = seed
    adata = papalexi_2021()
    control = adata.uns["perturbation_screen"]["control_category"]
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    if quick:  # a few perturbations, few cells
        keep_perts = ["IFNGR1", "STAT1", "CAV1"]
        keep = np.concatenate([
            rng.choice(np.flatnonzero(labels == p), 300 if p == control else 60, replace=False)
            for p in [control, *keep_perts]
        ])
        adata = adata[np.sort(keep)].copy()
        adata.obs["perturbation"] = adata.obs["perturbation"].cat.remove_unused_categories()
        labels = adata.obs["perturbation"].astype(str).to_numpy()
    is_test = np.zeros(adata.n_obs, dtype=bool)
    for p in np.unique(labels):
        if p == control:
            continue
        cells = np.flatnonzero(labels == p)
        is_test[rng.choice(cells, int(round(0.2 * len(cells))), replace=False)] = True
    train = adata[~is_test].copy()
    expr = _normalized(train)
    tlabels = train.obs["perturbation"].astype(str).to_numpy()
    control_expr = expr[tlabels == control]
    perts = [p for p in np.unique(tlabels) if p != control]
    train_lfc = {p: log_fold_change(expr[tlabels == p], control_expr) for p in perts}
    test_expr = _normalized(adata[is_test])
    test_labels = labels[is_test]
    test = {p: test_expr[test_labels == p] for p in perts}

    SparseShiftVI.setup_anndata(train, perturbation_key="perturbation", control_category=control)
    model = SparseShiftVI(train, n_latent=10, **(model_kwargs or {}))
    start = time.perf_counter()
    model.train(max_epochs=max_epochs or (30 if quick else None), enable_progress_bar=False)
    seconds = time.perf_counter() - start
    rows = evaluate(model, train, test, train_lfc, control_expr, seed, "papalexi_seen")
    for r in rows:
        r["train_seconds"] = seconds
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean +- sd over seeds of the per-seed mean over test perturbations."""
    per_seed = df.groupby(["task", "method", "seed"], sort=False)[METRICS].mean()
    grouped = per_seed.groupby(["task", "method"], sort=False)
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    out = mean.copy().astype(object)
    for c in METRICS:
        out[c] = [("n/a" if np.isnan(m) else f"{m:.3f} ± {s:.3f}")
                  for m, s in zip(mean[c], sd[c], strict=True)]
    out.insert(0, "n_seeds", grouped.size())
    out.insert(1, "n_test_perturbations",
               df.groupby(["task", "method"], sort=False)["perturbation"].nunique())
    return out.reset_index()


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(df["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.5), squeeze=False,
                             constrained_layout=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = df[df["task"] == task]
        methods = list(dict.fromkeys(sub["method"]))
        data = [sub.loc[sub["method"] == m, "pearson_top"].to_numpy() for m in methods]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(methods) + 1), methods)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel("LFC Pearson r, top-20 genes")
        ax.set_title(task)
    fig.savefig(path, dpi=120)


def write_markdown(df: pd.DataFrame, path: Path, command: str) -> None:
    table = summarise(df)
    runs = list(dict.fromkeys(df["command"].dropna())) if "command" in df else []
    if runs and any(r != command for r in runs):
        written = ("Runs: " + "; ".join(f"`{r}`" for r in runs) + ", tabulated together with "
                   "`--from-csv` (the same rows as one sequential run of "
                   "`python benchmarks/counterfactual/run.py --threads 1`)")
    else:
        written = f"Written by `{command}`"
    lines = [
        "# Counterfactual benchmark", "",
        f"{written} ({time.strftime('%Y-%m-%d')}); do not edit by hand.", "",
        "Mean ± sd over seeds of the mean over held-out perturbations. `pearson_*`/`r2_*`: "
        "predicted vs observed log fold change against control on the 20 most changed genes "
        "(`top`) or all genes; `energy_distance` between predicted and observed cells in "
        "log1p(1e4 x proportions) space (lower is better; `additive` predicts LFCs only).", "",
        table.to_markdown(index=False), "",
    ]
    pap = df[df["task"] == "papalexi_seen"]
    if len(pap):
        per = pap.pivot_table(index="perturbation", columns="method", values="pearson_top")
        lines += ["## Papalexi 2021, per perturbation (LFC Pearson r, top-20 genes, mean over "
                  "seeds)", "", per.round(3).to_markdown(), ""]
    lines += ["![results](results.png)", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny screens, few epochs (CI)")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[101, 102, 103])
    parser.add_argument("--papalexi-seeds", nargs="+", type=int, default=[101])
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--model-kwargs", type=json.loads, default={},
                        help="JSON of SparseShiftVI arguments (ablations)")
    parser.add_argument("--from-csv", type=Path, nargs="+", default=None,
                        help="re-tabulate these results.csv files (e.g. of runs done in "
                             "parallel) into --out instead of training")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.papalexi_seeds = args.seeds[:1], args.papalexi_seeds[:1]
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/counterfactual/run.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    if args.from_csv:
        df = pd.concat([pd.read_csv(f) for f in args.from_csv], ignore_index=True)
        df.to_csv(args.out / "results.csv", index=False)
        write_markdown(df, args.out / "RESULTS.md", command.strip())
        plot(df, args.out / "results.png")
        print(summarise(df).to_string(index=False))
        return df
    rows: list[dict] = []
    runs = [("simulated_pairs", s) for s in args.seeds if "simulated_pairs" in args.tasks]
    runs += [("papalexi_seen", s) for s in args.papalexi_seeds if "papalexi_seen" in args.tasks]
    for task, seed in runs:
        fn = run_simulated if task == "simulated_pairs" else run_papalexi
        new = fn(seed, args.quick, args.max_epochs, args.model_kwargs)
        for row in new:
            row["command"] = command.strip()
        rows += new
        frame = pd.DataFrame(new).groupby("method", sort=False)["pearson_top"].mean()
        print(f"  {task} seed {seed}: " + ", ".join(f"{m} r_top {v:.3f}"
                                                   for m, v in frame.items()), flush=True)
        df = pd.DataFrame(rows)
        df.to_csv(args.out / "results.csv", index=False)
        write_markdown(df, args.out / "RESULTS.md", command.strip())
        plot(df, args.out / "results.png")
    print(summarise(df).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
