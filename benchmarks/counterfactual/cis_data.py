"""What the Gasperini positive controls show in the data alone, before any model.

For each promoter-targeting positive control of the Gasperini et al. 2019 subset, the observed
log fold change of its own gene against the control cells and the gene's rank among the group's
observed down-regulated genes (1 = the gene its cells lower the most), on all cells and on each
half of the splits that ``benchmarks.counterfactual.run``'s ``gasperini_cis`` task uses (seeds
1-4; the task trains on ``train`` and scores on ``test``). A model trained on a half cannot be
asked to put an own gene among its 10 most down-regulated genes where that half's cells do not
lower it measurably. Model-free, about a minute::

    python -m benchmarks.counterfactual.cis_data --update

Writes ``cis_data.csv``, ``CIS_DATA.md`` (rendered from the CSV alone; ``--render-only``) and
its record in ``run.json`` into ``--out`` (default: a scratch folder; ``--update``: this folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    provenance_line,
    resolve_out,
    write_run_json,
    write_text,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.counterfactual.cis_data"
SEEDS = (1, 2, 3, 4)
TOP = 10


def observed_ranks(X, labels: np.ndarray, cells: np.ndarray, pcs: dict, genes: list) -> list:
    """Own-gene log fold change and rank of every positive control within ``cells``."""
    from scvi_causal.metrics import log_fold_change, normalize_counts

    control = normalize_counts(X[cells & (labels == "control")])
    rows = []
    for group, gene in pcs.items():
        lfc = log_fold_change(normalize_counts(X[cells & (labels == group)]), control)
        col = genes.index(gene)
        rows.append(
            {
                "perturbation": group,
                "gene": gene,
                "n_cells": int((cells & (labels == group)).sum()),
                "observed_lfc": float(lfc[col]),
                "rank_down": int((lfc < lfc[col]).sum()) + 1,
                "n_genes": len(genes),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_args(parser, MODULE, HERE)
    parser.add_argument(
        "--render-only",
        dest="render_only",
        action="store_true",
        help="only rewrite CIS_DATA.md from cis_data.csv in --out",
    )
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        df = pd.read_csv(out / "cis_data.csv")
        write_text(out / "CIS_DATA.md", render(df))
        return df

    from benchmarks.counterfactual.run import _half_split
    from scvi_causal.data import gasperini_2019

    adata = gasperini_2019()
    pcs = adata.uns["positive_controls"]
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    genes = list(adata.var_names)
    X = adata.X
    parts = [("all", None, np.ones(adata.n_obs, dtype=bool))]
    for seed in SEEDS:
        test = _half_split(labels, seed)
        parts += [("train", seed, ~test), ("test", seed, test)]
    rows = []
    for part, seed, cells in parts:
        for row in observed_ranks(X, labels, cells, pcs, genes):
            rows.append({"cells": part, "seed": seed, **row})
    df = pd.DataFrame(rows)
    df["down_in_top"] = (df["observed_lfc"] < 0) & (df["rank_down"] <= TOP)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "cis_data.csv", index=False)
    write_run_json(out, seeds=SEEDS, module=MODULE, argv=argv)
    write_text(out / "CIS_DATA.md", render(pd.read_csv(out / "cis_data.csv")))
    return df


def render(df: pd.DataFrame) -> str:
    """CIS_DATA.md from the rows of ``cis_data.csv`` (nothing else is read)."""
    df = df.copy()
    seed = df["seed"].astype("Int64").astype(str)
    df["where"] = np.where(df["seed"].isna(), "all cells", df["cells"] + " half, seed " + seed)
    order = list(dict.fromkeys(df["where"]))
    lfc = df.pivot(index="perturbation", columns="where", values="observed_lfc")[order]
    rank = df.pivot(index="perturbation", columns="where", values="rank_down")[order]
    table = lfc.round(3).astype(str) + " (" + rank.astype(str) + ")"
    counts = df.groupby("where", sort=False)["down_in_top"].sum().reindex(order)
    lines = [
        "# Gasperini positive controls in the data alone",
        "",
        provenance_line("cis_data.csv") + " Model-free.",
        "",
        "Observed log fold change of each positive control's own gene against the control "
        "cells among the same cells, and in brackets its rank among the group's observed "
        f"down-regulated genes (of the subset's {int(df['n_genes'].iloc[0])} genes; 1 = lowered "
        "the most). `train` / `test`: the halves of the `gasperini_cis` task's split for that "
        "seed (`run.py` trains on `train` and scores on `test`).",
        "",
        table.to_markdown(),
        "",
        f"Own gene down and among the {TOP} most down-regulated genes, in the data itself:",
        "",
        counts.astype(int).rename("positive controls (of 10)").to_frame().to_markdown(),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
