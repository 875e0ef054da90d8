"""Committed benchmark results: tables, summary page and quoted numbers all follow the CSVs.

No training: every table is re-rendered from its committed CSVs, the summary page
``benchmarks/README.md`` is regenerated, and each number that README.md and docs/*.md quote
from a benchmark (``benchmarks/claims.py``) is recomputed from its CSV.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """The ``benchmarks`` package (importable from the repository root, as ``python -m``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT))
        mp.setenv("MPLBACKEND", "Agg")
        yield {
            name: importlib.import_module(f"benchmarks.{name}")
            for name in ("render", "summary", "claims", "_common")
        }


def test_tables_render_from_their_csvs(bench, tmp_path):
    """Every committed table equals its rendering from the CSVs beside it, byte for byte."""
    render = bench["render"]
    assert render.main(["--out", str(tmp_path)]) == 0
    differ = [
        name
        for name in render.TABLES
        if (tmp_path / name).read_bytes() != (BENCHMARKS / name).read_bytes()
    ]
    assert not differ, f"re-render with `python -m benchmarks.render`: {differ}"


def test_every_committed_table_is_rendered(bench):
    """No markdown table in a result folder escapes the render check."""
    tables = {
        str(p.relative_to(BENCHMARKS))
        for p in BENCHMARKS.rglob("*.md")
        if "_scratch" not in p.parts
        and not p.parent.name.endswith(
            "report"
        )  # target reports (genome_wide/report is gitignored)
        and p.name not in ("NOTES.md", "README.md")
    }
    assert tables == set(bench["render"].TABLES)


def test_summary_page_is_up_to_date(bench):
    """``benchmarks/README.md`` is exactly what ``python -m benchmarks.summary`` writes."""
    assert (BENCHMARKS / "README.md").read_text() == bench["summary"].render(), (
        "regenerate it with `python -m benchmarks.summary`"
    )


def test_summary_marks_baseline_wins(bench):
    """Bold marks a baseline ahead of the default model, in the direction of the metric."""
    import pandas as pd

    summary = bench["summary"]
    rows = pd.DataFrame(
        [
            summary._row(
                "d",
                "t",
                "higher",
                {"spike_slab": 0.5, "dense": 0.6, "l1": 0.4, "spike_slab_fixed_masks": 0.7},
            ),
            summary._row(
                "d", "t", "lower", {"spike_slab": 0.5, "dense": 0.6, "l1": 0.4}, lower=True
            ),
            summary._row("d", "t", "tie", {"spike_slab": 0.5004, "dense": 0.5001}),
        ]
    )
    lines = summary.block_table(
        rows, ["spike_slab", "spike_slab_fixed_masks", "l1", "dense"]
    ).splitlines()[2:]
    assert lines[0] == "| d | t | higher | 0.500 | 0.700 | 0.400 | **0.600** |"
    assert lines[1] == "| d | t | lower | 0.500 |  | **0.400** | 0.600 |"
    assert lines[2] == "| d | t | tie | 0.500 |  |  | 0.500 |"


def test_summary_covers_every_result_csv(bench):
    """Every committed CSV has a provenance: a ``run.json`` record or a legacy entry."""
    summary, common = bench["summary"], bench["_common"]
    csvs = {
        str(p.relative_to(BENCHMARKS))
        for p in BENCHMARKS.rglob("*.csv")
        if "_scratch" not in p.parts
        and not p.parent.name.endswith(
            "report"
        )  # target reports (genome_wide/report is gitignored)
    }
    unknown = sorted(
        rel
        for rel in csvs
        if rel not in summary.LEGACY
        and common.read_run_json(BENCHMARKS / Path(rel).parent, summary.module_of(rel)) is None
    )
    assert not unknown, f"CSVs without run.json or legacy record: {unknown}"
    missing = sorted(set(summary.LEGACY) - csvs)
    assert not missing, f"legacy entries of CSVs that no longer exist: {missing}"
    superseded = sorted(
        rel
        for rel in summary.LEGACY
        if common.read_run_json(BENCHMARKS / Path(rel).parent, summary.module_of(rel)) is not None
    )
    assert not superseded, f"rerun with run.json: drop their LEGACY entries: {superseded}"


def test_legacy_commits_are_the_last_writers(bench):
    """A legacy entry names the commit that last wrote its CSV (``git log -1 -- <csv>``)."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    shallow = git("rev-parse", "--is-shallow-repository")
    if shallow.returncode != 0 or shallow.stdout.strip() != "false":
        pytest.skip("needs the full git history")
    wrong = {}
    for rel, legacy in bench["summary"].LEGACY.items():
        last = git("log", "-1", "--format=%H", "--", f"benchmarks/{rel}").stdout.strip()
        if last and not last.startswith(legacy.commit):
            wrong[rel] = (legacy.commit, last[:7])
    assert not wrong, f"recorded vs last commit: {wrong}"


def test_quoted_numbers_match_the_csvs(bench):
    """README.md and docs/*.md quote the CSVs' numbers, at the rounding they show."""
    claims = bench["claims"].CLAIMS
    assert len(claims) >= 10
    problems = [p for claim in claims for p in claim.problems()]
    assert not problems, "\n".join(problems)
    covered = {claim.doc for claim in claims}
    assert {"README.md", "docs/model.md", "docs/own_screen.md", "docs/scale.md"} <= covered


def test_a_wrong_number_is_caught(bench):
    """The claim check fails on a number that differs from the CSV or on missing text."""
    claims = bench["claims"]
    good = claims.CLAIMS[0]
    wrong = claims.Claim(
        good.doc,
        good.text.replace(good.number, "0.999"),
        "0.999",
        good.csv,
        good.where,
        good.column,
        by=good.by,
    )
    assert any("gives" in p for p in wrong.problems())
    assert any("not found" in p for p in wrong.problems())


def test_docs_render_the_summary():
    """The docs include ``benchmarks/README.md`` and the findings page, both in the toctree."""
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert re.search(r"```\{include\} \.\./benchmarks/README\.md", page)
    index = (ROOT / "docs" / "index.md").read_text()
    toctree = index[index.index("```{toctree}") :]
    assert "\nbenchmarks\n" in toctree and "\nfindings\n" in toctree
