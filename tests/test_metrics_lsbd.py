"""Known-answer tests of D_LSBD (linear symmetry-based disentanglement)."""

import numpy as np
import pytest

from scvi_causal.metrics import d_lsbd

N1, N2 = 8, 12  # two cyclic factors on an 8 x 12 grid


def _grid(*sizes):
    """Factor classes ``(prod(sizes), len(sizes))`` and the matching angles, grid order."""
    classes = np.stack(np.meshgrid(*(np.arange(n) for n in sizes), indexing="ij"), -1)
    classes = classes.reshape(-1, len(sizes))
    return classes, 2 * np.pi * classes / np.array(sizes)


@pytest.fixture(scope="module")
def torus():
    factors, theta = _grid(N1, N2)
    t1, t2 = theta.T
    perfect = np.stack([np.cos(t1), np.sin(t1), np.cos(t2), np.sin(t2)], axis=1)
    return factors, t1, t2, perfect


def test_linear_disentangled_scores_zero(torus):
    factors, t1, t2, perfect = torus
    assert d_lsbd(perfect, factors, cyclic=(0, 1)) < 1e-10
    # other frequencies, a reflected plane, radii and extra constant units change nothing
    other = np.stack(
        [
            3 * np.cos(2 * t1),
            -3 * np.sin(2 * t1),
            0.1 * np.cos(-5 * t2),
            0.1 * np.sin(-5 * t2),
            np.ones_like(t1),
        ],
        axis=1,
    )
    assert d_lsbd(other, factors, cyclic=(0, 1)) < 1e-10


def test_invariant_to_invertible_linear_maps(torus):
    # A change of basis maps a linearly disentangled representation to another one: the
    # definition takes the infimum over representations rho(g) = A blockdiag(R(w theta)) A^-1.
    factors, _, _, perfect = torus
    rng = np.random.default_rng(0)
    padded = np.concatenate([perfect, rng.normal(size=(1, 3)).repeat(len(perfect), 0)], 1)
    mixed = padded @ rng.normal(size=(7, 7))
    assert d_lsbd(mixed, factors, cyclic=(0, 1)) < 1e-8


def test_row_order_does_not_matter(torus):
    factors, _, _, perfect = torus
    rng = np.random.default_rng(1)
    latents = perfect + 0.1 * rng.normal(size=perfect.shape)
    order = rng.permutation(len(factors))
    assert d_lsbd(latents[order], factors[order], cyclic=(0, 1)) == pytest.approx(
        d_lsbd(latents, factors, cyclic=(0, 1)), abs=1e-12
    )


def test_small_noise_scores_near_zero(torus):
    factors, _, _, perfect = torus
    noisy = perfect + 0.05 * np.random.default_rng(2).normal(size=perfect.shape)
    assert d_lsbd(noisy, factors, cyclic=(0, 1)) < 0.02


def test_random_latents_score_near_one(torus):
    factors = torus[0]
    random = np.random.default_rng(3).normal(size=(len(factors), 6))
    assert d_lsbd(random, factors, cyclic=(0, 1)) > 0.9


def test_entangled_angles_score_high(torus):
    # A linear representation of the torus, but not disentangled: each plane turns with
    # theta_1 + theta_2 or theta_1 - theta_2, so no plane belongs to one factor.
    factors, t1, t2, _ = torus
    mixed = np.stack([np.cos(t1 + t2), np.sin(t1 + t2), np.cos(t1 - t2), np.sin(t1 - t2)], 1)
    assert d_lsbd(mixed, factors, cyclic=(0, 1)) > 0.9


def test_factors_sharing_a_plane_score_above_zero(torus):
    # z = u(theta_1) + v(theta_2) in 2-d (a random linear map of the perfect code to fewer
    # dimensions than 2 per factor): no linear representation exists. Reading each factor from
    # its own centred latents alone (the authors' code) would score 0 here.
    factors, _, _, perfect = torus
    projection = np.random.default_rng(4).normal(size=(4, 2))
    assert d_lsbd(perfect @ projection, factors, cyclic=(0, 1)) > 0.3
    shared = perfect[:, :2] + 0.7 * perfect[:, 2:]
    assert d_lsbd(shared, factors, cyclic=(0, 1)) > 0.3


def test_angle_as_a_line_scores_high(torus):
    # what a VAE unit that is monotone in a factor gives: a segment, not a circle
    factors, t1, t2, _ = torus
    assert d_lsbd(np.stack([t1, t2], 1), factors, cyclic=(0, 1)) > 0.5


def test_collapsed_factor_scores_one(torus):
    factors, t1, _, _ = torus
    only_first = np.stack([np.cos(t1), np.sin(t1)], 1)
    assert d_lsbd(only_first, factors, cyclic=(0, 1)) == pytest.approx(0.5, abs=1e-10)
    assert d_lsbd(np.ones((len(factors), 3)), factors, cyclic=(0, 1)) == 1.0


def test_orbits_from_non_cyclic_factors():
    # three objects, each its own base point and radii, the cyclic factors as the torus
    classes, theta = _grid(N1, N2)
    rng = np.random.default_rng(5)
    latents, factors = [], []
    for obj in range(3):
        r1, r2 = rng.uniform(0.5, 2, 2)
        t1, t2 = theta.T
        code = np.stack([r1 * np.cos(t1), r1 * np.sin(t1), r2 * np.cos(t2), r2 * np.sin(t2)], 1)
        latents.append(code + rng.normal(size=4))
        factors.append(np.column_stack([np.full(len(classes), obj), classes]))
    latents, factors = np.concatenate(latents), np.concatenate(factors)
    assert d_lsbd(latents, factors, cyclic=(1, 2)) < 1e-10
    # one object whose code ignores the first factor: 1 for that factor there
    latents[factors[:, 0] == 0, :2] = 0.0
    assert d_lsbd(latents, factors, cyclic=(1, 2)) == pytest.approx(0.5 / 3, abs=1e-10)


def test_frequency_search(torus):
    factors, t1, t2, _ = torus
    fast = np.stack([np.cos(3 * t1), np.sin(3 * t1), np.cos(t2), np.sin(t2)], 1)
    assert d_lsbd(fast, factors, cyclic=(0, 1)) < 1e-10
    assert d_lsbd(fast, factors, cyclic=(0, 1), max_frequency=2) > 0.4


def test_errors(torus):
    factors, _, _, perfect = torus
    with pytest.raises(ValueError, match="exactly once"):
        d_lsbd(perfect[1:], factors[1:], cyclic=(0, 1))
    with pytest.raises(ValueError, match="1 repeated"):
        d_lsbd(perfect[[0, *range(len(perfect))]], factors[[0, *range(len(factors))]], (0, 1))
    with pytest.raises(ValueError, match="column indices"):
        d_lsbd(perfect, factors, cyclic=(0, 2))
    with pytest.raises(ValueError, match="repeated columns"):
        d_lsbd(perfect, factors, cyclic=(0, 0))
    with pytest.raises(ValueError, match="at least one"):
        d_lsbd(perfect, factors, cyclic=())
    with pytest.raises(ValueError, match="integer classes"):
        d_lsbd(perfect, factors + 0.5, cyclic=(0, 1))
    with pytest.raises(ValueError, match="same number of samples"):
        d_lsbd(perfect[:-1], factors, cyclic=(0, 1))
    with pytest.raises(ValueError, match="at least 3"):
        d_lsbd(perfect[:24], np.column_stack([factors[:24, 1] % 2, factors[:24, 1] // 2]), (0,))
    with pytest.raises(ValueError, match="NaN"):
        d_lsbd(np.full_like(perfect, np.nan), factors, cyclic=(0, 1))
    with pytest.raises(ValueError, match="max_frequency"):
        d_lsbd(perfect, factors, cyclic=(0, 1), max_frequency=0)
