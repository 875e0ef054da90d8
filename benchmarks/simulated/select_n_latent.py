"""Does ``select_n_latent`` recover the number of true latent factors of a simulated screen?

For each number of true factors K (``--true-k``, default 6, 10 and 15), a screen is simulated
(``simulate_sparse_shift``, the realistic ``"default"`` protocol: negative binomial counts,
1,000 controls) and ``scvi_causal.model.select_n_latent`` trains the grid ``--grid`` with
``--seeds``. Writes ``select_n_latent.csv`` (one row per K and grid value) and
``SELECT_N_LATENT.md`` into ``--out``; one job per K, ``--workers`` in parallel.

    python benchmarks/simulated/select_n_latent.py --workers 2 --out benchmarks/simulated
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

GRID = (4, 6, 8, 10, 12, 15, 20)
SIZE = {"n_perturbations": 40, "n_cells_per_perturbation": 60, "n_genes": 500}


def _job(k: int, grid, seeds, max_epochs: int, threads: int, quick: bool) -> pd.DataFrame:
    import torch

    torch.set_num_threads(threads)
    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.model import SparseShiftVI, select_n_latent

    size = {"n_perturbations": 8, "n_cells_per_perturbation": 30, "n_genes": 60,
            "n_control_cells": 100} if quick else SIZE
    adata = simulate_sparse_shift(n_latent=k, seed=k, **size)
    SparseShiftVI.setup_anndata(adata)
    start = time.time()
    table = select_n_latent(adata, n_latents=grid, seeds=seeds, max_epochs=max_epochs,
                            train_kwargs={"enable_progress_bar": False})
    return table.reset_index().assign(true_k=k, chosen_n_latent=table.attrs["n_latent"],
                                      seconds=time.time() - start)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--true-k", nargs="+", type=int, default=[6, 10, 15])
    parser.add_argument("--grid", nargs="+", type=int, default=list(GRID))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--max-epochs", type=int, default=150)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny screens (CI)")
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/select_n_latent"),
                        help="output folder (the committed table: benchmarks/simulated)")
    args = parser.parse_args(argv)
    if args.quick:
        args.true_k, args.grid, args.max_epochs = args.true_k[:1], [2, args.true_k[0]], 3
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/simulated/select_n_latent.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        futures = [pool.submit(_job, k, args.grid, args.seeds, args.max_epochs, args.threads,
                               args.quick) for k in args.true_k]
        tables = [f.result() for f in futures]
    df = pd.concat(tables, ignore_index=True).assign(command=command.strip())
    df.to_csv(args.out / "select_n_latent.csv", index=False)
    chosen = df.groupby("true_k")["chosen_n_latent"].first()
    lines = [
        "# Choosing n_latent on simulated screens", "",
        f"Written by `{command.strip()}` from `select_n_latent.csv`; do not edit by hand. "
        f"Screens: `simulate_sparse_shift(n_latent=K, seed=K, {SIZE})`; grid {args.grid}, "
        f"seeds {args.seeds}, {args.max_epochs} epochs; rule: the smallest n_latent whose "
        "held-out ELBO is within one standard error (cells and seeds) of the best.", "",
        "| true K | chosen n_latent | within +-2 |", "|---:|---:|---|",
        *[f"| {k} | {c} | {'yes' if abs(c - k) <= 2 else 'no'} |" for k, c in chosen.items()],
        "", df.drop(columns="command").round(3).to_markdown(index=False), ""]
    (args.out / "SELECT_N_LATENT.md").write_text("\n".join(lines))
    print("\n".join(lines[:8 + len(chosen)]))
    return df


if __name__ == "__main__":
    main()
