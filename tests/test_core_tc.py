"""Minibatch-weighted-sampling estimate of the total correlation (beta-TCVAE)."""

import pytest
import torch

from scvi_causal.core import total_correlation


def _estimate(z, scale=0.1, n_obs=None):
    scale = torch.full_like(z, scale)
    return total_correlation(z, z, scale, n_obs or z.shape[0]).mean()


def test_independent_vs_correlated():
    torch.manual_seed(0)
    indep = torch.randn(512, 3)
    corr = indep.clone()
    corr[:, 1] = indep[:, 0] + 0.05 * indep[:, 1]
    corr[:, 2] = -indep[:, 0] + 0.05 * indep[:, 2]
    tc_indep, tc_corr = _estimate(indep), _estimate(corr)
    assert tc_corr > tc_indep + 1.0
    # more dependent dimensions, more total correlation
    two = indep.clone()
    two[:, 1] = indep[:, 0] + 0.05 * indep[:, 1]
    assert tc_indep < _estimate(two) < tc_corr


def test_single_dimension_has_no_total_correlation():
    torch.manual_seed(1)
    z = torch.randn(100, 1)
    torch.testing.assert_close(
        total_correlation(z, z, torch.ones_like(z), 100), torch.zeros(100), atol=1e-5, rtol=0
    )


def test_shape_and_gradient():
    torch.manual_seed(2)
    loc = torch.randn(64, 4, requires_grad=True)
    scale = torch.full((64, 4), 0.5)
    z = loc + scale * torch.randn(64, 4)
    tc = total_correlation(z, loc, scale, n_obs=1000)
    assert tc.shape == (64,)
    tc.mean().backward()
    assert loc.grad is not None and torch.isfinite(loc.grad).all()


def test_invalid_inputs():
    z = torch.randn(10, 2)
    with pytest.raises(ValueError, match="same"):
        total_correlation(z, z[:, :1], torch.ones_like(z), 10)
    with pytest.raises(ValueError, match="n_obs"):
        total_correlation(z, z, torch.ones_like(z), 5)
    with pytest.raises(ValueError, match="at least 2"):
        total_correlation(z[:1], z[:1], torch.ones_like(z[:1]), 10)


def test_subsampled_queries_match_the_exact_estimate_in_expectation():
    torch.manual_seed(3)
    loc = torch.randn(400, 3)
    loc[:, 1] = loc[:, 0] + 0.1 * loc[:, 1]
    scale = torch.full_like(loc, 0.2)
    exact = total_correlation(loc, loc, scale, n_obs=4000)
    gen = torch.Generator().manual_seed(0)
    sub = total_correlation(loc, loc, scale, n_obs=4000, n_query=50, generator=gen)
    assert sub.shape == (50,)
    # every subsampled estimate is one of the exact per-sample estimates
    assert all(torch.isclose(exact, v, atol=1e-5).any() for v in sub)
    means = torch.stack(
        [
            total_correlation(loc, loc, scale, 4000, n_query=50, generator=gen).mean()
            for _ in range(200)
        ]
    )
    assert abs(means.mean() - exact.mean()) < 3 * means.std() / 200**0.5 + 1e-3
    assert means.std() > 0  # the subsample does change
    # n_query >= M scores everything, in order
    torch.testing.assert_close(total_correlation(loc, loc, scale, 4000, n_query=400), exact)
    with pytest.raises(ValueError, match="n_query"):
        total_correlation(loc, loc, scale, 4000, n_query=0)
