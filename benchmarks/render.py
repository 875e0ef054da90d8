"""Re-render every committed benchmark table from its CSVs, without training.

    python -m benchmarks.render                # rewrite the committed markdown tables in place
    python -m benchmarks.render --out /tmp/t   # write them under /tmp/t (same relative paths)
    python -m benchmarks.render --check        # exit 1 if a committed table differs

Each table is the output of its script's ``render`` function applied to the CSVs beside it
(the script's ``--render-only`` does the same for one folder, and redraws its figures too).
``tests/test_benchmark_summary.py`` checks that every committed table equals its rendering
byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmarks._common import BENCHMARKS, write_text


def _simulated_run(folder: Path) -> str:
    from benchmarks.simulated import run

    return run.render(pd.read_csv(folder / "results.csv"))


def _fewshot(folder: Path) -> str:
    from benchmarks.simulated import fewshot

    return fewshot.render(pd.read_csv(folder / "fewshot.csv"))


def _select_n_latent(folder: Path) -> str:
    from benchmarks.simulated import select_n_latent

    return select_n_latent.render(pd.read_csv(folder / "select_n_latent.csv"))


def _timing(folder: Path) -> str:
    from benchmarks.simulated import timing

    return timing.render(pd.read_csv(folder / "timing.csv"))


def _diagnosis(folder: Path) -> str:
    from benchmarks.simulated import diagnose

    return diagnose.render(pd.read_csv(folder / "diagnosis.csv"))


def _counterfactual(folder: Path) -> str:
    from benchmarks.counterfactual import run

    return run.render(*run.read_csvs(folder))


def _real(folder: Path) -> str:
    from benchmarks.real import run

    tables = run.read_tables(folder)
    return run.render(*(tables[name] for name in run.TABLES))


def _images(folder: Path) -> str:
    from benchmarks.images import run

    return run.render(pd.read_csv(folder / "results.csv"))


def _scale(folder: Path) -> str:
    from benchmarks.scale import run

    return run.render(pd.read_csv(folder / "results.csv"))


def _time_to_quality(folder: Path) -> str:
    from benchmarks.scale import time_to_quality

    return time_to_quality.render(pd.read_csv(folder / "time_to_quality.csv"))


def _genome_wide(folder: Path) -> str:
    from benchmarks.scale import genome_wide

    return genome_wide.render(pd.read_csv(folder / "results.csv"))


def _profile(folder: Path) -> str:
    from benchmarks.scale import profile_step

    return profile_step.render(pd.read_csv(folder / "profile.csv"))


#: committed markdown table (relative to ``benchmarks/``) -> its renderer from the folder's CSVs
TABLES: dict[str, Callable[[Path], str]] = {
    "simulated/RESULTS.md": _simulated_run,
    "simulated/default_protocol/RESULTS.md": _simulated_run,
    "simulated/FEWSHOT.md": _fewshot,
    "simulated/SELECT_N_LATENT.md": _select_n_latent,
    "simulated/TIMING.md": _timing,
    "simulated/diagnosis/spike_slab/DIAGNOSIS.md": _diagnosis,
    "simulated/diagnosis/dense/DIAGNOSIS.md": _diagnosis,
    "counterfactual/RESULTS.md": _counterfactual,
    "real/RESULTS.md": _real,
    "images/RESULTS.md": _images,
    "scale/RESULTS.md": _scale,
    "scale/TIME_TO_QUALITY.md": _time_to_quality,
    "scale/PROFILE.md": _profile,
    "scale/genome_wide/RESULTS.md": _genome_wide,
}


def render_all(root: Path = BENCHMARKS) -> dict[str, str]:
    """Every table of ``TABLES`` rendered from the CSVs under ``root``."""
    return {name: render(root / Path(name).parent) for name, render in TABLES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the tables under this folder instead of in place",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a committed table differs"
    )
    args = parser.parse_args(argv)
    tables = render_all()
    if args.check:
        stale = [n for n, text in tables.items() if (BENCHMARKS / n).read_text() != text]
        for name in stale:
            print(f"differs from its CSVs: benchmarks/{name}")
        return 1 if stale else 0
    out = args.out or BENCHMARKS
    for name, text in tables.items():
        write_text(out / name, text)
    print(f"{len(tables)} tables written under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
