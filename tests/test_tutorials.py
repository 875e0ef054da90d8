"""Execute every tutorial (``tutorials/*.py``, jupytext percent format) in its fast mode.

Each tutorial is converted to a notebook with jupytext and run cell by cell with nbclient on a
kernel that uses this interpreter (a kernelspec written to a temporary ``JUPYTER_PATH``, so no
``ipykernel install`` step is needed). It runs in a temporary directory with
``SCVI_CAUSAL_FAST=1``; a cell that raises fails the test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import TUTORIAL_DATA, require_data

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.py"))
KERNEL_NAME = "scvi-causal-tests"
TIMEOUT_S = 600


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec named ``KERNEL_NAME`` that runs ``sys.executable``, and the fast mode."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "scvi-causal (tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("SCVI_CAUSAL_FAST", "1")
    workdir = tmp_path / "run"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # anything a tutorial writes (lightning_logs/, ...) stays here
    return workdir


def test_tutorials_found():
    assert TUTORIALS, "no tutorials/*.py found"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(path, kernel_env):
    require_data(*TUTORIAL_DATA.get(path.name, []))
    nb = jupytext.read(path, fmt="py:percent")
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(kernel_env)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell raised\n{err}", pytrace=False)
    finally:
        # Keep the executed notebook for inspection next to the other outputs (not in git).
        (kernel_env / f"{path.stem}.ipynb").write_text(jupytext.writes(nb, fmt="ipynb"))
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    if any("plt.show()" in cell.source for cell in code):
        # Figures must reach the notebook (a library that switches the backend to Agg at
        # import would silently drop them).
        images = [
            out
            for cell in code
            for out in cell.get("outputs", [])
            if "image/png" in out.get("data", {})
        ]
        assert images, f"{path.name} calls plt.show() but no figure was displayed"
