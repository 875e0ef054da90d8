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
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmarks._common import BENCHMARKS, write_text


def _from_csv(module: str, csv: str) -> Callable[[Path], str]:
    """Renderer of a table whose script renders one CSV: ``benchmarks.<module>.render``."""

    def render(folder: Path) -> str:
        script = importlib.import_module(f"benchmarks.{module}")
        return script.render(pd.read_csv(folder / csv))

    return render


def _counterfactual(folder: Path) -> str:
    from benchmarks.counterfactual import run

    return run.render(*run.read_csvs(folder))


def _real(folder: Path) -> str:
    from benchmarks.real import run

    tables = run.read_tables(folder)
    return run.render(*(tables[name] for name in run.TABLES))


_simulated_run = _from_csv("simulated.run", "results.csv")
_diagnosis = _from_csv("simulated.diagnose", "diagnosis.csv")

#: committed markdown table (relative to ``benchmarks/``) -> its renderer from the folder's CSVs
TABLES: dict[str, Callable[[Path], str]] = {
    "simulated/RESULTS.md": _simulated_run,
    "simulated/default_protocol/RESULTS.md": _simulated_run,
    "simulated/latent_graph/independent/RESULTS.md": _simulated_run,
    "simulated/latent_graph/dag/RESULTS.md": _simulated_run,
    "simulated/FEWSHOT.md": _from_csv("simulated.fewshot", "fewshot.csv"),
    "simulated/SELECT_N_LATENT.md": _from_csv("simulated.select_n_latent", "select_n_latent.csv"),
    "simulated/TIMING.md": _from_csv("simulated.timing", "timing.csv"),
    "simulated/diagnosis/spike_slab/DIAGNOSIS.md": _diagnosis,
    "simulated/diagnosis/dense/DIAGNOSIS.md": _diagnosis,
    "counterfactual/RESULTS.md": _counterfactual,
    "real/RESULTS.md": _real,
    "images/RESULTS.md": _from_csv("images.run", "results.csv"),
    "counterfactual/CIS_DATA.md": _from_csv("counterfactual.cis_data", "cis_data.csv"),
    "counterfactual/residual/RESULTS.md": _counterfactual,
    "images/WEAK.md": _from_csv("images.weak", "weak.csv"),
    "images/weak_long/WEAK.md": _from_csv("images.weak", "weak.csv"),
    "causal_graph/RESULTS.md": _from_csv("causal_graph.run", "results.csv"),
    "causal_graph/WARP.md": _from_csv("causal_graph.warp", "warp.csv"),
    "causal_graph/IMAGES.md": _from_csv("causal_graph.images", "images.csv"),
    "scale/RESULTS.md": _from_csv("scale.run", "results.csv"),
    "scale/TIME_TO_QUALITY.md": _from_csv("scale.time_to_quality", "time_to_quality.csv"),
    "scale/PROFILE.md": _from_csv("scale.profile_step", "profile.csv"),
    "scale/genome_wide/RESULTS.md": _from_csv("scale.genome_wide", "results.csv"),
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
