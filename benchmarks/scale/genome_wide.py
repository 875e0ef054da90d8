"""Genome-wide size: a simulated screen of 5,000 perturbations x 40 cells and 2,000 genes.

Trains the default SparseShiftVI with its default length and records, stage by stage, wall
time and peak resident memory (simulation, set-up, training, target graph, report with its
figures), and the target graph F1 and MCC against the simulated truth::

    python -m benchmarks.scale.genome_wide --update            # benchmarks/scale/genome_wide
    python -m benchmarks.scale.genome_wide --quick --out /tmp/gw   # CI smoke run
    python -m benchmarks.scale.genome_wide --render-only --update  # RESULTS.md from the CSV

Writes ``results.csv`` (one row per stage), ``RESULTS.md`` (rendered from it alone) and
``run.json`` into ``--out`` (default: a scratch folder; ``--update``:
``benchmarks/scale/genome_wide``), and the target report into ``--out/report`` (never
committed: its gene-effect table alone is 5,000 x 2,000).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    command_line,
    resolve_out,
    set_torch_threads,
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.scale.genome_wide"


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-perturbations", type=int, default=5000)
    parser.add_argument("--cells", type=int, default=40, help="cells per perturbation")
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--n-latent", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small screen, 3 epochs (CI)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite RESULTS.md from --out's results.csv"
    )
    add_output_args(parser, MODULE, HERE / "genome_wide")
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE / "genome_wide")
    if args.render_only:
        df = pd.read_csv(out / "results.csv")
        (out / "RESULTS.md").write_text(render(df))
        return df
    if args.quick:
        args.n_perturbations, args.cells, args.n_genes = 40, 20, 100
    command = command_line(MODULE, argv)

    import scvi

    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.metrics import match_latents, mcc, target_graph_scores
    from scvi_causal.model import SparseShiftVI

    set_torch_threads(args.threads)
    write_run_json(
        out,
        seeds=[args.seed],
        module=MODULE,
        argv=argv,
        extra={
            "n_perturbations": args.n_perturbations,
            "cells_per_perturbation": args.cells,
            "n_genes": args.n_genes,
            "n_latent": args.n_latent,
            "torch_threads": args.threads,
            "quick": args.quick,
        },
    )
    rows = []

    def table() -> pd.DataFrame:
        return pd.DataFrame(rows).assign(
            n_perturbations=args.n_perturbations,
            cells_per_perturbation=args.cells,
            n_genes=args.n_genes,
            n_latent=args.n_latent,
            threads=args.threads,
            command=command,
        )

    def stage(name: str, start: float, **extra):
        rows.append(
            {
                "stage": name,
                "seconds": time.perf_counter() - start,
                "peak_rss_gib": _peak_gib(),
                **extra,
            }
        )
        print(
            f"{name}: {rows[-1]['seconds']:.1f} s, peak RSS {rows[-1]['peak_rss_gib']:.2f} "
            f"GiB {extra or ''}",
            flush=True,
        )
        table().to_csv(out / "results.csv", index=False)  # kept if a later stage fails

    t = time.perf_counter()
    adata = simulate_sparse_shift(
        n_perturbations=args.n_perturbations,
        n_cells_per_perturbation=args.cells,
        n_genes=args.n_genes,
        n_latent=args.n_latent,
        seed=args.seed,
    )
    stage("simulate", t, n_cells=adata.n_obs)

    t = time.perf_counter()
    SparseShiftVI.setup_anndata(adata)
    scvi.settings.seed = args.seed
    model = SparseShiftVI(adata, n_latent=args.n_latent)
    stage("setup", t)

    t = time.perf_counter()
    model.train(max_epochs=3 if args.quick else None, enable_progress_bar=False)
    epochs = int(model.history["elbo_train"].shape[0])
    stage("train", t, epochs=epochs)

    t = time.perf_counter()
    z = model.get_latent_representation()
    graph = model.get_target_graph()
    truth = adata.uns["true_graph"].loc[graph.index]
    matching, _ = match_latents(adata.obsm["z_true"], z)
    scores = target_graph_scores(truth.to_numpy(), graph.to_numpy(), matching)
    stage(
        "latent and graph",
        t,
        graph_f1=scores["f1"],
        graph_precision=scores["precision"],
        graph_recall=scores["recall"],
        mcc=mcc(adata.obsm["z_true"], z),
        graph_density=float((graph.to_numpy() > 0.5).mean()),
    )

    t = time.perf_counter()
    report = model.target_report(out / "report", max_cells=1000)
    stage("target report", t, n_figures=len(report.get("figures", {})))

    df = table()
    (out / "RESULTS.md").write_text(render(df))
    return df


def render(df: pd.DataFrame) -> str:
    """RESULTS.md from the rows of ``results.csv`` (nothing else is read)."""
    first = df.iloc[0]
    epochs = df["epochs"].dropna()
    lines = [
        "# Genome-wide size",
        "",
        f"Written by `{first['command']}`; rendered from `results.csv` alone "
        "(`--render-only`). Simulated screen "
        f"(`simulate_sparse_shift`, default protocol): {first['n_perturbations']} "
        f"perturbations x {first['cells_per_perturbation']} cells + controls "
        f"({int(first['n_cells'])} cells), {first['n_genes']} genes, n_latent "
        f"{first['n_latent']}; the default model and training length "
        f"({int(epochs.iloc[0]) if len(epochs) else '?'} epochs), {first['threads']} torch "
        "threads. Peak RSS is that of the whole process so far.",
        "",
        df.drop(columns=["command"]).round(3).to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
