"""SparseShiftVI.predict: counterfactual expression by abduction, action and prediction."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.metrics._counterfactual import log_fold_change, logfc_agreement, normalize_counts
from scvi_causal.model import SparseShiftVI
from scvi_causal.model._counterfactual import CARRY_PSEUDOCOUNT

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture(scope="module")
def screen():
    adata = simulate_sparse_shift(
        n_perturbations=4,
        n_cells_per_perturbation=60,
        n_control_cells=120,
        n_genes=60,
        n_latent=5,
        n_pairs=1,
        seed=3,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    return adata


@pytest.fixture(scope="module")
def model(screen):
    scvi.settings.seed = 0
    model = SparseShiftVI(screen, n_latent=5, n_hidden=32)
    model.train(max_epochs=150, batch_size=128, **TRAIN_KWARGS)
    return model


def _n_controls(adata):
    return int((adata.obs["perturbation"] == "control").sum())


def test_predict_blocks_and_metadata(model, screen):
    pred = model.predict(perturbations=["p00", "p00+p02", "control"])
    n = _n_controls(screen)
    assert pred.shape == (3 * n, screen.n_vars)
    assert list(pred.var_names) == list(screen.var_names)
    counts = pred.obs["perturbation"].value_counts()
    assert counts.to_dict() == {"p00": n, "p00+p02": n, "control": n}
    assert (pred.obs["source_perturbation"] == "control").all()
    assert pred.obs_names.is_unique
    np.testing.assert_allclose(pred.X.sum(1), 1.0, rtol=1e-4)
    # deterministic at n_samples=1 (posterior means), different between perturbations
    again = model.predict(perturbations=["p00"])
    np.testing.assert_allclose(again.X, pred.X[:n], rtol=1e-5)
    assert not np.allclose(pred.X[:n], pred.X[2 * n :], atol=1e-4)
    assert not np.allclose(pred.X[:n], pred.X[n : 2 * n], atol=1e-4)


def test_zero_shift_predicts_the_source_reconstruction(model):
    """A perturbation without latent shift nor direct effect leaves the cells where they are."""
    prior, direct = model.module.prior, model.module.direct
    saved = prior.shifts.detach().clone(), direct.effects.detach().clone()
    try:
        prior.shifts.data[1] = 0.0  # p01
        direct.effects.data[1] = 0.0
        pred = model.predict(perturbations=["p01", "control"], shift="model", residual=False)
    finally:
        prior.shifts.data.copy_(saved[0])
        direct.effects.data.copy_(saved[1])
    n = pred.n_obs // 2
    np.testing.assert_allclose(pred.X[:n], pred.X[n:], rtol=1e-5, atol=1e-7)


def test_direct_effects_reweight_the_prediction(model):
    """Without a latent shift, a perturbation's prediction is control reweighted gene by gene by
    exp(direct effect), renormalised; a combination adds its members' direct effects."""
    prior, direct = model.module.prior, model.module.direct
    assert bool(direct.active)  # switched on during training
    assert model.get_direct_effects().shape == (4, model.adata.n_vars)
    saved = prior.shifts.detach().clone(), direct.effects.detach().clone()
    effect = np.zeros(model.adata.n_vars, dtype=np.float32)
    effect[[3, 7]] = [-2.0, 1.0]
    try:
        prior.shifts.data[[1, 2]] = 0.0
        direct.effects.data[1] = torch.as_tensor(effect)
        direct.effects.data[2] = torch.as_tensor(effect)
        pred = model.predict(
            perturbations=["p01", "p01+p02", "control"], shift="model", residual=False
        )
    finally:
        prior.shifts.data.copy_(saved[0])
        direct.effects.data.copy_(saved[1])
    n = pred.n_obs // 3
    single, pair, control = pred.X[:n], pred.X[n : 2 * n], pred.X[2 * n :]
    for x, k in ((single, 1.0), (pair, 2.0)):
        expected = control * np.exp(k * effect)
        expected /= expected.sum(1, keepdims=True)
        np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-7)
    assert (single[:, 3] < control[:, 3]).all() and (pair[:, 3] < single[:, 3]).all()


def test_abduction_removes_the_source_shift(model, screen):
    """From p00 cells, predicting p00 decodes their posterior mean with p00's direct effects,
    and predicting control decodes the posterior mean minus p00's expected masked shift."""
    pred = model.predict(
        perturbations=["p00", "control"], source_category="p00", shift="model", residual=False
    )
    idx = np.flatnonzero(screen.obs["perturbation"].to_numpy() == "p00")
    prior = model.module.prior
    shift = (prior.inclusion_probs() * prior.shifts).detach()[0]
    assert shift.abs().sum() > 0  # a real shift to remove
    module = model.module
    module.eval()
    tensors = next(iter(model._make_data_loader(adata=screen, indices=idx, batch_size=len(idx))))
    own = torch.zeros(len(idx), len(model.perturbation_names_))
    own[:, 0] = 1.0
    with torch.no_grad():
        inf = module.inference(**module._get_inference_input(tensors))
        decoded = []
        for z, rows in ((inf["qz"].loc, own), (inf["qz"].loc - shift, None)):
            gen = module._get_generative_input(tensors, {"z": z, "library": inf["library"]})
            gen["intervention"], gen["direct_intervention"] = None, rows
            decoded.append(module.generative(**gen)["px"].scale.numpy())
    n = len(idx)
    np.testing.assert_allclose(pred.X[:n], decoded[0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(pred.X[n:], decoded[1], rtol=1e-4, atol=1e-7)
    assert not np.allclose(decoded[0], decoded[1], atol=1e-4)


def test_predicted_lfc_tracks_observed_lfc(model, screen):
    """Seen perturbations: predicted LFC (vs predicted control) correlates with the observed one."""
    counts = screen.X.toarray() if hasattr(screen.X, "toarray") else screen.X
    expr = normalize_counts(counts)
    labels = screen.obs["perturbation"].astype(str).to_numpy()
    perts = ["p00", "p01", "p02", "p03"]
    pred = model.predict(perturbations=perts + ["control"])
    pred_labels = pred.obs["perturbation"].astype(str).to_numpy()
    ctrl_pred = pred.X[pred_labels == "control"]
    scores = []
    for p in perts:
        observed = log_fold_change(expr[labels == p], expr[labels == "control"])
        predicted = log_fold_change(pred.X[pred_labels == p], ctrl_pred)
        scores.append(logfc_agreement(predicted, observed)["pearson_all"])
    assert np.mean(scores) > 0.5, scores


def test_predict_counts_with_samples(model, screen):
    pred = model.predict(perturbations="p01", n_samples=2, return_counts=True)
    assert pred.n_obs == 2 * _n_controls(screen)
    assert np.allclose(pred.X, np.round(pred.X)) and (pred.X >= 0).all()
    assert pred.obs_names.is_unique
    assert pred.uns["predict"]["values"] == "counts"


def test_predict_errors(model):
    with pytest.raises(ValueError, match="never seen"):
        model.predict(perturbations=["nope"])
    with pytest.raises(ValueError, match="never seen"):
        model.predict(perturbations=["p00+nope"])
    with pytest.raises(ValueError, match="No cells with source_category"):
        model.predict(perturbations=["p00"], source_category="absent")
    with pytest.raises(ValueError, match="n_samples"):
        model.predict(perturbations=["p00"], n_samples=0)
    with pytest.raises(ValueError, match="empty"):
        model.predict(perturbations=[])


def test_predict_plain_vae_uses_latent_arithmetic(screen):
    scvi.settings.seed = 0
    vae = SparseShiftVI(screen, n_latent=5, n_hidden=32, intervention_prior="none")
    vae.train(max_epochs=2, **TRAIN_KWARGS)
    pred = vae.predict(perturbations=["p00", "control"])
    n = pred.n_obs // 2
    assert not np.allclose(pred.X[:n], pred.X[n:], atol=1e-5)


def test_predict_without_controls_needs_a_source():
    adata = simulate_sparse_shift(
        n_perturbations=3,
        n_cells_per_perturbation=20,
        n_control_cells=0,
        n_genes=30,
        n_latent=3,
        seed=0,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category=None)
    model = SparseShiftVI(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=1, **TRAIN_KWARGS)
    with pytest.raises(ValueError, match="no control category"):
        model.predict(perturbations=["p00"])
    pred = model.predict(perturbations=["p01"], source_category="p00")
    assert pred.n_obs == 20


def test_predict_latent_shift_is_latent_arithmetic(model, screen):
    """``shift="latent"`` moves control cells by the perturbation's mean latent difference
    (and adds the members' direct effects)."""
    latent = model.get_perturbation_shifts(source="latent")
    learned = model.get_perturbation_shifts()
    # the two shifts differ (the sparse prior pulls some units to zero), so do the predictions
    assert not np.allclose(latent.to_numpy(), learned.to_numpy(), atol=1e-3)
    pred = model.predict(perturbations=["p00+p01", "control"], shift="latent", residual=False)
    assert pred.uns["predict"]["shift"] == "latent"
    idx = np.flatnonzero(screen.obs["perturbation"].to_numpy() == "control")
    shift = torch.tensor((latent.loc["p00"] + latent.loc["p01"]).to_numpy(), dtype=torch.float32)
    module = model.module
    module.eval()
    tensors = next(iter(model._make_data_loader(adata=screen, indices=idx, batch_size=len(idx))))
    with torch.no_grad():
        inf = module.inference(**module._get_inference_input(tensors))
        gen = module._get_generative_input(
            tensors, {"z": inf["qz"].loc + shift, "library": inf["library"]}
        )
        rows = torch.zeros(len(idx), len(model.perturbation_names_))
        rows[:, [0, 1]] = 1.0
        gen["direct_intervention"] = rows
        expected = module.generative(**gen)["px"].scale.numpy()
    np.testing.assert_allclose(pred.X[: len(idx)], expected, rtol=1e-4, atol=1e-7)
    model_pred = model.predict(perturbations=["p00+p01"], shift="model", residual=False)
    assert not np.allclose(model_pred.X, pred.X[: len(idx)], atol=1e-5)
    with pytest.raises(ValueError, match="shift"):
        model.predict(perturbations=["p00"], shift="posterior")


def test_predict_latent_shift_needs_single_cells(screen):
    """A perturbation seen only in a combination has no latent shift of its own: clear error."""
    adata = screen[screen.obs["perturbation"] != "p03"].copy()
    adata.obs["perturbation"] = adata.obs["perturbation"].cat.remove_unused_categories()
    pair = "p00+p03"  # the simulated pair; p03 keeps only its cells in the pair
    assert pair in set(adata.obs["perturbation"])
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    m = SparseShiftVI(adata, n_latent=5, n_hidden=32)
    m.train(max_epochs=1, **TRAIN_KWARGS)
    m.predict(perturbations=["p00", "p01"], shift="latent")  # members with cells work
    with pytest.raises(ValueError, match="seen only in combinations"):
        m.predict(perturbations=[pair], shift="latent")
    m.predict(perturbations=[pair])  # the learned shift needs no cells of its own
    # "auto": latent arithmetic where a member has cells of its own, the learned shift else
    auto = m._atomic_shift_matrix("auto").numpy()
    latent = m.get_perturbation_shifts(source="latent")
    model_shift = m._model_shift_matrix().numpy()
    names = m.perturbation_names_
    np.testing.assert_allclose(auto[names.index("p00")], latent.loc["p00"], rtol=1e-5)
    np.testing.assert_allclose(auto[names.index("p03")], model_shift[names.index("p03")])
    assert m.predict(perturbations=[pair], shift="auto").uns["predict"]["shift"] == "auto"


def test_predict_context_carries_effects_to_unobserved_batches():
    """A perturbation observed only in batch b0: b1 cells get b0's effect, not an extrapolation."""
    adata = simulate_sparse_shift(
        n_perturbations=2,
        n_cells_per_perturbation=60,
        n_control_cells=120,
        n_genes=40,
        n_latent=4,
        seed=5,
    )
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    batch = np.where(np.arange(adata.n_obs) % 2 == 0, "b0", "b1")
    batch[labels == "p00"] = "b0"  # p00 never seen in b1; p01 seen in both
    adata.obs["batch"] = pd.Categorical(batch)
    SparseShiftVI.setup_anndata(adata, control_category="control", batch_key="batch")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=4, n_hidden=32)
    model.train(max_epochs=20, batch_size=128, fit_residual=True, **TRAIN_KWARGS)
    observed = model._observed_batches()
    assert observed.tolist() == [[True, False], [True, True]]

    b1 = adata[(labels == "control") & (batch == "b1")].copy()
    b0 = adata[(labels == "control") & (batch == "b0")].copy()
    own = model.predict(b1, perturbations=["p00", "p01", "control"], context="own")
    auto = model.predict(b1, perturbations=["p00", "p01", "control"])
    n = b1.n_obs
    # p01 was observed in b1: its own batch is used either way; control is unchanged
    np.testing.assert_allclose(auto.X[n:], own.X[n:], rtol=1e-5, atol=1e-7)
    # p00 in b1 is carried over from b0: a different prediction, still proportions
    assert not np.allclose(auto.X[:n], own.X[:n], atol=1e-6)
    np.testing.assert_allclose(auto.X[:n].sum(1), 1.0, rtol=1e-4)
    # the carried-over effect: the log ratio of the b1 cells' mean expression decoded in b0
    # with and without p00, put on each cell's b1 reconstruction
    moved = b1.copy()
    moved.obs["batch"] = pd.Categorical(["b0"] * n, categories=["b0", "b1"])
    in_b0 = model.predict(moved, perturbations=["p00", "control"], context="own", residual=False)
    eps = CARRY_PSEUDOCOUNT  # one count per 10,000: a barely expressed gene carries no ratio
    ratio = np.log(in_b0.X[:n].mean(0) + eps) - np.log(in_b0.X[n:].mean(0) + eps)
    expect = own.X[2 * n :] * np.exp(ratio)
    expect /= expect.sum(1, keepdims=True)
    np.testing.assert_allclose(auto.X[:n], expect, rtol=1e-3, atol=1e-7)
    # the residual effects (fitted where p00 was observed) are not carried over
    assert np.abs(model.get_residual_effects().loc["p00"]).max() > 0
    uncorrected = model.predict(b1, perturbations=["p00"], residual=False)
    np.testing.assert_allclose(auto.X[:n], uncorrected.X, rtol=1e-5, atol=1e-7)
    # "observed" carries over even where the perturbation was seen (b0 cells, from b0): one
    # gene-wise factor per batch instead of each cell's own decoded effect, the same on average
    both = ["p00", "control"]
    carried = model.predict(b0, perturbations=both, context="observed")
    decoded = model.predict(b0, perturbations=both, context="own", residual=False)
    m = b0.n_obs
    assert not np.allclose(carried.X[:m], decoded.X[:m], atol=1e-6)
    lfc_carried = log_fold_change(carried.X[:m], carried.X[m:])
    lfc_decoded = log_fold_change(decoded.X[:m], decoded.X[m:])
    assert np.corrcoef(lfc_carried, lfc_decoded)[0, 1] > 0.95
    counts = model.predict(b1, perturbations=["p00"], return_counts=True, n_samples=2)
    assert counts.shape == (2 * n, adata.n_vars)
    assert (counts.X >= 0).all() and np.allclose(counts.X, np.round(counts.X))
    with pytest.raises(ValueError, match="context"):
        model.predict(b1, perturbations=["p00"], context="nope")
