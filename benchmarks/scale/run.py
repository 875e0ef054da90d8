"""Scale: throughput and memory of SparseShiftVI against scvi-tools' SCVI on sparse screens.

One command reproduces the table (``make bench-scale``)::

    python -m benchmarks.scale.run --update          # 1e4, 1e5, 1e6 cells x 2,000 genes
    python -m benchmarks.scale.run --quick --out /tmp/scale   # tiny CI smoke run
    python -m benchmarks.scale.run --accelerator gpu --sizes 100000 1000000 \
        --out benchmarks/scale/gpu                   # whenever a GPU is at hand
    python -m benchmarks.scale.run --render-only --update     # RESULTS.md from results.csv

The script first writes simulated sparse screens (CSR counts, 50 perturbations + control,
10 latent units, Poisson counts of a softmax decoder, about 800 counts per cell) to
``--data-dir`` as ``.h5ad`` files, chunk by chunk so that writing never holds the whole
matrix; existing files are reused. Then, for every size and mode, SparseShiftVI and
``scvi.model.SCVI`` train on the same file with the same settings (batch 1024, 10 latent
units, NB likelihood, ``train_size=1.0``, the same number of torch threads), each in a fresh
subprocess so that its peak resident memory (``ru_maxrss``) is its own:

* ``backed``: ``anndata.read_h5ad(path, backed="r")``: minibatches stream from disk;
* ``memory``: the CSR matrix in memory (sizes up to ``--max-memory-cells``).

Epoch time is measured by a Lightning callback from the start to the end of each training
epoch (trainer and data-loader set-up excluded); cells/s uses the median epoch. The ratio
SparseShiftVI / SCVI is of cells/s in the same run, side by side.

Writes ``results.csv``, ``RESULTS.md`` (rendered from ``results.csv`` alone) and ``run.json``
into ``--out`` (default: a scratch folder; ``--update``: this folder, whose results are
committed).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    provenance_line,
    resolve_out,
    run_worker,
    set_torch_threads,
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.scale.run"
N_LATENT, N_PERT, CHUNK = 10, 50, 50_000


def data_path(data_dir: Path, n_cells: int, n_genes: int) -> Path:
    return data_dir / f"screen_{n_cells}x{n_genes}.h5ad"


def write_screen(path: Path, n_cells: int, n_genes: int, seed: int = 0) -> None:
    """Simulate a sparse-shift screen and write it to ``path`` chunk by chunk (CSR counts)."""
    import anndata as ad
    import h5py
    from scipy import sparse

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.6, (N_LATENT, n_genes)).astype(np.float32)
    b = rng.normal(0, 1.5, n_genes).astype(np.float32)
    shifts = np.zeros((N_PERT, N_LATENT), np.float32)
    for p in range(N_PERT):
        targets = rng.choice(N_LATENT, rng.integers(1, 3), replace=False)
        shifts[p, targets] = rng.choice([-2.0, 2.0], len(targets))
    labels = np.where(rng.random(n_cells) < 0.2, -1, rng.integers(0, N_PERT, n_cells))
    names = np.array(["control"] + [f"p{p:02d}" for p in range(N_PERT)])
    obs = pd.DataFrame(
        {"perturbation": pd.Categorical(names[labels + 1], categories=names)},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)])
    tmp = path.with_suffix(".part")
    for start in range(0, n_cells, CHUNK):
        lab = labels[start : start + CHUNK]
        z = rng.normal(size=(len(lab), N_LATENT)).astype(np.float32)
        z[lab >= 0] += shifts[lab[lab >= 0]]
        logits = z @ w + b
        rates = np.exp(logits - logits.max(1, keepdims=True))
        rates /= rates.sum(1, keepdims=True)
        library = rng.lognormal(np.log(800), 0.3, (len(lab), 1))
        block = sparse.csr_matrix(rng.poisson(rates * library).astype(np.float32))
        if start == 0:
            ad.AnnData(X=block, obs=obs.iloc[: len(lab)], var=var).write_h5ad(tmp)
        else:
            with h5py.File(tmp, "a") as f:
                ad.io.sparse_dataset(f["X"]).append(block)
    with h5py.File(tmp, "a") as f:
        del f["obs"]
        ad.io.write_elem(f, "obs", obs)
    tmp.replace(path)


class EpochTimer(pl.Callback):
    """Lightning callback: wall time of each training epoch."""

    def __init__(self):
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self._start)


def run_one(
    path: Path, model_name: str, mode: str, epochs: int, threads: int, accelerator: str = "cpu"
) -> dict:
    """Train one model on one file (inside a worker process) and time its epochs."""
    import anndata as ad
    import scvi
    import torch

    from scvi_causal.model import SparseShiftVI

    set_torch_threads(threads)
    scvi.settings.seed = 0
    adata = ad.read_h5ad(path, backed="r" if mode == "backed" else None)
    timer = EpochTimer()
    common = {"n_latent": N_LATENT, "gene_likelihood": "nb"}
    if model_name == "SparseShiftVI":
        SparseShiftVI.setup_anndata(
            adata, perturbation_key="perturbation", control_category="control"
        )
        model = SparseShiftVI(adata, **common)
    else:
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(adata, **common)
    start = time.perf_counter()
    model.train(
        max_epochs=epochs,
        batch_size=1024,
        train_size=1.0,
        enable_progress_bar=False,
        callbacks=[timer],
        check_val_every_n_epoch=None,
        accelerator=accelerator,
        devices=1,
    )
    total = time.perf_counter() - start
    epoch_s = float(np.median(timer.times))
    gpu = accelerator != "cpu" and torch.cuda.is_available()
    return {
        "model": model_name,
        "mode": mode,
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "epochs": epochs,
        "epoch_seconds": epoch_s,
        "cells_per_second": adata.n_obs / epoch_s,
        "train_seconds": total,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "threads": threads,
        "accelerator": accelerator,
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "gpu_peak_gib": torch.cuda.max_memory_allocated() / 1024**3 if gpu else np.nan,
    }


def _worker(args, path: Path, model_name: str, mode: str, epochs: int) -> dict:
    """One model on one file in a fresh process (its own peak-memory reading)."""
    job = [str(path.resolve()), model_name, mode, epochs, args.threads, args.accelerator]
    row = run_worker(MODULE, ["--worker", json.dumps(job)], threads=args.threads)
    print(
        f"  {row['n_cells']:>8d} cells {mode:6s} {model_name:13s}: "
        f"{row['cells_per_second']:.0f} cells/s, peak RSS {row['peak_rss_gib']:.2f} GiB",
        flush=True,
    )
    return row


def render(df: pd.DataFrame) -> str:
    """RESULTS.md from the rows of ``results.csv`` (nothing else is read)."""
    wide = df.pivot_table(
        index=["n_cells", "mode"],
        columns="model",
        values=["cells_per_second", "peak_rss_gib"],
        sort=False,
    )
    rows = []
    for (n_cells, mode), r in wide.iterrows():
        row = {"n_cells": n_cells, "mode": mode}
        for metric in ("cells_per_second", "peak_rss_gib"):
            for model in ("SparseShiftVI", "SCVI"):
                row[f"{model} {metric}"] = r.get((metric, model), np.nan)
        row["throughput ratio SparseShiftVI / SCVI"] = (
            row["SparseShiftVI cells_per_second"] / row["SCVI cells_per_second"]
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    genes = ", ".join(str(g) for g in dict.fromkeys(df["n_genes"]))
    threads = ", ".join(str(t) for t in dict.fromkeys(df["threads"]))
    device = ""
    if {"accelerator", "device"} <= set(df):  # columns added after the first runs
        device = (
            f", accelerator `{', '.join(dict.fromkeys(df['accelerator']))}` "
            f"({', '.join(sorted(set(df['device'])))})"
        )
    md = [
        "# Scale: SparseShiftVI vs scvi-tools SCVI on sparse screens",
        "",
        f"{provenance_line('results.csv')} {genes} genes, batch 1024, 10 latent units, "
        f"NB likelihood, {threads} torch thread(s){device}, one model at a time; cells/s from "
        "the median training epoch (set-up excluded); peak RSS of the worker process (data, "
        "model and Python). `backed`: AnnData read with `backed='r'`, minibatches from disk.",
        "",
        table.to_markdown(index=False, floatfmt=".2f"),
        "",
    ]
    return "\n".join(md)


def write_tables(df: pd.DataFrame, out: Path, csv: bool = True) -> pd.DataFrame:
    """results.csv (unless ``csv`` is False) and RESULTS.md into ``out``."""
    if csv:
        df.to_csv(out / "results.csv", index=False)
    text = render(df)
    (out / "RESULTS.md").write_text(text)
    return df


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny screens (CI)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument(
        "--max-memory-cells",
        type=int,
        default=100_000,
        help="largest screen also run with the matrix in memory",
    )
    parser.add_argument("--threads", type=int, default=2)
    add_output_args(parser, MODULE, HERE)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the screens are written (default: ~/.cache/scvi_causal/scale)",
    )
    parser.add_argument(
        "--accelerator",
        default="cpu",
        help="Lightning accelerator ('gpu' to measure GPU throughput)",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite RESULTS.md from --out's results.csv"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        path, model_name, mode, epochs, threads, accelerator = json.loads(args.worker)
        row = run_one(Path(path), model_name, mode, epochs, threads, accelerator)
        print(json.dumps(row))
        return pd.DataFrame([row])

    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        df = pd.read_csv(out / "results.csv")
        write_tables(df, out, csv=False)
        return df
    if args.quick:
        args.sizes, args.n_genes = [3000], 200
    data_dir = args.data_dir or Path.home() / ".cache" / "scvi_causal" / "scale"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_run_json(
        out,
        seeds=[0],
        module=MODULE,
        argv=argv,
        extra={
            "sizes": args.sizes,
            "n_genes": args.n_genes,
            "max_memory_cells": args.max_memory_cells,
            "torch_threads": args.threads,
            "accelerator": args.accelerator,
            "quick": args.quick,
        },
    )
    rows = []
    for n_cells in args.sizes:
        path = data_path(data_dir, n_cells, args.n_genes)
        if not path.exists():
            start = time.perf_counter()
            write_screen(path, n_cells, args.n_genes)
            print(
                f"wrote {path} ({path.stat().st_size / 1024**2:.0f} MiB) in "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
        epochs = 1 if n_cells >= 1_000_000 else (2 if n_cells >= 100_000 else 3)
        modes = ["backed"] + (["memory"] if n_cells <= args.max_memory_cells else [])
        for mode in modes:
            for model_name in ("SparseShiftVI", "SCVI"):
                rows.append(_worker(args, path, model_name, mode, epochs))
                write_tables(pd.DataFrame(rows), out)
    df = pd.DataFrame(rows)
    print(render(df))
    return df


if __name__ == "__main__":
    main()
