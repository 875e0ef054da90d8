"""Profile one training step of SparseShiftVI against scvi-tools' SCVI (torch profiler).

    python -m benchmarks.scale.profile_step --update        # writes benchmarks/scale/PROFILE.md
    python -m benchmarks.scale.profile_step --quick --out /tmp/profile
    python -m benchmarks.scale.profile_step --render-only --update   # PROFILE.md from profile.csv

On a simulated screen (``--n-cells`` x ``--n-genes``, 50 perturbations) both modules run
forward + loss + backward on the same minibatch of 1024 cells, alternately, ``--repeats``
times (one torch thread, so the numbers are comparable). Reported: milliseconds per step of
each module, the time spent inside the sparse-shift prior (``record_function`` regions around
prior sampling, the sparsity cost and the global term), the torch ops that dominate, and the
per-step overhead of the Lightning loop (epoch time divided by steps, minus the module step).
Writes ``profile.csv`` (long format: section, name, metric, value), ``PROFILE.md`` (rendered
from it alone) and ``run.json`` into ``--out`` (default: a scratch folder; ``--update``:
``benchmarks/scale``).
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
    write_run_json,
)

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.scale.profile_step"
STEP = "module step (ms, median)"
LOOP = "Lightning loop per step (ms, incl. set-up)"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n-cells", type=int, default=20_000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite PROFILE.md from --out's profile.csv"
    )
    add_output_args(parser, MODULE, HERE)
    args = parser.parse_args(argv)
    out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        df = pd.read_csv(out / "profile.csv")
        (out / "PROFILE.md").write_text(render(df))
        return df
    if args.quick:
        args.n_cells, args.n_genes, args.repeats = 2000, 200, 3

    import scvi
    from torch.profiler import ProfilerActivity, profile, record_function

    from benchmarks.scale.run import write_screen  # the scale benchmark's simulator
    from scvi_causal.model import SparseShiftVI

    set_torch_threads(1)
    scvi.settings.seed = 0
    write_run_json(
        out,
        seeds=[0],
        module=MODULE,
        argv=argv,
        extra={
            "n_cells": args.n_cells,
            "n_genes": args.n_genes,
            "repeats": args.repeats,
            "torch_threads": 1,
            "quick": args.quick,
        },
    )
    path = out / f"_profile_{args.n_cells}x{args.n_genes}.h5ad"
    if not path.exists():
        write_screen(path, args.n_cells, args.n_genes)
    import anndata as ad

    adata = ad.read_h5ad(path)
    path.unlink()
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    ours = SparseShiftVI(adata, n_latent=10)
    scvi.model.SCVI.setup_anndata(adata)
    ref = scvi.model.SCVI(adata, n_latent=10)
    batches = {
        "SparseShiftVI": next(iter(ours._make_data_loader(adata, batch_size=1024))),
        "SCVI": next(iter(ref._make_data_loader(adata, batch_size=1024))),
    }
    modules = {"SparseShiftVI": ours.module, "SCVI": ref.module}
    loss_kwargs = {
        "SparseShiftVI": {"kl_weight": 1.0, "n_obs": adata.n_obs},
        "SCVI": {"kl_weight": 1.0},
    }

    # time the prior's parts inside the module without changing the module's code
    prior = ours.module.prior
    for name in ("forward", "local_penalty", "kl_global"):
        original = getattr(prior, name)

        def wrapped(*a, _original=original, _name=name, **k):
            with record_function(f"prior.{_name}"):
                return _original(*a, **k)

        setattr(prior, name, wrapped)

    def step(name):
        module = modules[name]
        module.train()
        module.zero_grad(set_to_none=True)
        _, _, loss = module(batches[name], loss_kwargs=loss_kwargs[name])
        loss.loss.backward()

    times = {name: [] for name in modules}
    for name in modules:  # warm-up
        step(name)
    for _ in range(args.repeats):
        for name in modules:
            start = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * float(np.median(t)) for name, t in times.items()}

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(max(args.repeats // 3, 1)):
            step("SparseShiftVI")
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    prior_us = sum(e.cpu_time_total for e in events if e.key.startswith("prior."))
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    top_df = pd.DataFrame(
        {
            "op": [e.key for e in top],
            "self CPU %": [100 * e.self_cpu_time_total / total for e in top],
            "calls": [e.count for e in top],
        }
    )
    prior_df = pd.DataFrame(
        {
            "region": [e.key for e in events if e.key.startswith("prior.")],
            "CPU % of the step": [
                100 * e.cpu_time_total / total for e in events if e.key.startswith("prior.")
            ],
        }
    )

    # the whole Lightning loop: one epoch of each, per step
    loop_ms = {}
    n_steps = int(np.ceil(adata.n_obs / 1024))
    for name, model in (("SparseShiftVI", ours), ("SCVI", ref)):
        start = time.perf_counter()
        model.train(
            max_epochs=2,
            batch_size=1024,
            train_size=1.0,
            enable_progress_bar=False,
            check_val_every_n_epoch=None,
        )
        loop_ms[name] = 1000 * (time.perf_counter() - start) / (2 * n_steps)

    rows = [
        ("settings", "run", k, v)
        for k, v in (
            ("n_cells", args.n_cells),
            ("n_genes", args.n_genes),
            ("repeats", args.repeats),
            ("threads", 1),
        )
    ]
    rows += [("step", name, STEP, ms[name]) for name in modules]
    rows += [("step", name, LOOP, loop_ms[name]) for name in modules]
    rows += [("prior", "total", "CPU % of the step", 100 * prior_us / total)]
    rows += [
        ("prior", r, "CPU % of the step", v)
        for r, v in zip(prior_df["region"], prior_df["CPU % of the step"], strict=True)
    ]
    rows += [
        ("ops", op, metric, v)
        for _, r in top_df.iterrows()
        for op in [r["op"]]
        for metric, v in (("self CPU %", r["self CPU %"]), ("calls", r["calls"]))
    ]
    df = pd.DataFrame(rows, columns=["section", "name", "metric", "value"])
    df["command"] = command_line(MODULE, argv)
    df.to_csv(out / "profile.csv", index=False)
    text = render(df)
    (out / "PROFILE.md").write_text(text)
    print(text)
    return df


def render(df: pd.DataFrame) -> str:
    """PROFILE.md from the rows of ``profile.csv`` (nothing else is read)."""

    def section(name: str) -> pd.DataFrame:
        return df[df["section"] == name]

    settings = section("settings").set_index("metric")["value"].astype(int)
    step = section("step")
    summary = pd.DataFrame(
        {
            metric: dict(zip(sub["name"], sub["value"], strict=True))
            for metric, sub in step.groupby("metric", sort=False)
        }
    )
    summary.loc["ratio SparseShiftVI / SCVI"] = summary.loc["SparseShiftVI"] / summary.loc["SCVI"]
    prior = section("prior")
    share = prior.loc[prior["name"] == "total", "value"].item()
    prior_df = pd.DataFrame(
        {
            "region": prior.loc[prior["name"] != "total", "name"],
            "CPU % of the step": prior.loc[prior["name"] != "total", "value"],
        }
    )
    ops = section("ops").pivot_table(index="name", columns="metric", values="value", sort=False)
    top_df = pd.DataFrame(
        {
            "op": ops.index,
            "self CPU %": ops["self CPU %"].to_numpy(),
            "calls": ops["calls"].astype(int).to_numpy(),
        }
    )
    md = [
        "# Training-step profile: SparseShiftVI vs SCVI",
        "",
        f"Written by `{df['command'].iloc[0]}`; rendered from `profile.csv` alone "
        f"(`--render-only`): {settings['n_cells']} cells x {settings['n_genes']} genes, "
        f"minibatch 1024, {settings['threads']} torch thread, {settings['repeats']} alternating "
        "repeats.",
        "",
        summary.to_markdown(floatfmt=".2f"),
        "",
        f"Time inside the sparse-shift prior: {share:.1f}% of the step.",
        "",
        prior_df.to_markdown(index=False, floatfmt=".2f"),
        "",
        "Top torch ops of the SparseShiftVI step (self CPU time):",
        "",
        top_df.to_markdown(index=False, floatfmt=".1f"),
        "",
    ]
    return "\n".join(md)


if __name__ == "__main__":
    main()
