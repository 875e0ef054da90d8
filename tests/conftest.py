"""Test options and the real data.

* Under pytest-xdist (``make test`` runs one test process per core) every process, and the
  processes it starts (tutorial kernels, benchmark workers), uses one torch thread, so that the
  processes do not compete for the same cores.
* Tests marked ``internet`` run only with ``--internet``.
* Tests that read the real screens and image sets of ``../shared/data`` call
  :func:`require_data`: without the files they are skipped with the reason, except in CI
  (``CI`` or ``SCVI_CAUSAL_REQUIRE_DATA`` set; ``.ci/run`` sets the latter), where the data must
  be present and their absence fails the test.
"""

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

#: The shared data folder, beside the repository.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Tutorials that read real data from ``DATA``, and the files they need.
TUTORIAL_DATA = {
    "03_real_screen.py": ["papalexi2021_thp1_sceptredata_lowmoi.h5ad"],
    "05_images.py": ["dsprites_downsampled_46080_fullgrid.npz"],
    "07_own_screen.py": ["gasperini2019_k562_highmoi_sceptre_subset.h5ad"],
}


def data_required() -> bool:
    """Whether missing real data is a failure (CI) rather than a skip."""
    return bool(os.environ.get("CI") or os.environ.get("SCVI_CAUSAL_REQUIRE_DATA"))


def require_data(*names: str) -> list[Path]:
    """Paths of ``names`` in the shared data folder; skip (or, in CI, fail) if one is missing."""
    paths = [DATA / n for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        message = f"real data missing: {', '.join(missing)} (see ../shared/data/README.md)"
        if data_required():
            pytest.fail(message)
        pytest.skip(message)
    return paths


def pytest_addoption(parser):
    parser.addoption(
        "--internet",
        action="store_true",
        default=False,
        help="run tests that download the original public data sources",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--internet"):
        return
    skip = pytest.mark.skip(reason="needs network access; run with --internet")
    for item in items:
        if "internet" in item.keywords:
            item.add_marker(skip)
