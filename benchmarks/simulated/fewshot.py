"""Few-shot transfer curve: new perturbations mapped with few cells onto a frozen model.

One command (``make bench-fewshot``)::

    python -m benchmarks.simulated.fewshot --update        # sVAE protocol, committed FEWSHOT.md
    python -m benchmarks.simulated.fewshot --quick --out /tmp/fewshot   # CI smoke run
    python -m benchmarks.simulated.fewshot --render-only --update       # from fewshot.csv

A reference SparseShiftVI is trained on the training perturbations of a simulated screen
(sVAE protocol: p00-p79). Each held-out perturbation (p80-p99) keeps ``n_test`` cells for
scoring; ``n`` of its other cells (``--shots``, e.g. 10, 30, 100 and all) are mapped with
``SparseShiftVI.load_query_data`` (only the new masks and shifts are fitted). Reported per
``n`` and seed: held-out IWELBO / ELBO of the test cells (per cell, 100 importance samples),
target-graph F1 / AUPRC of the held-out perturbations after matching latent units, and the
same for the frozen model without any fitted shift (``n = 0``: the new perturbations scored
as if they were controls). Writes ``fewshot.csv``, ``FEWSHOT.md`` (rendered from
``fewshot.csv`` alone), ``fewshot.png`` and ``run.json`` into ``--out`` (default: a scratch
folder; ``--update``: ``benchmarks/simulated``).

``--methods`` (default ``spike_slab`` and ``dense``) trains one reference per method on the
same screen and maps the same cells. ``spike_slab`` is also mapped with its query masks
fixed to all ones (``spike_slab_fixed_masks``, the published sVAE+ transfer protocol: only
shifts fitted), on the same reference. Runs made separately (one per method, in parallel) are
merged with ``--from-csv a.csv b.csv``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    provenance_line,
    resolve_out,
    set_torch_threads,
    subset,
    write_run_json,
)
from benchmarks.simulated import run as simulated

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.simulated.fewshot"
METHODS = {"spike_slab": {}, "dense": {"intervention_prior": "dense"}}
FIXED_MASKS = "spike_slab_fixed_masks"


def run_seed(
    seed: int,
    shots: list[int],
    quick: bool,
    n_test: int,
    max_epochs,
    protocol: str,
    method: str = "spike_slab",
):
    import scvi

    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.metrics import match_latents, mcc, target_graph_scores
    from scvi_causal.model import SparseShiftVI

    scvi.settings.seed = seed
    if quick:
        adata = simulate_sparse_shift(
            protocol=protocol, n_perturbations=6, n_cells_per_perturbation=60, seed=seed
        )
        n_train = 4
    else:
        adata = simulate_sparse_shift(protocol=protocol, seed=seed)
        n_train = 80 if protocol == "svae" else 40
    truth = adata.uns["true_graph"]
    control = adata.uns["simulation"]["control_category"]
    train_perts, held_out = list(truth.index[:n_train]), list(truth.index[n_train:])
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    ref = subset(adata, np.isin(labels, train_perts + ([control] if control else [])))
    SparseShiftVI.setup_anndata(ref, perturbation_key="perturbation", control_category=control)
    model = SparseShiftVI(
        ref,
        n_latent=adata.obsm["z_true"].shape[1],
        gene_likelihood="poisson" if protocol == "svae" else "nb",
        **METHODS[method],
    )
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    ref_seconds = time.perf_counter() - start
    matching, _ = match_latents(ref.obsm["z_true"], model.get_latent_representation())
    ref_mcc = mcc(ref.obsm["z_true"], model.get_latent_representation())

    rng = np.random.default_rng(seed)
    test_idx, pool = [], {}
    for p in held_out:
        cells = rng.permutation(np.flatnonzero(labels == p))
        test_idx.append(cells[:n_test])
        pool[p] = cells[n_test:]
    test_mask = np.zeros(adata.n_obs, dtype=bool)
    test_mask[np.concatenate(test_idx)] = True
    controls = np.flatnonzero(labels == control) if control else np.array([], dtype=int)
    test = subset(adata, test_mask)
    variants = {method: {}}
    if method == "spike_slab":
        variants[FIXED_MASKS] = {"fix_masks": True}
    rows = []
    for n, (name, query_kwargs) in itertools.product(shots, variants.items()):
        n_fit = min(n, min(len(v) for v in pool.values())) if n > 0 else 0
        if n_fit == 0 and name != method:
            continue  # nothing fitted: the same scores as `method`
        fit_idx = np.concatenate([v[: max(n_fit, 1)] for v in pool.values()] + [controls])
        fit_mask = np.zeros(adata.n_obs, dtype=bool)
        fit_mask[fit_idx] = True
        query_adata = subset(adata, fit_mask)
        query = SparseShiftVI.load_query_data(query_adata, model, **query_kwargs)
        start = time.perf_counter()
        if n_fit > 0:
            query.train(max_epochs=max_epochs, enable_progress_bar=False)
        seconds = time.perf_counter() - start
        scores = query.get_perturbation_scores(test, n_mc_samples=100).loc[held_out]
        held_true = truth.loc[held_out]
        if name == "spike_slab":  # inclusion probabilities
            est = query.get_target_graph().loc[held_out].to_numpy()
        else:  # no sparse mask: top-k shifts (k = true number of targets), as published
            est = simulated._topk_graph(query, "dense", held_out, matching, held_true.to_numpy())
        graph = target_graph_scores(held_true.to_numpy(), est, matching)
        rows.append(
            {
                "protocol": protocol,
                "method": name,
                "seed": seed,
                "cells_per_perturbation": n_fit,
                "heldout_iwelbo": float(scores["iwelbo"].mean()),
                "heldout_elbo": float(scores["elbo"].mean()),
                "heldout_graph_f1": float(graph["f1"]) if n_fit > 0 else np.nan,
                "heldout_graph_auprc": float(graph["auprc"]) if n_fit > 0 else np.nan,
                "reference_mcc": ref_mcc,
                "reference_seconds": ref_seconds,
                "transfer_seconds": seconds,
            }
        )
        print(
            f"  {name} seed {seed} n={n_fit}: IWELBO {rows[-1]['heldout_iwelbo']:.2f}, "
            f"F1 {rows[-1]['heldout_graph_f1']:.3f}",
            flush=True,
        )
    return rows


def render(df: pd.DataFrame) -> str:
    """FEWSHOT.md from the rows of ``fewshot.csv`` (nothing else is read)."""
    cols = [
        "heldout_iwelbo",
        "heldout_elbo",
        "heldout_graph_f1",
        "heldout_graph_auprc",
        "transfer_seconds",
    ]
    g = df.groupby(["protocol", "method", "cells_per_perturbation"])[cols]
    mean, sd = g.mean(), g.std(ddof=1).fillna(0.0)
    table = mean.round(3).astype(str) + " ± " + sd.round(3).astype(str)
    table.insert(0, "n_seeds", g.size())
    md = [
        "# Few-shot transfer of held-out perturbations",
        "",
        f"{provenance_line('fewshot.csv')} Mean ± sd over seeds "
        f"{sorted(df['seed'].unique().tolist())}. Reference MCC "
        + ", ".join(f"{m} {v:.3f}" for m, v in df.groupby("method")["reference_mcc"].mean().items())
        + ". `cells_per_perturbation = 0`: frozen model, no fitted shift. All methods score "
        "the same test cells of the same screens; `dense` graphs are read as the top-k "
        "shifts (k = true number of targets), as in the published protocol.",
        "",
        table.reset_index().to_markdown(index=False),
        "",
    ]
    md += paired_lines(df)
    md += ["![few-shot](fewshot.png)", ""]
    return "\n".join(md)


def write(df: pd.DataFrame, out: Path, csv: bool = True) -> None:
    """fewshot.csv (unless ``csv`` is False), FEWSHOT.md and fewshot.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if csv:
        df.to_csv(out / "fewshot.csv", index=False)
    (out / "FEWSHOT.md").write_text(render(df))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    for ax, col in zip(axes, ["heldout_iwelbo", "heldout_graph_f1"], strict=True):
        for method, sub in df.groupby("method"):
            m = sub.groupby("cells_per_perturbation")[col].mean()
            ax.plot(m.index, m.values, "o-", label=method)
            ax.scatter(sub["cells_per_perturbation"], sub[col], color="k", s=6)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("query cells per perturbation")
        ax.set_ylabel(col)
    axes[0].legend(frameon=False, fontsize=8)
    fig.savefig(out / "fewshot.png", dpi=120)


def paired_lines(df: pd.DataFrame) -> list[str]:
    """Markdown: per seed and number of cells, each method's held-out IWELBO minus dense's."""
    if df["method"].nunique() < 2 or "dense" not in set(df["method"]):
        return []
    wide = df.pivot_table(
        index=["protocol", "cells_per_perturbation", "seed"],
        columns="method",
        values="heldout_iwelbo",
    )
    rows = []
    for method in wide.columns.drop("dense"):
        diff = (wide[method] - wide["dense"]).dropna()
        for (protocol, n), d in diff.groupby(level=[0, 1]):
            rows.append(
                {
                    "protocol": protocol,
                    "method": method,
                    "cells_per_perturbation": n,
                    "seeds": len(d),
                    "mean minus dense (nats/cell)": round(d.mean(), 3),
                    "seeds >= dense": f"{int((d >= 0).sum())}/{len(d)}",
                }
            )
    return [
        "Held-out IWELBO of the test cells minus `dense`'s, paired by seed:",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
        "",
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--protocol", default="svae", choices=["svae", "default"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[101, 102, 103])
    parser.add_argument("--shots", nargs="+", type=int, default=[0, 10, 30, 1000])
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--from-csv",
        nargs="+",
        type=Path,
        default=None,
        help="merge these fewshot.csv files and rewrite the table, no training",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite FEWSHOT.md and fewshot.png from --out's fewshot.csv",
    )
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        df = pd.read_csv(out / "fewshot.csv")
        write(df, out, csv=False)
        return df
    if args.from_csv:
        frames = [pd.read_csv(p) for p in args.from_csv]
        # runs made before the column existed: spike_slab only
        frames = [f if "method" in f else f.assign(method="spike_slab") for f in frames]
        df = pd.concat(frames, ignore_index=True)
        write(df, out)
        return df
    set_torch_threads(args.threads)
    if args.quick:
        args.seeds, args.n_test = args.seeds[:1], 20
        args.shots = [0, 10, 1000]
        args.max_epochs = args.max_epochs or 3
    write_run_json(
        out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={
            "protocol": args.protocol,
            "methods": args.methods,
            "shots": args.shots,
            "n_test": args.n_test,
            "max_epochs": args.max_epochs,
            "quick": args.quick,
            "torch_threads": args.threads,
        },
    )
    rows = []
    for seed, method in itertools.product(args.seeds, args.methods):
        rows += run_seed(
            seed, args.shots, args.quick, args.n_test, args.max_epochs, args.protocol, method
        )
        write(pd.DataFrame(rows), out)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
