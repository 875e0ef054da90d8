"""Known-answer tests of MIG, DCI, SAP, modularity and the mutual-information matrix."""

import numpy as np
import pandas as pd
import pytest

from scvi_causal.metrics import dci, mig, modularity, mutual_information_matrix, sap

N = 2000
DSPRITES_CLASSES = (3, 6, 10, 16, 16)  # shape, scale, orientation, posX, posY

METRICS = {
    "mig": mig,
    "modularity": modularity,
    "sap": sap,
    "dci_d": lambda z, v: dci(z, v)["disentanglement"],
    "dci_c": lambda z, v: dci(z, v)["completeness"],
}


@pytest.fixture(scope="module")
def factors():
    """dSprites-like discrete factors drawn independently and uniformly."""
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, n, N) for n in DSPRITES_CLASSES], axis=1)


def _identity(factors, noise=0.01, seed=1):
    """Each factor in its own unit, scaled to [0, 1], with a little noise."""
    v = factors / factors.max(axis=0)
    return v + noise * np.random.default_rng(seed).normal(size=v.shape)


def _rotated(z, seed=2):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(z.shape[1],) * 2))
    return z @ q


def _noise(n_samples, n_latents, seed=3):
    return np.random.default_rng(seed).normal(size=(n_samples, n_latents))


def _all_scores(z, v):
    scores = {name: METRICS[name](z, v) for name in ("mig", "modularity", "sap")}
    out = dci(z, v)
    scores.update(
        dci_d=out["disentanglement"], dci_c=out["completeness"], dci_i=out["informativeness"]
    )
    return scores


@pytest.fixture(scope="module")
def scores(factors):
    """Scores of identity, rotated and noise latents, computed once (DCI is the slow one)."""
    identity = _identity(factors)
    latents = {
        "identity": identity,
        "rotated": _rotated(identity),
        "noise": _noise(N, factors.shape[1]),
    }
    return {name: _all_scores(z, factors) for name, z in latents.items()}


@pytest.mark.parametrize("name", [*METRICS, "dci_i"])
def test_identity_scores_high(name, scores):
    assert scores["identity"][name] > 0.9


@pytest.mark.parametrize("name", METRICS)
def test_independent_noise_scores_near_zero(name, scores):
    assert scores["noise"][name] < 0.1


def test_noise_informativeness_is_chance_accuracy(scores):
    chance = np.mean([1 / n for n in DSPRITES_CLASSES])  # about 0.14
    assert scores["noise"]["dci_i"] == pytest.approx(chance, abs=0.05)


@pytest.mark.parametrize("name", METRICS)
def test_entangled_scores_lower(name, scores):
    # Modularity reacts less: each rotated unit still leans towards the factor of most entropy.
    margin = 0.1 if name == "modularity" else 0.2
    assert scores["rotated"][name] < scores["identity"][name] - margin


def test_rotation_keeps_information(scores):
    assert scores["rotated"]["dci_i"] > scores["noise"]["dci_i"] + 0.2


@pytest.mark.parametrize("name", METRICS)
def test_invariant_to_permutation_and_rescaling(name, factors):
    identity = _identity(factors)
    z = 0.7 * identity + 0.3 * _rotated(identity)  # partly entangled
    perm = [3, 0, 4, 1, 2]
    z_new = z[:, perm] * np.array([2.0, 0.5, 10.0, 1.0, 3.0]) + 7.0
    before, after = METRICS[name](z, factors), METRICS[name](z_new, factors)
    # Binning is affine invariant; the forests of DCI only up to the seeded tie-breaking.
    assert after == pytest.approx(before, abs=0.01 if name.startswith("dci") else 1e-9)


def test_mutual_information_matrix_known_answer(factors):
    mi = mutual_information_matrix(_identity(factors, noise=0.0), factors)
    assert mi.shape == (5, 5)
    # I(v; v) = H(v), about log(n_classes) for uniform classes; independent pairs about 0.
    np.testing.assert_allclose(np.diag(mi), np.log(DSPRITES_CLASSES), atol=0.02)
    assert mi[~np.eye(5, dtype=bool)].max() < 0.1


def test_duplicated_unit_has_zero_gap(factors):
    """MIG and SAP are gaps: a factor copied into two units scores 0, the others 1."""
    z = np.column_stack([_identity(factors), 3.0 * _identity(factors, seed=9)[:, 0]])
    expected = [0, 1, 1, 1, 1]
    np.testing.assert_allclose(mig(z, factors, return_per_factor=True), expected, atol=0.1)
    np.testing.assert_allclose(sap(z, factors, return_per_factor=True), expected, atol=0.1)


def test_extra_noise_units(factors):
    z = np.column_stack([_identity(factors), _noise(N, 3)])
    assert mig(z, factors) > 0.9
    assert sap(z, factors) > 0.9
    # Uninformative units score 0 in the modularity mean (as in disentanglement_lib).
    assert modularity(z, factors) == pytest.approx(5 / 8, abs=0.03)
    scores = dci(z, factors)
    assert scores["disentanglement"] > 0.9
    assert scores["importance"].shape == (8, 5)
    np.testing.assert_array_equal(scores["importance"].argmax(axis=0), np.arange(5))


def test_modularity_uncorrected_noise_looks_modular(factors):
    """Without the significance test the plug-in MI bias makes noise look modular."""
    noise = _noise(N, 5)
    assert modularity(noise, factors, alpha=None) > 0.3
    assert modularity(noise, factors) < 0.1
    assert modularity(_identity(factors), factors, alpha=None) > 0.9


@pytest.fixture(scope="module")
def continuous():
    return np.random.default_rng(4).normal(size=(1500, 3))


def test_continuous_factors(continuous):
    identity = continuous * np.array([1.0, -2.0, 0.5])
    c = np.sqrt(0.5)
    mixed = continuous @ np.array([[c, c, 0.0], [c, -c, 0.0], [0.0, 0.0, 1.0]])  # mixes 2 of 3
    noise = _noise(len(continuous), 3)
    for metric in (mig, modularity, sap):
        assert metric(identity, continuous) > 0.9
        assert metric(noise, continuous) < 0.1
        assert metric(mixed, continuous) < metric(identity, continuous) - 0.2
    good, bad = dci(identity, continuous), dci(noise, continuous)
    assert min(good["disentanglement"], good["completeness"]) > 0.9
    assert good["informativeness"] > 0.9  # held-out R^2 of the forest regressors
    assert max(bad["disentanglement"], bad["completeness"], bad["informativeness"]) < 0.1


def test_discrete_detection(factors):
    z = _rotated(_identity(factors), seed=5)
    # Integer-valued floats with few values, strings and integers are all discrete classes.
    as_float = factors.astype(float)
    as_str = (
        pd.DataFrame(factors)
        .astype(str)
        .assign(shape=np.array(["square", "ellipse", "heart"])[factors[:, 0]])
    )
    assert mig(z, as_float) == pytest.approx(mig(z, factors))
    assert sap(z, as_float) == pytest.approx(sap(z, factors))
    expected = mig(z[:, :4], factors[:, :4])
    assert mig(z[:, :4], as_str.iloc[:, [5, 1, 2, 3]]) == pytest.approx(expected)
    # Forcing a discrete factor to be continuous switches SAP to linear R^2.
    forced = sap(z, factors, discrete_factors=False)
    assert forced != pytest.approx(sap(z, factors))


def test_constant_factor_is_left_out(factors):
    z = _identity(factors)
    with_constant = np.column_stack([factors, np.full(N, 2)])
    per_factor = mig(np.column_stack([z, _noise(N, 1)]), with_constant, return_per_factor=True)
    assert np.isnan(per_factor[-1])
    assert mig(z, with_constant) == pytest.approx(mig(z, factors))
    assert sap(z, with_constant) == pytest.approx(sap(z, factors))
    with pytest.raises(ValueError, match="All factors are constant"):
        mig(z, np.ones((N, 2)))


def test_single_factor_and_single_latent(factors):
    v = factors[:, :1]
    z = _identity(v)
    assert mig(z, v) > 0.9
    assert modularity(z, v) == pytest.approx(1.0)
    assert sap(z, v) > 0.9


def test_dci_is_deterministic(factors):
    z = _identity(factors)[:500]
    a, b = dci(z, factors[:500], seed=1), dci(z, factors[:500], seed=1)
    np.testing.assert_array_equal(a["importance"], b["importance"])
    assert a["informativeness"] == b["informativeness"]


@pytest.mark.parametrize("metric", [mig, modularity, sap, dci, mutual_information_matrix])
@pytest.mark.parametrize(
    ("latents", "factors", "match"),
    [
        (np.zeros((10, 2)), np.zeros((9, 2)), "same number of samples"),
        (np.zeros(10), np.zeros((10, 2)), "2-D"),
        (np.zeros((10, 2)), np.zeros(10), "2-D"),
        (np.zeros((10, 2, 1)), np.zeros((10, 2)), "2-D"),
        (np.zeros((10, 2)), np.zeros((10, 0)), "at least one column"),
        (np.zeros((1, 2)), np.zeros((1, 2)), r"at least \d samples"),
        (np.full((10, 2), np.nan), np.zeros((10, 2)), "NaN or infinite"),
        (np.zeros((10, 2)), np.full((10, 2), np.inf), "NaN or infinite"),
    ],
)
def test_bad_inputs_raise(metric, latents, factors, match):
    with pytest.raises(ValueError, match=match):
        metric(latents, factors)


def test_bad_parameters_raise(factors):
    z = _identity(factors)
    with pytest.raises(ValueError, match="n_bins"):
        mig(z, factors, n_bins=1)
    with pytest.raises(ValueError, match="alpha"):
        modularity(z, factors, alpha=1.5)
    with pytest.raises(ValueError, match="test_size"):
        sap(z, factors, test_size=1.5)
    with pytest.raises(ValueError, match="discrete_factors"):
        mig(z, factors, discrete_factors=[True, False])
    with pytest.raises(ValueError, match="cannot be continuous"):
        mig(z[:, :1], np.array([["a"], ["b"]] * (N // 2)), discrete_factors=False)
