"""Consensus over seeds: precision of the edges that replicate across seeds of one screen.

One command writes ``consensus.csv`` and ``run.json`` into ``--out`` (default: a scratch
folder; ``--update``: ``benchmarks/simulated``) and prints the table::

    python -m benchmarks.simulated.consensus --update        # sVAE protocol, 5 seeds
    python -m benchmarks.simulated.consensus --quick --out /tmp/consensus   # CI smoke run

One simulated screen (``--protocol``, default the published sVAE simulation, data seed
``--data-seed``) is generated exactly as ``benchmarks.simulated.run`` (``run.py``) does, and
the default model (``spike_slab``, ``run.py``'s configuration and the model's default
training) is trained on its training
perturbations (sVAE: p00-p79) once per model seed (``--seeds``). The units of every seed are
matched to those of a reference seed with
:func:`scvi_causal.model.consensus_target_graph` (latents of the training cells), and the edges
present (inclusion probability > 0.5) in at least a fraction ``min_stability`` of the seeds are
scored against the true graph after matching the reference's units to the true factors
(Hungarian on |Pearson r|, ``match_latents``, as ``run.py`` does).

Rows of ``consensus.csv``:

``kind="seed"``
    each seed's own graph (inclusion probability >= 0.5, as in ``run.py``), and its MCC;
``kind="consensus"``
    the stable edges for every ``min_stability`` in 1/n, 2/n, ..., 1 with the first seed as
    reference, and for ``--min-stability`` (default 0.8) with every seed as reference (the
    consensus depends on the reference only through the matching). ``mcc`` is the reference's
    MCC, ``min_unit_correlation`` the smallest matched |r| of a reference unit in another seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    command_line,
    resolve_out,
    set_torch_threads,
    subset,
    write_run_json,
)
from benchmarks.simulated import run as bench

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.simulated.consensus"
METHOD = "spike_slab"


def simulate(protocol: str, data_seed: int, quick: bool):
    """The screen and its training perturbations, as ``run.py`` makes them."""
    from scvi_causal.data import simulate_sparse_shift

    spec = bench.PROTOCOLS[protocol]
    adata = simulate_sparse_shift(
        **dict(spec["sim"], seed=data_seed, **(bench.QUICK if quick else {}))
    )
    truth = adata.uns["true_graph"]
    control = adata.uns["simulation"]["control_category"]
    n_train = bench.QUICK_N_TRAIN if quick else spec["n_train"]
    train_perts = list(truth.index[:n_train])
    keep = adata.obs["perturbation"].isin(train_perts + ([control] if control else []))
    return subset(adata, keep.to_numpy()), truth.loc[train_perts], control, spec


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="svae", choices=["svae", "default"])
    parser.add_argument(
        "--data-seed",
        type=int,
        default=101,
        help="seed of the simulated screen (benchmarks.simulated.run's first seed)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[101, 102, 103, 104, 105],
        help="model seeds (scvi.settings.seed), at least 2; the first equals "
        "benchmarks.simulated.run's run of --data-seed",
    )
    parser.add_argument("--min-stability", type=float, default=0.8)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny screen, few epochs (CI)")
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least 2 seeds")
    command = command_line(MODULE, argv)
    out = resolve_out(args, MODULE, HERE)

    import scvi

    from scvi_causal.metrics import match_latents, mcc, target_graph_scores
    from scvi_causal.model import SparseShiftVI, consensus_target_graph

    set_torch_threads(args.threads)
    if args.quick:
        args.seeds = args.seeds[:3]
        args.max_epochs = args.max_epochs or 3
    write_run_json(
        out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={
            "protocol": args.protocol,
            "data_seed": args.data_seed,
            "min_stability": args.min_stability,
            "max_epochs": args.max_epochs,
            "quick": args.quick,
            "torch_threads": args.threads,
        },
    )
    adata, truth, control, spec = simulate(args.protocol, args.data_seed, args.quick)
    true_graph = truth.to_numpy()
    z_true = adata.obsm["z_true"]
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category=control)
    common = {
        "protocol": args.protocol,
        "data_seed": args.data_seed,
        "n_seeds": len(args.seeds),
        "n_perturbations": len(truth),
    }

    models, matchings, rows = {}, {}, []
    for seed in args.seeds:
        scvi.settings.seed = seed
        model = SparseShiftVI(
            adata,
            n_latent=z_true.shape[1],
            gene_likelihood=spec["likelihood"],
            **bench.CONFIGS[METHOD],
        )
        start = time.perf_counter()
        model.train(max_epochs=args.max_epochs, enable_progress_bar=False)
        seconds = time.perf_counter() - start
        z = model.get_latent_representation()
        matchings[seed], _ = match_latents(z_true, z)
        graph = model.get_target_graph().loc[truth.index].to_numpy()
        scores = target_graph_scores(true_graph, graph, matchings[seed])
        rows.append(
            {
                **common,
                "kind": "seed",
                "seed": seed,
                "min_stability": np.nan,
                **_scores(scores),
                "mcc": mcc(z_true, z),
                "epochs": int(model.history["elbo_train"].shape[0]),
                "train_seconds": seconds,
            }
        )
        models[seed] = model
        print(
            f"  seed {seed}: precision {scores['precision']:.3f}, recall "
            f"{scores['recall']:.3f}, F1 {scores['f1']:.3f}, {seconds:.0f} s",
            flush=True,
        )

    n = len(args.seeds)
    levels = sorted({round(k / n, 6) for k in range(1, n + 1)} | {args.min_stability})
    for ref in args.seeds:
        consensus = consensus_target_graph(models, reference=ref)
        replication = consensus.unit_replication()
        for level in levels if ref == args.seeds[0] else [args.min_stability]:
            stable = (consensus.stability.loc[truth.index] >= level - 1e-9).astype(float)
            scores = target_graph_scores(true_graph, stable.to_numpy(), matchings[ref])
            rows.append(
                {
                    **common,
                    "kind": "consensus",
                    "seed": ref,
                    "min_stability": level,
                    **_scores(scores),
                    "mcc": rows[args.seeds.index(ref)]["mcc"],
                    "min_unit_correlation": float(replication.min()),
                }
            )

    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "consensus.csv", index=False)
    print(
        f"\n{command}; seeds {args.seeds}, data seed {args.data_seed}, {args.protocol} "
        f"protocol; written to {out / 'consensus.csv'}"
    )
    cols = [
        "kind",
        "seed",
        "min_stability",
        "precision",
        "recall",
        "f1",
        "n_est_edges",
        "n_true_edges",
        "mcc",
        "min_unit_correlation",
    ]
    print(df[[c for c in cols if c in df]].round(3).to_string(index=False))
    main_rows = df[
        (df["kind"] == "consensus") & np.isclose(df["min_stability"], args.min_stability)
    ]
    seeds = df[df["kind"] == "seed"]
    print(
        f"\nStable edges (stability >= {args.min_stability:g}), over references: precision "
        f"{main_rows['precision'].mean():.3f} (min {main_rows['precision'].min():.3f}), "
        f"recall {main_rows['recall'].mean():.3f}; single seeds: precision "
        f"{seeds['precision'].mean():.3f}, recall {seeds['recall'].mean():.3f}, "
        f"F1 {seeds['f1'].mean():.3f}"
    )
    return df


def _scores(scores: dict) -> dict:
    keys = ("precision", "recall", "f1", "n_est_edges", "n_true_edges")
    return {k: float(scores[k]) for k in keys}


if __name__ == "__main__":
    main()
