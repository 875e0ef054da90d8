"""Counterfactual benchmark: SparseShiftVI.predict against the baselines the field checks first.

One command reproduces the tables (75 minutes on 2 cores, measured)::

    python -m benchmarks.counterfactual.run --workers 2 --update   # the committed tables
    python -m benchmarks.counterfactual.run --quick --out /tmp/cf  # tiny CI smoke run
    python -m benchmarks.counterfactual.run --render-only --update # tables from the CSVs

Every prediction task is scored by ``SparseShiftVI.evaluate_predictions`` (Pearson delta on all
and on the top-20 genes, cosine of the log fold changes, top-20 DE recall, RMSE of the mean,
PerturBench's rank metric, energy distance) for the default model's ``predict`` (``shift=
"auto"``: the posterior's latent shift, direct effects), the same model read through its
sparse graph alone (``SparseShiftVI-model``: ``shift="model"``), the baselines computed from
the training cells (``control``, ``additive``, ``linear``) and the ``dense`` (iVAE) and
``none`` (plain VAE with latent arithmetic: PerturBench's latent additive) configurations
trained on the same cells.

``papalexi_seen``
    Papalexi et al. 2021 (ECCITE-seq, confident cells): every label, controls included, is
    split in two halves; models and baselines see the first half, the observed change is
    measured on the second (held-out perturbed cells against held-out controls).
``simulated_pairs``
    The ``"hard"`` simulator (non-additive interactions in latent and gene space, on-target
    gene knockdowns, weak perturbations, 50-300 cells per perturbation): half of the pairs are
    held out and predicted from their singles.
``zhao_patient``
    Zhao et al. 2021 (panobinostat vs vehicle, 5 patients as batch): the treated cells of one
    patient are held out and predicted from that patient's control cells; extra baseline
    ``other_patients``: the mean of the drug's log fold changes in the other patients.
    ``SparseShiftVI`` carries the effect over from the patients where the drug was seen
    (``predict(context="auto")``); ``SparseShiftVI-own`` decodes it in the held-out patient's
    own batch (``context="own"``, the decoder's extrapolation).
``papalexi_fewshot``
    New perturbations from few cells: 5 perturbations are held out of the reference, mapped
    with ``load_query_data`` on ``n`` (10, 30) of their cells and predicted; scored on their
    other cells. Baselines: the ``n`` cells' own log fold change (``additive``), ``control``,
    and a ``dense`` reference's query.
``gasperini_cis``
    Gasperini et al. 2019 high-MOI CRISPRi screen: the 10 promoter-targeting positive controls
    must knock down their own gene, in ``predict`` and in the target report (direct effects).

Writes ``results.csv`` (one row per task, seed, fold, method and perturbation), ``cis.csv``,
``RESULTS.md`` (rendered from the two CSVs alone), ``results.png`` and ``run.json`` into
``--out`` (default: a scratch folder; ``--update``: this folder, whose results are committed);
``--render-only`` rewrites the tables from the CSVs in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    command_line,
    process_pool,
    provenance_line,
    resolve_out,
    set_torch_threads,
    subset,
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.counterfactual.run"
TASKS = ["papalexi_seen", "simulated_pairs", "zhao_patient", "papalexi_fewshot", "gasperini_cis"]
REFERENCE = "SparseShiftVI"
OTHER_CONFIGS = {"dense": {"intervention_prior": "dense"}, "none": {"intervention_prior": "none"}}
METRICS = [
    "pearson_delta_top",
    "pearson_delta_all",
    "cosine_all",
    "cosine_top",
    "top_k_recall",
    "rmse",
    "rank_cosine",
    "energy_distance",
]
N_LATENT_PAPALEXI = 10
FEWSHOT_HELD = 5
#: Other readings of the default model scored beside its default predict: "model" is what
#: the sparse target graph alone predicts (the prior's expected masked shifts).
EXTRA_SHIFTS = ("model",)
SHOTS = (10, 30)
#: ``--model-kwargs`` of the default model, set in each worker by ``_run_job`` (spawned
#: workers re-import this module, so the value travels as an argument).
DEFAULT_MODEL_KWARGS: dict = {}
#: ``--fit-residual``: the default model fits its residual effects after training (its
#: ``predict`` then adds them) and is also scored without them (``-no-residual`` rows).
RESIDUAL: dict = {"fit": False}


def _train(adata, control, seed, max_epochs, batch_key=None, n_latent=10, obsm_key=None, **kwargs):
    import scvi

    from scvi_causal.model import SparseShiftVI

    if "intervention_prior" not in kwargs:  # the default model: ablations apply to it only
        kwargs = {**kwargs, **DEFAULT_MODEL_KWARGS}

    scvi.settings.seed = seed
    if obsm_key is None:
        SparseShiftVI.setup_anndata(
            adata, perturbation_key="perturbation", control_category=control, batch_key=batch_key
        )
    else:
        SparseShiftVI.setup_anndata(
            adata, perturbation_obsm_key=obsm_key, control_category=control, batch_key=batch_key
        )
    default = "intervention_prior" not in kwargs
    model = SparseShiftVI(adata, n_latent=n_latent, **kwargs)
    model.train(
        max_epochs=max_epochs,
        enable_progress_bar=False,
        fit_residual=default and RESIDUAL["fit"],
    )
    return model


def _models(adata, control, seed, max_epochs, configs, **kwargs):
    """The default model and the other configurations, trained on the same cells."""
    model = _train(adata, control, seed, max_epochs, **kwargs)
    others = {
        name: _train(adata.copy(), control, seed, max_epochs, **kwargs, **OTHER_CONFIGS[name])
        for name in configs
    }
    return model, others


def _half_split(labels: np.ndarray, seed: int) -> np.ndarray:
    """Test mask: half of every label's cells (controls included)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        cells = np.flatnonzero(labels == label)
        test[rng.choice(cells, len(cells) // 2, replace=False)] = True
    return test


def _papalexi(quick: bool, seed: int):
    from scvi_causal.data import papalexi_2021

    adata = papalexi_2021()
    control = adata.uns["perturbation_screen"]["control_category"]
    if quick:
        labels = adata.obs["perturbation"].astype(str).to_numpy()
        rng = np.random.default_rng(seed)
        keep = np.concatenate(
            [
                rng.choice(cells, min(len(cells), 400 if p == control else 80), replace=False)
                for p in [control, "IFNGR1", "STAT1", "CAV1", "CD86", "IRF1", "SMAD4"]
                for cells in [np.flatnonzero(labels == p)]
            ]
        )
        adata = subset(adata, np.isin(np.arange(adata.n_obs), keep))
    return adata, control


def papalexi_seen(seed: int, quick: bool, max_epochs, configs) -> dict:
    adata, control = _papalexi(quick, seed)
    test = _half_split(adata.obs["perturbation"].astype(str).to_numpy(), seed)
    train = subset(adata, ~test)
    model, others = _models(train, control, seed, max_epochs, configs, n_latent=N_LATENT_PAPALEXI)
    table = model.evaluate_predictions(
        subset(adata, test),
        other_models=others,
        seed=seed,
        extra_shifts=EXTRA_SHIFTS,
        residual_ablation=RESIDUAL["fit"],
    )
    graph = model.get_target_graph()
    return {"rows": table, "graph_density": float((graph.to_numpy() > 0.5).mean())}


def simulated_pairs(seed: int, quick: bool, max_epochs, configs) -> dict:
    from scvi_causal.data import simulate_sparse_shift

    size = (
        {"n_perturbations": 8, "n_pairs": 6, "n_genes": 60, "n_control_cells": 200}
        if quick
        else {"n_perturbations": 20, "n_pairs": 20}
    )
    adata = simulate_sparse_shift(protocol="hard", seed=seed, **size)
    labels = adata.obs["perturbation"].astype(str)
    pairs = sorted(p for p in labels.unique() if "+" in p)
    rng = np.random.default_rng(seed)
    held = sorted(rng.choice(pairs, len(pairs) // 2, replace=False).tolist())
    is_test = labels.isin(held).to_numpy()
    # held-out controls too, so that the observed change does not share the training controls
    ctrl = np.flatnonzero(labels.to_numpy() == "control")
    is_test[rng.choice(ctrl, len(ctrl) // 2, replace=False)] = True
    train = subset(adata, ~is_test)
    model, others = _models(
        train, "control", seed, max_epochs, configs, n_latent=adata.obsm["z_true"].shape[1]
    )
    table = model.evaluate_predictions(
        subset(adata, is_test),
        perturbations=held,
        other_models=others,
        seed=seed,
        extra_shifts=EXTRA_SHIFTS,
        residual_ablation=RESIDUAL["fit"],
    )
    graph = model.get_target_graph()
    return {"rows": table, "graph_density": float((graph.to_numpy() > 0.5).mean())}


def zhao_patient(seed: int, quick: bool, max_epochs, configs, fold: int) -> dict:
    from scvi_causal.data import zhao_2021
    from scvi_causal.metrics import log_fold_change, normalize_counts

    adata = zhao_2021()
    patients = sorted(adata.obs["patient_id"].astype(str).unique())
    patient = patients[fold]
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    pid = adata.obs["patient_id"].astype(str).to_numpy()
    if quick:
        rng = np.random.default_rng(seed)
        keep = np.zeros(adata.n_obs, dtype=bool)
        for p in patients:
            for lab in ("ctrl", "panobinostat"):
                cells = np.flatnonzero((pid == p) & (labels == lab))
                keep[rng.choice(cells, min(60, len(cells)), replace=False)] = True
        adata = adata[keep].copy()
        labels, pid = labels[keep], pid[keep]
    held = (pid == patient) & (labels == "panobinostat")
    train = subset(adata, ~held)
    model, others = _models(
        train, "ctrl", seed, max_epochs, configs, batch_key="patient_id", n_latent=10
    )
    own_controls = (pid == patient) & (labels == "ctrl")
    test = subset(adata, held | own_controls)
    expr = normalize_counts(adata.X)
    others_lfc = np.mean(
        [
            log_fold_change(
                expr[(pid == p) & (labels == "panobinostat")], expr[(pid == p) & (labels == "ctrl")]
            )
            for p in patients
            if p != patient
        ],
        axis=0,
    )
    source = train[
        (train.obs["patient_id"].astype(str) == patient).to_numpy()
        & (train.obs["perturbation"].astype(str) == "ctrl").to_numpy()
    ]
    # the decoder's own extrapolation to the held-out patient (predict's behaviour before
    # context="auto" carried the effect over from the patients where the drug was seen)
    own = model.predict(source, perturbations=["panobinostat", "ctrl"], context="own")
    own_labels = own.obs["perturbation"].astype(str).to_numpy()
    own_lfc = log_fold_change(own.X[own_labels == "panobinostat"], own.X[own_labels == "ctrl"])
    table = model.evaluate_predictions(
        test,
        baselines=("control",),
        other_models=others,
        source=source,
        seed=seed,
        extra_shifts=EXTRA_SHIFTS,
        extra_predictions={
            "other_patients": {"panobinostat": others_lfc},
            "SparseShiftVI-own": {"panobinostat": own_lfc},
        },
    )
    table["patient"] = patient
    return {"rows": table}


def papalexi_fewshot(seed: int, quick: bool, max_epochs, configs, fold: int = 0) -> dict:
    """Held-out perturbations mapped onto frozen references from ``SHOTS`` cells each."""
    import scvi

    from scvi_causal.model import SparseShiftVI

    adata, control = _papalexi(quick, seed)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    perts = sorted(set(labels) - {control})
    rng = np.random.default_rng(seed)
    held = sorted(rng.choice(perts, min(FEWSHOT_HELD, len(perts) // 2), replace=False).tolist())
    test_ctrl = _half_split(labels, seed) & (labels == control)
    ref_mask = ~np.isin(labels, held) & ~test_ctrl
    reference, ref_others = _models(
        subset(adata, ref_mask),
        control,
        seed,
        max_epochs,
        [c for c in configs if c != "none"],
        n_latent=N_LATENT_PAPALEXI,
    )
    source = reference.adata[
        (reference.adata.obs["perturbation"].astype(str) == control).to_numpy()
    ]
    rows = []
    for shots in SHOTS:
        query_cells, test_cells = [], []
        for p in held:
            cells = rng.permutation(np.flatnonzero(labels == p))
            half = len(cells) // 2
            query_cells.append(cells[: min(shots, half)])
            test_cells.append(cells[half:])
        query = subset(adata, np.isin(np.arange(adata.n_obs), np.concatenate(query_cells)))
        test = subset(
            adata,
            np.isin(
                np.arange(adata.n_obs), np.concatenate([*test_cells, np.flatnonzero(test_ctrl)])
            ),
        )
        fitted = {}
        for name, ref in [(REFERENCE, reference), *ref_others.items()]:
            scvi.settings.seed = seed
            q = SparseShiftVI.load_query_data(query.copy(), ref)
            q.train(max_epochs=max_epochs, enable_progress_bar=False)
            fitted[name] = q
        table = fitted[REFERENCE].evaluate_predictions(
            test,
            perturbations=held,
            baselines=("control", "additive"),
            source=source,
            other_models={k: v for k, v in fitted.items() if k != REFERENCE},
            seed=seed,
            extra_shifts=EXTRA_SHIFTS,
            residual_ablation=RESIDUAL["fit"],
        )
        table["shots"] = shots
        rows.append(table)
    return {"rows": pd.concat(rows, ignore_index=True)}


def gasperini_cis(seed: int, quick: bool, max_epochs, configs) -> dict:
    """Own-gene knockdown of the promoter-targeting positive controls, predicted and reported."""
    from scvi_causal.data import assign_guides, gasperini_2019
    from scvi_causal.metrics import log_fold_change, normalize_counts

    adata = gasperini_2019()
    pcs = adata.uns["positive_controls"]
    # the screen as a cells x targets matrix from the guide UMI counts (the high-MOI input);
    # at threshold 1 these are the data provider's calls, i.e. the loader's labels
    adata.obsm["targets"] = assign_guides(
        adata, "grna_ids", "grna_groups", threshold=1, unassigned="control"
    )
    if quick:
        labels = adata.obs["perturbation"].astype(str).to_numpy()
        rng = np.random.default_rng(seed)
        keep = np.zeros(adata.n_obs, dtype=bool)
        keep[rng.choice(np.flatnonzero(labels == "control"), 1500, replace=False)] = True
        for g in list(pcs)[:3]:
            keep[np.flatnonzero(labels == g)] = True
        adata = subset(adata, keep)
        pcs = {g: pcs[g] for g in list(pcs)[:3]}
        carried = adata.obsm["targets"].sum(0) > 0
        adata.obsm["targets"] = adata.obsm["targets"].loc[:, carried]
    test = _half_split(adata.obs["perturbation"].astype(str).to_numpy(), seed)
    train = subset(adata, ~test)
    model = _train(
        train, "control", seed, max_epochs, batch_key="batch", n_latent=10, obsm_key="targets"
    )
    report = model.target_report(max_cells=1000, seed=seed)
    effects = model.get_perturbation_gene_effects(
        perturbations=list(pcs), max_cells=1000, seed=seed
    )  # predict's default reading
    reported = report["perturbation_effects"]
    direct = model.get_direct_effects()
    residual = model.get_residual_effects()
    no_residual = (  # without fitted residuals the same prediction: not computed twice
        model.get_perturbation_gene_effects(
            perturbations=list(pcs), max_cells=1000, seed=seed, residual=False
        )
        if RESIDUAL["fit"]
        else effects
    )
    expr = normalize_counts(adata.X)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    rows = []
    for group, gene in pcs.items():
        col = list(adata.var_names).index(gene)
        observed = log_fold_change(
            expr[test & (labels == group)][:, [col]], expr[test & (labels == "control")][:, [col]]
        )[0]
        listed = report["direct_genes"]
        listed = listed[listed["perturbation"] == group]
        rows.append(
            {
                "perturbation": group,
                "gene": gene,
                "n_train_cells": int((labels[~test] == group).sum()),
                "observed_lfc_heldout": float(observed),
                "predicted_lfc": float(effects.loc[group, gene]),
                "report_lfc": float(reported.loc[group, gene]),
                "direct_effect": float(direct.loc[group, gene]),
                "residual_effect": float(residual.loc[group, gene]),
                "predicted_lfc_no_residual": float(no_residual.loc[group, gene]),
                "rank_in_prediction": int(
                    (effects.loc[group].abs() > abs(effects.loc[group, gene])).sum()
                )
                + 1,
                # 1: the gene the perturbation's prediction moves down the most
                "rank_down_in_prediction": int(
                    (effects.loc[group] < effects.loc[group, gene]).sum()
                )
                + 1,
                "in_report_direct_genes": bool((listed["gene"] == gene).any()),
            }
        )
    return {
        "cis": pd.DataFrame(rows),
        "graph_density": float((report["graph"].to_numpy() > 0.5).mean()),
    }


JOBS = {
    "papalexi_seen": papalexi_seen,
    "simulated_pairs": simulated_pairs,
    "zhao_patient": zhao_patient,
    "papalexi_fewshot": papalexi_fewshot,
    "gasperini_cis": gasperini_cis,
}


def _run_job(
    task: str,
    seed: int,
    fold: int | None,
    quick: bool,
    max_epochs,
    configs,
    threads: int,
    model_kwargs: dict,
    fit_residual: bool = False,
) -> dict:
    set_torch_threads(threads)
    DEFAULT_MODEL_KWARGS.clear()
    DEFAULT_MODEL_KWARGS.update(model_kwargs)
    RESIDUAL["fit"] = fit_residual
    start = time.perf_counter()
    kwargs = {} if fold is None else {"fold": fold}
    out = JOBS[task](seed, quick, max_epochs, configs, **kwargs)
    seconds = time.perf_counter() - start
    for key in ("rows", "cis"):
        if key in out:
            out[key] = out[key].assign(
                task=task,
                seed=seed,
                fold=fold if fold is not None else 0,
                job_seconds=seconds,
                graph_density=out.get("graph_density", np.nan),
            )
    return out


# ---------------------------------------------------------------------------- tables
def _by_shots(df: pd.DataFrame) -> bool:
    return "shots" in df and df["shots"].notna().any()


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds (and folds) of the per-run mean over perturbations, by task and method."""
    df = df.copy()
    keys = ["task", "method"]
    if _by_shots(df):
        keys.append("shots")
        df["shots"] = df["shots"].fillna(-1).astype(int)
    per_run = df.groupby([*keys, "seed", "fold"], sort=False)[METRICS].mean()
    out = per_run.groupby(keys, sort=False).mean()
    out.insert(0, "n_runs", per_run.groupby(keys, sort=False).size())
    return out.reset_index()


def paired_table(df: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """The reference against every other method, paired on (seed, fold, perturbation), for one
    task (and number of query cells)."""
    from scvi_causal.metrics import compare_methods

    tables = []
    groups = df.groupby("shots", sort=True) if _by_shots(df) else [(None, df)]
    for shots, sub in groups:
        if reference not in set(sub["method"]):
            continue
        sub = sub.assign(seed=sub["seed"].astype(str) + "/" + sub["fold"].astype(str))
        cmp = compare_methods(
            sub,
            reference=reference,
            metrics=("pearson_delta_top", "pearson_delta_all", "cosine_all"),
        )
        cmp = cmp.drop(columns=["reference", "higher_is_better"])
        if shots is not None:
            cmp.insert(0, "shots", int(shots))
        tables.append(cmp)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def render(df: pd.DataFrame, cis: pd.DataFrame | None) -> str:
    """RESULTS.md from the rows of ``results.csv`` and ``cis.csv`` (nothing else is read)."""
    runs = sorted(set(df["command"].dropna()) if "command" in df else set())
    if cis is not None and "command" in cis:
        runs = sorted(set(runs) | set(cis["command"].dropna()))
    lines = [
        "# Counterfactual benchmark",
        "",
        f"{provenance_line('results.csv', 'cis.csv')} Rows made by: "
        + "; ".join(f"`{r}`" for r in runs)
        + ".",
        "",
        "Scores (`SparseShiftVI.evaluate_predictions`): Pearson delta of the log fold "
        "changes against control on the 20 most changed genes (`pearson_delta_top`) and "
        "on all genes, their cosine, recall of the top-20 DE genes, RMSE of the mean "
        "log expression, PerturBench's rank metric (0 best, 0.5 chance) and the energy "
        "distance (lower is better for the last three). Mean over runs (seeds / folds) "
        "of the mean over perturbations.",
        "",
    ]
    if len(df):
        summary = summary_table(df)
        for task in dict.fromkeys(summary["task"]):
            sub = summary[summary["task"] == task].drop(columns="task")
            if "shots" in sub and (sub["shots"] < 0).all():
                sub = sub.drop(columns="shots")
            lines += [f"## {task}", "", sub.round(3).to_markdown(index=False), ""]
            paired = paired_table(df[df["task"] == task])
            if len(paired):
                lines += [
                    f"Paired against {REFERENCE} (`mean_difference` = {REFERENCE} minus "
                    "the method, positive = SparseShiftVI better; "
                    "`n_reference_better` of `n_pairs` perturbation x run pairs; "
                    "Wilcoxon signed-rank p):",
                    "",
                    paired.round(4).to_markdown(index=False),
                    "",
                ]
            if task == "papalexi_seen":
                sub = df[df["task"] == task]
                per = sub.pivot_table(
                    index="perturbation", columns="method", values="pearson_delta_top"
                )
                ref = sub[sub["method"] == REFERENCE].groupby("perturbation")
                per["observed change (norm)"] = ref["observed_delta_norm"].mean()
                per[f"{REFERENCE} change (norm)"] = ref["predicted_delta_norm"].mean()
                as_control = int(
                    (sub.loc[sub["method"] == REFERENCE, "predicted_delta_norm"] < 1e-3).sum()
                )
                lines += [
                    "Per perturbation (Pearson delta, top-20 genes, mean over seeds; "
                    "norms of the observed and predicted log fold changes):",
                    "",
                    per.round(3).to_markdown(),
                    "",
                    f"Predictions of {REFERENCE} equal to control (change norm < 1e-3): "
                    f"{as_control} of {len(sub[sub['method'] == REFERENCE])}.",
                    "",
                ]
            if task == "zhao_patient":
                per = df[df["task"] == task].pivot_table(
                    index="patient", columns="method", values=["pearson_delta_top", "cosine_all"]
                )
                lines += [
                    "Per held-out patient (mean over the patient's runs of each method; "
                    "`n_runs` above gives the runs per method):",
                    "",
                    per.round(3).to_markdown(),
                    "",
                ]
                if {REFERENCE, "other_patients"} <= set(per.columns.get_level_values(1)):
                    wins = [
                        (per[(m, REFERENCE)] >= per[(m, "other_patients")])
                        for m in ("pearson_delta_top", "cosine_all")
                    ]
                    lines += [
                        f"Patients where {REFERENCE} >= `other_patients` on top-20 "
                        f"Pearson delta: {int(wins[0].sum())} of {len(per)}; on "
                        f"cosine: {int(wins[1].sum())} of {len(per)}; on both: "
                        f"{int((wins[0] & wins[1]).sum())} of {len(per)}.",
                        "",
                    ]
            density = df.loc[df["task"] == task, "graph_density"].dropna()
            if len(density):
                lines += [f"Target-graph density of the default model: {density.mean():.3f}.", ""]
    if cis is not None and len(cis):
        lines += [
            "## gasperini_cis",
            "",
            "Promoter-targeting CRISPRi positive controls (model set up from the cells x "
            "targets matrix of guide calls, `perturbation_obsm_key`, and trained on half "
            "of the cells): the guide's own gene, its log fold change observed in the "
            "held-out half, predicted by `predict` (default reading), in the target report "
            "(targets and direct effects), and its direct effect; its rank among the "
            "predicted changes; whether the report lists it among the perturbation's "
            "direct effects.",
            "",
            cis.round(3).to_markdown(index=False),
            "",
            f"Own gene predicted down: {int((cis['predicted_lfc'] < 0).sum())} of "
            f"{len(cis)} by `predict`, {int((cis['report_lfc'] < 0).sum())} of "
            f"{len(cis)} in the report.",
            "",
        ]
        if "rank_down_in_prediction" in cis:
            top = (cis["predicted_lfc"] < 0) & (cis["rank_down_in_prediction"] <= 10)
            lines[-1:] = [
                f"Own gene predicted down and among the perturbation's 10 most "
                f"down-regulated genes: {int(top.sum())} of {len(cis)}.",
                "",
            ]
    lines += ["![results](results.png)", ""]
    return "\n".join(lines)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(df["task"]))
    if not tasks:
        return
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(4.8 * len(tasks), 3.8), squeeze=False, constrained_layout=True
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = df[df["task"] == task]
        methods = list(dict.fromkeys(sub["method"]))
        data = [
            sub.loc[sub["method"] == m, "pearson_delta_top"].dropna().to_numpy() for m in methods
        ]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=45, ha="right")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel("Pearson delta, top-20 genes")
        ax.set_title(task)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_csvs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``results.csv`` (empty when absent) and ``cis.csv`` (None when absent) of ``out``."""
    df = pd.read_csv(out / "results.csv") if (out / "results.csv").exists() else pd.DataFrame()
    cis = pd.read_csv(out / "cis.csv") if (out / "cis.csv").exists() else None
    return df, cis


def tabulate(out: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Rewrite RESULTS.md and results.png from the CSVs in ``out``."""
    df, cis = read_csvs(out)
    (out / "RESULTS.md").write_text(render(df, cis))
    if len(df):
        plot(df, out / "results.png")
    return df, cis


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, few epochs (CI)")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[1, 2, 3],
        help="seeds of papalexi_seen, simulated_pairs and papalexi_fewshot "
        "(seed 0 of papalexi_seen was used to choose direct_penalty)",
    )
    parser.add_argument(
        "--zhao-folds",
        nargs="+",
        type=int,
        default=[0, 1, 2, 3, 4],
        help="held-out patients (one run per patient and seed)",
    )
    parser.add_argument(
        "--configs",
        nargs="*",
        default=list(OTHER_CONFIGS),
        choices=list(OTHER_CONFIGS),
        help="other configurations to train",
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help="JSON of SparseShiftVI arguments (ablations of the default model)",
    )
    parser.add_argument(
        "--fit-residual",
        action="store_true",
        help="the default model fits its residual effects (fit_residual_effects) and is also "
        "scored without them",
    )
    add_output_args(parser, MODULE, HERE)
    parser.add_argument(
        "--render-only",
        "--tabulate",
        dest="render_only",
        action="store_true",
        help="only rewrite RESULTS.md / results.png from the CSVs in --out",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of other tasks / seeds already in --out",
    )
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    out.mkdir(parents=True, exist_ok=True)
    command = command_line(MODULE, argv)
    if args.render_only:
        return tabulate(out)[0]
    if args.quick:
        args.seeds, args.zhao_folds = args.seeds[:1], args.zhao_folds[:1]
        args.max_epochs = args.max_epochs or 20
    write_run_json(
        out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        append=args.append,
        extra={
            "tasks": args.tasks,
            # the CSVs this run writes (with --append the others keep earlier runs' rows)
            "writes": [
                *(["results.csv"] if set(args.tasks) - {"gasperini_cis"} else []),
                *(["cis.csv"] if "gasperini_cis" in args.tasks else []),
            ],
            "zhao_folds": args.zhao_folds,
            "configs": args.configs,
            "max_epochs": args.max_epochs,
            "workers": args.workers,
            "torch_threads_per_worker": args.threads,
            "model_kwargs": args.model_kwargs,
            "fit_residual": args.fit_residual,
            "quick": args.quick,
        },
    )
    jobs = []
    for task in args.tasks:
        folds = args.zhao_folds if task == "zhao_patient" else [None]
        seeds = args.seeds[:1] if task == "gasperini_cis" else args.seeds
        jobs += [(task, s, f) for s in seeds for f in folds]
    rows, cis = [], []
    with process_pool(args.workers) as pool:
        futures = {
            pool.submit(
                _run_job,
                t,
                s,
                f,
                args.quick,
                args.max_epochs,
                args.configs,
                args.threads,
                args.model_kwargs,
                args.fit_residual,
            ): (t, s, f)
            for t, s, f in jobs
        }
        for fut in as_completed(futures):
            result = fut.result()
            task, seed, fold = futures[fut]
            if "rows" in result:
                r = result["rows"].assign(command=command)
                rows.append(r)
                mean = r.groupby("method", sort=False)["pearson_delta_top"].mean()
                print(
                    f"  {task} seed {seed} fold {fold}: "
                    + ", ".join(f"{m} {v:.3f}" for m, v in mean.items()),
                    flush=True,
                )
            if "cis" in result:
                cis.append(result["cis"].assign(command=command))
                print(result["cis"].to_string(index=False), flush=True)
    df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    cis_df = pd.concat(cis, ignore_index=True) if cis else None
    if cis_df is not None:  # a cis.csv kept by --append is not rewritten (nor reformatted)
        cis_df.to_csv(out / "cis.csv", index=False)
    if args.append:
        done = {(t, s) for t, s, _ in jobs}
        if (out / "results.csv").exists():
            old = pd.read_csv(out / "results.csv")
            old = old[[(t, s) not in done for t, s in zip(old["task"], old["seed"], strict=True)]]
            df = pd.concat([old, df], ignore_index=True)
    if len(df):
        df.to_csv(out / "results.csv", index=False)
    tabulate(out)
    if len(df):
        print(summary_table(df).round(3).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
