"""Wall time of default ``SparseShiftVI.train()`` on a 16,000-cell x 300-gene simulated screen.

    python benchmarks/simulated/timing.py            # writes benchmarks/simulated/TIMING.md

Uses the simulator's default protocol (75 perturbations x 200 cells + 1,000 controls, 300
genes, negative-binomial counts) and the model's default training (epochs, batch size,
learning rates). Records wall time, epochs, optimisation steps, torch threads and peak RSS.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import scvi
import torch

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.metrics import match_latents, mcc, target_graph_scores
from scvi_causal.model import SparseShiftVI

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "TIMING.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    adata = simulate_sparse_shift(
        n_perturbations=75, n_cells_per_perturbation=200, n_control_cells=1000, n_genes=300,
        seed=args.seed,
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
    rows = {
        "cells x genes": f"{adata.n_obs} x {adata.n_vars}",
        "epochs (default)": epochs,
        "optimisation steps": epochs * -(-int(adata.n_obs * 0.9) // 1024),
        "train() wall time (s)": f"{seconds:.0f}",
        "torch threads": args.threads,
        "peak RSS (MB)": f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
        "MCC / graph F1": f"{mcc(adata.obsm['z_true'], z):.3f} / {f1:.3f}",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU only",
    }
    text = ["# Default training time, 16,000 cells x 300 genes", "",
            f"Written by `python benchmarks/simulated/timing.py --seed {args.seed} "
            f"--threads {args.threads}`.", "", "| quantity | value |", "|---|---|"]
    text += [f"| {k} | {v} |" for k, v in rows.items()]
    args.out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
