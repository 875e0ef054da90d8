"""scvi-tools' user API on SparseShiftVI: normalised expression, DE, posterior predictive checks."""

import anndata
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from scvi.model.base import RNASeqMixin

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}
SIM_KWARGS = {
    "n_perturbations": 3,
    "n_cells_per_perturbation": 200,
    "n_control_cells": 400,
    "n_genes": 100,
    "n_latent": 5,
    "seed": 1,
}
PERTURBATIONS = ["p00", "p01", "p02"]
TOP = 20  # top genes compared with the truth; chance overlap TOP * TOP / n_genes = 4


@pytest.fixture(scope="module")
def screen():
    adata = simulate_sparse_shift(**SIM_KWARGS)
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    return adata


@pytest.fixture(scope="module")
def model(screen):
    scvi.settings.seed = 0
    model = SparseShiftVI(screen, n_latent=5, n_hidden=16)
    model.train(max_epochs=60, batch_size=128, **TRAIN_KWARGS)
    return model


@pytest.fixture(scope="module")
def true_lfc(screen):
    """Per perturbation, the log fold change of mean expression proportions against controls
    in the same screen simulated with 500 times the library size: the same latents, decoder and
    cells (the library sizes and counts are drawn last), nearly without sampling noise."""
    deep = simulate_sparse_shift(**SIM_KWARGS, library_size_mean=1e6)
    for k in range(SIM_KWARGS["n_latent"]):  # the same cells, shuffled differently
        np.testing.assert_allclose(
            np.sort(deep.obsm["z_true"][:, k]), np.sort(screen.obsm["z_true"][:, k])
        )
    x = np.asarray(deep.X.todense())
    x = x / x.sum(1, keepdims=True)
    labels = deep.obs["perturbation"].to_numpy()
    control = np.log(x[labels == "control"].mean(0))
    return pd.DataFrame(
        {p: np.log(x[labels == p].mean(0)) - control for p in PERTURBATIONS},
        index=deep.var_names,
    )


def _cells(adata, label):
    return np.flatnonzero((adata.obs["perturbation"] == label).to_numpy())


def _overlap_with_truth(de: pd.DataFrame, truth: pd.Series) -> int:
    top_model = de["lfc_mean"].abs().sort_values(ascending=False).index[:TOP]
    top_true = truth.abs().sort_values(ascending=False).index[:TOP]
    return len(set(top_model) & set(top_true))


# ------------------------------------------------------------------ normalised expression
def test_normalized_expression_without_perturbation_is_scvis(model, screen):
    idx = np.arange(0, screen.n_obs, 7)
    torch.manual_seed(3)
    ours = model.get_normalized_expression(indices=idx, library_size=1e4)
    torch.manual_seed(3)
    scvis = RNASeqMixin.get_normalized_expression(model, indices=idx, library_size=1e4)
    assert isinstance(ours, pd.DataFrame)
    assert list(ours.columns) == list(screen.var_names)
    assert list(ours.index) == list(screen.obs_names[idx])
    np.testing.assert_array_equal(ours.to_numpy(), scvis.to_numpy())
    np.testing.assert_allclose(ours.sum(1), 1e4, rtol=1e-4)
    samples = model.get_normalized_expression(indices=idx, n_samples=3, return_mean=False)
    assert samples.shape == (3, len(idx), screen.n_vars)


def test_transform_batch_reaches_the_decoder():
    adata = simulate_sparse_shift(
        n_perturbations=2,
        n_cells_per_perturbation=30,
        n_control_cells=60,
        n_genes=40,
        n_latent=3,
        seed=0,
    )
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b")
    SparseShiftVI.setup_anndata(adata, control_category="control", batch_key="batch")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=2, batch_size=64, **TRAIN_KWARGS)
    n_a, n_b = (
        model.get_normalized_expression(transform_batch=b, n_samples=20, return_numpy=True)
        for b in ("a", "b")
    )
    assert not np.allclose(n_a, n_b, atol=1e-5)
    np.testing.assert_allclose(n_a.sum(1), 1.0, rtol=1e-4)


def test_normalized_expression_under_a_perturbation_is_predict(model, screen):
    ctrl = _cells(screen, "control")
    expr = model.get_normalized_expression(indices=ctrl, perturbation="p00", library_size=1e4)
    pred = model.predict(perturbations=["p00"])
    assert list(expr.index) == list(screen.obs_names[ctrl])
    assert list(expr.index) == list(pred.obs["source_cell"])
    np.testing.assert_allclose(expr.to_numpy(), pred.X * 1e4, rtol=1e-5)
    # the perturbation moves expression; the reconstruction does not
    recon = model.get_normalized_expression(indices=ctrl, perturbation="control")
    assert np.abs(np.log(expr.to_numpy() / 1e4) - np.log(recon.to_numpy())).mean() > 0.1

    # perturbed cells under another label: predict from that source category
    p01 = _cells(screen, "p01")
    moved = model.get_normalized_expression(indices=p01, perturbation="p00+p02", return_numpy=True)
    pred = model.predict(perturbations=["p00+p02"], source_category="p01")
    np.testing.assert_allclose(moved, pred.X, rtol=1e-5)


def test_normalized_expression_under_a_perturbation_follows_scvi_conventions(model, screen):
    ctrl = _cells(screen, "control")[:25]
    genes = list(screen.var_names[[3, 10, 42]])
    sub = model.get_normalized_expression(indices=ctrl, perturbation="p01", gene_list=genes)
    assert list(sub.columns) == genes
    full = model.get_normalized_expression(indices=ctrl, perturbation="p01")
    np.testing.assert_allclose(sub.to_numpy(), full[genes].to_numpy(), rtol=1e-6)
    mask = np.zeros(screen.n_obs, dtype=bool)
    mask[ctrl] = True
    np.testing.assert_allclose(
        model.get_normalized_expression(indices=mask, perturbation="p01", return_numpy=True),
        full.to_numpy(),
        rtol=1e-6,
    )

    samples = model.get_normalized_expression(
        indices=ctrl, perturbation="p01", n_samples=4, return_mean=False
    )
    assert isinstance(samples, np.ndarray) and samples.shape == (4, len(ctrl), screen.n_vars)
    assert samples.std(0).mean() > 0  # posterior samples, not copies of the mean
    np.testing.assert_allclose(samples.sum(-1), 1.0, rtol=1e-4)

    latent = model.get_normalized_expression(
        indices=ctrl, perturbation="p01", library_size="latent"
    )
    np.testing.assert_allclose(latent.sum(1), screen.obs["n_counts"].to_numpy()[ctrl], rtol=1e-4)
    overall = model.get_normalized_expression(
        indices=ctrl, perturbation="p01", n_samples_overall=60
    )
    assert overall.shape == (60, screen.n_vars)


def test_control_label_agrees_with_scvis_reconstruction(model, screen):
    ctrl = _cells(screen, "control")
    torch.manual_seed(0)
    scvis = model.get_normalized_expression(indices=ctrl, n_samples=100).mean(0)
    ours = model.get_normalized_expression(
        indices=ctrl, perturbation="control", n_samples=100
    ).mean(0)
    # measured: largest relative difference of a gene's mean 0.3% (Monte Carlo error)
    assert np.max(np.abs(ours - scvis) / scvis) < 0.03


def test_normalized_expression_rejects_what_predict_cannot_do(model, screen):
    with pytest.raises(ValueError, match="transform_batch"):
        model.get_normalized_expression(perturbation="p00", transform_batch=0)
    with pytest.raises(ValueError, match="importance"):
        model.get_normalized_expression(perturbation="p00", weights="importance")
    with pytest.raises(ValueError, match="predict_kwargs cannot set"):
        model.get_normalized_expression(perturbation="p00", predict_kwargs={"n_samples": 2})
    with pytest.raises(TypeError, match="one label"):
        model.get_normalized_expression(perturbation=["p00"])
    with pytest.raises(ValueError, match="never seen"):
        model.get_normalized_expression(perturbation="p99")
    # predict's own arguments go through
    ctrl = _cells(screen, "control")[:10]
    by_model = model.get_normalized_expression(
        indices=ctrl, perturbation="p00", predict_kwargs={"shift": "model"}
    )
    by_latent = model.get_normalized_expression(
        indices=ctrl, perturbation="p00", predict_kwargs={"shift": "latent"}
    )
    assert not np.allclose(by_model.to_numpy(), by_latent.to_numpy())


# ------------------------------------------------------------------ differential expression
def test_inherited_differential_expression_finds_the_true_genes(model, screen, true_lfc):
    for p in PERTURBATIONS:
        de = model.differential_expression(
            groupby="perturbation", group1=p, group2="control", mode="change", silent=True
        )
        assert de["comparison"].iloc[0] == f"{p} vs control"
        # measured: 18-19 of the top 20 (chance: 4); LFC correlation with the truth > 0.97
        assert _overlap_with_truth(de, true_lfc[p]) >= 12
        assert np.corrcoef(de.loc[screen.var_names, "lfc_mean"], true_lfc[p])[0, 1] > 0.9
        assert de["is_de_fdr_0.05"].sum() >= 20  # measured 51-90


def test_control_against_control_finds_few_genes(model, screen):
    ctrl = _cells(screen, "control")
    ctrl = np.random.default_rng(0).permutation(ctrl)
    half1, half2 = (np.isin(np.arange(screen.n_obs), h) for h in np.array_split(ctrl, 2))
    de = model.differential_expression(idx1=half1, idx2=half2, mode="change", silent=True)
    assert de["is_de_fdr_0.05"].sum() <= 2  # measured 0 (largest proba_de 0.46)


def test_differential_expression_perturbation(model, screen, true_lfc):
    observed = model.differential_expression_perturbation()
    assert sorted(observed["comparison"].unique()) == [f"{p} vs control" for p in PERTURBATIONS]
    assert observed.groupby("group1").size().to_dict() == dict.fromkeys(PERTURBATIONS, 100)
    assert {"raw_mean1", "raw_mean2", "lfc_mean", "proba_de", "is_de_fdr_0.05"} <= set(
        observed.columns
    )
    # the same numbers as scvi's call with the same groups
    scvi.settings.seed = 0
    mine = model.differential_expression_perturbation("p01")
    scvi.settings.seed = 0
    scvis = model.differential_expression(
        groupby="perturbation", group1="p01", group2="control", mode="change", silent=True
    )
    pd.testing.assert_series_equal(mine["lfc_mean"], scvis["lfc_mean"])

    for p in PERTURBATIONS:
        cf = model.differential_expression_perturbation(p, counterfactual=True)
        assert cf["comparison"].iloc[0] == f"{p} (counterfactual) vs control"
        assert "raw_mean1" not in cf.columns
        # measured: 18-19 of the top 20 (chance: 4)
        assert _overlap_with_truth(cf, true_lfc[p]) >= 12
        assert cf["is_de_fdr_0.05"].sum() >= 20  # measured 51-93
    # a combination never observed, and the control label itself: no effect
    pair = model.differential_expression_perturbation("p00+p02", counterfactual=True)
    assert pair["is_de_fdr_0.05"].sum() >= 20  # measured 87
    null = model.differential_expression_perturbation("control", counterfactual=True)
    assert null["is_de_fdr_0.05"].sum() <= 2  # measured 0


def test_differential_expression_perturbation_errors(model, screen):
    with pytest.raises(ValueError, match="counterfactual=True"):
        model.differential_expression_perturbation("p00+p01")
    with pytest.raises(ValueError, match="No control cells"):
        model.differential_expression_perturbation("p00", control="p01+p02")


def test_importance_weights_use_the_perturbation_prior(model, screen):
    ctrl, p00 = _cells(screen, "control"), _cells(screen, "p00")
    with pytest.raises(NotImplementedError, match="share one prior"):
        model.get_normalized_expression(
            indices=np.r_[ctrl[:20], p00[:20]],
            weights="importance",
            n_samples_overall=50,
            return_numpy=True,
        )

    def posterior(idx):
        tensors = next(
            iter(model._make_data_loader(adata=screen, indices=idx, batch_size=len(idx)))
        )
        with torch.inference_mode():
            inf, gen = model.module.forward(
                tensors, inference_kwargs={"n_samples": 5}, compute_loss=False
            )
        return inf["qz"], gen["px"], inf["z"]

    def weights(fn, idx, qz, px, zs):
        scvi.settings.seed = 0  # torch, and numpy's global state (scvi's anchor cells)
        return fn(model, screen, idx, qz=qz, px=px, zs=zs, n_mc_samples=50)

    # control cells: the prior is N(0, I), scvi's weights exactly
    qz, px, zs = posterior(ctrl[:100])
    np.testing.assert_allclose(
        weights(SparseShiftVI.get_importance_weights, ctrl[:100], qz, px, zs),
        weights(RNASeqMixin.get_importance_weights, ctrl[:100], qz, px, zs),
        rtol=1e-5,
    )
    # perturbed cells: N(0, I) pulls the weighted posterior towards the origin, the shifted
    # prior keeps it where the cells are (measured along the learned shift: 1.40 times the
    # unweighted mean, 0.33 times with scvi's weights)
    qz, px, zs = posterior(p00)
    shift = model.get_perturbation_shifts().loc["p00"].to_numpy()
    direction = shift / np.linalg.norm(shift)
    z = zs.reshape(-1, zs.shape[-1]).numpy() @ direction
    w = weights(SparseShiftVI.get_importance_weights, p00, qz, px, zs)
    assert np.isclose(w.sum(), 1.0) and np.all(w >= 0)
    assert (w * z).sum() / z.mean() > 0.5
    de = model.differential_expression(
        groupby="perturbation",
        group1="p00",
        group2="control",
        weights="importance",
        mode="change",
        silent=True,
        importance_weighting_kwargs={"n_mc_samples": 50},
    )
    assert np.isfinite(de["lfc_mean"]).all()


# ------------------------------------------------------------ posterior predictive checks
def test_posterior_predictive_sample(model, screen):
    samples = model.posterior_predictive_sample(n_samples=4)
    assert samples.shape == (screen.n_obs, screen.n_vars, 4)
    dense = samples.todense()
    assert np.all(dense >= 0) and np.all(dense == np.round(dense))
    # observed library sizes: every sample has about the cell's total count
    totals = dense.sum(1).mean(-1)
    observed = screen.obs["n_counts"].to_numpy()
    assert np.median(np.abs(totals - observed) / observed) < 0.1


def test_posterior_predictive_check(model, screen):
    from scvi.criticism import PosteriorPredictiveCheck

    untrained = SparseShiftVI(screen, n_latent=5, n_hidden=16)
    # scvi 1.4's PPC cannot test float *sparse* counts for integrality (scipy's == on sparse
    # matrices): give it the counts as integers
    counts = anndata.AnnData(X=screen.X.astype(np.int64), obs=screen.obs[[]], var=screen.var[[]])
    ppc = PosteriorPredictiveCheck(counts, {"trained": model, "untrained": untrained}, n_samples=3)
    ppc.coefficient_of_variation("cells")
    ppc.coefficient_of_variation("features")
    ppc.zero_fraction()
    assert set(ppc.metrics) == {"cv_gene", "cv_cell", "zero_fraction"}
    for name, table in ppc.metrics.items():
        assert np.isfinite(table["trained"]).all(), name
        error = {m: np.mean(np.abs(table[m] - table["Raw"])) for m in ("trained", "untrained")}
        # measured mean absolute errors, trained / untrained: cv_gene 0.25 / 0.51,
        # cv_cell 0.63 / 1.68, zero_fraction 0.034 / 0.21
        assert error["trained"] < 0.75 * error["untrained"], (name, error)
