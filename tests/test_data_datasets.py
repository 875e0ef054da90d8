"""Loaders of the real screens (from ../shared/data) and prepare_screen."""

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from scvi_causal.data import (
    data_dirs,
    papalexi_2021,
    prepare_screen,
    simulate_sparse_shift,
    zhao_2021,
)
from scvi_causal.data._datasets import PAPALEXI_URL, ZHAO_URL, download

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _require(name):
    if not (DATA / name).exists():
        pytest.fail(f"Real data missing: {DATA / name} (see ../shared/data/README.md)")


def _is_counts(x):
    data = x.data if sparse.issparse(x) else np.asarray(x)
    return np.all(data >= 0) and np.allclose(data, np.round(data))


def test_data_dirs_include_the_shared_folder():
    assert any(d.resolve() == DATA.resolve() for d in data_dirs() if d.exists())


def test_papalexi_layout():
    _require("papalexi2021_thp1_sceptredata_lowmoi.h5ad")
    adata = papalexi_2021()
    assert adata.uns["perturbation_screen"]["control_category"] == "non-targeting"
    assert adata.shape == (16_192, 299)  # confident cells
    assert sparse.isspmatrix_csr(adata.X) and _is_counts(adata.X)
    labels = adata.obs["perturbation"]
    assert labels.dtype.name == "category"
    assert labels.nunique() == 26  # 25 targeted genes + control
    assert {"IFNGR1", "STAT1", "IRF1", "JAK2"} <= set(labels.cat.categories)
    assert "bio_rep" in adata.obs
    everything = papalexi_2021(confident_only=False)
    assert everything.n_obs == 20_729
    assert (everything.obs["perturbation"] == "non-targeting").sum() == 2_386


def test_zhao_layout():
    _require("zhao2021_glioblastoma_panobinostat_lemur.h5ad")
    adata = zhao_2021()
    assert adata.shape == (5_000, 300)
    assert _is_counts(adata.X)
    assert adata.obs["perturbation"].value_counts().to_dict() == {"ctrl": 2500,
                                                                  "panobinostat": 2500}
    assert adata.obs["patient_id"].nunique() == 5
    assert adata.uns["perturbation_screen"]["control_category"] == "ctrl"


def test_loader_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        papalexi_2021(tmp_path / "missing.h5ad")


def test_prepare_screen_filters_and_reports():
    adata = simulate_sparse_shift(n_perturbations=3, n_cells_per_perturbation=30,
                                  n_control_cells=50, n_genes=60, seed=0)
    # make p02 rare
    keep = np.ones(adata.n_obs, dtype=bool)
    keep[np.flatnonzero(adata.obs["perturbation"] == "p02")[10:]] = False
    adata = adata[keep].copy()
    before = adata.copy()
    out = prepare_screen(adata, control_category="control", min_cells_per_perturbation=20,
                         n_top_genes=25)
    assert set(out.obs["perturbation"].cat.categories) == {"control", "p00", "p01"}
    assert out.uns["prepare_screen"]["removed_perturbations"] == {"p02": 10}
    assert out.uns["prepare_screen"]["n_genes_kept"] == out.n_vars == 25
    # the input is untouched
    assert adata.shape == before.shape and "prepare_screen" not in adata.uns
    np.testing.assert_array_equal(adata.X.toarray(), before.X.toarray())
    # controls are never dropped, whatever their number
    kept = prepare_screen(adata, control_category="control", min_cells_per_perturbation=1000)
    assert set(kept.obs["perturbation"].unique()) == {"control"}


def test_prepare_screen_errors():
    adata = simulate_sparse_shift(n_perturbations=2, n_cells_per_perturbation=20, seed=0)
    with pytest.raises(KeyError, match="perturbation_key"):
        prepare_screen(adata, perturbation_key="guide")
    with pytest.raises(ValueError, match="not found"):
        prepare_screen(adata, control_category="non-targeting")
    with pytest.raises(KeyError, match="batch_key"):
        prepare_screen(adata, batch_key="donor")


@pytest.mark.internet
@pytest.mark.parametrize("url", [PAPALEXI_URL, ZHAO_URL])
def test_original_sources_download(url, tmp_path):
    path = download(url, tmp_path / "screen.h5ad")
    loader = papalexi_2021 if url == PAPALEXI_URL else zhao_2021
    adata = loader(path)
    assert adata.n_obs > 1000 and "perturbation" in adata.obs
