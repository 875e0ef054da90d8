"""Loaders of the real screens (from ../shared/data) and prepare_screen."""

import numpy as np
import pytest
from conftest import DATA, require_data
from scipy import sparse

from scvi_causal.data import (
    data_dirs,
    gasperini_2019,
    papalexi_2021,
    prepare_screen,
    simulate_sparse_shift,
    zhao_2021,
)
from scvi_causal.data._datasets import GASPERINI_URL, PAPALEXI_URL, ZHAO_URL, download


def _require(name):
    require_data(name)


def _is_counts(x):
    data = x.data if sparse.issparse(x) else np.asarray(x)
    return np.all(data >= 0) and np.allclose(data, np.round(data))


def test_data_dirs_include_the_shared_folder():
    require_data("README.md")
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
    assert adata.obs["perturbation"].value_counts().to_dict() == {
        "ctrl": 2500,
        "panobinostat": 2500,
    }
    assert adata.obs["patient_id"].nunique() == 5
    assert adata.uns["perturbation_screen"]["control_category"] == "ctrl"


def test_gasperini_layout():
    _require("gasperini2019_k562_highmoi_sceptre_subset.h5ad")
    adata = gasperini_2019()
    assert adata.shape == (40_002, 366)
    assert _is_counts(adata.X)
    labels = adata.obs["perturbation"].astype(str)
    assert adata.uns["perturbation_screen"]["control_category"] == "control"
    # cells with no targeting guide of the subset (non-targeting or none of the subset)
    raw = adata.obs["grna_groups"].astype(str)
    untargeted = raw.isin(["none_of_subset", "non-targeting"])
    assert (labels[untargeted] == "control").all()
    # non-targeting guides are dropped from combinations, groups joined by '+'
    assert not labels.str.contains("non-targeting").any()
    assert (labels[raw == "MRPL9_TSS+non-targeting"] == "MRPL9_TSS").all()
    assert labels.str.contains("+", regex=False).any()  # high MOI: several groups per cell
    pcs = adata.uns["positive_controls"]
    assert len(pcs) == 10 and all(g.endswith("_TSS") for g in pcs)
    assert set(pcs.values()) <= set(adata.var_names)


def test_loader_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        papalexi_2021(tmp_path / "missing.h5ad")


def test_prepare_screen_filters_and_reports():
    adata = simulate_sparse_shift(
        n_perturbations=3, n_cells_per_perturbation=30, n_control_cells=50, n_genes=60, seed=0
    )
    # make p02 rare
    keep = np.ones(adata.n_obs, dtype=bool)
    keep[np.flatnonzero(adata.obs["perturbation"] == "p02")[10:]] = False
    adata = adata[keep].copy()
    before = adata.copy()
    out = prepare_screen(
        adata, control_category="control", min_cells_per_perturbation=20, n_top_genes=25
    )
    assert set(out.obs["perturbation"].cat.categories) == {"control", "p00", "p01"}
    assert out.uns["prepare_screen"]["removed_perturbations"] == {"p02": 10}
    assert out.uns["prepare_screen"]["n_genes_kept"] == out.n_vars == 25
    # the input is untouched
    assert adata.shape == before.shape and "prepare_screen" not in adata.uns
    np.testing.assert_array_equal(adata.X.toarray(), before.X.toarray())
    # controls are never dropped, whatever their number
    kept = prepare_screen(adata, control_category="control", min_cells_per_perturbation=1000)
    assert set(kept.obs["perturbation"].unique()) == {"control"}


def test_prepare_screen_keeps_perturbed_and_requested_genes():
    adata = simulate_sparse_shift(
        n_perturbations=3, n_cells_per_perturbation=30, n_control_cells=50, n_genes=60, seed=0
    )
    hvg = prepare_screen(adata, n_top_genes=25).var_names
    outside = [g for g in adata.var_names if g not in hvg]
    # a perturbation's own gene (named like it) and a requested gene, both not highly variable
    adata.var_names = [("p01" if g == outside[0] else g) for g in adata.var_names]
    out = prepare_screen(adata, n_top_genes=25, keep_genes=[outside[1]])
    assert {"p01", outside[1]} <= set(out.var_names)
    assert out.n_vars == 27
    assert sorted(out.uns["prepare_screen"]["genes_kept_beyond_hvg"]) == sorted(["p01", outside[1]])
    plain = prepare_screen(adata, n_top_genes=25, keep_perturbed_genes=False)
    assert plain.n_vars == 25 and "p01" not in plain.var_names


def test_prepare_screen_errors():
    adata = simulate_sparse_shift(n_perturbations=2, n_cells_per_perturbation=20, seed=0)
    with pytest.raises(KeyError, match="perturbation_key"):
        prepare_screen(adata, perturbation_key="guide")
    with pytest.raises(ValueError, match="not found"):
        prepare_screen(adata, control_category="non-targeting")
    with pytest.raises(KeyError, match="batch_key"):
        prepare_screen(adata, batch_key="donor")


@pytest.mark.internet
@pytest.mark.parametrize("url", [PAPALEXI_URL, ZHAO_URL, GASPERINI_URL])
def test_original_sources_download(url, tmp_path):
    path = download(url, tmp_path / "screen.h5ad")
    loader = {PAPALEXI_URL: papalexi_2021, ZHAO_URL: zhao_2021, GASPERINI_URL: gasperini_2019}[url]
    adata = loader(path)
    assert adata.n_obs > 1000 and "perturbation" in adata.obs
