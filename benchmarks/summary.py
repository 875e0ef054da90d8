"""One summary of every benchmark: data set x task x metric x method, from the CSVs alone.

    python -m benchmarks.summary            # rewrites benchmarks/README.md
    python -m benchmarks.summary --check    # exit 1 if benchmarks/README.md is not up to date

Each block reads the committed CSVs of one result folder, keeps its headline metrics, marks in
bold where a baseline beats the package's default model, and says which command produces it
and which commit made its rows (``run.json``; for rows made before ``run.json`` existed, the
commit that last wrote the CSV, recorded in ``LEGACY``). ``tests/test_benchmark_summary.py``
regenerates the page and compares it byte for byte; ``docs/benchmarks.md`` includes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import BENCHMARKS, read_run_json

README = BENCHMARKS / "README.md"

#: Methods that are the package's default model, and readings / variants of it (shown, never
#: marked as a baseline). Every other method of a block is a baseline.
DEFAULT = {"spike_slab", "SparseShiftVI", "independent"}
VARIANTS = {"spike_slab_fixed_masks", "SparseShiftVI-model", "SparseShiftVI-own", "dag"}


@dataclass(frozen=True)
class Legacy:
    """Rows made before ``run.json``: the commit that last wrote the CSV, and how they were made.

    ``commit`` is ``git log -1 --format=%h -- <csv>``; ``how`` quotes the command the table
    recorded at the time (``python benchmarks/...`` paths, before the scripts were modules).
    """

    commit: str
    how: str


#: CSVs (relative to ``benchmarks/``) whose rows predate ``run.json``
LEGACY: dict[str, Legacy] = {
    "simulated/results.csv": Legacy(
        "b2b992f",
        "the runs of `python benchmarks/simulated/run.py --protocols svae --seeds ... --workers "
        "2` listed in `simulated/NOTES.md`, tabulated by `python benchmarks/simulated/run.py "
        "--from-csv benchmarks/simulated/results.csv --out benchmarks/simulated --workers 2`",
    ),
    "simulated/default_protocol/results.csv": Legacy(
        "0cff881",
        "`python benchmarks/simulated/run.py --protocols default --seeds 101 102 103 --workers "
        "2` and the same with `--seeds 104 105` (`simulated/NOTES.md`), tabulated with "
        "`--from-csv`",
    ),
    "simulated/fewshot.csv": Legacy(
        "2585343",
        "`python benchmarks/simulated/fewshot.py --methods spike_slab --threads 1 --shots 0 10 "
        "30 1000` and the same with `--methods dense`, merged with `--from-csv`",
    ),
    "simulated/consensus.csv": Legacy(
        "5660055",
        "`python benchmarks/simulated/consensus.py` (5 model seeds, data seed 101), as "
        "`docs/model.md` recorded it",
    ),
    "simulated/select_n_latent.csv": Legacy(
        "8ed9d6f",
        "`python benchmarks/simulated/select_n_latent.py --workers 3 --out "
        "benchmarks/simulated` (seeds [0, 1], 150 epochs)",
    ),
    "simulated/timing.csv": Legacy(
        "dbf974f",
        "transcribed from `TIMING.md` as written by `python benchmarks/simulated/timing.py "
        "--seed 7 --threads 2` in commit 959db56 (the script wrote no CSV then)",
    ),
    "simulated/diagnosis/spike_slab/diagnosis.csv": Legacy(
        "0ceda40",
        "`python benchmarks/simulated/diagnose.py --seeds 101 102 103 --workers 1` (run in a "
        "temporary folder and copied)",
    ),
    "simulated/diagnosis/dense/diagnosis.csv": Legacy(
        "e728226",
        "`python benchmarks/simulated/diagnose.py --method dense --seeds 101 102 103 --workers 1 "
        "--out benchmarks/simulated/diagnosis/dense`",
    ),
    "real/heldout.csv": Legacy(
        "143e579", "`python benchmarks/real/run.py --workers 2 --threads 1` (`real/NOTES.md`)"
    ),
    "real/fewshot.csv": Legacy(
        "f123d91", "`python benchmarks/real/run.py --workers 2 --threads 1` (`real/NOTES.md`)"
    ),
    "real/stability.csv": Legacy(
        "cd080de",
        "`python benchmarks/real/run.py --workers 2 --threads 1`; seeds 0-1 rerun with direct "
        "effects (`real/NOTES.md`)",
    ),
    "real/pathway.csv": Legacy(
        "cd080de",
        "`python benchmarks/real/run.py --workers 2 --threads 1`; seeds 0-1 rerun with direct "
        "effects (`real/NOTES.md`)",
    ),
    "real/zhao_targets.csv": Legacy(
        "8d93921", "`python benchmarks/real/run.py --workers 2 --threads 1` (`real/NOTES.md`)"
    ),
    "images/results.csv": Legacy(
        "b28ea45",
        "`python benchmarks/images/run.py --methods spike_slab beta_vae beta_tcvae dense "
        "--workers 2` in a temporary folder, copied: 6 intervention regimes + observational, "
        "1500 images per regime, 6 latent units, 16 conv. channels, 18 epochs",
    ),
    "scale/results.csv": Legacy(
        "aa43cbf", "`python benchmarks/scale/run.py --out benchmarks/scale` (2 torch threads, CPU)"
    ),
    "scale/time_to_quality.csv": Legacy(
        "a594c83",
        "`python benchmarks/scale/time_to_quality.py --seeds 101 --threads 1` in a temporary "
        "folder, copied (machine shared with 3 other benchmark processes)",
    ),
    "scale/profile.csv": Legacy(
        "dbf974f",
        "transcribed from `PROFILE.md` as written by `python benchmarks/scale/profile_step.py` "
        "in commit 43fe5fe (the script wrote no CSV then)",
    ),
}


@dataclass
class Block:
    """One area of the summary: headline rows of one or more CSVs of one folder."""

    title: str
    folder: str  # relative to benchmarks/
    command: str  # what regenerates the CSVs (in the committed folder)
    csvs: tuple[str, ...]  # relative to benchmarks/
    table: str  # the full tables rendered from the same CSVs
    rows: Callable[[Path], pd.DataFrame]  # data set, task, metric, lower, digits, methods...
    note: str = ""
    methods: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- rows
def _row(data: str, task: str, metric: str, values: dict, digits: int = 3, lower=False) -> dict:
    return {
        "data set": data,
        "task": task,
        "metric": metric,
        "_lower": lower,
        "_digits": digits,
        **values,
    }


def _simulated(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "results.csv")
    protocol = {"svae": "sVAE"}.get(df["protocol"].iloc[0], df["protocol"].iloc[0])
    n = df.groupby("method")["seed"].nunique().max()
    data = f"simulated, {protocol} protocol ({n} seeds)"
    mean = df.groupby("method").mean(numeric_only=True)
    rows = []
    for task, metric, col, digits in [
        ("latent units", "MCC", "mcc_pearson", 3),
        ("target graph, training perturbations", "F1", "graph_f1", 3),
        ("target graph, training perturbations", "F1, top-k read-out", "graph_topk_f1", 3),
        ("held-out perturbations (query)", "target F1", "heldout_graph_f1", 3),
        ("held-out perturbations (query)", "IWELBO, nats/cell", "heldout_iwelbo", 2),
    ]:
        rows.append(_row(data, task, metric, mean[col].to_dict(), digits))
    fixed = mean["heldout_iwelbo_fixed_masks"].dropna()
    rows.append(
        _row(
            data,
            "held-out perturbations (query)",
            "IWELBO, all-ones query masks",
            {"spike_slab_fixed_masks": fixed.get("spike_slab", np.nan)},
            2,
        )
    )
    return pd.DataFrame(rows)


def _fewshot(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "fewshot.csv")
    data = f"simulated, sVAE protocol ({df['seed'].nunique()} seeds)"
    mean = df.groupby(["cells_per_perturbation", "method"]).mean(numeric_only=True)
    rows = []
    for n in sorted(df["cells_per_perturbation"].unique()):
        task = "new perturbations, frozen model" if n == 0 else f"new perturbations, {n} cells"
        rows.append(
            _row(
                data,
                task,
                "IWELBO of unseen cells, nats/cell",
                mean.loc[n, "heldout_iwelbo"].to_dict(),
                2,
            )
        )
        if n > 0:
            rows.append(_row(data, task, "target F1", mean.loc[n, "heldout_graph_f1"].to_dict()))
    return pd.DataFrame(rows)


def _consensus(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "consensus.csv")
    seeds = df[df["kind"] == "seed"]
    # one row per reference seed at stability 0.8 (the script's --min-stability)
    stable = df[(df["kind"] == "consensus") & np.isclose(df["min_stability"], 0.8)]
    protocol = {"svae": "sVAE"}.get(df["protocol"].iloc[0], df["protocol"].iloc[0])
    data = (
        f"simulated, {protocol} protocol (data seed "
        f"{df['data_seed'].iloc[0]}, {seeds['seed'].nunique()} model seeds)"
    )
    rows = []
    for metric in ("precision", "recall", "f1"):
        rows.append(
            _row(
                data,
                "edges that replicate across seeds",
                metric.replace("f1", "F1"),
                {
                    "single seed": seeds[metric].mean(),
                    "consensus, stability >= 0.8": stable[metric].mean(),
                },
            )
        )
    rows.append(
        _row(
            data,
            "edges that replicate across seeds",
            f"edges (true: {int(seeds['n_true_edges'].iloc[0])})",
            {
                "single seed": seeds["n_est_edges"].mean(),
                "consensus, stability >= 0.8": stable["n_est_edges"].mean(),
            },
            1,
        )
    )
    return pd.DataFrame(rows)


def _select_n_latent(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "select_n_latent.csv")
    chosen = df.groupby("true_k")["chosen_n_latent"].first()
    return pd.DataFrame(
        [
            _row(
                "simulated, default protocol (40 perturbations x 60 cells)",
                "choosing n_latent",
                f"chosen n_latent, true K = {k}",
                {"select_n_latent": c},
                0,
            )
            for k, c in chosen.items()
        ]
    )


def _counterfactual(folder: Path) -> pd.DataFrame:
    from benchmarks.counterfactual.run import read_csvs, summary_table

    df, cis = read_csvs(folder)
    summary = summary_table(df)
    names = {
        "papalexi_seen": ("Papalexi 2021 (ECCITE-seq)", "seen perturbations, held-out half"),
        "simulated_pairs": ("simulated, hard protocol", "unseen pairs of seen perturbations"),
        "zhao_patient": ("Zhao 2021 (drug, 5 patients)", "drug in an unseen patient"),
        "papalexi_fewshot": ("Papalexi 2021 (ECCITE-seq)", "new perturbations, {} query cells"),
    }
    rows = []
    for task in dict.fromkeys(summary["task"]):
        sub = summary[summary["task"] == task]
        groups = (
            sub.groupby("shots", sort=True)
            if "shots" in sub and (sub["shots"] >= 0).any()
            else [(None, sub)]
        )
        for shots, part in groups:
            data, label = names[task]
            runs = int(part["n_runs"].max())
            label = label.format(shots) + f" ({runs} runs)"
            values = part.set_index("method")
            for metric, col in [
                ("Pearson delta, top-20 genes", "pearson_delta_top"),
                ("Pearson delta, all genes", "pearson_delta_all"),
                ("cosine of log fold changes", "cosine_all"),
            ]:
                rows.append(_row(data, label, metric, values[col].to_dict()))
    if cis is not None and len(cis):
        data, n = "Gasperini 2019 (high-MOI CRISPRi)", len(cis)
        task = f"own gene of the {n} promoter-targeting controls"
        down = cis["predicted_lfc"] < 0
        rows += [
            _row(data, task, f"predicted down (of {n})", {"SparseShiftVI": int(down.sum())}, 0),
            _row(
                data,
                task,
                f"predicted down, among the 10 most down (of {n})",
                {"SparseShiftVI": int((down & (cis["rank_down_in_prediction"] <= 10)).sum())},
                0,
            ),
            _row(
                data,
                task,
                f"down in the target report (of {n})",
                {"SparseShiftVI-model": int((cis["report_lfc"] < 0).sum())},
                0,
            ),
        ]
    return pd.DataFrame(rows)


def _real(folder: Path) -> pd.DataFrame:
    data = "Papalexi 2021 (ECCITE-seq)"
    heldout = pd.read_csv(folder / "heldout.csv")
    per_fold = heldout.groupby(["fold", "config"])["iwelbo"].mean().unstack("config")
    rows = [
        _row(
            data,
            f"held-out perturbations, {len(per_fold)} folds (fitted cells)",
            "IWELBO, nats/cell",
            per_fold.mean().to_dict(),
            2,
        )
    ]
    fewshot = pd.read_csv(folder / "fewshot.csv")
    fewshot["shots"] = fewshot["shots"].astype(str)
    fold_means = fewshot.groupby(["shots", "fold", "config"])["iwelbo"].mean()
    table = fold_means.groupby(["shots", "config"]).mean().unstack("config")
    order = sorted(set(table.index) - {"all"}, key=int) + (["all"] if "all" in table.index else [])
    for shots in order:
        cells = "no fitted cells" if shots == "0" else f"{shots} fitted cells"
        rows.append(
            _row(
                data,
                f"held-out perturbations, unseen cells, {cells}",
                "IWELBO, nats/cell",
                table.loc[shots].dropna().to_dict(),
                3,
            )
        )
    stability = pd.read_csv(folder / "stability.csv")
    n_seeds = stability[["seed_a", "seed_b"]].stack().nunique()
    rows.append(
        _row(
            data,
            f"target graph across {n_seeds} seeds",
            "mean pairwise graph F1",
            {"spike_slab": stability["graph_f1"].mean()},
        )
    )
    pathway = pd.read_csv(folder / "pathway.csv")
    rows.append(
        _row(
            data,
            "IFN-gamma pathway coherence",
            f"largest permutation p over {len(pathway)} seeds",
            {"spike_slab": pathway["p_value"].max()},
            4,
        )
    )
    zhao = pd.read_csv(folder / "zhao_targets.csv")
    rows.append(
        _row(
            "Zhao 2021 (drug, 5 patients)",
            "units targeted by panobinostat",
            "number of units",
            {"spike_slab": len(zhao)},
            0,
        )
    )
    return pd.DataFrame(rows)


def _causal_graph(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "results.csv")
    rows = []
    for screen, group in df.groupby("screen", sort=True):
        kind = {"dag_do": "hard interventions", "dag_shift": "noise shifts"}.get(screen, screen)
        data = f"simulated latent DAG, {kind} ({group['seed'].nunique()} seeds)"
        mean = group.groupby("method").mean(numeric_only=True)
        for task, metric, col in [
            ("latent units", "MCC", "mcc"),
            ("direct targets", "F1 (descendants are false positives)", "direct_f1"),
            ("latent DAG", "directed-edge F1", "dag_f1"),
        ]:
            rows.append(_row(data, task, metric, mean[col].dropna().to_dict()))
        rows.append(
            _row(data, "training", "seconds", mean["train_seconds"].to_dict(), 0, lower=True)
        )
    return pd.DataFrame(rows)


def _latent_graph_svae(folder: Path) -> pd.DataFrame:
    """The DAG prior on the independent-latent sVAE protocol, on the seeds both methods ran."""
    runs = {m: pd.read_csv(folder / m / "results.csv") for m in ("independent", "dag")}
    seeds = sorted(set.intersection(*(set(df["seed"]) for df in runs.values())))
    data = f"simulated, sVAE protocol, independent latents ({len(seeds)} seeds)"
    mean = {m: df[df["seed"].isin(seeds)].mean(numeric_only=True) for m, df in runs.items()}
    return pd.DataFrame(
        [
            _row(data, task, metric, {m: v[col] for m, v in mean.items()}, digits, lower)
            for task, metric, col, digits, lower in [
                ("latent units", "MCC", "mcc_pearson", 3, False),
                ("target graph, training perturbations", "F1", "graph_f1", 3, False),
                ("held-out perturbations (query)", "target F1", "heldout_graph_f1", 3, False),
                ("training", "seconds", "train_seconds", 0, True),
            ]
        ]
    )


def _images(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "results.csv")
    data = f"interventional dSprites ({df['seed'].nunique()} seeds)"
    mean = df.groupby("method", sort=False).mean(numeric_only=True)
    return pd.DataFrame(
        [
            _row(data, task, metric, mean[col].to_dict())
            for task, metric, col in [
                ("latent units", "MCC", "mcc_pearson"),
                ("latent units", "MIG", "mig"),
                ("latent units", "DCI disentanglement", "dci_disentanglement"),
                ("latent units", "SAP", "sap"),
                ("target graph (regimes x factors)", "F1", "graph_f1"),
            ]
        ]
    )


def _scale(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "results.csv")
    rows = []
    for (n, mode), sub in df.groupby(["n_cells", "mode"], sort=False):
        values = sub.set_index("model")
        data = f"simulated sparse screen, {n:,} cells x {sub['n_genes'].iloc[0]:,} genes"
        task = f"training, {'on disk (backed)' if mode == 'backed' else 'in memory'}"
        rows.append(_row(data, task, "cells per second", values["cells_per_second"].to_dict(), 0))
        rows.append(
            _row(
                data,
                task,
                "peak RSS, GiB (lower is better)",
                values["peak_rss_gib"].to_dict(),
                2,
                lower=True,
            )
        )
    profile = pd.read_csv(folder / "profile.csv")
    step = profile[
        (profile["section"] == "step") & (profile["metric"] == "module step (ms, median)")
    ]
    settings = profile[profile["section"] == "settings"].set_index("metric")["value"]
    rows.append(
        _row(
            f"simulated sparse screen, {int(settings['n_cells']):,} cells x "
            f"{int(settings['n_genes']):,} genes",
            "one training step, 1 thread",
            "ms (lower is better)",
            dict(zip(step["name"], step["value"], strict=True)),
            0,
            lower=True,
        )
    )
    ttq = pd.read_csv(folder / "time_to_quality.csv")
    for seed, sub in ttq.groupby("seed"):
        data = f"simulated, sVAE protocol (seed {seed})"
        hit = sub[(sub["mcc"] >= 0.9) & (sub["graph_f1"] >= 0.9)]
        rows += [
            _row(data, "default training", "final MCC", {"SparseShiftVI": sub["mcc"].iloc[-1]}),
            _row(
                data,
                "default training",
                "final graph F1",
                {"SparseShiftVI": sub["graph_f1"].iloc[-1]},
            ),
            _row(
                data,
                "default training",
                "seconds to MCC and F1 >= 0.9 (lower is better)",
                {"SparseShiftVI": hit["train_seconds"].iloc[0] if len(hit) else np.nan},
                0,
                lower=True,
            ),
        ]
    timing = pd.read_csv(folder.parent / "simulated" / "timing.csv").iloc[-1]
    data = f"simulated, default protocol, {timing['n_cells']:,} cells x {timing['n_genes']} genes"
    task = f"default training ({timing['epochs']} epochs, {timing['threads']} threads)"
    rows += [
        _row(
            data,
            task,
            "train() seconds (lower is better)",
            {"SparseShiftVI": timing["train_seconds"]},
            0,
            lower=True,
        ),
        _row(data, task, "MCC", {"SparseShiftVI": timing["mcc"]}),
        _row(data, task, "graph F1", {"SparseShiftVI": timing["graph_f1"]}),
    ]
    wide = folder / "genome_wide" / "results.csv"
    if wide.exists():
        stages = pd.read_csv(wide).set_index("stage")
        first = stages.iloc[0]
        n_cells = int(stages.loc["simulate", "n_cells"])
        data = (
            f"simulated, default protocol, {int(first['n_perturbations']):,} perturbations x "
            f"{int(first['cells_per_perturbation'])} cells ({n_cells:,} cells) x "
            f"{int(first['n_genes']):,} genes"
        )
        task = (
            f"genome-wide size, default training ({int(stages.loc['train', 'epochs'])} epochs, "
            f"{int(first['threads'])} threads)"
        )
        graph = stages.loc["latent and graph"]
        rows += [
            _row(
                data,
                task,
                "train() seconds (lower is better)",
                {"SparseShiftVI": stages.loc["train", "seconds"]},
                0,
                lower=True,
            ),
            _row(
                data,
                task,
                "target report seconds (lower is better)",
                {"SparseShiftVI": stages.loc["target report", "seconds"]},
                0,
                lower=True,
            ),
            _row(
                data,
                task,
                "peak RSS, GiB (lower is better)",
                {"SparseShiftVI": stages["peak_rss_gib"].max()},
                2,
                lower=True,
            ),
            _row(data, task, "MCC", {"SparseShiftVI": graph["mcc"]}),
            _row(data, task, "graph F1", {"SparseShiftVI": graph["graph_f1"]}),
        ]
    return pd.DataFrame(rows)


BLOCKS = [
    Block(
        "Simulated screens, sVAE protocol: identifiability and target graph",
        "simulated",
        "python -m benchmarks.simulated.run --protocols svae --update",
        ("simulated/results.csv",),
        "simulated/RESULTS.md",
        _simulated,
        "The published sVAE benchmark: 100 perturbations x 250 cells, p80-p99 held out and "
        "mapped onto the frozen model. Rows measured before direct effects became the "
        "default (`simulated/NOTES.md`, ninth session).",
        ["spike_slab", "spike_slab_fixed_masks", "l1", "dense", "none", "beta_vae", "beta_tcvae"],
    ),
    Block(
        "Simulated screens, default protocol",
        "simulated/default_protocol",
        "python -m benchmarks.simulated.run --protocols default --out "
        "benchmarks/simulated/default_protocol",
        ("simulated/default_protocol/results.csv",),
        "simulated/default_protocol/RESULTS.md",
        _simulated,
        "The simulator's more realistic screen (negative binomial counts, controls, library "
        "sizes); p40-p49 held out.",
        ["spike_slab", "spike_slab_fixed_masks", "l1", "dense", "none", "beta_vae", "beta_tcvae"],
    ),
    Block(
        "Simulated screens: few-shot transfer, scored on unseen cells",
        "simulated",
        "python -m benchmarks.simulated.fewshot --update",
        ("simulated/fewshot.csv",),
        "simulated/FEWSHOT.md",
        _fewshot,
        "New perturbations mapped onto a frozen reference from n of their cells; the scored "
        "cells are never fitted.",
        ["spike_slab", "spike_slab_fixed_masks", "dense"],
    ),
    Block(
        "Simulated screens: consensus over seeds",
        "simulated",
        "python -m benchmarks.simulated.consensus --update",
        ("simulated/consensus.csv",),
        "simulated/consensus.csv (printed, no markdown)",
        _consensus,
        "No baseline: single seeds against the edges kept by at least 80 % of the seeds "
        "(4 of 5), each seed in turn the reference.",
        ["single seed", "consensus, stability >= 0.8"],
    ),
    Block(
        "Simulated screens: choosing n_latent",
        "simulated",
        "python -m benchmarks.simulated.select_n_latent --workers 3 --update",
        ("simulated/select_n_latent.csv",),
        "simulated/SELECT_N_LATENT.md",
        _select_n_latent,
        "",
        ["select_n_latent"],
    ),
    Block(
        "Counterfactual prediction",
        "counterfactual",
        "python -m benchmarks.counterfactual.run --workers 2 --update",
        ("counterfactual/results.csv", "counterfactual/cis.csv"),
        "counterfactual/RESULTS.md",
        _counterfactual,
        "Held-out cells; mean over runs (seeds / held-out patients) of the mean over "
        "perturbations. `control`, `additive`, `linear` and `other_patients` are computed "
        "from the training cells; `dense` and `none` are the other configurations trained on "
        "the same cells; `SparseShiftVI-model` reads the sparse graph alone (and is the "
        "target report's reading) and `SparseShiftVI-own` decodes in the held-out patient's "
        "own batch.",
        [
            "SparseShiftVI",
            "SparseShiftVI-model",
            "SparseShiftVI-own",
            "dense",
            "none",
            "control",
            "additive",
            "linear",
            "other_patients",
        ],
    ),
    Block(
        "Real screens",
        "real",
        "python -m benchmarks.real.run --workers 2 --threads 1 --update",
        (
            "real/heldout.csv",
            "real/fewshot.csv",
            "real/stability.csv",
            "real/pathway.csv",
            "real/zhao_targets.csv",
        ),
        "real/RESULTS.md",
        _real,
        "IWELBO: mean over folds of the mean per-cell IWELBO of the held-out perturbations "
        "(20 % of the perturbations per fold).",
        ["spike_slab", "spike_slab_fixed_masks", "l1", "dense", "none"],
    ),
    Block(
        "Latent causal graph",
        "causal_graph",
        "python -m benchmarks.causal_graph.run --update",
        ("causal_graph/results.csv",),
        "causal_graph/RESULTS.md",
        _causal_graph,
        "8 latent units on a random DAG, one perturbation per unit; `dag` is "
        '`latent_graph="dag"` (only it has a latent graph), `independent` the default model.',
        ["independent", "dag"],
    ),
    Block(
        "Latent causal graph on independent latents (sVAE protocol)",
        "simulated/latent_graph",
        "python -m benchmarks.simulated.run --protocols svae --methods spike_slab --workers 1 "
        "--out benchmarks/simulated/latent_graph/independent; the same with --model-kwargs "
        '\'{"latent_graph": "dag"}\' --out benchmarks/simulated/latent_graph/dag',
        (
            "simulated/latent_graph/independent/results.csv",
            "simulated/latent_graph/dag/results.csv",
        ),
        "simulated/latent_graph/dag/RESULTS.md",
        _latent_graph_svae,
        "The published sVAE benchmark (independent latent units, no latent graph): does "
        '`latent_graph="dag"` keep the default\'s identifiability? Seeds both ran.',
        ["independent", "dag"],
    ),
    Block(
        "Images: interventional dSprites",
        "images",
        "python -m benchmarks.images.run --update",
        ("images/results.csv",),
        "images/RESULTS.md",
        _images,
        "The same priors on a convolutional VAE; 5,000 held-out images.",
        ["spike_slab", "dense", "beta_vae", "beta_tcvae"],
    ),
    Block(
        "Scale",
        "scale",
        "python -m benchmarks.scale.run --update; python -m benchmarks.scale.profile_step "
        "--update; python -m benchmarks.scale.time_to_quality --update; python -m "
        "benchmarks.simulated.timing --update; python -m benchmarks.scale.genome_wide --update",
        (
            "scale/results.csv",
            "scale/profile.csv",
            "scale/time_to_quality.csv",
            "simulated/timing.csv",
            "scale/genome_wide/results.csv",
        ),
        "scale/RESULTS.md, scale/PROFILE.md, scale/TIME_TO_QUALITY.md, simulated/TIMING.md, "
        "scale/genome_wide/RESULTS.md",
        _scale,
        "CPU, one model at a time; torch threads as each row (or the full table) says.",
        ["SparseShiftVI", "SCVI"],
    ),
]


# ----------------------------------------------------------------------------- markdown
def _format(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:,.{digits}f}" if digits == 0 else f"{value:.{digits}f}"


def block_table(rows: pd.DataFrame, methods: list[str]) -> str:
    """Markdown table of a block; bold where a baseline beats the default at the shown digits."""
    methods = [m for m in methods if m in rows] + [
        m
        for m in rows.columns
        if m not in methods and not m.startswith("_") and m not in ("data set", "task", "metric")
    ]
    header = ["data set", "task", "metric", *methods]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] * 3 + ["---:"] * len(methods)) + "|",
    ]
    for _, row in rows.iterrows():
        cells = {m: _format(row.get(m), row["_digits"]) for m in methods}
        default = next((m for m in methods if m in DEFAULT and cells[m]), None)
        if default is not None:
            ref = float(cells[default].replace(",", ""))
            for m in methods:
                if m in DEFAULT or m in VARIANTS or not cells[m]:
                    continue
                value = float(cells[m].replace(",", ""))
                if (value < ref) if row["_lower"] else (value > ref):
                    cells[m] = f"**{cells[m]}**"
        lines.append(
            "| "
            + " | ".join(
                [row["data set"], row["task"], row["metric"], *(cells[m] for m in methods)]
            )
            + " |"
        )
    return "\n".join(lines)


def provenance(block: Block) -> list[str]:
    """Where each CSV of ``block`` comes from: ``run.json``, or its legacy record."""
    lines = []
    for rel in block.csvs:
        record = read_run_json(BENCHMARKS / Path(rel).parent, module_of(rel))
        if record is not None and Path(rel).name not in record.get("writes", [Path(rel).name]):
            lines.append(
                f"- `{rel}`: kept from an earlier run than the folder's last (`previous_runs` "
                "in `run.json`)"
            )
        elif record is not None:
            commit = (record.get("commit") or "unknown")[:7]
            dirty = " with uncommitted changes" if record.get("dirty") else ""
            kept = len(record.get("previous_runs", []))
            earlier = f", keeping the rows of {kept} earlier run(s) listed there" if kept else ""
            lines.append(
                f"- `{rel}`: made at commit `{commit}`{dirty} on "
                f"{record['date_utc'][:10]} by `{record['command']}` (`run.json`{earlier})"
            )
        elif rel in LEGACY:
            old = LEGACY[rel]
            lines.append(
                f"- `{rel}`: last written in commit `{old.commit}`, before `run.json` "
                f"existed. How: {old.how}."
            )
        else:
            lines.append(f"- `{rel}`: no `run.json` and no recorded provenance")
    return lines


def render() -> str:
    """The whole of ``benchmarks/README.md``."""
    out = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.summary` from the committed CSVs; do not edit by "
        "hand (`tests/test_benchmark_summary.py` regenerates this page and compares it byte "
        "for byte). Each block below is a digest of one result folder, whose full tables are "
        "rendered from the same CSVs (`python -m benchmarks.render`).",
        "",
        "How to read it: one row per data set x task x metric, one column per method; means "
        "over seeds, folds or runs as each block says. Higher is better unless the metric says "
        "otherwise. The package's default model is `spike_slab` / `SparseShiftVI`; "
        "`spike_slab_fixed_masks`, `SparseShiftVI-model` and `SparseShiftVI-own` are other "
        "readings of that same model. **Bold**: a baseline beats the default model on that "
        "row at the precision shown. An empty cell: not measured.",
        "",
        "Running a benchmark: every script runs from the repository root as `python -m "
        "benchmarks.<area>.<script>` and writes into `benchmarks/_scratch/<area>/<script>` "
        "(gitignored) unless given `--out DIR`, or `--update` for its committed folder "
        "(`make bench-*` does that, then regenerates this page). Each run records its commit, "
        "command, date, machine and seeds in the `run.json` of its folder; `--render-only` "
        "rewrites a folder's tables from its CSVs without training. Curated findings, with "
        "their sources: `docs/findings.md`.",
        "",
    ]
    for block in BLOCKS:
        rows = block.rows(BENCHMARKS / block.folder)
        out += [f"## {block.title}", ""]
        if block.note:
            out += [block.note, ""]
        out += [
            block_table(rows, block.methods),
            "",
            f"Command: `{block.command}`. Full tables: `{block.table}`.",
            "",
            "Rows:",
            "",
            *provenance(block),
            "",
        ]
    legacy = [
        rel
        for rel in LEGACY
        if read_run_json(BENCHMARKS / Path(rel).parent, module_of(rel)) is None
    ]
    out += [
        "## Result folders made before `run.json`",
        "",
        "These committed CSVs were written before the scripts recorded `run.json`; the "
        "commit is the one that last wrote each CSV (`git log -1 -- <csv>`), the command "
        "is the one their tables recorded (scripts were then run as `python "
        "benchmarks/<area>/<script>.py`). A rerun with `--update` replaces the entry by a "
        "`run.json`. The target reports in `real/papalexi_report/` and `real/zhao_report/` "
        "are written by the model's `target_report` during `benchmarks.real.run`, not "
        "rendered from CSVs.",
        "",
    ]
    out += [f"- `{rel}`: commit `{LEGACY[rel].commit}`" for rel in legacy]
    out += [""]
    return "\n".join(out)


def module_of(rel: str) -> str:
    """The script that writes the CSV ``rel`` (relative to ``benchmarks/``)."""
    name = Path(rel).name
    if rel.startswith("simulated/diagnosis/"):
        return "benchmarks.simulated.diagnose"
    if rel.startswith("scale/genome_wide/"):
        return "benchmarks.scale.genome_wide"
    by_name = {
        "fewshot.csv": "simulated.fewshot",
        "consensus.csv": "simulated.consensus",
        "select_n_latent.csv": "simulated.select_n_latent",
        "timing.csv": "simulated.timing",
        "profile.csv": "scale.profile_step",
        "time_to_quality.csv": "scale.time_to_quality",
    }
    if rel.startswith("simulated/") and name in by_name:
        return f"benchmarks.{by_name[name]}"
    if rel.startswith("scale/") and name in by_name:
        return f"benchmarks.{by_name[name]}"
    if rel.startswith("images/") and name == "weak.csv":  # weak.csv and weak_long/weak.csv
        return "benchmarks.images.weak"
    if rel == "counterfactual/cis_data.csv":
        return "benchmarks.counterfactual.cis_data"
    if rel == "causal_graph/warp.csv":
        return "benchmarks.causal_graph.warp"
    if rel == "causal_graph/images.csv":
        return "benchmarks.causal_graph.images"
    return f"benchmarks.{rel.split('/')[0]}.run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if benchmarks/README.md is not up to date",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = README.exists() and README.read_text() == text
        print(
            "benchmarks/README.md is up to date"
            if same
            else "benchmarks/README.md differs: run python -m benchmarks.summary"
        )
        return 0 if same else 1
    README.write_text(text)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
