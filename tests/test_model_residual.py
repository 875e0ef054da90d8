"""Residual effects: the shrunk part of the observed change that the model misses."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.metrics._counterfactual import log_fold_change, normalize_counts
from scvi_causal.model import SparseShiftVI
from scvi_causal.model._residual import adaptive_shrinkage

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}
KNOCKED = 7  # the gene p00 knocks down directly (its "own gene")


# ----------------------------------------------------------------- adaptive shrinkage
def test_adaptive_shrinkage_keeps_signal_and_shrinks_noise():
    rng = np.random.default_rng(1)
    beta = np.r_[np.zeros(1900), rng.choice([-4.0, 4.0], 100)]
    se = rng.uniform(0.5, 1.5, beta.size)
    est = beta + rng.normal(size=beta.size) * se
    mean, non_null, weights = adaptive_shrinkage(est, se)
    # better than the raw estimates and than shrinking everything to zero
    err = np.mean((mean - beta) ** 2)
    assert err < 0.5 * np.mean((est - beta) ** 2)
    assert err < 0.5 * np.mean(beta**2)
    assert np.abs(mean[:1900]).mean() < 0.15
    assert np.abs(mean[1900:]).mean() > 3.0
    assert non_null[1900:].mean() > 0.8 > 2 * non_null[:1900].mean()
    assert weights[0] > 0.5 and np.isclose(weights.sum(), 1.0)
    # the posterior mean never overshoots the estimate nor flips its sign
    assert (np.abs(mean) <= np.abs(est) + 1e-12).all() and (mean * est >= 0).all()


def test_adaptive_shrinkage_all_noise_gives_zero_and_errors():
    rng = np.random.default_rng(2)
    mean, _, weights = adaptive_shrinkage(rng.normal(size=(50, 40)), np.ones((50, 40)))
    assert mean.shape == (50, 40)
    assert np.abs(mean).max() < 0.15 and weights[0] > 0.5
    with pytest.raises(ValueError, match="shape"):
        adaptive_shrinkage(np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match="positive"):
        adaptive_shrinkage(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        adaptive_shrinkage(np.array([np.nan, 0.0]), np.ones(2))


# ------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def screen():
    """A screen in which p00 also knocks one gene down to 20 % (binomial thinning), an effect
    outside the latent model; p03 has too few cells for a residual."""
    adata = simulate_sparse_shift(
        n_perturbations=4,
        n_cells_per_perturbation=80,
        n_control_cells=160,
        n_genes=50,
        n_latent=4,
        seed=11,
    )
    rng = np.random.default_rng(0)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    keep = ~((labels == "p03") & (np.cumsum(labels == "p03") > 3))
    adata = adata[keep].copy()
    labels = labels[keep]
    X = np.asarray(adata.X.todense() if hasattr(adata.X, "todense") else adata.X)
    cells = labels == "p00"
    X[cells, KNOCKED] = rng.binomial(X[cells, KNOCKED].astype(np.int64), 0.2)
    adata.X = X.astype(np.float32)
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    return adata


@pytest.fixture(scope="module")
def model(screen):
    scvi.settings.seed = 0
    model = SparseShiftVI(screen, n_latent=4, n_hidden=32)
    model.train(max_epochs=60, batch_size=128, fit_residual=True, **TRAIN_KWARGS)
    return model


def _predicted_lfc(model, residual=True):
    pred = model.predict(perturbations=["p00", "p01", "p02", "control"], residual=residual)
    labels = pred.obs["perturbation"].astype(str).to_numpy()
    base = pred.X[labels == "control"]
    return {p: log_fold_change(pred.X[labels == p], base) for p in ["p00", "p01", "p02"]}


def test_train_fits_residuals_that_bring_predictions_to_the_data(model, screen):
    residual = model.get_residual_effects()
    assert residual.shape == (4, screen.n_vars)
    assert list(residual.index) == model.perturbation_names_
    # p03 has 3 cells (< RESIDUAL_MIN_CELLS): no residual
    assert (residual.loc["p03"] == 0).all()
    assert residual.loc["p00"].abs().max() > 0
    labels = screen.obs["perturbation"].astype(str).to_numpy()
    expr = normalize_counts(screen.X)
    control = expr[labels == "control"]
    with_res, without = _predicted_lfc(model), _predicted_lfc(model, residual=False)
    for p in ["p00", "p01", "p02"]:
        observed = log_fold_change(expr[labels == p], control)
        err_with = np.mean((with_res[p] - observed) ** 2)
        err_without = np.mean((without[p] - observed) ** 2)
        assert err_with <= err_without + 1e-6, p
    # the knocked-down gene: predicted as observed, among the genes p00 moves down the most
    observed = log_fold_change(expr[labels == "p00"], control)[KNOCKED]
    assert observed < -1.0
    assert abs(with_res["p00"][KNOCKED] - observed) < 0.3
    assert abs(with_res["p00"][KNOCKED] - observed) < abs(without["p00"][KNOCKED] - observed)
    assert KNOCKED in np.argsort(with_res["p00"])[:3]
    assert residual.loc["p00"].iloc[KNOCKED] < 0


def test_residual_off_and_refit(model, screen):
    before = model.get_residual_effects()
    saved = model.module.residual_effects.clone()
    try:
        model.module.residual_effects.zero_()
        zeroed = model.predict(perturbations=["p00"])
        off = model.predict(perturbations=["p00"], residual=False)
        np.testing.assert_allclose(zeroed.X, off.X, rtol=1e-6)
        assert off.uns["predict"]["residual"] is False
        # a refit of one perturbation reproduces it and leaves the others alone
        model.module.residual_effects.copy_(saved)
        model.module.residual_effects[0] = 5.0
        summary = model.fit_residual_effects(perturbations=["p01"])
        assert list(summary.index) == ["p01"]
        assert summary.loc["p01", "n_cells"] == 80
        after = model.get_residual_effects()
        pd.testing.assert_series_equal(after.loc["p01"], before.loc["p01"], atol=1e-5)
        assert (after.iloc[0] == 5.0).all()
        with pytest.raises(ValueError, match="Unknown perturbations"):
            model.fit_residual_effects(perturbations=["nope"])
    finally:
        model.module.residual_effects.copy_(saved)


def test_residual_in_report_and_evaluate(model, screen):
    report = model.target_report(max_cells=200)
    table = report["residual_genes"]
    residual = model.get_residual_effects()
    # the largest residual of each perturbation is listed, with its value
    for p in ["p00", "p01", "p02"]:
        gene = residual.loc[p].abs().idxmax()
        row = table[(table["perturbation"] == p) & (table["gene"] == gene)]
        assert len(row) == 1
        assert float(row["effect"].iloc[0]) == pytest.approx(float(residual.loc[p, gene]))
    assert "p03" not in set(table["perturbation"])
    # the knockdown is in the report: direct plus residual effect of the own gene is negative
    gene = screen.var_names[KNOCKED]
    assert model.get_direct_effects().loc["p00", gene] + residual.loc["p00", gene] < -0.5
    labels = screen.obs["perturbation"].astype(str).to_numpy()
    test = screen[np.isin(labels, ["control", "p00", "p01"])].copy()
    scores = model.evaluate_predictions(
        test, baselines=("control",), residual_ablation=True, energy=False, extra_shifts=("model",)
    )
    assert {"SparseShiftVI", "SparseShiftVI-no-residual", "SparseShiftVI-model"} <= set(
        scores["method"]
    )


def test_residual_save_load_and_old_models(model, screen, tmp_path):
    model.save(tmp_path / "m", overwrite=True)
    loaded = SparseShiftVI.load(tmp_path / "m", adata=screen)
    pd.testing.assert_frame_equal(loaded.get_residual_effects(), model.get_residual_effects())
    # a state saved before residual effects existed loads them as zero
    state = {k: v for k, v in model.module.state_dict().items() if k != "residual_effects"}
    loaded.module.load_state_dict(state)
    assert torch.count_nonzero(loaded.module.residual_effects) == 0


def test_no_residual_by_default_or_with_too_few_cells():
    adata = simulate_sparse_shift(
        n_perturbations=2, n_cells_per_perturbation=30, n_control_cells=40, n_genes=20, seed=4
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=3, batch_size=64, **TRAIN_KWARGS)  # fit_residual off by default
    assert torch.count_nonzero(model.module.residual_effects) == 0
    summary = model.fit_residual_effects(min_cells=1000)
    assert summary.empty and torch.count_nonzero(model.module.residual_effects) == 0
