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
        ({"weak_fraction": -0.1}, "weak_fraction"),
        ({"weak_fraction": 1.5}, "weak_fraction"),
        ({"weak_fraction": 0.5, "weak_scale": 0.0}, "weak_scale"),
        ({"weak_scale": -0.5}, "weak_scale"),
        ({"gene_effect": -1.0}, "gene_effect"),
        ({"interaction_scale": -1.0}, "interaction_scale"),
        ({"gene_interaction_scale": -0.5}, "gene_interaction_scale"),
        ({"gene_interaction_scale": float("nan")}, "gene_interaction_scale"),
        ({"n_cells_per_perturbation": (30, 10)}, "low <= high"),
        ({"n_cells_per_perturbation": (0, 10)}, "low <= high"),
        ({"n_cells_per_perturbation": (1, 2, 3)}, "n_cells_per_perturbation"),
        ({"n_perturbations": 50, "n_genes": 40, "gene_effect": 1.0}, "n_genes"),
        ({"protocol": "hard", "n_perturbations": 50, "n_genes": 40}, "n_genes"),
        ({"protocol": "svae", "weak_fraction": 0.2}, "svae"),
        ({"protocol": "svae", "gene_effect": 1.0}, "svae"),
        ({"protocol": "svae", "interaction_scale": 1.0}, "svae"),
        ({"protocol": "svae", "gene_interaction_scale": 1.0}, "svae"),
        ({"protocol": "svae", "n_cells_per_perturbation": (5, 10)}, "svae"),
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


# --- harder screens: options of the "default" protocol and the "hard" preset ---------------

TINY = {"n_perturbations": 4, "n_cells_per_perturbation": 20, "n_genes": 30, "n_pairs": 2}
HARD_KEYS = ("weak_perturbations", "own_genes", "interaction_shifts", "gene_interaction_offsets")


def test_default_outputs_unchanged():
    # values recorded before the harder options existed: published benchmarks depend on them
    ad = simulate_sparse_shift(n_control_cells=30, seed=0, **TINY)
    assert ad.shape == (150, 30)
    assert int(ad.X.sum()) == 295856
    assert ad.X[0:3].toarray().sum(axis=1).astype(int).tolist() == [1395, 2624, 1176]
    assert list(ad.obs["perturbation"][:5]) == ["p03", "p00+p02", "p03", "p00+p02", "control"]
    np.testing.assert_allclose(ad.obsm["z_true"].astype(np.float64).sum(), -94.80269296187907)
    np.testing.assert_allclose(ad.uns["true_shifts"].to_numpy().sum(), -0.33655141480049)
    assert list(ad.var.columns) == ["theta_true"] and ad.var_names[0] == "gene0"
    assert not set(HARD_KEYS) & set(ad.uns["simulation"])
    ad = simulate_sparse_shift(
        protocol="svae", n_perturbations=10, n_cells_per_perturbation=10, n_genes=40, seed=0
    )
    assert ad.shape == (100, 40)
    assert int(ad.X.sum()) == 40012496
    assert ad.X[0:3].toarray().sum(axis=1).astype(int).tolist() == [359821, 402197, 329776]
    assert list(ad.obs["perturbation"][:5]) == ["p06", "p07", "p01", "p06", "p03"]
    np.testing.assert_allclose(ad.obsm["z_true"].astype(np.float64).sum(), -43.03980788239278)
    np.testing.assert_allclose(ad.uns["true_shifts"].to_numpy().sum(), -1.726194832626831)
    assert not set(HARD_KEYS) & set(ad.uns["simulation"])


def test_options_switched_off_change_nothing():
    plain = simulate_sparse_shift(seed=2, **TINY)
    off = simulate_sparse_shift(
        seed=2,
        weak_fraction=0.0,
        weak_scale=0.5,
        gene_effect=0.0,
        interaction_scale=0,
        gene_interaction_scale=0.0,
        **TINY,
    )
    np.testing.assert_array_equal(_dense(plain.X), _dense(off.X))
    np.testing.assert_array_equal(plain.obsm["z_true"], off.obsm["z_true"])
    assert plain.uns["simulation"] == off.uns["simulation"]


def test_cell_counts_within_range():
    ad = simulate_sparse_shift(
        n_perturbations=10,
        n_cells_per_perturbation=(5, 40),
        n_pairs=5,
        n_control_cells=15,
        n_genes=30,
        seed=0,
    )
    counts = ad.obs["perturbation"].value_counts()
    groups = counts.drop("control")
    assert len(groups) == 15 and counts["control"] == 15
    assert groups.min() >= 5 and groups.max() <= 40
    assert groups.nunique() > 5  # drawn per group, pairs included
    assert ad.uns["simulation"]["n_cells_per_perturbation"] == [5, 40]
    fixed = simulate_sparse_shift(**{**TINY, "n_cells_per_perturbation": (7, 7)}, n_control_cells=0)
    assert (fixed.obs["perturbation"].value_counts() == 7).all()


def test_weak_perturbations_have_smaller_shifts():
    kwargs = {"n_perturbations": 20, "n_cells_per_perturbation": 2, "n_genes": 30, "seed": 4}
    plain = simulate_sparse_shift(**kwargs)
    ad = simulate_sparse_shift(weak_fraction=0.3, weak_scale=0.2, **kwargs)
    weak = ad.uns["simulation"]["weak_perturbations"]
    assert len(weak) == 6 and weak == sorted(weak)
    strong = [p for p in ad.uns["true_shifts"].index if p not in weak]
    shifts, before = ad.uns["true_shifts"], plain.uns["true_shifts"]
    # same targets and shifts as without the option, the weak ones scaled down
    pd.testing.assert_frame_equal(ad.uns["true_graph"], plain.uns["true_graph"])
    pd.testing.assert_frame_equal(shifts.loc[strong], before.loc[strong])
    np.testing.assert_allclose(shifts.loc[weak].to_numpy(), 0.2 * before.loc[weak].to_numpy())
    on = ad.uns["true_graph"].to_numpy() == 1
    size = pd.Series(np.abs(shifts.to_numpy() * on).sum(axis=1) / on.sum(axis=1), shifts.index)
    assert size[weak].max() < size[strong].min()


def test_own_gene_is_knocked_down():
    kwargs = {**SMALL, "n_genes": 60, "n_pairs": 3, "seed": 1}
    ad = simulate_sparse_shift(gene_effect=2.0, **kwargs)
    plain = simulate_sparse_shift(**kwargs)
    own = ad.uns["simulation"]["own_genes"]
    names = [f"p{i:02d}" for i in range(8)]
    assert list(own.index) == names and own["gene_index"].nunique() == 8
    assert list(ad.var_names[own["gene_index"]]) == names
    np.testing.assert_array_equal(ad.var.loc[names, "perturbation_target"], names)
    assert (ad.var["perturbation_target"] != "").sum() == 8
    assert list(plain.var_names[own["gene_index"]]) == list(own["original_name"])

    def ratio(adata, group, gene_index):
        x = _dense(adata.X)
        x = x / x.sum(axis=1, keepdims=True)
        labels = adata.obs["perturbation"].to_numpy()
        return x[labels == group, gene_index].mean() / x[labels == "control", gene_index].mean()

    for group in ad.obs["perturbation"].cat.categories.drop("control"):
        for member in group.split("+"):
            g = own.loc[member, "gene_index"]
            knocked_down = ratio(ad, group, g)
            if "+" not in group:
                assert knocked_down < 1, group  # lower than in controls
            # about exp(-2) times the level without the knockdown
            assert knocked_down < 0.5 * ratio(plain, group, g), (group, member)


def test_pair_interactions():
    kwargs = {**SMALL, "n_genes": 60, "n_pairs": 4, "seed": 5}
    ad = simulate_sparse_shift(interaction_scale=1.0, gene_interaction_scale=0.5, **kwargs)
    sim = ad.uns["simulation"]
    inter, gene_inter = sim["interaction_shifts"], sim["gene_interaction_offsets"]
    pairs = [c for c in ad.obs["perturbation"].cat.categories if "+" in c]
    assert list(inter.index) == pairs and list(inter.columns) == [f"z{k}" for k in range(15)]
    assert list(gene_inter.index) == pairs and list(gene_inter.columns) == list(ad.var_names)
    assert ((inter != 0).sum(axis=1) == 1).all()
    assert ((gene_inter != 0).sum(axis=1) == 5).all()
    assert np.all(np.abs(np.abs(inter.to_numpy().sum(axis=1)) - 3.0) < 6 * 0.5)
    z = ad.obsm["z_true"].astype(np.float64)
    labels = ad.obs["perturbation"].to_numpy()
    shifts = ad.uns["true_shifts"]
    for pair in pairs:
        a, b = pair.split("+")
        additive = shifts.loc[a].to_numpy() + shifts.loc[b].to_numpy()
        mean = z[labels == pair].mean(axis=0)
        stderr = 1.0 / np.sqrt((labels == pair).sum())
        assert np.all(np.abs(mean - additive - inter.loc[pair].to_numpy()) < 5 * stderr), pair
        assert np.abs(mean - additive).max() > 10 * stderr, pair  # not the sum of its members
    # the interactions leave the targets, shifts and chosen pairs unchanged
    plain = simulate_sparse_shift(**kwargs)
    pd.testing.assert_frame_equal(shifts, plain.uns["true_shifts"])
    assert list(plain.obs["perturbation"].cat.categories) == list(
        ad.obs["perturbation"].cat.categories
    )


def test_hard_preset(tmp_path):
    kwargs = {"n_perturbations": 6, "n_genes": 50, "n_pairs": 3, "n_control_cells": 60}
    ad = simulate_sparse_shift(protocol="hard", seed=0, **kwargs)
    sim = ad.uns["simulation"]
    assert sim["protocol"] == "hard" and sim["n_cells_per_perturbation"] == [50, 300]
    assert (sim["weak_fraction"], sim["weak_scale"], sim["gene_effect"]) == (0.3, 0.25, 1.5)
    assert (sim["interaction_scale"], sim["gene_interaction_scale"]) == (1.0, 0.5)
    assert sim["likelihood"] == "nb" and sim["shift_mean"] == 3.0
    assert len(sim["weak_perturbations"]) == 2 and len(sim["own_genes"]) == 6
    assert sim["interaction_shifts"].shape == (3, 15)
    assert sim["gene_interaction_offsets"].shape == (3, 50)
    counts = ad.obs["perturbation"].value_counts().drop("control")
    assert len(counts) == 9 and counts.between(50, 300).all()
    # reproducible, and any preset value can be overridden
    again = simulate_sparse_shift(protocol="hard", seed=0, **kwargs)
    np.testing.assert_array_equal(_dense(ad.X), _dense(again.X))
    np.testing.assert_array_equal(ad.obsm["z_true"], again.obsm["z_true"])
    assert list(ad.var_names) == list(again.var_names)
    pd.testing.assert_frame_equal(
        sim["interaction_shifts"], again.uns["simulation"]["interaction_shifts"]
    )
    other = simulate_sparse_shift(protocol="hard", seed=1, **kwargs)
    assert not sim["own_genes"].equals(other.uns["simulation"]["own_genes"])
    light = simulate_sparse_shift(protocol="hard", gene_effect=0.0, weak_fraction=0, **kwargs)
    assert "perturbation_target" not in light.var and light.var_names[0] == "gene0"
    assert light.uns["simulation"]["weak_perturbations"] == []
    assert light.uns["simulation"]["own_genes"].shape == (0, 2)
    # ground truth survives h5ad
    ad.write_h5ad(tmp_path / "hard.h5ad")
    back = anndata.read_h5ad(tmp_path / "hard.h5ad")
    for key in ("own_genes", "interaction_shifts", "gene_interaction_offsets"):
        pd.testing.assert_frame_equal(back.uns["simulation"][key], sim[key], check_dtype=False)
    assert list(back.uns["simulation"]["weak_perturbations"]) == sim["weak_perturbations"]
    assert list(back.var["perturbation_target"]) == list(ad.var["perturbation_target"])


# --- latent causal graph ---------------------------------------------------------------------

GRAPH = {"n_genes": 30, "n_cells_per_perturbation": 200, "n_control_cells": 400}
CHAIN = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])  # z0 -> z1 -> z2


def _group_means(ad):
    z = ad.obsm["z_true"].astype(np.float64)
    labels = ad.obs["perturbation"].to_numpy()
    return {g: z[labels == g].mean(axis=0) for g in ad.obs["perturbation"].cat.categories}


def test_without_a_graph_the_output_is_unchanged():
    # latent_graph=None is the default; the latent graph adds nothing else (uns keys included)
    plain = simulate_sparse_shift(seed=2, **TINY)
    explicit = simulate_sparse_shift(seed=2, latent_graph=None, mechanism="linear", **TINY)
    np.testing.assert_array_equal(_dense(plain.X), _dense(explicit.X))
    np.testing.assert_array_equal(plain.obsm["z_true"], explicit.obsm["z_true"])
    assert set(plain.uns) == {"true_graph", "true_shifts", "simulation"}
    assert plain.uns["simulation"] == explicit.uns["simulation"]
    assert "latent_graph" not in plain.uns["simulation"]


def test_linear_graph_propagates_the_same_noise():
    kwargs = {"n_perturbations": 5, "n_latent": 6, "n_pairs": 2, "seed": 3, **TINY}
    kwargs.pop("n_perturbations")
    plain = simulate_sparse_shift(n_perturbations=5, **kwargs)
    ad = simulate_sparse_shift(n_perturbations=5, latent_graph="random", **kwargs)
    dag = ad.uns["true_latent_graph"]
    weights = ad.uns["simulation"]["latent_edge_weights"]
    assert list(dag.index) == list(dag.columns) == [f"z{k}" for k in range(6)]
    np.testing.assert_array_equal(weights.to_numpy() != 0, dag.to_numpy() == 1)
    assert dag.to_numpy().sum() > 0
    # same targets, shifts, cells and noise as without the graph: z (I - W) = e
    pd.testing.assert_frame_equal(ad.uns["true_graph"], plain.uns["true_graph"])
    pd.testing.assert_frame_equal(ad.uns["true_shifts"], plain.uns["true_shifts"])
    # (the counts differ, so the shuffled order of the cells differs: compare sorted rows)
    z = ad.obsm["z_true"].astype(np.float64)
    noise = z @ (np.eye(6) - weights.to_numpy())
    expected = plain.obsm["z_true"].astype(np.float64)
    np.testing.assert_allclose(
        noise[np.argsort(noise[:, 0])], expected[np.argsort(expected[:, 0])], atol=1e-5
    )
    assert not np.allclose(np.sort(z, axis=0), np.sort(expected, axis=0))
    # the causal order puts parents first
    order = [int(u[1:]) for u in ad.uns["simulation"]["causal_order"]]
    assert np.all(np.triu(dag.to_numpy()[np.ix_(order, order)]) == dag.to_numpy()[order][:, order])


def test_random_dag_is_acyclic_with_the_expected_in_degree():
    n_edges = []
    for seed in range(4):
        ad = simulate_sparse_shift(
            n_perturbations=2,
            n_latent=30,
            n_genes=40,
            n_cells_per_perturbation=1,
            n_control_cells=0,
            latent_graph="random",
            expected_in_degree=1.5,
            seed=seed,
        )
        dag = ad.uns["true_latent_graph"].to_numpy()
        assert set(np.unique(dag)) <= {0, 1} and not np.diag(dag).any()
        reach = dag.copy()
        for _ in range(30):
            reach = np.minimum(reach + reach @ dag, 1)
        assert not np.diag(reach).any()  # no directed cycle
        n_edges.append(dag.sum())
    # 435 possible edges, each with probability 2 * 1.5 / 29: 45 expected, sd 6.4
    assert 30 < np.mean(n_edges) < 60
    assert len(set(n_edges)) > 1  # the graph depends on the seed
    none = simulate_sparse_shift(
        n_perturbations=2, n_latent=4, n_genes=30, latent_graph="random", expected_in_degree=0
    )
    assert none.uns["true_latent_graph"].to_numpy().sum() == 0


def test_given_chain_shifts_descendants_only():
    ad = simulate_sparse_shift(
        n_perturbations=3, n_latent=3, targets="each_unit", latent_graph=CHAIN, seed=0, **GRAPH
    )
    sim = ad.uns["simulation"]
    assert sim["latent_graph"] == "given" and sim["expected_in_degree"] is None
    assert sim["targets"] == "each_unit" and sim["causal_order"] == ["z0", "z1", "z2"]
    np.testing.assert_array_equal(ad.uns["true_latent_graph"].to_numpy(), CHAIN)
    np.testing.assert_array_equal(ad.uns["true_graph"].to_numpy(), np.eye(3))
    w = ad.uns["simulation"]["latent_edge_weights"].to_numpy()
    assert 0.5 <= abs(w[0, 1]) <= 1.5 and 0.5 <= abs(w[1, 2]) <= 1.5
    shifts = ad.uns["true_shifts"].to_numpy()
    means = _group_means(ad)
    tol = 5 * 3.0 / np.sqrt(200)  # 5 standard errors (z2 has sd below 3)
    s0, s1, s2 = shifts[0, 0], shifts[1, 1], shifts[2, 2]
    np.testing.assert_allclose(means["p00"], [s0, w[0, 1] * s0, w[0, 1] * w[1, 2] * s0], atol=tol)
    np.testing.assert_allclose(means["p01"], [0, s1, w[1, 2] * s1], atol=tol)
    np.testing.assert_allclose(means["p02"], [0, 0, s2], atol=tol)
    np.testing.assert_allclose(means["control"], 0, atol=tol)


def test_two_node_interventions_add_their_noise_shifts():
    targets = np.array([[1, 0, 1], [0, 1, 0]])  # p00 hits z0 and z2, p01 hits z1
    ad = simulate_sparse_shift(
        n_perturbations=2, n_latent=3, targets=targets, latent_graph=CHAIN, n_pairs=1, **GRAPH
    )
    assert ad.uns["simulation"]["targets"] == "given"
    np.testing.assert_array_equal(ad.uns["true_graph"].to_numpy(), targets)
    shifts = ad.uns["true_shifts"].to_numpy()
    total = np.linalg.inv(np.eye(3) - ad.uns["simulation"]["latent_edge_weights"].to_numpy())
    means = _group_means(ad)
    tol = 5 * 3.0 / np.sqrt(200)
    np.testing.assert_allclose(means["p00"], shifts[0] @ total, atol=tol)
    np.testing.assert_allclose(means["p00+p01"], (shifts[0] + shifts[1]) @ total, atol=tol)


def test_nonlinear_mechanisms(tmp_path):
    ad = simulate_sparse_shift(
        n_perturbations=3,
        n_latent=3,
        targets="each_unit",
        latent_graph=CHAIN,
        mechanism="nonlinear",
        seed=1,
        **GRAPH,
    )
    sim = ad.uns["simulation"]
    assert sim["mechanism"] == "nonlinear" and "latent_edge_weights" not in sim
    params = sim["mechanism_parameters"]
    assert sorted(params) == ["z1", "z2"] and params["z2"]["parents"] == ["z1"]
    assert params["z1"]["input_weights"].shape == (1, 8)
    means = _group_means(ad)
    labels = ad.obs["perturbation"].to_numpy()
    control = ad.obsm["z_true"][labels == "control"].astype(np.float64)
    # each mechanism has mean 0 and sd 1 on the controls; its noise adds sd 1
    np.testing.assert_allclose(control.mean(axis=0), 0, atol=0.3)
    np.testing.assert_allclose(control.std(axis=0), [1, np.sqrt(2), np.sqrt(2)], atol=0.25)
    tol = 5 * 2.0 / np.sqrt(200)
    np.testing.assert_allclose(means["p02"][:2], 0, atol=tol)  # no effect on ancestors
    np.testing.assert_allclose(means["p01"][0], 0, atol=tol)
    assert abs(means["p00"][1]) > 0.3  # a descendant moves
    # the mechanism of z1 is not linear in z0: its second differences are not 0
    z0 = np.linspace(-4, 4, 9)[:, None]
    net = params["z1"]
    f = net["scale"] * (
        np.tanh(z0 @ net["input_weights"] + net["input_bias"]) @ net["output_weights"]
        - net["offset"]
    )
    assert np.abs(np.diff(f, 2)).max() > 0.05
    ad.write_h5ad(tmp_path / "dag.h5ad")
    back = anndata.read_h5ad(tmp_path / "dag.h5ad")
    pd.testing.assert_frame_equal(
        back.uns["true_latent_graph"], ad.uns["true_latent_graph"], check_dtype=False
    )
    np.testing.assert_array_equal(
        back.uns["simulation"]["mechanism_parameters"]["z2"]["input_weights"],
        params["z2"]["input_weights"],
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latent_graph": "erdos"}, "latent_graph"),
        ({"latent_graph": np.ones((3, 3))}, "shape"),
        ({"latent_graph": np.eye(15)}, "acyclic"),
        ({"latent_graph": np.triu(np.ones((15, 15)), 1) * 0.5}, "binary"),
        ({"latent_graph": "random", "expected_in_degree": 8.0}, "expected_in_degree"),
        ({"latent_graph": "random", "expected_in_degree": -1.0}, "expected_in_degree"),
        ({"latent_graph": "random", "mechanism": "cubic"}, "mechanism"),
        ({"protocol": "svae", "latent_graph": "random"}, "latent_graph"),
        ({"targets": "all"}, "targets"),
        ({"targets": np.ones((2, 15))}, "shape"),
        ({"n_perturbations": 2, "targets": np.full((2, 15), 2)}, "binary"),
    ],
)
def test_bad_graph_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_sparse_shift(**kwargs)


def test_hard_interventions_cut_the_targets_mechanism():
    """intervention_type="do": in the cells of a perturbation, its target no longer follows its
    parent (no correlation, unit variance), and the children still follow the target."""
    kw = dict(n_perturbations=3, n_latent=3, targets="each_unit", latent_graph=CHAIN, seed=0)
    hard = simulate_sparse_shift(intervention_type="do", **kw, **GRAPH)
    soft = simulate_sparse_shift(**kw, **GRAPH)
    assert hard.uns["simulation"]["intervention_type"] == "do"
    for ad, cut in [(hard, True), (soft, False)]:
        z = ad.obsm["z_true"][ad.obs["perturbation"].astype(str).to_numpy() == "p01"]
        corr_parent = abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1])
        assert (corr_parent < 0.2) if cut else (corr_parent > 0.3)
        assert abs(np.corrcoef(z[:, 1], z[:, 2])[0, 1]) > 0.3
    z = hard.obsm["z_true"][hard.obs["perturbation"].astype(str).to_numpy() == "p01"]
    np.testing.assert_allclose(z[:, 1].std(), 1.0, atol=0.15)
    with pytest.raises(ValueError, match="intervention_type"):
        simulate_sparse_shift(intervention_type="hard", **kw, **GRAPH)
    with pytest.raises(ValueError, match="needs a `latent_graph`"):
        simulate_sparse_shift(n_perturbations=3, n_latent=3, intervention_type="do")
