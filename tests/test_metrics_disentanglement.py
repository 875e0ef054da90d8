"""Known-answer tests of MIG, DCI, SAP and modularity."""

import numpy as np
import pytest

from scvi_causal.metrics import dci, mig, modularity, mutual_information_matrix, sap

N = 2000


@pytest.fixture(scope="module")
def factors():
    """dSprites-like discrete factors: shape 3, scale 6, orientation 10, posX 16, posY 16."""
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, n, N) for n in (3, 6, 10, 16, 16)], axis=1)


def _identity(factors, noise=0.01, seed=1):
    rng = np.random.default_rng(seed)
    v = factors / factors.max(0)
    return v + noise * rng.normal(size=v.shape)


def _rotated(factors, seed=2):
    z = _identity(factors)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(z.shape[1],) * 2))
    return z @ q


METRICS = {
    "mig": mig,
    "modularity": modularity,
    "sap": sap,
    "dci_d": lambda z, v: dci(z, v)["disentanglement"],
    "dci_c": lambda z, v: dci(z, v)["completeness"],
}


@pytest.mark.parametrize("name", list(METRICS))
def test_identity_high_noise_low(name, factors):
    metric = METRICS[name]
    good = metric(_identity(factors), factors)
    noise = metric(np.random.default_rng(3).normal(size=(N, 5)), factors)
    assert good > 0.75, good
    low = {"mig": 0.05, "sap": 0.05, "dci_d": 0.35, "dci_c": 0.35, "modularity": 0.75}[name]
    assert noise < low, noise
    assert good > noise + 0.2


@pytest.mark.parametrize("name", ["mig", "sap", "dci_d", "dci_c"])
def test_entangled_scores_lower(name, factors):
    metric = METRICS[name]
    assert metric(_rotated(factors), factors) < metric(_identity(factors), factors) - 0.2


@pytest.mark.parametrize("name", list(METRICS))
def test_invariant_to_permutation_and_rescaling(name, factors):
    metric = METRICS[name]
    z = _rotated(factors) * 0.5 + _identity(factors) * 0.5
    perm = [3, 0, 4, 1, 2]
    scaled = z[:, perm] * np.array([2.0, 0.5, 10.0, 1.0, 3.0]) + 7.0
    assert metric(scaled, factors) == pytest.approx(metric(z, factors), abs=0.03)


def test_informativeness_and_importance(factors):
    scores = dci(_identity(factors), factors)
    assert scores["informativeness"] > 0.8
    assert scores["importance"].shape == (5, 5)
    # each factor's importance sits on its own unit
    assert (scores["importance"].argmax(0) == np.arange(5)).all()
    noise = dci(np.random.default_rng(4).normal(size=(N, 5)), factors)
    assert noise["informativeness"] < 0.4


def test_mutual_information_matrix_shape_and_diagonal(factors):
    mi = mutual_information_matrix(_identity(factors), factors)
    assert mi.shape == (5, 5)
    assert (np.diag(mi) > mi.max(0) * 0.99).all()


def test_more_latents_than_factors(factors):
    rng = np.random.default_rng(5)
    z = np.concatenate([_identity(factors), rng.normal(size=(N, 3))], axis=1)
    assert mig(z, factors) > 0.75
    assert dci(z, factors)["disentanglement"] > 0.6


@pytest.mark.parametrize("metric", [mig, modularity, sap, dci])
def test_invalid_inputs(metric, factors):
    with pytest.raises(ValueError, match="Sample numbers"):
        metric(np.zeros((10, 2)), factors)
    with pytest.raises(ValueError, match="2-d"):
        metric(np.zeros(N), factors)
    bad = _identity(factors)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metric(bad, factors)
