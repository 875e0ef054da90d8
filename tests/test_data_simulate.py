import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scvi_causal.data import simulate_sparse_shift

SMALL = {"n_perturbations": 8, "n_cells_per_perturbation": 100, "n_control_cells": 200}


@pytest.fixture(scope="module")
def adata():
    return simulate_sparse_shift(n_genes=60, n_pairs=3, seed=1, **SMALL)


@pytest.fixture(scope="module")
def adata_svae():
    return simulate_sparse_shift(protocol="svae", seed=0)


def _dense(x):
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def test_shapes_dtypes_and_names(adata):
    n_cells = 8 * 100 + 3 * 100 + 200
    assert adata.shape == (n_cells, 60)
    assert sparse.isspmatrix_csr(adata.X) or isinstance(adata.X, sparse.csr_array)
    assert adata.X.dtype == np.float32
    assert adata.obsm["z_true"].shape == (n_cells, 15)
    assert adata.obsm["z_true"].dtype == np.float32
    assert adata.obs_names[0] == "cell0" and adata.var_names[-1] == "gene59"
    labels = adata.obs["perturbation"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    names = [f"p{i:02d}" for i in range(8)]
    assert list(labels.cat.categories[:8]) == names
    assert "control" in labels.cat.categories
    pairs = [c for c in labels.cat.categories if "+" in c]
    assert len(pairs) == 3 and len(set(pairs)) == 3
    for pair in pairs:
        a, b = pair.split("+")
        assert a in names and b in names and a < b
    counts = labels.value_counts()
    assert (counts[names + pairs] == 100).all() and counts["control"] == 200
    for key in ("true_graph", "true_shifts"):
        frame = adata.uns[key]
        assert list(frame.index) == names
        assert list(frame.columns) == [f"z{k}" for k in range(15)]
    assert adata.uns["simulation"]["control_category"] == "control"
    assert adata.uns["simulation"]["seed"] == 1


def test_name_padding_for_many_perturbations():
    ad = simulate_sparse_shift(n_perturbations=101, n_cells_per_perturbation=1, n_genes=40)
    cats = list(ad.obs["perturbation"].cat.categories)
    assert cats[0] == "p000" and cats[100] == "p100"
    assert cats[:101] == sorted(cats[:101])


def test_counts_are_nonnegative_integers(adata):
    x = _dense(adata.X)
    assert (x >= 0).all()
    np.testing.assert_array_equal(x, np.round(x))
    np.testing.assert_array_equal(adata.obs["n_counts"].to_numpy(), x.sum(axis=1))
    assert x.sum() > 0


def test_reproducible_and_seed_dependent():
    kwargs = {"n_perturbations": 4, "n_cells_per_perturbation": 30, "n_genes": 50}
    a = simulate_sparse_shift(seed=3, **kwargs)
    b = simulate_sparse_shift(seed=3, **kwargs)
    c = simulate_sparse_shift(seed=4, **kwargs)
    np.testing.assert_array_equal(_dense(a.X), _dense(b.X))
    np.testing.assert_array_equal(a.obsm["z_true"], b.obsm["z_true"])
    assert (a.obs["perturbation"] == b.obs["perturbation"]).all()
    pd.testing.assert_frame_equal(a.uns["true_shifts"], b.uns["true_shifts"])
    assert not np.array_equal(_dense(a.X), _dense(c.X))
    assert not a.uns["true_shifts"].equals(c.uns["true_shifts"])


@pytest.mark.parametrize("max_target_draws", [1, 3, 5])
def test_targets_and_graph(max_target_draws):
    ad = simulate_sparse_shift(
        n_perturbations=60, n_cells_per_perturbation=1, max_target_draws=max_target_draws
    )
    graph, shifts = ad.uns["true_graph"], ad.uns["true_shifts"]
    assert set(np.unique(graph.to_numpy())) <= {0, 1}
    n_targets = graph.sum(axis=1)
    assert n_targets.min() >= 1 and n_targets.max() <= max_target_draws
    if max_target_draws > 1:
        assert n_targets.max() > 1
    np.testing.assert_array_equal(graph.to_numpy() == 1, shifts.to_numpy() != 0)
    on = np.abs(shifts.to_numpy()[graph.to_numpy() == 1])
    assert np.all(np.abs(on - 3.0) < 6 * 0.5)  # |shift| ~ N(3, 0.5)
    signs = np.sign(shifts.to_numpy()[graph.to_numpy() == 1])
    assert (signs > 0).any() and (signs < 0).any()


def test_latent_means_match_shifts_and_controls(adata):
    z = adata.obsm["z_true"].astype(np.float64)
    labels = adata.obs["perturbation"].to_numpy()
    shifts = adata.uns["true_shifts"]
    for name in [*shifts.index, "control"]:
        cells = labels == name
        expected = np.zeros(15) if name == "control" else shifts.loc[name].to_numpy()
        stderr = z[cells].std(axis=0, ddof=1) / np.sqrt(cells.sum())
        assert np.all(np.abs(z[cells].mean(axis=0) - expected) < 5 * stderr), name
        # within-group noise is N(0, I)
        np.testing.assert_allclose(z[cells].std(axis=0, ddof=1), 1.0, atol=0.4)


def test_pairs_shift_by_sum(adata):
    z = adata.obsm["z_true"].astype(np.float64)
    labels = adata.obs["perturbation"].to_numpy()
    shifts = adata.uns["true_shifts"]
    pairs = [c for c in adata.obs["perturbation"].cat.categories if "+" in c]
    for pair in pairs:
        a, b = pair.split("+")
        expected = shifts.loc[a].to_numpy() + shifts.loc[b].to_numpy()
        cells = labels == pair
        stderr = 1.0 / np.sqrt(cells.sum())
        assert np.all(np.abs(z[cells].mean(axis=0) - expected) < 5 * stderr), pair


def test_default_protocol_library_sizes_vary():
    kwargs = {"n_perturbations": 2, "n_cells_per_perturbation": 10, "n_control_cells": 400}
    varied = simulate_sparse_shift(library_size_sd=0.6, **kwargs)
    fixed = simulate_sparse_shift(library_size_sd=0.0, **kwargs)

    def control_cv(ad):
        n = ad.obs["n_counts"][ad.obs["perturbation"] == "control"].to_numpy(dtype=float)
        return n.std() / n.mean(), n.mean()

    cv_varied, mean_varied = control_cv(varied)
    cv_fixed, _ = control_cv(fixed)
    assert cv_varied > 0.4
    assert cv_varied > 2 * cv_fixed
    assert 0.8 * 2000 < mean_varied < 1.2 * 2000
    theta = varied.var["theta_true"].to_numpy()
    assert theta.min() >= 2 and theta.max() <= 20


def test_svae_protocol_defaults(adata_svae):
    ad = adata_svae
    assert ad.shape == (100 * 250, 100)
    counts = ad.obs["perturbation"].value_counts()
    assert len(counts) == 100 and (counts == 250).all()
    assert "control" not in ad.obs["perturbation"].cat.categories
    assert ad.obs["perturbation"].cat.categories[-1] == "p99"
    assert ad.uns["true_graph"].shape == (100, 15)
    n_targets = ad.uns["true_graph"].sum(axis=1)
    assert n_targets.min() >= 1 and n_targets.max() <= 3
    on = np.abs(ad.uns["true_shifts"].to_numpy()[ad.uns["true_graph"].to_numpy() == 1])
    assert abs(on.mean() - 5.0) < 0.2
    sim = ad.uns["simulation"]
    assert sim["protocol"] == "svae" and sim["control_category"] is None
    assert sim["n_genes"] == 100 and sim["n_latent"] == 15


def test_svae_softmax_is_across_cells(adata_svae):
    # each gene's Poisson rates sum to 1e6 over cells (softmax along axis 0, as published)
    gene_totals = np.asarray(adata_svae.X.sum(axis=0), dtype=np.float64).ravel()
    np.testing.assert_allclose(gene_totals, 1e6, rtol=6e-3)
    # hence cells have ~ 1e6 * n_genes / n_cells counts on average
    assert abs(adata_svae.obs["n_counts"].mean() - 1e6 * 100 / 25000) < 2.0


def test_h5ad_roundtrip(adata, tmp_path):
    path = tmp_path / "sim.h5ad"
    adata.write_h5ad(path)
    back = anndata.read_h5ad(path)
    np.testing.assert_array_equal(_dense(back.X), _dense(adata.X))
    pd.testing.assert_frame_equal(back.uns["true_graph"], adata.uns["true_graph"])
    pd.testing.assert_frame_equal(back.uns["true_shifts"], adata.uns["true_shifts"])
    assert back.uns["simulation"]["protocol"] == "default"
    assert list(back.obs["perturbation"].cat.categories) == list(
        adata.obs["perturbation"].cat.categories
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"protocol": "foo"}, "protocol"),
        ({"n_perturbations": 0}, "n_perturbations"),
        ({"n_cells_per_perturbation": -1}, "n_cells_per_perturbation"),
        ({"n_control_cells": -5}, "n_control_cells"),
        ({"n_latent": 0}, "n_latent"),
        ({"n_genes": 0}, "n_genes"),
        ({"n_latent": 50, "n_genes": 20}, "n_latent"),
        ({"max_target_draws": 0}, "max_target_draws"),
        ({"max_target_draws": 16}, "max_target_draws"),
        ({"n_perturbations": 4, "n_pairs": 7}, "n_pairs"),
        ({"n_pairs": -1}, "n_pairs"),
        ({"protocol": "svae", "n_pairs": 1}, "n_pairs"),
        ({"protocol": "svae", "n_genes": 30}, "svae"),
        ({"shift_sd": -1.0}, "shift_sd"),
        ({"library_size_mean": 0.0}, "library_size_mean"),
        ({"library_size_sd": -0.1}, "library_size_sd"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_sparse_shift(**kwargs)


def test_max_pairs_allowed():
    ad = simulate_sparse_shift(
        n_perturbations=4, n_cells_per_perturbation=2, n_pairs=6, n_control_cells=0, n_genes=40
    )
    pairs = [c for c in ad.obs["perturbation"].cat.categories if "+" in c]
    assert len(pairs) == 6
    assert ad.uns["simulation"]["control_category"] is None
