"""Profile one training step of SparseShiftVI against scvi-tools' SCVI (torch profiler).

    python benchmarks/scale/profile_step.py                 # writes PROFILE.md here
    python benchmarks/scale/profile_step.py --quick --out /tmp/profile

On a simulated screen (``--n-cells`` x ``--n-genes``, 50 perturbations) both modules run
forward + loss + backward on the same minibatch of 1024 cells, alternately, ``--repeats``
times (one torch thread, so the numbers are comparable). Reported: milliseconds per step of
each module, the time spent inside the sparse-shift prior (``record_function`` regions around
prior sampling, the sparsity cost and the global term), the torch ops that dominate, and the
per-step overhead of the Lightning loop (epoch time divided by steps, minus the module step).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n-cells", type=int, default=20_000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_cells, args.n_genes, args.repeats = 2000, 200, 3

    import scvi
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    sys.path.insert(0, str(HERE))
    from run import write_screen  # the scale benchmark's simulator

    from scvi_causal.model import SparseShiftVI

    torch.set_num_threads(1)
    scvi.settings.seed = 0
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"_profile_{args.n_cells}x{args.n_genes}.h5ad"
    if not path.exists():
        write_screen(path, args.n_cells, args.n_genes)
    import anndata as ad

    adata = ad.read_h5ad(path)
    path.unlink()
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation",
                                control_category="control")
    ours = SparseShiftVI(adata, n_latent=10)
    scvi.model.SCVI.setup_anndata(adata)
    ref = scvi.model.SCVI(adata, n_latent=10)
    batches = {
        "SparseShiftVI": next(iter(ours._make_data_loader(adata, batch_size=1024))),
        "SCVI": next(iter(ref._make_data_loader(adata, batch_size=1024))),
    }
    modules = {"SparseShiftVI": ours.module, "SCVI": ref.module}
    loss_kwargs = {"SparseShiftVI": {"kl_weight": 1.0, "n_obs": adata.n_obs},
                   "SCVI": {"kl_weight": 1.0}}

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
    top_df = pd.DataFrame({
        "op": [e.key for e in top],
        "self CPU %": [100 * e.self_cpu_time_total / total for e in top],
        "calls": [e.count for e in top],
    })
    prior_df = pd.DataFrame({
        "region": [e.key for e in events if e.key.startswith("prior.")],
        "CPU % of the step": [100 * e.cpu_time_total / total for e in events
                              if e.key.startswith("prior.")],
    })

    # the whole Lightning loop: one epoch of each, per step
    loop_ms = {}
    n_steps = int(np.ceil(adata.n_obs / 1024))
    for name, model in (("SparseShiftVI", ours), ("SCVI", ref)):
        start = time.perf_counter()
        model.train(max_epochs=2, batch_size=1024, train_size=1.0, enable_progress_bar=False,
                    check_val_every_n_epoch=None)
        loop_ms[name] = 1000 * (time.perf_counter() - start) / (2 * n_steps)

    command = "python benchmarks/scale/profile_step.py " + " ".join(argv or sys.argv[1:])
    summary = pd.DataFrame({
        "module step (ms, median)": ms,
        "Lightning loop per step (ms, incl. set-up)": loop_ms,
    })
    summary.loc["ratio SparseShiftVI / SCVI"] = summary.loc["SparseShiftVI"] / summary.loc["SCVI"]
    md = [
        "# Training-step profile: SparseShiftVI vs SCVI",
        "",
        f"Written by `{command.strip()}`: {args.n_cells} cells x {args.n_genes} genes, "
        f"minibatch 1024, 1 torch thread, {args.repeats} alternating repeats.",
        "",
        summary.to_markdown(floatfmt=".2f"),
        "",
        f"Time inside the sparse-shift prior: {100 * prior_us / total:.1f}% of the step.",
        "",
        prior_df.to_markdown(index=False, floatfmt=".2f"),
        "",
        "Top torch ops of the SparseShiftVI step (self CPU time):",
        "",
        top_df.to_markdown(index=False, floatfmt=".1f"),
        "",
    ]
    (args.out / "PROFILE.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
