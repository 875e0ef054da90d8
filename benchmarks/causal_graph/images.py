"""Latent causal graph on images: DAG prior, independent units and beta-TCVAE on causal dSprites.

One command writes ``images.csv``, ``IMAGES.md`` and its record in ``run.json`` into ``--out``
(default: a scratch folder; ``--update``: this folder)::

    python -m benchmarks.causal_graph.images --update                  # 3 methods x 3 seeds
    python -m benchmarks.causal_graph.images --quick --out /tmp/cgi    # tiny CI smoke run
    python -m benchmarks.causal_graph.images --render-only --update    # IMAGES.md from images.csv

Data (:func:`~scvi_causal.images.causal_dsprites`, data seed = model seed): the four ordinal
dSprites factors follow a linear-Gaussian SCM on the default DAG (scale -> orientation,
scale -> pos_x, pos_x -> pos_y, weights 1, 1, -1); an observational regime and one hard
intervention regime per factor (``do(c_k = 3 + noise)``: the target's incoming edges are cut,
the effect reaches its descendants); the shape is uniform. The image models use the encoder and
decoder of ``benchmarks.images.weak`` (16 channels, 6 latent units, minibatches of 64, lr 5e-4,
18 epochs; about 2-3 min per run at one torch thread):

- ``dag``: :class:`~scvi_causal.images.ImageVAE` with ``latent_graph="dag"`` (spike-and-slab
  masks on the direct targets, package defaults; the graph-alignment step at 0.75 of training,
  :func:`~scvi_causal.core.fit_latent_graph` with its defaults);
- ``independent``: the same model without a graph (sVAE+ with the package defaults), whose
  masks mark every unit a regime moves, descendants included;
- ``beta_tcvae``: no regimes, total correlation weight 5 (``benchmarks.images.run``).

Scores on held-out observational images of the same SCM (a fresh draw): MCC (Pearson,
Spearman) over the four ordinal factors, after one-to-one matching of units to factors
(Hungarian on absolute correlation, :func:`~scvi_causal.metrics.match_latents`); the observed
factors are correlated through the DAG, so an unrelated unit can still correlate with a factor.
Direct-target precision / recall / F1 of the regimes x units masks against the true regimes x
factors targets (:func:`~scvi_causal.metrics.direct_target_scores`: a descendant reported as a
target is a false positive; ``precision_with_descendants`` counts it as correct). For ``dag``
the directed-edge precision / recall / F1, skeleton F1, SHD and AUPRC of the latent graph
(:func:`~scvi_causal.metrics.latent_graph_scores`, units matched as for MCC). Training time and
peak memory of each run (its own process).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    map_threads,
    provenance_line,
    resolve_out,
    run_worker,
    write_run_json,
    write_text,
)
from benchmarks.images.run import CONFIGS as RUN_CONFIGS

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.causal_graph.images"
CSV, TABLE = "images.csv", "IMAGES.md"
CONFIGS = {
    "dag": {"intervention_prior": "spike_slab", "latent_graph": "dag"},
    "independent": {"intervention_prior": "spike_slab"},
    "beta_tcvae": dict(RUN_CONFIGS["beta_tcvae"]),
}
METHODS = list(CONFIGS)
BATCH, LR = 64, 5e-4
FULL = {
    "n_per_regime": 750,
    "max_epochs": 18,
    "n_latent": 6,
    "channels": 16,
    "shift": 3.0,
    "n_eval": 2000,
    "graph_fit_kwargs": {},
}
QUICK = {
    "n_per_regime": 30,
    "max_epochs": 2,
    "n_latent": 4,
    "channels": 8,
    "shift": 3.0,
    "n_eval": 200,
    "graph_fit_kwargs": {"n_steps": 100, "n_restarts": 1},
}
#: column -> higher is better
SCORES = {
    "mcc_pearson": True,
    "mcc_spearman": True,
    "direct_precision": True,
    "direct_recall": True,
    "direct_f1": True,
    "direct_precision_with_descendants": True,
    "dag_precision": True,
    "dag_recall": True,
    "dag_f1": True,
    "dag_skeleton_f1": True,
    "dag_shd": False,
    "dag_auprc": True,
}
COST = ["train_seconds", "peak_rss_mb"]


# ----------------------------------------------------------------------------- one run
def run_one(method: str, seed: int, settings: dict) -> dict:
    """Generate the data, train ``method`` and score it (inside a worker process)."""
    import torch

    from scvi_causal.images import CAUSAL_FACTORS, FACTOR_NAMES, ImageVAE, causal_dsprites
    from scvi_causal.metrics import direct_target_scores, latent_graph_scores, match_latents, mcc

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = causal_dsprites(
        n_per_regime=settings["n_per_regime"], shift=settings["shift"], seed=seed
    )
    n_regimes = len(data.regime_names) - 1
    config = dict(CONFIGS[method])
    regimes = config["intervention_prior"] != "none"
    model = ImageVAE(
        n_latent=settings["n_latent"],
        n_interventions=n_regimes if regimes else 0,
        channels=settings["channels"],
        **config,
    )
    fit = {}
    if config.get("latent_graph") == "dag":
        fit["graph_fit_kwargs"] = settings["graph_fit_kwargs"]
    start = time.perf_counter()
    model.train(
        data.images,
        data.regimes if regimes else None,
        max_epochs=settings["max_epochs"],
        batch_size=BATCH,
        lr=LR,
        enable_progress_bar=False,
        seed=seed,
        **fit,
    )
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    held_out = causal_dsprites(
        n_per_regime=1,
        n_observational=settings["n_eval"],
        shift=settings["shift"],
        seed=10_000 + seed,
    )
    observational = held_out.regimes == 0
    z = model.get_latent_representation(held_out.images[observational])
    columns = [FACTOR_NAMES.index(f) for f in CAUSAL_FACTORS]
    ordinal = held_out.factors[observational][:, columns].astype(float)
    matching, corr = match_latents(ordinal, z)
    true_dag = data.dag.to_numpy()
    row = {
        "method": method,
        "seed": seed,
        "mcc_pearson": mcc(ordinal, z),
        "mcc_spearman": mcc(ordinal, z, method="spearman"),
        **{
            f"corr_{name}": float(corr[i, matching[i]]) if matching[i] >= 0 else 0.0
            for i, name in enumerate(CAUSAL_FACTORS)
        },
        "n_true_edges": int(true_dag.sum()),
    }
    if regimes:
        direct = direct_target_scores(
            data.targets.to_numpy(), model.get_target_graph(), true_dag, matching
        )
        row |= {
            "direct_precision": direct["precision"],
            "direct_recall": direct["recall"],
            "direct_f1": direct["f1"],
            "direct_precision_with_descendants": direct["precision_with_descendants"],
            "direct_descendant_fp": direct["n_descendant_fp"],
            "direct_other_fp": direct["n_other_fp"],
        }
    if config.get("latent_graph") == "dag":
        dag = latent_graph_scores(true_dag, model.get_latent_graph(), matching)
        row |= {
            "dag_precision": dag["precision"],
            "dag_recall": dag["recall"],
            "dag_f1": dag["f1"],
            "dag_skeleton_f1": dag["skeleton_f1"],
            "dag_shd": dag["shd"],
            "dag_auprc": dag["auprc"],
            "dag_n_reversed": dag["n_reversed"],
            "dag_n_est_edges": dag["n_est_edges"],
            "graph_active": float(bool(model.module.prior.graph_active)),
        }
    n_batch = len(data) // BATCH
    return row | {
        "n_images": len(data),
        "n_steps": settings["max_epochs"] * max(n_batch, 1),
        "n_per_regime": settings["n_per_regime"],
        "max_epochs": settings["max_epochs"],
        "n_latent": settings["n_latent"],
        "channels": settings["channels"],
        "shift": settings["shift"],
        "n_eval": int(observational.sum()),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker(args, method: str, seed: int) -> dict:
    """One run in a fresh process (one torch thread, its own peak-memory reading)."""
    cmd = ["--worker", json.dumps([method, seed]), "--settings", json.dumps(args.settings)]
    row = run_worker(MODULE, cmd + (["--quick"] if args.quick else []))
    print(
        f"  {method:11s} seed {seed}: MCC {row['mcc_pearson']:.3f}, direct F1 "
        f"{row.get('direct_f1', np.nan):.3f}, DAG F1 {row.get('dag_f1', np.nan):.3f}, "
        f"AUPRC {row.get('dag_auprc', np.nan):.3f}, {row['train_seconds']:.0f} s",
        flush=True,
    )
    return row


# ----------------------------------------------------------------------------- tables
def _cell(values: pd.Series, digits: int) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def summarise(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean ± sd over seeds per method (in :data:`METHODS` order)."""
    order = [m for m in METHODS if m in set(df["method"])]
    out = []
    for method in order:
        group = df[df["method"] == method]
        row = {"method": method, "n_seeds": len(group)}
        for col in cols:
            digits = 0 if col in COST else 3
            row[col] = _cell(group[col], digits) if col in group else "–"
        out.append(row)
    return pd.DataFrame(out)


def render(df: pd.DataFrame) -> str:
    """IMAGES.md from the rows of ``images.csv`` (nothing else is read)."""
    seeds = ", ".join(str(s) for s in sorted(df["seed"].unique()))
    s = df.iloc[0]
    settings = (
        f"{int(s['n_images'])} training images per run (observational + 4 hard-intervention "
        f"regimes x {int(s['n_per_regime'])}, shift {s['shift']:g} noise sd), "
        f"{int(s['max_epochs'])} epochs ({int(s['n_steps'])} steps of {BATCH} images, lr {LR:g}), "
        f"{int(s['n_latent'])} latent units, {int(s['channels'])} conv. channels; scored on "
        f"{int(s['n_eval'])} held-out observational images"
    )
    representation = ["mcc_pearson", "mcc_spearman"] + [c for c in df if c.startswith("corr_")]
    targets = [
        "direct_precision",
        "direct_recall",
        "direct_f1",
        "direct_precision_with_descendants",
        "direct_descendant_fp",
    ]
    graph = [
        "dag_precision",
        "dag_recall",
        "dag_f1",
        "dag_skeleton_f1",
        "dag_shd",
        "dag_auprc",
        "dag_n_est_edges",
    ]
    lines = [
        "# Latent causal graph on images: causal dSprites",
        "",
        provenance_line(CSV),
        "",
        f"Mean ± sd over seeds ({seeds}). {settings}. True DAG among the factors: scale -> "
        f"orientation, scale -> pos_x, pos_x -> pos_y ({int(s['n_true_edges'])} edges); one hard "
        "intervention per factor. Runs shared the machine, one torch thread each.",
        "",
        "## Representation",
        "",
        "MCC over the four ordinal factors after one-to-one matching of units to factors; "
        "`corr_<factor>`: absolute correlation of the unit matched to it. The factors are "
        "correlated through the DAG in the observational images.",
        "",
        summarise(df, [*representation, *COST]).to_markdown(index=False),
        "",
        "## Direct targets",
        "",
        "Regimes x units masks (inclusion probability >= 0.5) against the true direct targets, "
        "units matched as for MCC; a descendant of the target reported as a target is a false "
        "positive (`direct_descendant_fp`), counted as correct in "
        "`direct_precision_with_descendants`. `beta_tcvae` sees no regimes.",
        "",
        summarise(df, targets).to_markdown(index=False),
        "",
        "## Latent graph",
        "",
        "Directed edges among the matched units (probability >= 0.5), SHD (lower is better) and "
        "AUPRC of the edge probabilities; only `dag` has a graph.",
        "",
        summarise(df[df["method"] == "dag"], graph).to_markdown(index=False)
        if (df["method"] == "dag").any()
        else "No `dag` runs.",
        "",
    ]
    return "\n".join(lines)


def write_tables(df: pd.DataFrame | None, out: Path) -> pd.DataFrame:
    """images.csv (rows in :data:`METHODS` order, then seed; unless ``df`` is None) and
    IMAGES.md rendered from the CSV as written."""
    if df is not None:
        order = {m: i for i, m in enumerate(METHODS)}
        df = df.sort_values(
            ["method", "seed"], key=lambda c: c.map(order) if c.name == "method" else c
        )
        df.to_csv(out / CSV, index=False)
    df = pd.read_csv(out / CSV)
    write_text(out / TABLE, render(df))
    return df


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 epochs (CI)")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    add_output_args(parser, MODULE, HERE)
    parser.add_argument(
        "--settings", type=json.loads, default=None, help=f"JSON overriding {', '.join(FULL)}"
    )
    parser.add_argument(
        "--render-only", action="store_true", help=f"rewrite {TABLE} from --out's {CSV}"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.settings = {**(QUICK if args.quick else FULL), **(args.settings or {})}
    unknown = set(args.settings) - set(FULL)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; choose from {list(FULL)}")

    if args.worker:
        method, seed = json.loads(args.worker)
        row = run_one(method, seed, args.settings)
        print(json.dumps(row, default=float))
        return pd.DataFrame([row])

    args.out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        return write_tables(None, args.out)
    if args.quick:
        args.seeds = args.seeds[:1]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(m, s) for s in args.seeds for m in args.methods]
    print(f"{len(jobs)} runs on {args.workers} workers")
    write_run_json(
        args.out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={
            "methods": args.methods,
            "settings": args.settings,
            "workers": args.workers,
            "torch_threads_per_run": 1,
            "quick": args.quick,
        },
    )
    rows = map_threads(
        lambda *job: _worker(args, *job),
        jobs,
        args.workers,
        lambda rows: write_tables(pd.DataFrame(rows), args.out),
    )
    df = write_tables(pd.DataFrame(rows), args.out)
    print(summarise(df, list(SCORES)).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
