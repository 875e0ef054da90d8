"""Does ``select_n_latent`` recover the number of true latent factors of a simulated screen?

For each number of true factors K (``--true-k``, default 6, 10 and 15), a screen is simulated
(``simulate_sparse_shift``, the realistic ``"default"`` protocol: negative binomial counts,
1,000 controls) and ``scvi_causal.model.select_n_latent`` trains the grid ``--grid`` with
``--seeds``. Writes ``select_n_latent.csv`` (one row per K and grid value),
``SELECT_N_LATENT.md`` (rendered from the CSV alone) and ``run.json`` into ``--out`` (default:
a scratch folder; ``--update``: ``benchmarks/simulated``); one job per K, ``--workers`` in
parallel.

    python -m benchmarks.simulated.select_n_latent --workers 3 --update
    python -m benchmarks.simulated.select_n_latent --render-only --update
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from benchmarks._common import (
    add_output_args,
    command_line,
    process_pool,
    resolve_out,
    set_torch_threads,
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.simulated.select_n_latent"
GRID = (4, 6, 8, 10, 12, 15, 20)
SIZE = {"n_perturbations": 40, "n_cells_per_perturbation": 60, "n_genes": 500}


def _job(k: int, grid, seeds, max_epochs: int, threads: int, quick: bool) -> pd.DataFrame:
    set_torch_threads(threads)
    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.model import SparseShiftVI, select_n_latent

    size = (
        {
            "n_perturbations": 8,
            "n_cells_per_perturbation": 30,
            "n_genes": 60,
            "n_control_cells": 100,
        }
        if quick
        else SIZE
    )
    adata = simulate_sparse_shift(n_latent=k, seed=k, **size)
    SparseShiftVI.setup_anndata(adata)
    start = time.time()
    table = select_n_latent(
        adata,
        n_latents=grid,
        seeds=seeds,
        max_epochs=max_epochs,
        train_kwargs={"enable_progress_bar": False},
    )
    return table.reset_index().assign(
        true_k=k, chosen_n_latent=table.attrs["n_latent"], seconds=time.time() - start
    )


def render(df: pd.DataFrame) -> str:
    """SELECT_N_LATENT.md from the rows of ``select_n_latent.csv`` (nothing else is read)."""
    commands = list(dict.fromkeys(df["command"].dropna())) if "command" in df else []
    chosen = df.groupby("true_k")["chosen_n_latent"].first()
    grid = sorted(int(n) for n in df["n_latent"].unique())
    if {"seeds", "max_epochs"} <= set(df):
        seeds = ", ".join(dict.fromkeys(f"[{s}]" for s in df["seeds"].astype(str)))
        epochs = ", ".join(str(e) for e in dict.fromkeys(df["max_epochs"]))
        settings = f"seeds {seeds}, {epochs} epochs"
    else:  # rows written before the columns existed
        settings = "seeds and epochs: the defaults of the command"
    lines = [
        "# Choosing n_latent on simulated screens",
        "",
        "Rendered from `select_n_latent.csv` alone (`--render-only`); do not edit by hand. "
        "Rows made by: " + "; ".join(f"`{c}`" for c in commands) + ". "
        f"Screens: `simulate_sparse_shift(n_latent=K, seed=K, {SIZE})` (smaller with "
        f"`--quick`); grid {grid}, {settings}; rule: the smallest n_latent whose held-out ELBO "
        "is within one standard error (cells and seeds) of the best.",
        "",
        "| true K | chosen n_latent | within +-2 |",
        "|---:|---:|---|",
        *[f"| {k} | {c} | {'yes' if abs(c - k) <= 2 else 'no'} |" for k, c in chosen.items()],
        "",
        df.drop(columns=["command", "seeds", "max_epochs"], errors="ignore")
        .round(3)
        .to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--true-k", nargs="+", type=int, default=[6, 10, 15])
    parser.add_argument("--grid", nargs="+", type=int, default=list(GRID))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--max-epochs", type=int, default=150)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny screens (CI)")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite SELECT_N_LATENT.md from --out's select_n_latent.csv",
    )
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        df = pd.read_csv(out / "select_n_latent.csv")
        (out / "SELECT_N_LATENT.md").write_text(render(df))
        return df
    if args.quick:
        args.true_k, args.grid, args.max_epochs = args.true_k[:1], [2, args.true_k[0]], 3
    command = command_line(MODULE, argv)
    write_run_json(
        out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={
            "true_k": args.true_k,
            "grid": args.grid,
            "max_epochs": args.max_epochs,
            "workers": args.workers,
            "torch_threads": args.threads,
            "quick": args.quick,
        },
    )
    with process_pool(args.workers) as pool:
        futures = [
            pool.submit(_job, k, args.grid, args.seeds, args.max_epochs, args.threads, args.quick)
            for k in args.true_k
        ]
        tables = [f.result() for f in futures]
    df = pd.concat(tables, ignore_index=True).assign(
        command=command, seeds=" ".join(map(str, args.seeds)), max_epochs=args.max_epochs
    )
    df.to_csv(out / "select_n_latent.csv", index=False)
    text = render(df)
    (out / "SELECT_N_LATENT.md").write_text(text)
    print("\n".join(text.splitlines()[: 8 + df["true_k"].nunique()]))
    return df


if __name__ == "__main__":
    main()
