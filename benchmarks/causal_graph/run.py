"""Latent causal graph: the DAG prior against the independent prior on screens with a latent DAG.

One command writes ``results.csv``, ``RESULTS.md`` and ``run.json`` into ``--out`` (default: a
scratch folder; ``--update``: this folder)::

    python -m benchmarks.causal_graph.run --update                 # 2 screens x 2 methods x 3 seeds
    python -m benchmarks.causal_graph.run --quick --out /tmp/cg    # CI smoke run
    python -m benchmarks.causal_graph.run --render-only --update   # RESULTS.md from results.csv
    python -m benchmarks.causal_graph.run --methods dag_moments --append --update  # add a method

Screens (``simulate_sparse_shift``, default protocol, data seed = model seed): 8 latent units on
a random DAG (expected in-degree 1, linear mechanisms, |weights| 0.5-1.5), one perturbation per
unit moving it by ``+-N(3.25, 0.4)`` sd, 250 cells per perturbation plus 1,000 controls, 1,000
genes. ``dag_do``: hard interventions (the target's mechanism is cut); ``dag_shift``: the
target's noise is shifted (soft). Methods: ``independent`` (the default model) and ``dag``
(``latent_graph="dag"``, default graph settings), both with the model's default training, and
``dag_moments``: the DAG prior whose graph-alignment step is the closed-form moments estimate
(``graph_fit_kwargs={"method": "moments"}``, graph fixed afterwards: ``learn_graph=False``).
Scores after matching the learned units to the true ones (Hungarian on |Pearson r|): MCC,
direct-target precision / recall / F1 (a descendant reported as a target is a false positive,
``direct_target_scores``), and for ``dag`` the directed-edge precision / recall / F1, SHD and
AUPRC of the latent graph (``latent_graph_scores``); training time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    command_line,
    map_threads,
    provenance_line,
    resolve_out,
    run_worker,
    write_run_json,
    write_text,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.causal_graph.run"
SCREENS = {"dag_do": "do", "dag_shift": "shift"}
METHODS = {
    "independent": {},
    "dag": {"latent_graph": "dag"},
    "dag_moments": {"latent_graph": "dag"},
}
# training arguments per method (default: the model's)
PLAN = {"dag_moments": {"graph_fit_kwargs": {"method": "moments"}, "learn_graph": False}}
SIM = {
    "n_perturbations": 8,
    "n_latent": 8,
    "n_cells_per_perturbation": 250,
    "n_control_cells": 1000,
    "targets": "each_unit",
    "latent_graph": "random",
    "expected_in_degree": 1.0,
    "shift_mean": 3.25,
    "shift_sd": 0.4,
    "n_genes": 1000,
}
QUICK = {"n_cells_per_perturbation": 40, "n_control_cells": 80, "n_genes": 60}
COLUMNS = [
    "mcc",
    "direct_precision",
    "direct_recall",
    "direct_f1",
    "dag_precision",
    "dag_recall",
    "dag_f1",
    "dag_shd",
    "dag_auprc",
    "train_seconds",
]


def run_one(screen: str, method: str, seed: int, quick: bool, max_epochs) -> dict:
    """Simulate, train, score one (screen, method, seed)."""
    import scvi

    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.metrics import (
        direct_target_scores,
        latent_graph_scores,
        match_latents,
        mcc,
    )
    from scvi_causal.model import SparseShiftVI

    adata = simulate_sparse_shift(
        **dict(SIM, **(QUICK if quick else {})), intervention_type=SCREENS[screen], seed=seed
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = seed
    model = SparseShiftVI(adata, n_latent=SIM["n_latent"], **METHODS[method])
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False, plan_kwargs=PLAN.get(method))
    seconds = time.perf_counter() - start
    z_true, z = adata.obsm["z_true"], model.get_latent_representation()
    matching, _ = match_latents(z_true, z)
    targets = model.get_target_graph()
    true_dag = adata.uns["true_latent_graph"].to_numpy()
    direct = direct_target_scores(
        adata.uns["true_graph"].loc[targets.index].to_numpy(),
        targets.to_numpy(),
        true_dag,
        matching,
    )
    row = {
        "screen": screen,
        "method": method,
        "seed": seed,
        "mcc": mcc(z_true, z),
        "direct_precision": direct["precision"],
        "direct_recall": direct["recall"],
        "direct_f1": direct["f1"],
        "direct_descendant_fp": direct["n_descendant_fp"],
        "n_true_edges": int(true_dag.sum()),
        "train_seconds": seconds,
        "epochs": int(model.history["train_loss"].shape[0]),
    }
    if method.startswith("dag"):
        dag = latent_graph_scores(true_dag, model.get_latent_graph().to_numpy(), matching)
        row |= {
            "dag_precision": dag["precision"],
            "dag_recall": dag["recall"],
            "dag_f1": dag["f1"],
            "dag_shd": dag["shd"],
            "dag_auprc": dag["auprc"],
            "n_est_edges": dag["n_est_edges"],
        }
    return row


def render(df: pd.DataFrame) -> str:
    """RESULTS.md from the rows of ``results.csv`` (nothing else is read)."""
    lines = [
        "# Latent causal graph: DAG prior against independent units",
        "",
        provenance_line("results.csv"),
        "",
        "Mean ± sd over seeds (seeds "
        + ", ".join(str(s) for s in sorted(df["seed"].unique()))
        + "). Direct-target scores count a descendant reported as a target as a false "
        "positive; DAG scores are directed edges after matching units (only the DAG prior has "
        "a graph).",
        "",
        "| screen | method | n | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for (screen, method), group in df.groupby(["screen", "method"], sort=True):
        cells = []
        for col in COLUMNS:
            values = group[col].dropna() if col in group else pd.Series(dtype=float)
            if values.empty:
                cells.append("")
            elif col == "train_seconds":
                cells.append(f"{values.mean():.0f} ± {values.std(ddof=0):.0f}")
            else:
                cells.append(f"{values.mean():.3f} ± {values.std(ddof=0):.3f}")
        lines.append(f"| {screen} | {method} | {len(group)} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def write_tables(df: pd.DataFrame, out: Path) -> None:
    df = df.sort_values(["screen", "method", "seed"]).reset_index(drop=True)
    df.to_csv(out / "results.csv", index=False)
    write_text(out / "RESULTS.md", render(df))


def _worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=None)
    args = parser.parse_args(argv)
    screen, method, seed = args.worker
    row = run_one(screen, method, int(seed), args.quick, args.max_epochs)
    print(json.dumps(row, default=float))


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    import sys

    raw = sys.argv[1:] if argv is None else argv
    if "--worker" in raw:
        _worker(raw)
        return None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", nargs="+", default=list(SCREENS), choices=list(SCREENS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny screens, 3 epochs (CI)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite RESULTS.md from --out's results.csv"
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep --out's earlier rows of other (screen, method, seed) runs in results.csv",
    )
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        write_tables(pd.read_csv(out / "results.csv"), out)
        return None
    if args.quick:
        args.seeds, args.max_epochs = args.seeds[:1], args.max_epochs or 3
    write_run_json(
        out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={"screens": args.screens, "methods": args.methods, "quick": args.quick},
        append=args.append,
    )
    command = command_line(MODULE, argv)
    extra = (["--quick"] if args.quick else []) + (
        ["--max-epochs", str(args.max_epochs)] if args.max_epochs else []
    )
    jobs = [
        (screen, method, seed)
        for seed in args.seeds
        for screen in args.screens
        for method in args.methods
    ]

    def job(screen, method, seed):
        row = run_worker(MODULE, ["--worker", screen, method, str(seed), *extra], threads=1)
        row["command"] = command
        print(
            f"  {screen} {method} seed {seed}: MCC {row['mcc']:.3f}, direct F1 "
            f"{row['direct_f1']:.3f}, DAG F1 {row.get('dag_f1', np.nan):.3f}, "
            f"{row['train_seconds']:.0f} s",
            flush=True,
        )
        return row

    earlier = pd.DataFrame()
    if args.append and (out / "results.csv").exists():
        earlier = pd.read_csv(out / "results.csv")
        redone = earlier[["screen", "method", "seed"]].apply(tuple, axis=1).isin(jobs)
        earlier = earlier[~redone]

    def combined(rows):
        return pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True)

    rows = map_threads(job, jobs, args.workers, lambda rows: write_tables(combined(rows), out))
    df = combined(rows)
    write_tables(df, out)
    return df


if __name__ == "__main__":
    main()
