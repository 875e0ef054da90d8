"""What limits the latent DAG inside the VAE: the encoder is not linear in the causal variables.

On each ``dag_do`` screen of ``benchmarks.causal_graph.run`` (hard interventions on a random
8-unit DAG), the closed-form moments estimate of the graph
(:func:`scvi_causal.core.latent_graph_from_moments`) is computed on three versions of the same
cells' latents:

- ``true_mixed``: the true causal variables through a random linear mixture (the setting in
  which linear causal disentanglement is identifiable);
- ``encoder``: the posterior means of ``SparseShiftVI`` trained with independent units (the
  default model, default training), which is what the graph-alignment step of
  ``latent_graph="dag"`` sees;
- ``encoder_linear_part``: the best affine function of the true variables to those posterior
  means (least squares), i.e. the encoder with its nonlinear part removed;
- ``encoder_smooth_part``: the best smooth function of the true variables to the posterior
  means (an MLP regression, cross-fitted over 5 folds so that it cannot learn the noise), i.e.
  the encoder's bend without the noise of the posterior means;
- ``linear_part_plus_noise``: the linear part plus what the smooth part leaves (the noise of
  the posterior means given the true variables), i.e. the noise without the bend.

The last two split what the encoder does to the estimate into its two sources.

For each: AUPRC of the directed edges ranked by absolute weight, precision / recall / F1 of the
edges with absolute weight >= 0.3 (``fit_latent_graph``'s ``min_edge_weight``), all after
matching units (Hungarian on absolute correlation with the true variables), and the MCC of
the frame the estimate moves to. ``r2_linear``: share of the posterior means' variance that the
affine function explains (mean over units). One command::

    python -m benchmarks.causal_graph.warp --update      # 3 seeds, about 15 min on 2 cores
    python -m benchmarks.causal_graph.warp --quick --out /tmp/warp   # CI smoke run

Writes ``warp.csv``, ``WARP.md`` (rendered from the CSV alone; ``--render-only``) and its
record in ``run.json`` into ``--out`` (default: a scratch folder; ``--update``: this folder).
"""

from __future__ import annotations

import argparse
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
MODULE = "benchmarks.causal_graph.warp"
LATENTS = (
    "true_mixed",
    "encoder",
    "encoder_linear_part",
    "encoder_smooth_part",
    "linear_part_plus_noise",
)
MIN_EDGE_WEIGHT = 0.3


def graph_scores(z_true: np.ndarray, latents: np.ndarray, labels: np.ndarray, true_dag) -> dict:
    """Moments estimate on ``latents``, scored against the true DAG after matching units."""
    import torch

    from scvi_causal.core import latent_graph_from_moments
    from scvi_causal.metrics import latent_graph_scores, match_latents, mcc

    perturbations = sorted(set(labels) - {"control"})
    intervention = np.stack([labels == p for p in perturbations], 1).astype(np.float64)
    estimate = latent_graph_from_moments(torch.tensor(latents), torch.tensor(intervention))
    if estimate is None:
        return {"estimated": False}
    frame, weights = (t.numpy() for t in estimate)
    moved = latents @ frame
    matching, _ = match_latents(z_true, moved)
    strength = np.abs(weights)
    ranked = latent_graph_scores(true_dag, strength, matching)
    kept = latent_graph_scores(true_dag, (strength >= MIN_EDGE_WEIGHT).astype(float), matching)
    return {
        "estimated": True,
        "mcc": mcc(z_true, moved),
        "auprc": ranked["auprc"],
        "precision": kept["precision"],
        "recall": kept["recall"],
        "f1": kept["f1"],
        "n_est_edges": kept["n_est_edges"],
    }


def smooth_part(z_true: np.ndarray, latents: np.ndarray, seed: int) -> np.ndarray:
    """Cross-fitted MLP regression of ``latents`` on the standardized true variables: each cell's
    value comes from a network that did not see it, so the noise of ``latents`` stays out."""
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.neural_network import MLPRegressor

    z = (z_true - z_true.mean(0)) / z_true.std(0)
    network = MLPRegressor(
        hidden_layer_sizes=(64, 64),
        alpha=1e-3,
        max_iter=2000,
        early_stopping=True,
        random_state=seed,
    )
    return cross_val_predict(network, z, latents, cv=KFold(5, shuffle=True, random_state=seed))


def run_one(seed: int, quick: bool, max_epochs) -> list[dict]:
    """Train the independent model on one ``dag_do`` screen and score the versions of its
    latents (``LATENTS``)."""
    import scvi

    from benchmarks.causal_graph.run import QUICK, SIM
    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.metrics import mcc
    from scvi_causal.model import SparseShiftVI

    adata = simulate_sparse_shift(
        **dict(SIM, **(QUICK if quick else {})), intervention_type="do", seed=seed
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = seed
    model = SparseShiftVI(adata, n_latent=SIM["n_latent"])
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    z_true = adata.obsm["z_true"].astype(np.float64)
    encoder = model.get_latent_representation().astype(np.float64)
    design = np.c_[np.ones(len(z_true)), z_true]
    linear = design @ np.linalg.lstsq(design, encoder, rcond=None)[0]
    smooth = smooth_part(z_true, encoder, seed)

    def explained(fit):  # share of the posterior means' variance, mean over units
        return float((1.0 - (encoder - fit).var(0) / encoder.var(0)).mean())

    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(z_true.shape[1], z_true.shape[1]))
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    true_dag = adata.uns["true_latent_graph"].to_numpy()
    versions = {
        "true_mixed": z_true @ mixing,
        "encoder": encoder,
        "encoder_linear_part": linear,
        "encoder_smooth_part": smooth,
        "linear_part_plus_noise": linear + (encoder - smooth),
    }
    rows = []
    for name, latents in versions.items():
        row = {
            "seed": seed,
            "latents": name,
            "n_true_edges": int(true_dag.sum()),
            "mcc_before": mcc(z_true, latents),
            "r2_linear": explained(linear),
            "r2_smooth": explained(smooth),
        }
        rows.append(row | graph_scores(z_true, latents, labels, true_dag))
    return rows


def render(df: pd.DataFrame) -> str:
    """WARP.md from the rows of ``warp.csv`` (nothing else is read)."""
    columns = ["mcc_before", "mcc", "auprc", "precision", "recall", "f1", "n_est_edges"]
    seeds = ", ".join(str(s) for s in sorted(df["seed"].unique()))
    mean = df.groupby("latents", sort=False)[columns].mean()
    mean = mean.reindex([name for name in LATENTS if name in mean.index])
    per_seed = df.pivot(index="seed", columns="latents", values="auprc")
    per_seed = per_seed[[c for c in LATENTS if c in per_seed]]
    r2 = df.groupby("seed")[[c for c in ("r2_linear", "r2_smooth") if c in df]].first()
    lines = [
        "# What limits the latent DAG inside the VAE",
        "",
        provenance_line("warp.csv"),
        "",
        "Closed-form moments estimate of the DAG (`latent_graph_from_moments`) on five versions "
        "of the latents of the same cells of each `dag_do` screen (8 units on a random DAG, one "
        f"hard intervention per unit; seeds {seeds}): the true causal variables through a random "
        "linear mixture, the posterior means of the model trained with independent units (what "
        "the graph-alignment step sees), the best affine function of the true variables to "
        "those posterior means (`encoder_linear_part`), the best smooth function (a cross-fitted "
        "MLP regression: the encoder's bend without its noise, `encoder_smooth_part`), and the "
        "linear part plus the noise that the smooth part leaves (the noise without the bend, "
        "`linear_part_plus_noise`). Edges kept at absolute weight >= "
        f"{MIN_EDGE_WEIGHT}; AUPRC ranks every edge by absolute weight; all after matching units. "
        "`mcc_before`: the latents as given; `mcc`: in the frame the estimate moves them to.",
        "",
        "Mean over seeds:",
        "",
        mean.round(3).to_markdown(),
        "",
        "AUPRC per seed, and the share of the posterior means' variance that an affine function of "
        "the true variables explains (`r2_linear`), and a smooth one (`r2_smooth`):",
        "",
        per_seed.join(r2).round(3).to_markdown(),
        "",
    ]
    return "\n".join(lines)


def write_tables(df: pd.DataFrame, out: Path) -> None:
    df.to_csv(out / "warp.csv", index=False)
    write_text(out / "WARP.md", render(df))


def _worker(argv: list[str]) -> None:
    import json
    import sys

    args = argv[argv.index("--worker") + 1 :]
    seed, quick = int(args[0]), "--quick" in args
    max_epochs = int(args[args.index("--max-epochs") + 1]) if "--max-epochs" in args else None
    sys.stdout.write("\n" + json.dumps(run_one(seed, quick, max_epochs)) + "\n")


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    import sys

    raw = sys.argv[1:] if argv is None else argv
    if "--worker" in raw:
        _worker(raw)
        return None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny screens, 3 epochs (CI)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite WARP.md from --out's warp.csv"
    )
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        write_tables(pd.read_csv(out / "warp.csv"), out)
        return None
    if args.quick:
        args.seeds, args.max_epochs = args.seeds[:1], args.max_epochs or 3
    write_run_json(out, seeds=args.seeds, module=MODULE, argv=argv, extra={"quick": args.quick})
    command = command_line(MODULE, argv)
    extra = (["--quick"] if args.quick else []) + (
        ["--max-epochs", str(args.max_epochs)] if args.max_epochs else []
    )

    def job(seed):
        rows = run_worker(MODULE, ["--worker", str(seed), *extra], threads=1)
        for row in rows:
            row["command"] = command
            print(f"  seed {seed} {row['latents']}: AUPRC {row.get('auprc', np.nan):.3f}")
        return rows

    def flat(results):
        return pd.DataFrame([row for rows in results for row in rows])

    results = map_threads(
        job, [(s,) for s in args.seeds], args.workers, lambda done: write_tables(flat(done), out)
    )
    df = flat(results).sort_values(["seed"], kind="stable").reset_index(drop=True)
    write_tables(df, out)
    return df


if __name__ == "__main__":
    main()
