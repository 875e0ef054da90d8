"""SparseShiftVI(latent_graph="dag"): a latent SCM prior inside the scvi-tools model."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch

from scvi_causal.model import SparseShiftVI

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False, "batch_size": 128}
K = 3


def _dag_screen(seed: int = 0, n: int = 120, n_genes: int = 40) -> ad.AnnData:
    """Counts decoded from a 3-unit chain z0 -> z1 -> z2 (weights 1.5); one perturbation per
    unit shifts its noise by 3 sd."""
    rng = np.random.default_rng(seed)
    weights = np.array([[0, 1.5, 0], [0, 0, 1.5], [0, 0, 0]])
    labels = ["control"] * (2 * n) + [f"p{k}" for k in range(K) for _ in range(n)]
    shift = np.zeros((len(labels), K))
    for i, label in enumerate(labels):
        if label != "control":
            shift[i, int(label[1])] = 3.0
    noise = shift + rng.normal(size=shift.shape)
    z = noise @ np.linalg.inv(np.eye(K) - weights)
    loadings = rng.normal(scale=0.6, size=(K, n_genes))
    rate = np.exp(1.0 + z @ loadings / 3.0)
    counts = rng.poisson(rng.gamma(5.0, rate / 5.0)).astype(np.float32)
    adata = ad.AnnData(counts, obs=pd.DataFrame({"perturbation": pd.Categorical(labels)}))
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    return adata


@pytest.fixture(scope="module")
def model():
    adata = _dag_screen()
    SparseShiftVI.setup_anndata(adata, control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=K, n_hidden=32, latent_graph="dag")
    # a short graph-alignment fit: what is tested here is the model's plumbing
    fit = {"n_steps": 500, "n_restarts": 1}
    model.train(max_epochs=60, plan_kwargs={"graph_fit_kwargs": fit}, **TRAIN)
    return model


def test_trains_and_reports_a_graph(model):
    graph = model.get_latent_graph()
    assert list(graph.index) == list(graph.columns) == ["z0", "z1", "z2"]
    assert np.allclose(np.diag(graph.to_numpy()), 0.0)
    hist = model.history
    assert "dag_acyclicity_train" in hist and "edge_density_train" in hist
    # acyclicity is charged: the expected graph ends (nearly) acyclic
    assert float(hist["dag_acyclicity_train"].iloc[-1, 0]) < 0.05
    dag = model.get_latent_graph(dag=True).to_numpy().astype(bool)
    reach = dag.copy()
    for _ in range(K):
        reach |= (reach.astype(int) @ dag.astype(int)) > 0
    assert not np.diag(reach).any()  # no directed cycle
    # independent units (and the alignment steps) until graph_start, then the graph is on
    assert bool(model.module.prior.graph_active)
    rotated = hist["alignment_l1_ratio_train"].dropna().index
    assert len(rotated) > 0 and max(rotated) < round(0.75 * 60)
    assert model.get_target_graph().shape == (K, K)
    assert np.isfinite(model.get_marginal_ll(n_mc_samples=5))


def test_predict_propagates_through_the_graph(model):
    prior = model.module.prior
    direct = (prior.inclusion_probs() * prior.shifts).detach()
    # the perturbation with the largest direct shift, on unit u; an edge u -> v into the unit
    # v it hits least
    p, u = np.unravel_index(int(direct.abs().argmax()), tuple(direct.shape))
    probs = prior.inclusion_probs().detach()[p].clone()
    probs[u] = np.inf
    v = int(probs.argmin())
    with torch.no_grad():
        logits = prior.edges.logits.clone()
        weights = prior.edge_weights.clone()
        prior.edges.logits.fill_(-10.0)
        prior.edges.logits[u, v] = 10.0
        prior.edge_weights[u, v] = 2.0
    try:
        effects = model._model_shift_matrix()
        expected = direct.clone()
        # z_v = 2 z_u + e_v, the edge cut where a perturbation itself hits v (hard intervention)
        keep = 1.0 - prior.inclusion_probs().detach()[:, v]
        expected[:, v] += 2.0 * direct[:, u] * keep
        torch.testing.assert_close(effects, expected)
        name = model.get_target_graph().index[p]
        torch.manual_seed(0)
        with_edge = model.predict(perturbations=[name], shift="model", return_mean=True).X
        with torch.no_grad():
            prior.edge_weights[u, v] = 0.0
        torch.manual_seed(0)
        without = model.predict(perturbations=[name], shift="model", return_mean=True).X
        assert not np.allclose(with_edge, without)
    finally:
        with torch.no_grad():
            prior.edges.logits.copy_(logits)
            prior.edge_weights.copy_(weights)


def test_save_load_and_query_keep_the_graph(model, tmp_path):
    model.save(tmp_path / "dag", overwrite=True)
    loaded = SparseShiftVI.load(tmp_path / "dag", adata=model.adata.copy())
    pd.testing.assert_frame_equal(loaded.get_latent_graph(), model.get_latent_graph())
    query_adata = _dag_screen(seed=1, n=40)
    query_adata.obs["perturbation"] = (
        query_adata.obs["perturbation"].astype(str).replace({"p2": "p_new"}).astype("category")
    )
    query = SparseShiftVI.load_query_data(query_adata, model)
    assert query.new_perturbations_ == ["p_new"]
    prior = query.module.prior
    assert not prior.edges.logits.requires_grad and not prior.edge_weights.requires_grad
    pd.testing.assert_frame_equal(query.get_latent_graph(), model.get_latent_graph())


def test_latent_graph_errors():
    adata = _dag_screen(n=10)
    SparseShiftVI.setup_anndata(adata, control_category="control")
    with pytest.raises(ValueError, match="'none' or 'dag'"):
        SparseShiftVI(adata, latent_graph="cyclic")
    with pytest.raises(ValueError, match="needs the perturbations"):
        SparseShiftVI(adata, latent_graph="dag", intervention_prior="none")
    with pytest.raises(ValueError, match="no latent graph"):
        SparseShiftVI(adata, n_latent=K).get_latent_graph()
    model = SparseShiftVI(adata, n_latent=K, latent_graph="dag")
    with pytest.raises(ValueError, match="Unknown `graph_fit_kwargs`.*n_step"):
        model.train(max_epochs=1, plan_kwargs={"graph_fit_kwargs": {"n_step": 5}}, **TRAIN)


def test_moments_alignment_keeps_its_graph_without_learn_graph():
    """``graph_fit_kwargs={"method": "moments"}`` with ``learn_graph=False``: the edge
    probabilities are the bootstrap frequencies of the alignment step (multiples of 1/3 for 3
    resamples, clipped to [0.02, 0.98]) at the end of training, because the ELBO no longer moves
    them; the masks and shifts still train."""
    adata = _dag_screen(seed=2, n=80)
    SparseShiftVI.setup_anndata(adata, control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=K, n_hidden=32, latent_graph="dag")
    fit = {"method": "moments", "n_steps": 50, "n_bootstrap": 3}
    model.train(max_epochs=8, plan_kwargs={"graph_fit_kwargs": fit, "learn_graph": False}, **TRAIN)
    prior = model.module.prior
    assert bool(prior.graph_active)
    assert not prior.edges.logits.requires_grad and not prior.edge_weights.requires_grad
    assert prior.shifts.requires_grad
    probs = model.get_latent_graph().to_numpy()[~np.eye(K, dtype=bool)]
    allowed = np.array([0.02, 1 / 3, 2 / 3, 0.98])
    assert np.abs(probs[:, None] - allowed[None]).min(1).max() < 1e-5
