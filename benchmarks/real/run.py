"""Real screens: held-out perturbations, target-graph stability and pathway coherence.

One command reproduces the tables (``make bench-real``)::

    python -m benchmarks.real.run --workers 2 --threads 1 --update   # the committed tables
    python -m benchmarks.real.run --quick --out /tmp/real            # CI smoke run
    python -m benchmarks.real.run --render-only --update             # RESULTS.md from the CSVs

Papalexi et al. 2021 (ECCITE-seq, THP-1, confident cells):

``heldout``
    K folds over the targeted genes, each holding out 20 % of the perturbations: every
    configuration (``spike_slab``, ``l1``, ``dense``, ``none``) is trained on the other
    perturbations and the controls, the held-out perturbations are mapped onto the frozen model
    with ``SparseShiftVI.load_query_data`` (only their masks and shifts are fitted; nothing is
    fitted for ``none``) and scored by the mean per-cell IWELBO of their cells.
``fewshot``
    The same folds for ``--fewshot-configs`` (default ``spike_slab`` and ``dense``), scored on
    cells the queries never saw: half of each held-out perturbation's cells are kept for
    scoring, ``n`` of the other half (``--shots``: 0, 10, 30 and all) are mapped with
    ``load_query_data``. ``heldout`` scores the cells the query's shifts were fitted to, which
    rewards a query for every parameter it fits; this task measures what the fitted shifts
    predict about new cells of the same perturbation.
``stability``
    The default model trained on all perturbations with several seeds; agreement of the target
    graphs of every pair of seeds after matching latent units (Hungarian matching on the
    correlation of the two latent representations): F1 of one binarised graph against the other.
``pathway``
    Knockouts of IFNGR1, IFNGR2, JAK2, STAT1 and IRF1 act in one IFN-gamma -> PD-L1 pathway.
    Within-pathway mean Jaccard index of their targeted-unit sets against the mean over all
    other pairs, with a permutation p-value (random sets of five perturbations), per seed.

Zhao et al. 2021 (glioblastoma slices, panobinostat vs vehicle, patients as batch):
``zhao``: the units the drug targets and their top genes (``target_report``).

Writes ``heldout.csv``, ``fewshot.csv``, ``stability.csv``, ``pathway.csv``,
``zhao_targets.csv``, ``RESULTS.md`` (rendered from those CSVs alone), the two target reports,
figures and ``run.json`` into ``--out`` (default: a scratch folder; ``--update``: this folder,
whose results are committed).
"""

from __future__ import annotations

import argparse
import itertools
import time
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    process_pool,
    provenance_line,
    resolve_out,
    subset,
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.real.run"
#: the CSVs of this benchmark, rendered into RESULTS.md
TABLES = ("heldout", "stability", "pathway", "zhao_targets", "fewshot")
CONFIGS = {
    "spike_slab": {},
    "l1": {"intervention_prior": "l1", "sparsity_penalty": 0.5},  # the cost it was measured with
    "dense": {"intervention_prior": "dense"},
    "none": {"intervention_prior": "none"},
}
#: spike_slab's reference with all-ones masks for the held-out perturbations (published protocol)
FIXED_MASKS = "spike_slab_fixed_masks"
PATHWAY = ["IFNGR1", "IFNGR2", "JAK2", "STAT1", "IRF1"]
N_LATENT = 10


def load_papalexi(quick: bool, seed: int = 0):
    from scvi_causal.data import papalexi_2021, prepare_screen

    adata = papalexi_2021()
    control = adata.uns["perturbation_screen"]["control_category"]
    adata = prepare_screen(adata, control_category=control, min_cells_per_perturbation=50)
    if quick:  # the pathway, a few others, at most 60 cells each
        keep_perts = PATHWAY + ["CAV1", "CD86", "ATF2", "MARCH8"]
        labels = adata.obs["perturbation"].astype(str).to_numpy()
        rng = np.random.default_rng(seed)
        idx = np.concatenate(
            [
                rng.choice(
                    np.flatnonzero(labels == p),
                    min(200 if p == control else 60, int((labels == p).sum())),
                    replace=False,
                )
                for p in [control, *keep_perts]
            ]
        )
        adata = subset(adata, np.isin(np.arange(adata.n_obs), idx))
    return adata, control


def _train(adata, control, config: str, seed: int, max_epochs):
    import scvi

    from scvi_causal.model import SparseShiftVI

    scvi.settings.seed = seed
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category=control)
    model = SparseShiftVI(adata, n_latent=N_LATENT, **CONFIGS[config])
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    return model, time.perf_counter() - start


def heldout_folds(adata, control, n_folds: int, seed: int) -> list[list[str]]:
    """Perturbations held out in each fold: 5 folds of 20 % of the perturbations."""
    perts = sorted(p for p in adata.obs["perturbation"].astype(str).unique() if p != control)
    order = np.random.default_rng(seed).permutation(perts)
    return [sorted(f.tolist()) for f in np.array_split(order, 5)[:n_folds]]


def _query_variants(config: str) -> dict[str, dict]:
    """Query names and ``load_query_data`` arguments mapped onto a ``config`` reference.

    ``spike_slab``'s reference is also mapped with all-ones query masks (only shifts fitted),
    as in the published sVAE+ transfer protocol: same reference, same held-out cells.
    """
    variants = {config: {}}
    if config == "spike_slab":
        variants[FIXED_MASKS] = {"fix_masks": True}
    return variants


def heldout_job(
    adata, control, fold: int, held: list[str], config: str, seed: int, max_epochs
) -> list[dict]:
    """Train ``config`` without the ``held`` perturbations, map them, score them."""
    from scvi_causal.model import SparseShiftVI

    labels = adata.obs["perturbation"].astype(str).to_numpy()
    train = subset(adata, ~np.isin(labels, held))
    query_adata = subset(adata, np.isin(labels, held + [control]))
    model, seconds = _train(train, control, config, seed, max_epochs)
    rows = []
    for name, query_kwargs in _query_variants(config).items():
        start = time.perf_counter()
        query = SparseShiftVI.load_query_data(query_adata, model, **query_kwargs)
        query.train(max_epochs=max_epochs, enable_progress_bar=False)
        query_seconds = time.perf_counter() - start
        scores = query.get_perturbation_scores(n_mc_samples=100)
        graph = query.get_target_graph() if config != "none" else pd.DataFrame()
        new = [
            {
                "fold": fold,
                "config": name,
                "perturbation": p,
                "n_cells": int(scores.loc[p, "n_cells"]),
                "iwelbo": float(scores.loc[p, "iwelbo"]),
                "elbo": float(scores.loc[p, "elbo"]),
                "n_targets": int((graph.loc[p] >= 0.5).sum()) if p in graph.index else np.nan,
                "train_seconds": seconds,
                "query_seconds": query_seconds,
            }
            for p in held
        ]
        mean = np.mean([r["iwelbo"] for r in new])
        print(
            f"  fold {fold} {name:10s}: held-out IWELBO {mean:.2f} ({seconds:.0f} s + "
            f"{query_seconds:.0f} s)",
            flush=True,
        )
        rows += new
    return rows


def _shots(values) -> list[int | None]:
    """``--shots`` values: integers, or ``all`` (None: every cell of the fitting half)."""
    return [None if str(v) == "all" else int(v) for v in values]


def fewshot_job(
    adata,
    control,
    fold: int,
    held: list[str],
    config: str,
    seed: int,
    max_epochs,
    shots: list[int | None],
) -> list[dict]:
    """Train ``config`` without ``held``; map ``held`` with few cells, score other cells.

    Half of each held-out perturbation's cells (drawn with ``fold``) are scored, never fitted;
    for every ``n`` in ``shots`` the query is fitted on the first ``n`` cells of the other half
    (``None``: all of them; ``0``: nothing is fitted, the new perturbations are scored as
    controls). Control cells are left out of the queries: they carry no query parameter.
    """
    from scvi_causal.model import SparseShiftVI

    labels = adata.obs["perturbation"].astype(str).to_numpy()
    model, seconds = _train(
        subset(adata, ~np.isin(labels, held)), control, config, seed, max_epochs
    )
    rng = np.random.default_rng(1000 + fold)
    test_idx, pool = [], {}
    for p in held:
        cells = rng.permutation(np.flatnonzero(labels == p))
        test_idx.append(cells[: len(cells) // 2])
        pool[p] = cells[len(cells) // 2 :]
    test = subset(adata, np.isin(np.arange(adata.n_obs), np.concatenate(test_idx)))
    variants = _query_variants(config)
    rows = []
    for n in shots:
        fit_idx = np.concatenate([v if n is None else v[: max(n, 1)] for v in pool.values()])
        fit = subset(adata, np.isin(np.arange(adata.n_obs), fit_idx))
        n_fit = {
            p: 0 if n == 0 else len(v) if n is None else min(n, len(v)) for p, v in pool.items()
        }
        for name, query_kwargs in variants.items():
            if n == 0 and name != config:
                continue  # nothing is fitted: the same scores as `config`
            start = time.perf_counter()
            query = SparseShiftVI.load_query_data(fit, model, **query_kwargs)
            if n != 0:
                query.train(max_epochs=max_epochs, enable_progress_bar=False)
            query_seconds = time.perf_counter() - start
            scores = query.get_perturbation_scores(test, n_mc_samples=100)
            graph = query.get_target_graph() if config != "none" and n != 0 else None
            rows += [
                {
                    "fold": fold,
                    "config": name,
                    "shots": "all" if n is None else n,
                    "perturbation": p,
                    "n_fit": n_fit[p],
                    "n_test": int(scores.loc[p, "n_cells"]),
                    "iwelbo": float(scores.loc[p, "iwelbo"]),
                    "elbo": float(scores.loc[p, "elbo"]),
                    "n_targets": int((graph.loc[p] >= 0.5).sum()) if graph is not None else np.nan,
                    "train_seconds": seconds,
                    "query_seconds": query_seconds,
                }
                for p in held
            ]
            mean = np.mean([r["iwelbo"] for r in rows[-len(held) :]])
            print(
                f"  fewshot fold {fold} {name:10s} n={n}: IWELBO of unseen cells {mean:.3f}",
                flush=True,
            )
    return rows


def _shot_order(fewshot: pd.DataFrame) -> list[str]:
    """The ``shots`` values of ``fewshot`` as strings, by number of cells, ``all`` last."""
    values = set(fewshot["shots"].astype(str))
    return sorted(values - {"all"}, key=int) + (["all"] if "all" in values else [])


def fewshot_lines(fewshot: pd.DataFrame, ref: str = "spike_slab") -> list[str]:
    """Markdown: held-out-cell IWELBO per configuration and number of fitted cells."""
    from scipy.stats import wilcoxon

    order = _shot_order(fewshot)
    df = fewshot.assign(shots=pd.Categorical(fewshot["shots"].astype(str), order, ordered=True))
    per_fold = df.groupby(["shots", "fold", "config"], observed=True)["iwelbo"].mean()
    table = per_fold.groupby(["shots", "config"], observed=True).mean().unstack("config")
    lines = [
        "## Papalexi 2021: held-out perturbations scored on cells the query never saw",
        "",
        "The folds of the held-out table. Half of each held-out perturbation's cells are "
        "only scored; the query is fitted on `shots` cells per perturbation from the other "
        "half (`all`: the whole other half; `0`: nothing fitted, the new perturbations are "
        "scored as controls). Mean over folds of the mean per-cell IWELBO of the scored "
        "cells (100 importance samples).",
        "",
        table.round(3).to_markdown(),
        "",
    ]
    rows = []
    wide = df.pivot_table(
        index=["shots", "fold", "perturbation"], columns="config", values="iwelbo", observed=True
    )
    folds = per_fold.unstack("config")
    ours = [c for c in (ref, FIXED_MASKS) if c in wide]
    others = [c for c in wide.columns if c not in (ref, FIXED_MASKS)]
    for ref_name, other, shots in itertools.product(ours, others, order):
        diff = (wide.loc[shots, ref_name] - wide.loc[shots, other]).dropna()
        f = folds.loc[shots][[ref_name, other]].dropna()
        if len(diff) < 2:
            continue  # e.g. the all-ones variant at 0 cells (nothing fitted)
        rows.append(
            {
                "configuration": ref_name,
                "against": other,
                "shots": shots,
                "folds >=": f"{int((f[ref_name] >= f[other]).sum())}/{len(f)}",
                "mean difference (nats/cell)": diff.mean(),
                "perturbations better": f"{int((diff > 0).sum())}/{len(diff)}",
                "Wilcoxon p": float(wilcoxon(diff).pvalue) if (diff != 0).any() else 1.0,
            }
        )
    if rows:
        lines += [
            "Paired over held-out perturbations, per number of fitted cells:",
            "",
            pd.DataFrame(rows).round(4).to_markdown(index=False),
            "",
        ]
    targets = df[df["config"] == ref].groupby("shots", observed=True)["n_targets"].mean()
    if targets.notna().any():
        lines += [
            f"Mean units targeted per held-out perturbation by `{ref}` queries: "
            + ", ".join(f"{s} cells: {v:.2f}" for s, v in targets.dropna().items()),
            "",
        ]
    lines += ["![few-shot](papalexi_fewshot.png)", ""]
    return lines


def fewshot_figure(fewshot: pd.DataFrame, out: Path, ref: str = "dense") -> None:
    """Mean paired IWELBO difference to ``ref`` per configuration and number of fitted cells."""
    import matplotlib.pyplot as plt

    order = _shot_order(fewshot)
    df = fewshot.assign(shots=fewshot["shots"].astype(str))
    wide = df.pivot_table(
        index=["shots", "fold", "perturbation"], columns="config", values="iwelbo"
    )
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if ref in wide:
        for c in wide.columns.drop(ref):
            diff = wide[c] - wide[ref]
            g = diff.groupby(level="shots")
            mean, sem = g.mean().reindex(order), (g.std() / np.sqrt(g.size())).reindex(order)
            ax.errorbar(range(len(order)), mean, yerr=sem, marker="o", capsize=3, label=c)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(order)), order)
    ax.set_xlabel("cells fitted per held-out perturbation")
    ax.set_ylabel(f"IWELBO of unseen cells - {ref}\n(nats per cell, mean ± sem)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "papalexi_fewshot.png", dpi=120)
    plt.close(fig)


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def pathway_coherence(
    graph: pd.DataFrame, pathway=PATHWAY, n_perm: int = 10_000, seed: int = 0
) -> dict:
    """Mean Jaccard of targeted-unit sets within ``pathway`` vs all other pairs, p-value."""
    sets = {p: set(graph.columns[graph.loc[p] >= 0.5]) for p in graph.index}
    names = list(graph.index)
    members = [p for p in pathway if p in sets]

    def within(group):
        return np.mean([_jaccard(sets[a], sets[b]) for a, b in itertools.combinations(group, 2)])

    observed = within(members)
    in_set = set(members)
    across = np.mean(
        [
            _jaccard(sets[a], sets[b])
            for a, b in itertools.combinations(names, 2)
            if not (a in in_set and b in in_set)
        ]
    )
    rng = np.random.default_rng(seed)
    null = np.array(
        [within(list(rng.choice(names, len(members), replace=False))) for _ in range(n_perm)]
    )
    return {
        "within_jaccard": float(observed),
        "across_jaccard": float(across),
        "p_value": float((1 + (null >= observed).sum()) / (1 + n_perm)),
        "n_members": len(members),
        "members_with_targets": int(sum(bool(sets[p]) for p in members)),
    }


def stability_job(adata, control, seed: int, max_epochs, out: Path, report: bool):
    """Train the default model on all perturbations with one seed."""
    model, seconds = _train(adata, control, "spike_slab", seed, max_epochs)
    graph = model.get_target_graph()
    row = {"seed": seed, "train_seconds": seconds, **pathway_coherence(graph, seed=seed)}
    print(f"  stability seed {seed}: {row}", flush=True)
    if report:
        rep = model.target_report(out / "papalexi_report", max_cells=500)
        rep["figures"]["target_graph"].savefig(
            out / "papalexi_target_graph.png", dpi=120, bbox_inches="tight"
        )
    return graph, model.get_latent_representation(), row


def stability_table(graphs: dict, latents: dict) -> pd.DataFrame:
    """Agreement of the target graphs of every pair of seeds after matching latent units."""
    from scvi_causal.metrics import match_latents, target_graph_scores

    rows = []
    for a, b in itertools.combinations(sorted(graphs), 2):
        matching, corr = match_latents(latents[a], latents[b])
        ga, gb = graphs[a], graphs[b]
        scores = target_graph_scores((ga.to_numpy() >= 0.5).astype(float), gb.to_numpy(), matching)
        rows.append(
            {
                "seed_a": a,
                "seed_b": b,
                "graph_f1": float(scores["f1"]),
                "graph_auprc": float(scores["auprc"]),
                "latent_mcc": float(np.mean(corr[np.arange(len(matching)), matching]))
                if corr.ndim == 2
                else np.nan,
            }
        )
    return pd.DataFrame(rows)


def zhao_job(quick: bool, max_epochs, out: Path) -> pd.DataFrame:
    import scvi

    from scvi_causal.data import zhao_2021
    from scvi_causal.model import SparseShiftVI

    adata = zhao_2021()
    control = adata.uns["perturbation_screen"]["control_category"]
    if quick:
        adata = adata[np.random.default_rng(0).choice(adata.n_obs, 800, replace=False)].copy()
    scvi.settings.seed = 0
    SparseShiftVI.setup_anndata(
        adata, perturbation_key="perturbation", control_category=control, batch_key="patient_id"
    )
    model = SparseShiftVI(adata, n_latent=N_LATENT)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    report = model.target_report(out / "zhao_report", n_top_genes=10, max_cells=500)
    return report["targets"].merge(
        report["unit_genes"]
        .groupby(["unit", "direction"])["gene"]
        .apply(lambda g: ", ".join(map(str, g)))
        .unstack("direction")
        .reset_index(),
        on="unit",
        how="left",
    )


def paired_lines(heldout: pd.DataFrame, ref: str = "spike_slab") -> list[str]:
    """Per held-out perturbation, ``ref`` minus each configuration, with a paired test."""
    from scipy.stats import wilcoxon

    wide = heldout.pivot_table(index=["fold", "perturbation"], columns="config", values="iwelbo")
    rows = []
    for c in wide.columns.drop(ref):
        diff = (wide[ref] - wide[c]).dropna()
        if len(diff) < 2:
            continue
        p = float(wilcoxon(diff).pvalue) if (diff != 0).any() else 1.0
        rows.append(
            {
                "configuration": c,
                "n_perturbations": len(diff),
                f"mean {ref} - configuration (nats/cell)": diff.mean(),
                f"{ref} better": int((diff > 0).sum()),
                "Wilcoxon signed-rank p": p,
            }
        )
    if not rows:
        return []
    return [
        f"Paired over held-out perturbations (all folds): IWELBO of `{ref}` minus "
        "the configuration's.",
        "",
        pd.DataFrame(rows).round(4).to_markdown(index=False),
        "",
    ]


def render(heldout, stability, pathway, zhao, fewshot=None) -> str:
    """RESULTS.md from the tables of the CSVs (None or empty: that section is left out)."""
    names = [
        f"{n}.csv"
        for n, t in zip(TABLES, (heldout, stability, pathway, zhao, fewshot), strict=True)
        if t is not None
    ]
    lines = ["# Real screens", "", provenance_line(*names), ""]
    if heldout is not None and len(heldout):
        per_fold = heldout.groupby(["fold", "config"])["iwelbo"].mean().unstack("config")
        lines += [
            "## Papalexi 2021: held-out perturbations (mean per-cell IWELBO, higher is better)",
            "",
            "Each fold holds out 20 % of the targeted genes; the model is trained on the "
            "rest and the controls, the held-out perturbations are mapped with "
            "`load_query_data` (only their masks and shifts are fitted) and scored with "
            "100 importance samples. Mean over the held-out perturbations of the mean "
            f"per-cell IWELBO. `{FIXED_MASKS}`: the same `spike_slab` reference, with "
            "the held-out perturbations' masks fixed to all ones in the query (only their "
            "shifts are fitted), as in the published sVAE+ transfer protocol.",
            "",
            per_fold.round(2).to_markdown(),
            "",
        ]
        refs = [c for c in ("spike_slab", FIXED_MASKS) if c in per_fold]
        for ref in refs if per_fold.shape[1] > 1 else []:
            wins = {}  # over the folds where both have finished
            for c in per_fold.columns.drop(ref):
                both = per_fold[[ref, c]].dropna()
                wins[c] = (int((both[ref] >= both[c]).sum()), len(both))
            lines += [
                f"Folds where `{ref}` >= the configuration: "
                + ", ".join(f"`{c}` {w}/{n}" for c, (w, n) in wins.items()),
                "",
            ]
            lines += paired_lines(heldout, ref)
        if "n_targets" in heldout:
            summary = heldout.groupby("config").agg(
                mean_targets_per_heldout=("n_targets", "mean"),
                train_seconds=("train_seconds", "mean"),
                query_seconds=("query_seconds", "mean"),
            )
            lines += [
                "Mean number of units targeted (probability >= 0.5) per held-out "
                "perturbation and mean wall time per fold (one torch thread):",
                "",
                summary.round(2).to_markdown(),
                "",
            ]
        lines += [
            "Per perturbation:",
            "",
            heldout.pivot_table(index=["fold", "perturbation"], columns="config", values="iwelbo")
            .round(2)
            .to_markdown(),
            "",
        ]
    if fewshot is not None and len(fewshot):
        lines += fewshot_lines(fewshot)
    if stability is not None and len(stability):
        lines += [
            "## Papalexi 2021: stability of the target graph across seeds",
            "",
            stability.round(3).to_markdown(index=False),
            "",
            f"Mean graph F1 between seeds: {stability['graph_f1'].mean():.3f}.",
            "",
        ]
    if pathway is not None and len(pathway):
        lines += [
            "## Papalexi 2021: IFN-gamma pathway coherence",
            "",
            f"Pathway: {', '.join(PATHWAY)}; Jaccard index of targeted-unit sets "
            "(probability >= 0.5) within the pathway vs across all other pairs; "
            "p-value: random sets of the same size (10,000 permutations).",
            "",
            pathway.round(4).to_markdown(index=False),
            "",
            "![Papalexi target graph](papalexi_target_graph.png)",
            "",
            "Full report: [papalexi_report/report.md](papalexi_report/report.md).",
            "",
        ]
    if zhao is not None:
        lines += [
            "## Zhao 2021: units targeted by panobinostat (patients as batch)",
            "",
            zhao.round(3).to_markdown(index=False) if len(zhao) else "No target.",
            "",
            "Full report: [zhao_report/report.md](zhao_report/report.md).",
            "",
        ]
    return "\n".join(lines)


def read_tables(out: Path) -> dict[str, pd.DataFrame | None]:
    """The CSVs of ``out`` by name (None when absent)."""
    return {
        name: pd.read_csv(out / f"{name}.csv") if (out / f"{name}.csv").exists() else None
        for name in TABLES
    }


def write_markdown(out: Path, heldout, stability, pathway, zhao, fewshot=None) -> None:
    (out / "RESULTS.md").write_text(render(heldout, stability, pathway, zhao, fewshot))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["heldout", "fewshot", "stability", "zhao"],
        choices=["heldout", "fewshot", "stability", "zhao"],
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--fewshot-configs", nargs="+", default=["spike_slab", "dense"], choices=list(CONFIGS)
    )
    parser.add_argument(
        "--shots",
        nargs="+",
        default=["0", "10", "30", "all"],
        help="cells fitted per held-out perturbation in `fewshot` (or `all`)",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument(
        "--workers", type=int, default=1, help="trainings run in parallel processes (spawned)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    add_output_args(parser, MODULE, HERE)
    parser.add_argument(
        "--render-only",
        "--tabulate",
        dest="render_only",
        action="store_true",
        help="rewrite RESULTS.md from the CSVs in --out without training",
    )
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        tables = read_tables(out)
        write_markdown(out, *(tables[name] for name in TABLES))
        if tables["fewshot"] is not None:
            fewshot_figure(tables["fewshot"], out)
        return
    if args.quick:
        args.folds, args.seeds = 1, args.seeds[:2]
        args.max_epochs = args.max_epochs or 3
    write_run_json(
        out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={
            "tasks": args.tasks,
            "configs": args.configs,
            "fewshot_configs": args.fewshot_configs,
            "shots": args.shots,
            "folds": args.folds,
            "max_epochs": args.max_epochs,
            "workers": args.workers,
            "torch_threads_per_worker": args.threads,
            "quick": args.quick,
        },
    )
    adata, control = load_papalexi(args.quick)

    jobs = {}  # future -> (task, key)
    heldout_rows, graphs, latents, pathway_rows = [], {}, {}, []
    heldout = stability = pathway = zhao = fewshot = None
    fewshot_rows = []
    with process_pool(args.workers, args.threads) as pool:
        if "heldout" in args.tasks:  # the long jobs first
            for fold, held in enumerate(heldout_folds(adata, control, args.folds, args.seeds[0])):
                for config in args.configs:
                    fut = pool.submit(
                        heldout_job,
                        adata,
                        control,
                        fold,
                        held,
                        config,
                        args.seeds[0],
                        args.max_epochs,
                    )
                    jobs[fut] = ("heldout", (fold, config))
        if "fewshot" in args.tasks:
            for fold, held in enumerate(heldout_folds(adata, control, args.folds, args.seeds[0])):
                for config in args.fewshot_configs:
                    fut = pool.submit(
                        fewshot_job,
                        adata,
                        control,
                        fold,
                        held,
                        config,
                        args.seeds[0],
                        args.max_epochs,
                        _shots(args.shots),
                    )
                    jobs[fut] = ("fewshot", (fold, config))
        if "stability" in args.tasks:
            for seed in args.seeds:
                fut = pool.submit(
                    stability_job, adata, control, seed, args.max_epochs, out, seed == args.seeds[0]
                )
                jobs[fut] = ("stability", seed)
        if "zhao" in args.tasks:
            jobs[pool.submit(zhao_job, args.quick, args.max_epochs, out)] = ("zhao", None)
        print(f"{len(jobs)} jobs on {args.workers} workers", flush=True)
        for fut in as_completed(jobs):
            task, key = jobs[fut]
            result = fut.result()
            if task == "heldout":
                heldout_rows += result
                heldout = pd.DataFrame(heldout_rows).sort_values(["fold", "config", "perturbation"])
                heldout.to_csv(out / "heldout.csv", index=False)
            elif task == "fewshot":
                fewshot_rows += result
                fewshot = pd.DataFrame(fewshot_rows).sort_values(
                    ["fold", "config", "perturbation"], kind="stable"
                )
                fewshot.to_csv(out / "fewshot.csv", index=False)
                fewshot_figure(fewshot, out)
            elif task == "stability":
                graphs[key], latents[key], row = result
                pathway_rows.append(row)
                pathway = pd.DataFrame(pathway_rows).sort_values("seed")
                pathway.to_csv(out / "pathway.csv", index=False)
                if len(graphs) > 1:
                    stability = stability_table(graphs, latents)
                    stability.to_csv(out / "stability.csv", index=False)
            else:
                zhao = result
                zhao.to_csv(out / "zhao_targets.csv", index=False)
            write_markdown(out, heldout, stability, pathway, zhao, fewshot)
    write_markdown(out, heldout, stability, pathway, zhao, fewshot)


if __name__ == "__main__":
    main()
