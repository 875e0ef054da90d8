"""Consensus target graph over several models: matching core, aggregation, model API, plot."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scvi
from anndata import AnnData
from matplotlib.figure import Figure

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI, consensus_target_graph
from scvi_causal.model._consensus import ConsensusGraph, aggregate_matched, match_to_reference
from scvi_causal.pl import consensus_heatmap

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}
UNITS = ["z0", "z1", "z2", "z3"]
PERTS = ["A", "B", "C", "D", "E"]
# reference graph: inclusion probabilities, perturbations x units
GRAPH = np.array(
    [
        [0.95, 0.05, 0.00, 0.10],
        [0.02, 0.90, 0.80, 0.00],
        [0.00, 0.00, 0.10, 0.99],
        [0.70, 0.00, 0.00, 0.00],
        [0.00, 0.30, 0.00, 0.60],
    ]
)
# shift profiles: distinct patterns over perturbations, one per reference unit
SHIFTS = np.array(
    [
        [3.0, 0.0, 0.0, 1.0],
        [0.0, -4.0, 2.0, 0.0],
        [0.0, 0.0, 0.5, 5.0],
        [2.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, -3.0],
    ]
)
# each copy's column j is reference unit PERMS[m][j] (perm[m][j] = reference unit in column j)
PERMS = [np.arange(4), np.array([2, 0, 3, 1]), np.array([3, 2, 1, 0])]
SIGNS = [np.ones(4), np.array([-1.0, 1.0, -1.0, 1.0]), np.array([1.0, 1.0, -1.0, -1.0])]


def _copies(seed: int = 0, noise: float = 0.05):
    """Latents and graphs of three 'models': permuted, sign-flipped, rescaled copies."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(400, 4))
    latents, graphs = [], []
    for m, (perm, sign) in enumerate(zip(PERMS, SIGNS)):
        scale = rng.uniform(0.5, 3.0, size=4)
        latents.append(sign * scale * z[:, perm] + 1.0 + noise * m * rng.normal(size=z.shape))
        graphs.append(GRAPH[:, perm].copy())
    graphs[2][3, np.flatnonzero(PERMS[2] == 0)[0]] = 0.2  # D -> z0 lost in model 2
    return z, latents, graphs


def _inverse(perm: np.ndarray) -> np.ndarray:
    """matching[i] = the column that holds reference unit i."""
    return np.argsort(perm)


# ---------------------------------------------------------------- pure-array core
def test_match_to_reference_recovers_permutation_and_sign():
    _, latents, _ = _copies()
    matching, corr = match_to_reference(latents)
    for m, (perm, sign) in enumerate(zip(PERMS, SIGNS)):
        np.testing.assert_array_equal(matching[m], _inverse(perm))
        np.testing.assert_array_equal(np.sign(corr[m]), sign[_inverse(perm)])
    np.testing.assert_allclose(corr[0], 1.0)
    assert np.abs(corr).min() > 0.99


def test_match_to_reference_other_reference():
    _, latents, _ = _copies()
    matching, corr = match_to_reference(latents, reference=1)
    np.testing.assert_array_equal(matching[1], np.arange(4))
    # model 0's unit matched to column j of model 1 is PERMS[1][j]
    np.testing.assert_array_equal(matching[0], PERMS[1])
    np.testing.assert_allclose(corr[1], 1.0)


def test_aggregate_matched_known_answer():
    _, latents, graphs = _copies()
    matching, _ = match_to_reference(latents)
    stability, mean_prob = aggregate_matched(graphs, matching, threshold=0.5)
    expected = (GRAPH > 0.5).astype(float)
    expected[3, 0] = 2 / 3  # D -> z0 present in 2 of 3 models
    np.testing.assert_allclose(stability, expected)
    expected_mean = GRAPH.copy()
    expected_mean[3, 0] = (0.7 + 0.7 + 0.2) / 3
    np.testing.assert_allclose(mean_prob, expected_mean)
    # without matching, the permuted copies disagree with the reference
    unmatched, _ = aggregate_matched(graphs, np.tile(np.arange(4), (3, 1)))
    assert not np.allclose(unmatched, expected)


def test_threshold_is_strict():
    g = np.array([[0.5, 0.6]])
    stability, _ = aggregate_matched([g, g], [[0, 1], [0, 1]], threshold=0.5)
    np.testing.assert_array_equal(stability, [[0.0, 1.0]])


def test_unrelated_latents_have_low_correlation():
    rng = np.random.default_rng(1)
    _, corr = match_to_reference([rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3))])
    assert np.abs(corr[1]).max() < 0.1


@pytest.mark.parametrize(
    ("features", "match"),
    [
        ([np.zeros((10, 3))], "at least 2"),
        ([np.zeros((10, 3)), np.zeros((10, 4))], "same n_latent"),
        ([np.zeros((10, 3)), np.zeros((12, 3))], "same samples"),
        ([np.zeros((10, 3)), np.full((10, 3), np.nan)], "NaN"),
        ([np.zeros(10), np.zeros(10)], "2-D"),
    ],
)
def test_match_to_reference_errors(features, match):
    with pytest.raises(ValueError, match=match):
        match_to_reference(features)


def test_core_argument_errors():
    g = [np.zeros((2, 3)), np.zeros((2, 3))]
    with pytest.raises(ValueError, match="reference"):
        match_to_reference([np.ones((5, 3)), np.ones((5, 3))], reference=2)
    with pytest.raises(ValueError, match="permutation"):
        aggregate_matched(g, [[0, 1, 2], [0, 0, 2]])
    with pytest.raises(ValueError, match="shape"):
        aggregate_matched(g, [[0, 1, 2]])
    with pytest.raises(ValueError, match="threshold"):
        aggregate_matched(g, [[0, 1, 2], [0, 1, 2]], threshold=1.0)
    with pytest.raises(ValueError, match="perturbations"):
        aggregate_matched([np.zeros((2, 3)), np.zeros((3, 3))], [[0, 1, 2], [0, 1, 2]])


# ---------------------------------------------------------------- model API on fake models
class FakeModel:
    """Duck-typed trained model: what ``consensus_target_graph`` reads from SparseShiftVI."""

    is_trained_ = True

    def __init__(self, graph: pd.DataFrame, z: np.ndarray, genes=("g0", "g1", "g2")):
        self.graph, self.z = graph, z
        self.adata = AnnData(
            np.zeros((len(z), len(genes)), dtype=np.float32), var=pd.DataFrame(index=list(genes))
        )
        self.adata_manager = SimpleNamespace(
            get_state_registry=lambda key: SimpleNamespace(column_names=np.array(genes))
        )
        self.seen_adata = None

    def get_target_graph(self):
        return self.graph.copy()

    def get_latent_representation(self, adata=None, indices=None, batch_size=None):
        self.seen_adata = adata
        return self.z if indices is None else self.z[indices]

    def get_perturbation_shifts(self, masked=True):
        return pd.DataFrame(SHIFTS, index=PERTS, columns=UNITS)


def _fake_models(order=None):
    _, latents, graphs = _copies()
    models = []
    for z, g in zip(latents, graphs):
        frame = pd.DataFrame(g, index=PERTS, columns=UNITS)
        models.append(FakeModel(frame.loc[order] if order else frame, z))
    return models


def test_consensus_target_graph_known_answer():
    models = _fake_models()
    models[1].graph = models[1].graph.iloc[::-1]  # another row order is matched by name
    result = consensus_target_graph({"s1": models[0], "s2": models[1], "s3": models[2]})
    assert isinstance(result, ConsensusGraph)
    assert models[2].seen_adata is models[0].adata  # default: the reference's cells
    expected = pd.DataFrame((GRAPH > 0.5).astype(float), index=PERTS, columns=UNITS)
    expected.loc["D", "z0"] = 2 / 3
    pd.testing.assert_frame_equal(result.stability, expected)
    assert list(result.matching.index) == ["s1", "s2", "s3"]
    assert list(result.matching.loc["s1"]) == UNITS
    assert list(result.matching.loc["s2"]) == [UNITS[j] for j in _inverse(PERMS[1])]
    assert result.correlation.abs().min().min() > 0.99
    assert result.reference == "s1" and result.match_on == "latent"

    edges = result.stable_edges(0.8)
    assert list(edges.columns) == [
        "perturbation",
        "unit",
        "stability",
        "mean_probability",
        "min_abs_correlation",
    ]
    assert set(zip(edges["perturbation"], edges["unit"])) == {
        ("A", "z0"),
        ("B", "z1"),
        ("B", "z2"),
        ("C", "z3"),
        ("E", "z3"),
    }
    assert ("D", "z0") in set(zip(*result.stable_edges(0.6)[["perturbation", "unit"]].T.values))
    assert edges["stability"].eq(1.0).all()
    assert "5 edges with stability >= 0.8" in repr(result)


def test_consensus_reference_and_indices():
    models = _fake_models()
    result = consensus_target_graph(models, reference=2, indices=np.arange(100))
    assert result.reference == 2
    assert list(result.matching.loc[2]) == UNITS
    assert models[0].seen_adata is models[2].adata
    # the same edges, now named by model 2's units (PERMS[2] reverses the units)
    stable = result.stable_edges(1.0)
    assert set(zip(stable["perturbation"], stable["unit"])) == {
        ("A", "z3"),
        ("B", "z2"),
        ("B", "z1"),
        ("C", "z0"),
        ("E", "z0"),
    }
    assert result.stability.loc["D", "z3"] == pytest.approx(2 / 3)


def test_consensus_on_shifts():
    models = _fake_models()
    # shift profiles follow each copy's permutation, on perturbations only
    for m, perm in zip(models, PERMS):
        m.get_perturbation_shifts = lambda masked=True, p=perm: pd.DataFrame(
            SHIFTS[:, p], index=PERTS, columns=UNITS
        )
        m.graph = pd.DataFrame(np.ones((5, 4)), index=PERTS, columns=UNITS)  # dense graph
    result = consensus_target_graph(models, match_on="shifts")
    for m, perm in enumerate(PERMS):
        assert list(result.matching.loc[m]) == [UNITS[j] for j in _inverse(perm)]
    with pytest.raises(ValueError, match="only with match_on='latent'"):
        consensus_target_graph(models, models[0].adata, match_on="shifts")


def test_consensus_errors():
    models = _fake_models()
    with pytest.raises(ValueError, match="at least 2 models"):
        consensus_target_graph(models[:1])
    other = FakeModel(models[1].graph.drop(index="E"), models[1].z)
    with pytest.raises(ValueError, match=r"different perturbations.*missing \['E'\]"):
        consensus_target_graph([models[0], other])
    renamed = FakeModel(models[1].graph.rename(index={"E": "F"}), models[1].z)
    with pytest.raises(ValueError, match="different perturbations"):
        consensus_target_graph([models[0], renamed])
    narrow = FakeModel(models[1].graph.iloc[:, :3], models[1].z[:, :3])
    with pytest.raises(ValueError, match="n_latent"):
        consensus_target_graph([models[0], narrow])
    genes = FakeModel(models[1].graph, models[1].z, genes=("g0", "g2", "g1"))
    with pytest.raises(ValueError, match="genes"):
        consensus_target_graph([models[0], genes])
    fewer_cells = FakeModel(models[1].graph, models[1].z[:50])
    with pytest.raises(ValueError, match="same samples"):
        consensus_target_graph([models[0], fewer_cells])
    untrained = FakeModel(models[1].graph, models[1].z)
    untrained.is_trained_ = False
    with pytest.raises(ValueError, match="not trained"):
        consensus_target_graph([models[0], untrained])
    with pytest.raises(ValueError, match="not a key"):
        consensus_target_graph({"a": models[0], "b": models[1]}, reference=0)
    with pytest.raises(ValueError, match="match_on"):
        consensus_target_graph(models, match_on="genes")
    with pytest.raises(ValueError, match="threshold"):
        consensus_target_graph(models, threshold=-0.1)
    with pytest.raises(ValueError, match="min_stability"):
        consensus_target_graph(models).stable_edges(1.5)


def test_consensus_heatmap():
    result = consensus_target_graph(_fake_models())
    fig = consensus_heatmap(result, title="seeds")
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0].startswith("z0 (|r| ")
    assert len(fig.axes[0].get_yticklabels()) == 5
    fig = consensus_heatmap(result.stability.iloc[:, :2], drop_empty=True)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["A", "B", "D"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        consensus_heatmap(result.stability * 2)


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained():
    adata = simulate_sparse_shift(
        n_perturbations=4,
        n_cells_per_perturbation=50,
        n_control_cells=100,
        n_genes=40,
        n_latent=3,
        seed=3,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    models = {}
    for seed in (0, 1, 2):
        scvi.settings.seed = seed
        models[seed] = SparseShiftVI(adata, n_latent=3, n_hidden=16)
        models[seed].train(max_epochs=20, batch_size=128, **TRAIN_KWARGS)
    return adata, models


def test_consensus_end_to_end(trained):
    adata, models = trained
    result = consensus_target_graph(models, threshold=0.5)
    graphs = {s: m.get_target_graph() for s, m in models.items()}
    assert result.stability.shape == (4, 3)
    assert list(result.stability.index) == list(graphs[0].index)
    assert list(result.matching.loc[0]) == ["z0", "z1", "z2"]
    # recompute each edge by hand from the reported matching
    for pert in result.stability.index:
        for unit in result.stability.columns:
            probs = [graphs[s].loc[pert, result.matching.loc[s, unit]] for s in models]
            assert result.stability.loc[pert, unit] == pytest.approx(np.mean(np.array(probs) > 0.5))
            assert result.mean_probability.loc[pert, unit] == pytest.approx(np.mean(probs))
    # matched correlations are those of the latents of the reference's cells
    z0 = models[0].get_latent_representation(adata)
    z1 = models[1].get_latent_representation(adata)
    for unit in ("z0", "z1", "z2"):
        other = int(result.matching.loc[1, unit][1:])
        r = np.corrcoef(z0[:, int(unit[1:])], z1[:, other])[0, 1]
        assert result.correlation.loc[1, unit] == pytest.approx(r, abs=1e-5)
    shifts = consensus_target_graph(models, match_on="shifts")
    assert shifts.stability.shape == (4, 3)
    assert isinstance(consensus_heatmap(result), Figure)
