"""Time to quality: MCC and graph F1 against wall time during default training.

One command writes ``time_to_quality.csv``, ``TIME_TO_QUALITY.md`` (rendered from the CSV
alone), ``time_to_quality.png`` and ``run.json`` into ``--out`` (default: a scratch folder;
``--update``: ``benchmarks/scale``)::

    python -m benchmarks.scale.time_to_quality --seeds 101 --threads 2 --update
    python -m benchmarks.scale.time_to_quality --quick --out /tmp/ttq   # CI smoke run
    python -m benchmarks.scale.time_to_quality --render-only --update   # tables from the CSV

The screen is the sVAE protocol of the simulated benchmark (100 perturbations x 250 cells,
perturbations 80-99 held out, Poisson counts) on which the SparseShiftVI issue sets its
quality figures (MCC >= 0.90 and graph F1 >= 0.90). ``SparseShiftVI`` trains with its defaults;
a Lightning callback scores the latent space and the target graph every ``--every`` epochs.
Scoring time is excluded from the clock. The table gives, per seed, the training wall time at
which MCC first reached each threshold, or "not reached".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd

from benchmarks._common import (
    add_output_args,
    provenance_line,
    resolve_out,
    set_torch_threads,
    subset,
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.scale.time_to_quality"
THRESHOLDS = [0.6, 0.7, 0.8, 0.9]


class QualityTracker(pl.Callback):
    """Score MCC and graph F1 every ``every`` epochs; keep the clock of training only."""

    def __init__(self, model, z_true, truth, every: int):
        self.model, self.z_true, self.truth, self.every = model, z_true, truth, every
        self.rows: list[dict] = []
        self._train_seconds, self._start = 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self._train_seconds += time.perf_counter() - self._start
        epoch = trainer.current_epoch + 1
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        from scvi_causal.metrics import match_latents, mcc, target_graph_scores

        module = self.model.module
        was_training = module.training
        module.eval()
        trained, self.model.is_trained_ = self.model.is_trained_, True
        try:
            z = self.model.get_latent_representation(batch_size=4096)
            graph = self.model.get_target_graph().loc[self.truth.index].to_numpy()
        finally:
            self.model.is_trained_ = trained
            module.train(was_training)
        matching, _ = match_latents(self.z_true, z)
        scores = target_graph_scores(self.truth.to_numpy(), graph, matching)
        self.rows.append(
            {
                "epoch": epoch,
                "step": trainer.global_step,
                "train_seconds": self._train_seconds,
                "mcc": mcc(self.z_true, z),
                "graph_f1": float(scores["f1"]),
            }
        )


def run_seed(
    seed: int, quick: bool, every: int, threads: int, max_epochs: int | None = None
) -> pd.DataFrame:
    import scvi

    from scvi_causal.data import simulate_sparse_shift
    from scvi_causal.model import SparseShiftVI

    set_torch_threads(threads)
    scvi.settings.seed = seed
    sim = {"protocol": "svae", "seed": seed}
    if quick:
        sim.update(n_perturbations=6, n_cells_per_perturbation=40)
    adata = simulate_sparse_shift(**sim)
    truth = adata.uns["true_graph"]
    train_perts = list(truth.index[: 4 if quick else 80])
    control = adata.uns["simulation"]["control_category"]
    keep = train_perts + ([control] if control else [])
    adata = subset(adata, adata.obs["perturbation"].isin(keep).to_numpy())
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category=control)
    model = SparseShiftVI(adata, n_latent=adata.obsm["z_true"].shape[1], gene_likelihood="poisson")
    tracker = QualityTracker(model, adata.obsm["z_true"], truth.loc[train_perts], every)
    model.train(
        max_epochs=3 if quick else max_epochs, enable_progress_bar=False, callbacks=[tracker]
    )
    out = pd.DataFrame(tracker.rows)
    out.insert(0, "seed", seed)
    # the settings of the run, so that the table renders from the CSV alone
    out = out.assign(threads=threads, every=every, max_epochs=3 if quick else max_epochs)
    print(out.tail(3).to_string(index=False), flush=True)
    return out


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for seed, sub in df.groupby("seed"):
        row = {
            "seed": seed,
            "final MCC": sub["mcc"].iloc[-1],
            "final graph F1": sub["graph_f1"].iloc[-1],
            "train seconds": sub["train_seconds"].iloc[-1],
        }
        for t in THRESHOLDS:
            hit = sub[sub["mcc"] >= t]
            row[f"s to MCC >= {t}"] = (
                f"{hit['train_seconds'].iloc[0]:.0f}" if len(hit) else "not reached"
            )
        hit = sub[(sub["mcc"] >= 0.9) & (sub["graph_f1"] >= 0.9)]
        row["s to MCC and F1 >= 0.9"] = (
            f"{hit['train_seconds'].iloc[0]:.0f}" if len(hit) else "not reached"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), constrained_layout=True)
    for seed, sub in df.groupby("seed"):
        ax.plot(sub["train_seconds"], sub["mcc"], label=f"MCC, seed {seed}")
        ax.plot(sub["train_seconds"], sub["graph_f1"], "--", label=f"graph F1, seed {seed}")
    ax.axhline(0.9, color="grey", lw=0.8)
    ax.set_xlabel("training wall time (s)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(df: pd.DataFrame) -> str:
    """TIME_TO_QUALITY.md from the rows of ``time_to_quality.csv`` (nothing else is read)."""
    table = summarise(df)
    if "max_epochs" in df:
        epochs = df["max_epochs"].dropna()
        training = (
            f"max_epochs={int(epochs.iloc[0])}, other settings default"
            if len(epochs)
            else "default training"
        )
        threads = ", ".join(str(t) for t in dict.fromkeys(df["threads"]))
        every = ", ".join(str(e) for e in dict.fromkeys(df["every"]))
        settings = f"{threads} torch thread(s); scored every {every} epochs"
    else:  # rows written before the settings were columns
        first = df.groupby("seed")["epoch"].min()
        training = f"{int(df['epoch'].max())} epochs"
        settings = (
            f"torch threads: `benchmarks/README.md`; scored every "
            f"{', '.join(str(e) for e in dict.fromkeys(first))} epochs"
        )
    md = [
        f"# Time to quality (sVAE protocol, {training})",
        "",
        f"{provenance_line('time_to_quality.csv')} {settings} (scoring excluded from the "
        "clock). Quality figures of the SparseShiftVI issue: MCC >= 0.90 and graph F1 >= "
        "0.90.",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        "![MCC and graph F1 against training time](time_to_quality.png)",
        "",
    ]
    return "\n".join(md)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", nargs="+", type=int, default=[101])
    parser.add_argument("--every", type=int, default=20, help="epochs between scorings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="default: the model's default training"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite TIME_TO_QUALITY.md and the figure from --out's CSV",
    )
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        df = pd.read_csv(out / "time_to_quality.csv")
    else:
        if args.quick:
            args.every = 1
        write_run_json(
            out,
            seeds=args.seeds,
            module=MODULE,
            argv=argv,
            extra={
                "every": args.every,
                "torch_threads": args.threads,
                "max_epochs": args.max_epochs,
                "quick": args.quick,
            },
        )
        df = pd.concat(
            [run_seed(s, args.quick, args.every, args.threads, args.max_epochs) for s in args.seeds]
        )
        df.to_csv(out / "time_to_quality.csv", index=False)
    plot(df, out / "time_to_quality.png")
    (out / "TIME_TO_QUALITY.md").write_text(render(df))
    table = summarise(df)
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
