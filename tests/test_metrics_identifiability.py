import numpy as np
import pandas as pd
import pytest

from scvi_causal.metrics import match_latents, mcc, r2


@pytest.fixture
def z():
    return np.random.default_rng(0).normal(size=(2000, 4))


def test_identity_scores_one(z):
    assert mcc(z, z) == pytest.approx(1.0)
    assert mcc(z, z, method="spearman") == pytest.approx(1.0)
    assert r2(z, z) == pytest.approx(1.0)
    matching, abs_corr = match_latents(z, z)
    np.testing.assert_array_equal(matching, np.arange(4))
    np.testing.assert_allclose(np.diag(abs_corr), 1.0)


def test_permutation_rescaling_sign_flip(z):
    perm = np.array([2, 0, 3, 1])
    z_hat = z[:, perm] * np.array([-3.0, 0.5, 10.0, -0.1]) + 7.0
    matching, _ = match_latents(z, z_hat)
    # z_hat[:, j] is a rescaled copy of z[:, perm[j]], so true dim perm[j] maps to column j.
    np.testing.assert_array_equal(matching[perm], np.arange(4))
    np.testing.assert_array_equal(matching, np.argsort(perm))
    assert mcc(z, z_hat) == pytest.approx(1.0)
    assert r2(z, z_hat) == pytest.approx(1.0)


def test_independent_noise_scores_near_zero():
    rng = np.random.default_rng(1)
    z_true = rng.normal(size=(5000, 4))
    z_hat = rng.normal(size=(5000, 4))
    assert mcc(z_true, z_hat) < 0.1
    assert r2(z_true, z_hat) < 0.05


def test_rotation_lowers_mcc_but_not_r2(z):
    rng = np.random.default_rng(2)
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    z_hat = z @ rotation
    assert mcc(z, z_hat) < 0.9
    assert r2(z, z_hat) == pytest.approx(1.0, abs=1e-6)


def test_spearman_invariant_to_monotone_transform(z):
    z_hat = np.exp(z)
    assert mcc(z, z_hat, method="spearman") == pytest.approx(1.0)
    assert mcc(z, z_hat, method="pearson") < 0.9


def test_more_estimated_dims(z):
    rng = np.random.default_rng(3)
    z_hat = np.column_stack([rng.normal(size=(len(z), 2)), z[:, ::-1]])
    matching, abs_corr = match_latents(z, z_hat)
    assert abs_corr.shape == (4, 6)
    np.testing.assert_array_equal(matching, [5, 4, 3, 2])
    assert mcc(z, z_hat) == pytest.approx(1.0)


def test_fewer_estimated_dims(z):
    z_hat = z[:, [3, 1]]
    matching, abs_corr = match_latents(z, z_hat)
    assert abs_corr.shape == (4, 2)
    np.testing.assert_array_equal(matching, [-1, 1, -1, 0])
    assert mcc(z, z_hat) == pytest.approx(0.5, abs=0.05)


def test_constant_column_gives_zero_correlation(z):
    z_hat = z.copy()
    z_hat[:, 0] = 3.7
    _, abs_corr = match_latents(z, z_hat)
    assert np.all(np.isfinite(abs_corr))
    np.testing.assert_allclose(abs_corr[:, 0], 0.0)
    assert mcc(z, z_hat) == pytest.approx(0.75, abs=0.05)


def test_accepts_dataframes(z):
    assert mcc(pd.DataFrame(z), pd.DataFrame(z)) == pytest.approx(1.0)
    assert r2(pd.DataFrame(z), z) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("z_true", "z_hat", "match"),
    [
        (np.zeros((10, 2)), np.zeros((9, 2)), "same number of samples"),
        (np.zeros(10), np.zeros((10, 2)), "2-D"),
        (np.zeros((10, 2, 1)), np.zeros((10, 2)), "2-D"),
        (np.zeros((1, 2)), np.zeros((1, 2)), r"at least \d samples"),
        (np.full((10, 2), np.nan), np.zeros((10, 2)), "NaN or infinite"),
        (np.zeros((10, 2)), np.full((10, 2), np.inf), "NaN or infinite"),
    ],
)
def test_bad_inputs_raise(z_true, z_hat, match):
    with pytest.raises(ValueError, match=match):
        mcc(z_true, z_hat)
    with pytest.raises(ValueError, match=match):
        r2(z_true, z_hat)


def test_bad_method_raises(z):
    with pytest.raises(ValueError, match="method"):
        mcc(z, z, method="kendall")


def test_r2_too_few_samples_for_split():
    z = np.random.default_rng(0).normal(size=(3, 2))
    with pytest.raises(ValueError, match="at least 4 samples"):
        r2(z, z)
