"""Where the MCC is lost on the sVAE protocol: geometry of the latent space and folded targets.

One command writes ``diagnosis.csv``, ``DIAGNOSIS.md`` (rendered from ``diagnosis.csv``
alone) and ``run.json`` into ``--out`` (default: a scratch folder; ``--update``:
``benchmarks/simulated/diagnosis/<method>``; ``make bench-diagnose`` updates both)::

    python -m benchmarks.simulated.diagnose --seeds 101 102 103 --workers 2 --update
    python -m benchmarks.simulated.diagnose --method dense --update
    python -m benchmarks.simulated.diagnose --render-only --update   # tables from the CSV

For every seed the script trains one configuration (default: ``spike_slab`` with default
training) on the training perturbations p00-p79 of the published sVAE simulation, exactly as
``benchmarks.simulated.run`` does, and measures:

* **an information ceiling**: a supervised MLP (scikit-learn) regressing the true latents on
  the standardised log counts, scored on 20 % held-out cells. It tells how much of ``z_true``
  the counts determine at all (no VAE can exceed it);
* **within- vs between-perturbation geometry** of the learned latents: the linear R^2 of the
  true latents on the learned ones after removing each perturbation's mean (within), and of
  the perturbations' mean true latents on their mean learned latents (between), and the mean
  matched |correlation| of each (MCC restricted to that part of the variation);
* **folded targets**: how many learned edges the perturbations with 1, 2 and 3 true targets
  get, and, for two-target perturbations with a single learned edge, the mean |shift| of the
  cells' mean latent on the learned edge, on the missed true target and off target; for
  comparison, the same for two-target perturbations whose two edges are both found
  (``unfolded_*``) and the off-target norm of correctly identified single-target ones.
* **whether the model can flag them**: for those folded perturbations, how often the top
  off-mask unit of ``SparseShiftVI.get_off_mask_shifts`` is the missed true target, and the
  AUROC of the off-mask fraction for telling perturbations with a missed target from the
  others.

Each seed runs in a fresh subprocess with one torch thread (``--workers`` at a time).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    provenance_line,
    resolve_out,
    run_worker,
    subset,
    write_run_json,
)
from benchmarks.simulated.run import CONFIGS, PROTOCOLS

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.simulated.diagnose"


def supervised_ceiling(adata, seed: int) -> dict:
    """R^2 and per-unit correlation of a supervised MLP predicting ``z_true`` from counts."""
    from sklearn.neural_network import MLPRegressor

    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    x = np.log1p(x)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    z = adata.obsm["z_true"]
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[: int(0.8 * len(x))], order[int(0.8 * len(x)) :]
    reg = MLPRegressor(
        hidden_layer_sizes=(256, 256), max_iter=60, early_stopping=True, random_state=seed
    ).fit(x[train], z[train])
    pred, truth = reg.predict(x[test]), z[test]
    labels = adata.obs["perturbation"].to_numpy()[test]
    within_r2 = _r2(_center(pred, labels), _center(truth, labels))
    return {
        "ceiling_r2": _r2(pred, truth),
        "ceiling_within_r2": within_r2,
        "ceiling_unit_corr": _matched_corr(truth, pred, range(z.shape[1])),
    }


def _center(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = x.astype(float).copy()
    for label in np.unique(labels):
        out[labels == label] -= out[labels == label].mean(0)
    return out


def _r2(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over columns of 1 - SSE / SST (pred already on the scale of truth)."""
    sse = ((pred - truth) ** 2).sum(0)
    sst = ((truth - truth.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - sse / sst))


def _matched_corr(truth: np.ndarray, est: np.ndarray, matching) -> float:
    """Mean |Pearson r| of each true column with its matched estimated column."""
    return float(
        np.mean([abs(np.corrcoef(truth[:, i], est[:, j])[0, 1]) for i, j in enumerate(matching)])
    )


def _linear_r2(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LinearRegression

    return float(LinearRegression().fit(x, y).score(x, y))


def diagnose_one(
    seed: int, method: str, model_kwargs: dict, train_kwargs: dict, quick: bool
) -> dict:
    """Train one model and measure its geometry (runs inside a worker process)."""
    import scvi
    import torch

    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.metrics import match_latents, mcc, r2
    from scvi_causal.model import SparseShiftVI

    torch.set_num_threads(1)
    scvi.settings.seed = seed
    spec = PROTOCOLS["svae"]
    sim = dict(spec["sim"], seed=seed)
    if quick:
        sim.update(n_perturbations=10, n_cells_per_perturbation=60)
    adata = simulate_sparse_shift(**sim)
    truth = adata.uns["true_graph"]
    n_train = 8 if quick else spec["n_train"]
    perts = list(truth.index[:n_train])
    adata = subset(adata, adata.obs["perturbation"].isin(perts).to_numpy())
    row = {
        "seed": seed,
        "method": method,
        "model_kwargs": json.dumps(model_kwargs),
        "train_kwargs": json.dumps(train_kwargs),
    }
    row.update(supervised_ceiling(adata, seed))

    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category=None)
    model = SparseShiftVI(
        adata,
        n_latent=adata.obsm["z_true"].shape[1],
        gene_likelihood=spec["likelihood"],
        **{**CONFIGS[method], **model_kwargs},
    )
    model.train(enable_progress_bar=False, **({"max_epochs": 5} if quick else {}), **train_kwargs)
    z, z_true = model.get_latent_representation(), adata.obsm["z_true"]
    labels = adata.obs["perturbation"].to_numpy()
    matching, _ = match_latents(z_true, z)
    zc, tc = _center(z, labels), _center(z_true, labels)
    means = np.stack([z[labels == p].mean(0) for p in perts])
    true_means = np.stack([z_true[labels == p].mean(0) for p in perts])
    row.update(
        {
            "mcc": mcc(z_true, z),
            "r2": r2(z_true, z),
            "within_linear_r2": _linear_r2(zc, tc),
            "within_matched_corr": _matched_corr(tc, zc, matching),
            "between_linear_r2": _linear_r2(means, true_means),
            "between_matched_corr": _matched_corr(true_means, means, matching),
        }
    )
    if model.module.intervention_prior in ("spike_slab", "l1"):
        from sklearn.metrics import roc_auc_score

        true = truth.loc[perts].to_numpy() > 0
        learned = model.get_target_graph().loc[perts].to_numpy()[:, matching] > 0.5
        means = means[:, matching]
        n_true, n_learned = true.sum(1), learned.sum(1)
        for t in (1, 2, 3):
            sel = n_true == t
            row[f"n_perts_{t}_targets"] = int(sel.sum())
            row[f"mean_edges_{t}_targets"] = float(n_learned[sel].mean()) if sel.any() else np.nan
            row[f"single_edge_{t}_targets"] = int((sel & (n_learned == 1)).sum())
        row["precision"] = float((learned & true).sum() / max(learned.sum(), 1))
        row["recall"] = float((learned & true).sum() / max(true.sum(), 1))
        folded = np.flatnonzero((n_true == 2) & (n_learned == 1))

        def off_target_norm(ps) -> float:
            """Mean norm of the cells' mean latent on units the perturbations do not target."""
            ps = list(ps)
            return (
                float(np.mean([np.linalg.norm(means[p, ~true[p]]) for p in ps])) if ps else np.nan
            )

        on_edge, on_missed = [], []
        for p in folded:
            on_edge += list(np.abs(means[p, learned[p]]))
            on_missed += list(np.abs(means[p, true[p] & ~learned[p]]))
        # can get_off_mask_shifts point at the missed targets?
        off = model.get_off_mask_shifts().loc[perts]
        top = off["top_off_mask_unit"].map(lambda u: int(u[1:]) if isinstance(u, str) else -1)
        true_of = {int(c): i for i, c in enumerate(matching)}  # learned column -> true unit
        hits = []
        for p in folded:
            unit = true_of.get(top.iloc[p])  # the true unit of the top off-mask column
            hits.append(unit is not None and true[p, unit] and not learned[p, unit])
        missed = (true & ~learned).any(1)
        row["folded_top_off_mask_is_missed_target"] = float(np.mean(hits)) if hits else np.nan
        row["missed_target_auroc"] = (
            float(roc_auc_score(missed, off["off_mask_fraction"]))
            if 0 < missed.sum() < len(missed)
            else np.nan
        )
        singles = np.flatnonzero((n_true == 1) & (n_learned == 1))
        unfolded = np.flatnonzero((n_true == 2) & (n_learned == 2) & (learned == true).all(1))
        correct_singles = [p for p in singles if (learned[p] == true[p]).all()]
        row.update(
            {
                "single_target_off_target_norm": off_target_norm(correct_singles),
                "unfolded_n": int(unfolded.size),
                "unfolded_shift_on_targets": float(np.mean(np.abs(means[unfolded][true[unfolded]])))
                if unfolded.size
                else np.nan,
                "unfolded_norm_off_target": off_target_norm(unfolded),
                "single_target_shift": float(
                    np.mean([np.abs(means[p, learned[p]]).max() for p in singles])
                )
                if singles.size
                else np.nan,
                "folded_shift_on_edge": float(np.mean(on_edge)) if on_edge else np.nan,
                "folded_shift_on_missed_target": float(np.mean(on_missed)) if on_missed else np.nan,
                "folded_norm_off_target": off_target_norm(folded),
            }
        )
    return row


def _worker(args, seed: int) -> dict:
    """One seed in a fresh process (one torch thread)."""
    row = run_worker(
        MODULE,
        [
            "--worker",
            str(seed),
            "--method",
            args.method,
            "--model-kwargs",
            json.dumps(args.model_kwargs),
            "--train-kwargs",
            json.dumps(args.train_kwargs),
            *(["--quick"] if args.quick else []),
        ],
    )
    print(f"  seed {seed}: MCC {row['mcc']:.3f}, R2 {row['r2']:.3f}", flush=True)
    return row


def render(df: pd.DataFrame) -> str:
    """DIAGNOSIS.md from the rows of ``diagnosis.csv`` (nothing else is read)."""
    numeric = df.select_dtypes("number").drop(columns="seed")
    summary = pd.DataFrame({"mean": numeric.mean(), "sd": numeric.std(ddof=1)})
    per_seed = numeric.set_axis(df["seed"].astype(str)).T
    methods = ", ".join(f"`{m}`" for m in dict.fromkeys(df["method"]))
    model_kwargs = ", ".join(f"`{k}`" for k in dict.fromkeys(df["model_kwargs"].astype(str)))
    train_kwargs = ", ".join(f"`{k}`" for k in dict.fromkeys(df["train_kwargs"].astype(str)))
    text = [
        "# sVAE protocol: where the MCC is lost",
        "",
        f"{provenance_line('diagnosis.csv')} Method {methods}, model kwargs {model_kwargs}, "
        f"train kwargs {train_kwargs}; seeds {df['seed'].astype(int).tolist()}; the training "
        "perturbations of `benchmarks.simulated.run` (p00-p79). See the docstring of "
        "`benchmarks/simulated/diagnose.py` for each quantity.",
        "",
        pd.concat([per_seed, summary], axis=1).round(3).to_markdown(),
        "",
    ]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[101, 102, 103])
    parser.add_argument("--method", default="spike_slab", choices=list(CONFIGS))
    parser.add_argument("--model-kwargs", type=json.loads, default={})
    parser.add_argument("--train-kwargs", type=json.loads, default={})
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny screen, 5 epochs (CI)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite DIAGNOSIS.md from --out's diagnosis.csv"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)  # the committed folder depends on --method
    add_output_args(parser, MODULE, HERE / "diagnosis" / args.method)
    args = parser.parse_args(argv)
    if args.worker is not None:
        row = diagnose_one(
            args.worker, args.method, args.model_kwargs, args.train_kwargs, args.quick
        )
        print(json.dumps(row))
        return pd.DataFrame([row])

    out = resolve_out(args, MODULE, HERE / "diagnosis" / args.method)
    if args.render_only:
        df = pd.read_csv(out / "diagnosis.csv")
        (out / "DIAGNOSIS.md").write_text(render(df))
        return df
    write_run_json(
        out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={
            "method": args.method,
            "model_kwargs": args.model_kwargs,
            "train_kwargs": args.train_kwargs,
            "workers": args.workers,
            "quick": args.quick,
            "torch_threads_per_run": 1,
        },
    )
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(lambda s: _worker(args, s), args.seeds))
    df = pd.DataFrame(rows)
    df.to_csv(out / "diagnosis.csv", index=False)
    text = render(df)
    (out / "DIAGNOSIS.md").write_text(text)
    print(text)
    return df


if __name__ == "__main__":
    main()
