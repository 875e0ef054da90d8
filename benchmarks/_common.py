"""What every benchmark script shares: output folders, ``run.json``, worker pools, subsets.

Scripts run as modules from the repository root (``python -m benchmarks.<area>.<script>``).
They write into a scratch folder (``benchmarks/_scratch/<area>/<script>``, gitignored) unless
told otherwise: ``--out DIR`` writes to ``DIR`` and ``--update`` to the committed result folder
of the script. Every run leaves a record in the ``run.json`` beside its results (commit,
command, date, machine, seeds), under the script's module name; re-rendering tables from CSVs
(``--render-only``) leaves it untouched.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

#: the ``benchmarks`` folder and the repository root
BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
SCRATCH = BENCHMARKS / "_scratch"
RUN_JSON = "run.json"


# ----------------------------------------------------------------------------- data
def subset(adata, mask: np.ndarray):
    """Copy of the cells ``mask`` of ``adata``, unused perturbation categories dropped."""
    sub = adata[mask].copy()
    sub.obs["perturbation"] = sub.obs["perturbation"].cat.remove_unused_categories()
    return sub


# ----------------------------------------------------------------------------- output
def add_output_args(parser: argparse.ArgumentParser, module: str, committed: Path) -> None:
    """Add ``--out`` (default: the scratch folder of ``module``) and ``--update``.

    ``--update`` writes to ``committed``, the folder whose results are in git; without it
    nothing committed is overwritten.
    """
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default: {scratch_dir(module).relative_to(ROOT)})",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help=f"write the committed results ({Path(committed).resolve().relative_to(ROOT)})",
    )


def resolve_out(args: argparse.Namespace, module: str, committed: Path) -> Path:
    """The output folder of ``args`` (``--out``, ``--update`` or the scratch folder)."""
    if args.update and args.out is not None and Path(args.out).resolve() != committed.resolve():
        raise SystemExit("--update and --out name different folders; give one of them")
    if args.update:
        return committed
    return args.out if args.out is not None else scratch_dir(module)


def scratch_dir(module: str) -> Path:
    """``benchmarks/_scratch/<area>/<script>`` for ``benchmarks.<area>.<script>``."""
    parts = module.split(".")
    if parts[0] == "benchmarks":
        parts = parts[1:]
    return SCRATCH.joinpath(*parts)


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that ran ``module`` with ``argv`` (``sys.argv[1:]`` when None)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m", module, *args]).strip()


def write_run_json(
    out_dir: Path,
    seeds: Iterable[int] | None = None,
    extra: dict | None = None,
    *,
    module: str,
    argv: list[str] | None = None,
    append: bool = False,
) -> Path:
    """Record in ``out_dir/run.json`` how ``module`` made the results it writes there.

    The record holds the commit (``git rev-parse HEAD``) and whether tracked files had
    uncommitted changes, the command line (``module`` with ``argv``), the UTC date, the machine
    (platform, CPU count, Python, torch, scvi-tools and scvi-causal versions), ``seeds`` and
    ``extra`` (settings of the run). ``run.json`` maps each script that wrote into the folder
    to its latest record (several scripts share ``benchmarks/simulated``); with ``append`` (a
    run that keeps rows of earlier runs in the same CSVs) the earlier record is kept under
    ``previous_runs``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RUN_JSON
    runs = json.loads(path.read_text()) if path.exists() else {}
    record = {
        "command": command_line(module, argv),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": _dirty(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "seeds": [int(s) for s in seeds] if seeds is not None else None,
        **(extra or {}),
    }
    if append and module in runs:
        old = runs[module]
        record["previous_runs"] = [*old.pop("previous_runs", []), old]
    runs[module] = record
    path.write_text(json.dumps(dict(sorted(runs.items())), indent=2, default=str) + "\n")
    return path


def read_run_json(out_dir: Path, module: str) -> dict | None:
    """``module``'s record in ``out_dir/run.json``; None for results made before it existed."""
    path = Path(out_dir) / RUN_JSON
    return json.loads(path.read_text()).get(module) if path.exists() else None


def machine() -> dict:
    """Platform, CPU count and package versions of this machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus,
        **{name: _version(dist) for name, dist in _PACKAGES.items()},
    }


_PACKAGES = {"torch": "torch", "scvi_tools": "scvi-tools", "scvi_causal": "scvi-causal"}


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.strip()


def _dirty() -> bool | None:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


# ----------------------------------------------------------------------------- workers
def set_torch_threads(threads: int) -> None:
    """Torch threads of this process (also the initializer of spawned worker processes)."""
    import torch

    torch.set_num_threads(threads)


def process_pool(workers: int, threads: int | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each with ``threads`` torch threads.

    Spawned, not forked: each worker starts a fresh interpreter and imports the job's module
    (so jobs must be module-level functions of an importable module, ``benchmarks.*``).
    """
    ctx = multiprocessing.get_context("spawn")
    if threads is None:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=set_torch_threads,
        initargs=(threads,),
    )


def run_worker(module: str, args: list[str], threads: int = 1) -> dict:
    """Run ``python -m module *args`` in a fresh process; its last stdout line is a JSON row.

    One process per run gives each run its own peak-memory reading; ``threads`` sets
    ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` of the child.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def map_threads(job: Callable, jobs: list, workers: int, on_result: Callable) -> list:
    """Run ``job(*item)`` for every item of ``jobs`` on ``workers`` threads.

    ``on_result(rows)`` is called under a lock with every row so far after each finished job
    (tables are rewritten as runs finish, so partial results survive). Returns the rows in
    the order they finished.
    """
    rows: list = []
    lock = threading.Lock()

    def done(item):
        row = job(*item)
        with lock:
            rows.append(row)
            on_result(list(rows))
        return row

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(done, jobs))
    return rows


# ----------------------------------------------------------------------------- markdown
def provenance_line(*csvs: str) -> str:
    """The fixed sentence of every rendered table saying where its runs are described."""
    names = ", ".join(f"`{c}`" for c in csvs)
    return (
        f"Rendered from {names} alone (`--render-only` rewrites it without training; do not "
        "edit by hand). How the runs were made (commit, command, seeds, machine): `run.json` "
        "in this folder, or `benchmarks/README.md` for runs made before `run.json` existed."
    )


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
