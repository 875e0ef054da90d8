"""``make demo``: simulate a screen with known truth, train SparseShiftVI, score and plot it.

Run as ``python -m scvi_causal.demo --output demo_output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import scvi

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.metrics import match_latents, mcc, target_graph_scores
from scvi_causal.model import SparseShiftVI
from scvi_causal.pl import target_graph_heatmap, training_history

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    """Run the demo; returns the scores it printed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="demo_output", help="folder for PNGs and CSVs")
    parser.add_argument("--n-perturbations", type=int, default=30)
    parser.add_argument("--n-cells-per-perturbation", type=int, default=150)
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=300,
        help="training epochs (300 keeps the demo under 5 minutes on 2 cores)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed

    adata = simulate_sparse_shift(
        n_perturbations=args.n_perturbations,
        n_cells_per_perturbation=args.n_cells_per_perturbation,
        seed=args.seed,
    )
    print(
        f"Simulated screen: {adata.n_obs} cells x {adata.n_vars} genes, "
        f"{args.n_perturbations} perturbations + controls"
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    model = SparseShiftVI(adata, n_latent=adata.obsm["z_true"].shape[1])
    start = time.perf_counter()
    model.train(max_epochs=args.max_epochs)
    seconds = time.perf_counter() - start

    z = model.get_latent_representation()
    matching, _ = match_latents(adata.obsm["z_true"], z)
    graph = model.get_target_graph()
    true_graph = adata.uns["true_graph"].loc[graph.index]
    scores = target_graph_scores(true_graph.to_numpy(), graph.to_numpy(), matching)
    result = {
        "n_cells": int(adata.n_obs),
        "train_seconds": round(seconds, 1),
        "mcc": round(mcc(adata.obsm["z_true"], z), 4),
        **{f"graph_{k}": round(float(v), 4) for k, v in scores.items()},
    }
    print(json.dumps(result, indent=2))

    graph.to_csv(out / "target_graph.csv")
    model.get_perturbation_shifts().to_csv(out / "perturbation_shifts.csv")
    (out / "scores.json").write_text(json.dumps(result, indent=2))
    fig = target_graph_heatmap(
        graph,
        true_graph=true_graph,
        matching=matching,
        title=f"MCC {result['mcc']:.2f}, graph F1 {result['graph_f1']:.2f}",
    )
    fig.savefig(out / "target_graph.png", dpi=120)
    training_history(model.history).savefig(out / "training_history.png", dpi=120)
    print(f"Wrote {sorted(p.name for p in out.iterdir())} to {out}/")
    return result


if __name__ == "__main__":
    main()
