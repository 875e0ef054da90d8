"""Wall time of default ``SparseShiftVI.train()`` on a 16,000-cell x 300-gene simulated screen.

    python -m benchmarks.simulated.timing --update        # writes benchmarks/simulated/TIMING.md
    python -m benchmarks.simulated.timing --render-only --update   # TIMING.md from timing.csv

Uses the simulator's default protocol (75 perturbations x 200 cells + 1,000 controls, 300
genes, negative-binomial counts) and the model's default training (epochs, batch size,
learning rates). Records wall time, epochs, optimisation steps, torch threads and peak RSS.
Writes ``timing.csv`` (one row), ``TIMING.md`` (rendered from it alone) and ``run.json`` into
``--out`` (default: a scratch folder; ``--update``: ``benchmarks/simulated``).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import pandas as pd

from benchmarks._common import (
    add_output_args,
    command_line,
    resolve_out,
    set_torch_threads,
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.simulated.timing"


def measure(seed: int, threads: int) -> dict:
    """Simulate the screen, train the default model once and time it."""
    import scvi
    import torch

    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.metrics import match_latents, mcc, target_graph_scores
    from scvi_causal.model import SparseShiftVI

    set_torch_threads(threads)
    scvi.settings.seed = seed
    adata = simulate_sparse_shift(
        n_perturbations=75,
        n_cells_per_perturbation=200,
        n_control_cells=1000,
        n_genes=300,
        seed=seed,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    model = SparseShiftVI(adata, n_latent=15)
    start = time.perf_counter()
    model.train(enable_progress_bar=False)
    seconds = time.perf_counter() - start
    epochs = model.history["elbo_train"].shape[0]
    z = model.get_latent_representation()
    matching, _ = match_latents(adata.obsm["z_true"], z)
    graph = model.get_target_graph()
    f1 = target_graph_scores(
        adata.uns["true_graph"].loc[graph.index].to_numpy(), graph.to_numpy(), matching
    )["f1"]
    return {
        "seed": seed,
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "epochs": epochs,
        "steps": epochs * -(-int(adata.n_obs * 0.9) // 1024),
        "train_seconds": seconds,
        "threads": threads,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mcc": mcc(adata.obsm["z_true"], z),
        "graph_f1": float(f1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU only",
    }


def render(df: pd.DataFrame) -> str:
    """TIMING.md from the row of ``timing.csv`` (nothing else is read)."""
    row = df.iloc[-1]
    rows = {
        "cells x genes": f"{row['n_cells']} x {row['n_genes']}",
        "epochs (default)": row["epochs"],
        "optimisation steps": row["steps"],
        "train() wall time (s)": f"{row['train_seconds']:.0f}",
        "torch threads": row["threads"],
        "peak RSS (MB)": f"{row['peak_rss_mb']:.0f}",
        "MCC / graph F1": f"{row['mcc']:.3f} / {row['graph_f1']:.3f}",
        "machine": row["machine"],
    }
    text = [
        "# Default training time, 16,000 cells x 300 genes",
        "",
        f"Written by `{row['command']}`; rendered from `timing.csv` alone (`--render-only`).",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    text += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite TIMING.md from --out's timing.csv"
    )
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        df = pd.read_csv(out / "timing.csv")
    else:
        write_run_json(
            out, seeds=[args.seed], module=MODULE, argv=argv, extra={"torch_threads": args.threads}
        )
        row = measure(args.seed, args.threads)
        df = pd.DataFrame([{**row, "command": command_line(MODULE, argv)}])
        df.to_csv(out / "timing.csv", index=False)
    text = render(df)
    (out / "TIMING.md").write_text(text)
    print(text)
    return df


if __name__ == "__main__":
    main()
