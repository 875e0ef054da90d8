"""Known-answer tests of the counterfactual evaluation metrics."""

import numpy as np
import pytest

from scvi_causal.metrics._counterfactual import (
    baseline_lfc,
    energy_distance,
    log_fold_change,
    logfc_agreement,
    normalize_counts,
)


def test_normalize_counts_rows_sum_to_one():
    x = np.array([[2, 2, 0], [0, 0, 0], [1, 0, 3]])
    out = normalize_counts(x)
    np.testing.assert_allclose(out.sum(1), [1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        normalize_counts([[np.nan, 1.0]])


def test_log_fold_change_known_answer():
    ctrl = np.array([[0.5, 0.5], [0.5, 0.5]])
    pert = np.array([[0.75, 0.25], [0.75, 0.25]])
    lfc = log_fold_change(pert, ctrl, scale=1.0)
    np.testing.assert_allclose(lfc, [np.log(1.75 / 1.5), np.log(1.25 / 1.5)])
    np.testing.assert_allclose(log_fold_change(ctrl, ctrl), 0.0)
    with pytest.raises(ValueError, match="Gene numbers"):
        log_fold_change(pert, ctrl[:, :1])


def test_logfc_agreement_perfect_noise_and_constant():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=500)
    perfect = logfc_agreement(obs, obs)
    assert perfect["pearson_all"] == pytest.approx(1.0)
    assert perfect["r2_all"] == pytest.approx(1.0)
    assert perfect["pearson_top"] == pytest.approx(1.0)
    noise = logfc_agreement(rng.normal(size=500), obs)
    assert abs(noise["pearson_all"]) < 0.15
    assert noise["r2_all"] < 0  # independent noise is worse than predicting the mean
    const = logfc_agreement(np.zeros(500), obs)
    assert const["pearson_all"] == 0.0 and const["r2_all"] <= 0
    # right direction, twice the magnitude: r stays 1, R2 drops
    double = logfc_agreement(2 * obs, obs)
    assert double["pearson_all"] == pytest.approx(1.0) and double["r2_all"] < 0.1


def test_logfc_agreement_top_genes_are_the_most_changed():
    obs = np.array([5.0, -4.0, 0.01, -0.02, 0.03])
    pred = np.array([5.0, -4.0, 1.0, 1.0, -1.0])  # wrong only on the unchanged genes
    scores = logfc_agreement(pred, obs, top_k=2)
    assert scores["pearson_top"] == pytest.approx(1.0)
    assert scores["pearson_all"] < scores["pearson_top"]
    with pytest.raises(ValueError, match="equal length"):
        logfc_agreement(pred[:3], obs)


def test_energy_distance_zero_for_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 3))
    b = rng.normal(size=(400, 3))
    same = energy_distance(a, b)
    assert same < 0.05
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    shifts = [energy_distance(a, b + d) for d in (0.5, 1.0, 2.0)]
    assert same < shifts[0] < shifts[1] < shifts[2]
    with pytest.raises(ValueError, match="Dimensions"):
        energy_distance(a, b[:, :2])


def test_baselines():
    lfcs = {"A": np.array([1.0, -2.0, 0.0]), "B": np.array([0.5, 0.5, 0.5])}
    np.testing.assert_allclose(baseline_lfc("additive", "A+B", lfcs), [1.5, -1.5, 0.5])
    np.testing.assert_allclose(baseline_lfc("additive", "A", lfcs), lfcs["A"])
    np.testing.assert_allclose(baseline_lfc("mean", "A+B", lfcs), 0.0)
    with pytest.raises(ValueError, match="No observed LFC"):
        baseline_lfc("additive", "A+C", lfcs)
    with pytest.raises(ValueError, match="method"):
        baseline_lfc("median", "A", lfcs)
