"""The image counterpart of the latent causal graph: ``ImageVAE(latent_graph="dag")`` and
dSprites with causally related factors (``causal_dsprites``)."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DATA, require_data

from scvi_causal.core import LinearSCMPrior
from scvi_causal.images import (
    CAUSAL_FACTORS,
    FACTOR_NAMES,
    ImageVAE,
    causal_dsprites,
    load_dsprites,
)

DSPRITES = DATA / "dsprites_downsampled_46080_fullgrid.npz"
SMALL = {"n_latent": 4, "channels": 8, "hidden": 32}
FAST_FIT = {"n_steps": 30, "n_restarts": 1}


def _random_images(n: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = (rng.random((n, 64, 64)) > 0.9).astype(np.float32)
    return images, np.arange(n) % 3  # observational and 2 regimes


def _is_acyclic(graph: np.ndarray) -> bool:
    reach = graph.astype(bool)
    for _ in range(len(graph)):
        reach = reach | ((reach.astype(int) @ graph.astype(int)) > 0)
    return not reach.diagonal().any()


@pytest.fixture(scope="module")
def dag_model():
    """A dag model trained 2 epochs (graph on at the second), alignment asked at both ends."""
    images, regimes = _random_images()
    vae = ImageVAE(n_interventions=2, latent_graph="dag", **SMALL)
    vae.train(
        images,
        regimes,
        max_epochs=2,
        batch_size=16,
        enable_progress_bar=False,
        seed=0,
        align_at=(0.5, 1.0),
        graph_fit_kwargs=FAST_FIT,
    )
    return vae, images


def test_default_model_has_no_graph():
    vae = ImageVAE(n_interventions=2, **SMALL)
    assert not isinstance(vae.module.prior, LinearSCMPrior)
    assert vae.module.latent_graph == "none"
    keys = set(vae.module.state_dict())
    assert not any("edge" in k or "graph_active" in k for k in keys)
    assert "latent_graph" not in repr(vae)
    with pytest.raises(ValueError, match="no latent graph"):
        vae.get_latent_graph()


def test_dag_needs_interventions_and_valid_arguments():
    with pytest.raises(ValueError, match="latent_graph='dag' needs the intervention regimes"):
        ImageVAE(n_interventions=0, intervention_prior="none", latent_graph="dag", **SMALL)
    with pytest.raises(ValueError, match="`latent_graph` must be"):
        ImageVAE(n_interventions=2, latent_graph="cyclic", **SMALL)
    with pytest.raises(ValueError, match="graph_kwargs"):
        ImageVAE(n_interventions=2, graph_kwargs={"edge_penalty": 0.1}, **SMALL)
    vae = ImageVAE(n_interventions=2, latent_graph="dag", **SMALL)
    images, regimes = _random_images(8)
    with pytest.raises(ValueError, match="Unknown `graph_fit_kwargs`"):
        vae.train(images, regimes, max_epochs=1, graph_fit_kwargs={"steps": 3})
    with pytest.raises(ValueError, match="graph_start"):
        vae.train(images, regimes, max_epochs=1, graph_start=1.5)


def test_dag_prior_starts_off_with_graph_kwargs():
    vae = ImageVAE(
        n_interventions=2, latent_graph="dag", graph_kwargs={"edge_penalty": 0.1}, **SMALL
    )
    prior = vae.module.prior
    assert isinstance(prior, LinearSCMPrior) and not bool(prior.graph_active)
    assert prior.edge_penalty == 0.1 and prior.intervention_type == "do"
    assert vae.module.can_rotate_latent_space()  # alignment steps run while the graph is off
    assert "latent_graph='dag'" in repr(vae)
    assert np.array_equal(vae.get_latent_graph(), np.zeros((4, 4)))


def test_frame_change_uses_log_standard_deviations():
    """The encoder outputs log standard deviations: a diagonal frame change scales them exactly."""
    torch.manual_seed(0)
    module = ImageVAE(n_interventions=2, latent_graph="dag", **SMALL).module.eval()
    x = (torch.rand(5, 1, 64, 64) > 0.9).float()
    with torch.no_grad():
        before = module.encoder(x)
        decoded = module.decoder(before.loc)
        m = torch.diag(torch.tensor([2.0, 0.5, 1.0, 3.0]))
        module.change_latent_frame(m)
        after = module.encoder(x)
        torch.testing.assert_close(after.loc, before.loc @ m, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(after.scale, before.scale * m.diagonal(), atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(module.decoder(after.loc), decoded, atol=1e-4, rtol=1e-4)


def test_dag_model_switches_graph_on(dag_model):
    vae, _ = dag_model
    history = vae.history
    assert list(history["graph_active_train"]) == [0.0, 1.0]
    assert bool(vae.module.prior.graph_active)
    # the alignment step of epoch 0 ran; the one after the graph came on did not
    assert np.isfinite(history["alignment_l1_ratio_train"].iloc[0])
    assert np.isnan(history["alignment_l1_ratio_train"].iloc[1])
    assert not vae.module.can_rotate_latent_space()
    graph = vae.get_latent_graph()
    assert graph.shape == (4, 4) and ((graph >= 0) & (graph <= 1)).all()
    assert (np.diag(graph) == 0).all()
    dag = vae.get_latent_graph(dag=True)
    assert dag.dtype == bool and dag.shape == (4, 4) and _is_acyclic(dag)
    assert vae.get_target_graph().shape == (2, 4)  # direct targets


def test_dag_model_save_load_round_trip(dag_model, tmp_path):
    vae, images = dag_model
    vae.save(tmp_path / "dag.pt")
    loaded = ImageVAE.load(tmp_path / "dag.pt")
    assert bool(loaded.module.prior.graph_active) and repr(loaded) == repr(vae)
    np.testing.assert_array_equal(
        loaded.get_latent_representation(images), vae.get_latent_representation(images)
    )
    np.testing.assert_array_equal(loaded.get_latent_graph(), vae.get_latent_graph())
    np.testing.assert_array_equal(loaded.get_target_graph(), vae.get_target_graph())
    pd.testing.assert_frame_equal(loaded.history, vae.history)


def test_single_epoch_fits_graph_at_its_start():
    images, regimes = _random_images(16)
    vae = ImageVAE(n_interventions=2, latent_graph="dag", **SMALL)
    vae.train(images, regimes, max_epochs=1, enable_progress_bar=False, graph_fit_kwargs=FAST_FIT)
    assert list(vae.history["graph_active_train"]) == [1.0]


# ----------------------------------------------------------------------------- causal dSprites
@pytest.fixture(scope="module")
def causal_data():
    require_data(DSPRITES.name)
    return causal_dsprites(n_per_regime=400, seed=0, path=DSPRITES)


def _mean_class(data, regime: str, factor: str) -> float:
    rows = data.regimes == data.regime_names.index(regime)
    return float(data.factors[rows, FACTOR_NAMES.index(factor)].mean())


def test_causal_dsprites_truth(causal_data):
    data = causal_data
    assert len(data) == 5 * 400 and data.images.shape == (2000, 64, 64)
    assert data.regime_names == ["observational", *(f"do({f})" for f in CAUSAL_FACTORS)]
    expected = pd.DataFrame(False, index=list(CAUSAL_FACTORS), columns=list(CAUSAL_FACTORS))
    expected.loc["scale", ["orientation", "pos_x"]] = True
    expected.loc["pos_x", "pos_y"] = True
    pd.testing.assert_frame_equal(data.dag, expected)
    assert np.array_equal(data.targets.to_numpy(), np.eye(4, dtype=bool))
    # regimes move their target and its descendants (scale: all four)
    assert data.graph.loc["do(scale)"].tolist() == [False, True, True, True, True]
    assert data.graph.loc["do(pos_x)"].tolist() == [False, False, False, True, True]
    assert data.interventions.shape == (2000, 4)
    # observational classes cover every value; each image has its factors' classes
    obs = data.factors[data.regimes == 0]
    assert all(len(np.unique(obs[:, j])) == n for j, n in enumerate([3, 6, 10, 16, 16]))
    images, factors = load_dsprites(DSPRITES)
    for i in (0, 777, 1999):
        row = np.flatnonzero((factors == data.factors[i]).all(1))[0]
        assert np.array_equal(images[row], data.images[i])
    sub = data.subset(np.arange(10))
    assert len(sub) == 10 and sub.dag.equals(data.dag) and sub.targets.equals(data.targets)


def test_causal_dsprites_interventions_move_descendants_only(causal_data):
    data = causal_data
    # do(scale): the target and its children move
    for factor in ("scale", "orientation", "pos_x"):
        moved = _mean_class(data, "do(scale)", factor) - _mean_class(data, "observational", factor)
        assert moved > 1.5, factor
    # do(pos_x): its child pos_y moves (negative weight), its parent scale and the
    # non-descendant orientation do not
    assert _mean_class(data, "do(pos_x)", "pos_x") - _mean_class(data, "observational", "pos_x") > 4
    assert (
        _mean_class(data, "do(pos_x)", "pos_y") - _mean_class(data, "observational", "pos_y") < -3
    )
    for factor, tolerance in (("scale", 0.4), ("orientation", 0.6), ("shape", 0.15)):
        same = _mean_class(data, "do(pos_x)", factor) - _mean_class(data, "observational", factor)
        assert abs(same) < tolerance, factor


def test_causal_dsprites_own_graph_and_errors():
    require_data(DSPRITES.name)
    graph = np.zeros((4, 4), dtype=int)
    graph[1, 3] = 1  # orientation -> pos_y
    data = causal_dsprites(
        n_per_regime=200, n_observational=300, graph=graph, seed=1, path=DSPRITES
    )
    assert np.array_equal(data.dag.to_numpy(), graph.astype(bool))
    assert data.weights.loc["orientation", "pos_y"] == 1.0 and data.weights.to_numpy().sum() == 1
    assert (data.regimes == 0).sum() == 300
    # do(orientation) moves pos_y only; do(scale) moves nothing else now
    drift = _mean_class(data, "do(orientation)", "pos_y") - _mean_class(
        data, "observational", "pos_y"
    )
    assert drift > 1.5
    assert (
        abs(_mean_class(data, "do(scale)", "pos_x") - _mean_class(data, "observational", "pos_x"))
        < 1.5
    )
    cyclic = graph.copy()
    cyclic[3, 1] = 1
    with pytest.raises(ValueError, match="must be a DAG"):
        causal_dsprites(n_per_regime=5, graph=cyclic, path=DSPRITES)
    with pytest.raises(ValueError, match="zero diagonal"):
        causal_dsprites(n_per_regime=5, graph=np.eye(4), path=DSPRITES)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        causal_dsprites(n_per_regime=5, graph=np.zeros((5, 5)), path=DSPRITES)
    with pytest.raises(ValueError, match="weights"):
        causal_dsprites(n_per_regime=5, weights=np.ones((3, 3)), path=DSPRITES)
    with pytest.raises(ValueError, match="n_per_regime"):
        causal_dsprites(n_per_regime=0, path=DSPRITES)
    with pytest.raises(ValueError, match="n_observational"):
        causal_dsprites(n_per_regime=5, n_observational=-1, path=DSPRITES)
