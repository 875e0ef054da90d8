"""Known-answer tests of Ada-GVAE's adaptive averaging (core, torch only)."""

import pytest
import torch
from torch.distributions import Normal

from scvi_causal.core import ada_gvae_average


def test_known_split_and_average():
    # per-dim KL(q1 || q2): dims 0 and 3 far apart, dim 1 close, dim 2 identical
    q1 = Normal(torch.tensor([[0.0, 0.0, 1.0, 0.0]]), torch.tensor([[1.0, 1.0, 2.0, 1.0]]))
    q2 = Normal(torch.tensor([[3.0, 0.5, 1.0, -6.0]]), torch.tensor([[1.0, 1.0, 2.0, 2.0]]))
    a1, a2, shared = ada_gvae_average(q1, q2)
    # KL = [4.5, 0.125, 0, log 2 + (1 + 36) / 8 - 1 / 2 = 4.818]: threshold 2.409
    assert shared.tolist() == [[False, True, True, False]]
    assert torch.allclose(a1.loc, torch.tensor([[0.0, 0.25, 1.0, 0.0]]))
    assert torch.allclose(a2.loc, torch.tensor([[3.0, 0.25, 1.0, -6.0]]))
    # GVAE: the average of the variances, not of the scales
    assert torch.allclose(a1.variance, torch.tensor([[1.0, 1.0, 4.0, 1.0]]))
    assert torch.allclose(a2.variance, torch.tensor([[1.0, 1.0, 4.0, 4.0]]))


def test_variances_averaged_on_shared_dims():
    q1 = Normal(torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 1.0]]))
    q2 = Normal(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[1.0, 3.0, 1.0]]))
    a1, a2, shared = ada_gvae_average(q1, q2)
    assert shared.tolist() == [[True, True, False]]
    assert torch.allclose(a1.variance, torch.tensor([[1.0, 5.0, 1.0]]))
    assert torch.allclose(a2.variance, torch.tensor([[1.0, 5.0, 1.0]]))
    assert torch.equal(a1.loc[:, 2], q1.loc[:, 2]) and torch.equal(a2.loc[:, 2], q2.loc[:, 2])


def test_threshold_per_pair():
    # the same absolute KL is "shared" in one pair and "different" in another
    q1 = Normal(torch.zeros(2, 3), torch.ones(2, 3))
    q2 = Normal(torch.tensor([[1.0, 0.0, 0.0], [1.0, 10.0, 0.0]]), torch.ones(2, 3))
    _, _, shared = ada_gvae_average(q1, q2)
    assert shared.tolist() == [[False, True, True], [True, False, True]]


def test_identical_posteriors_unchanged():
    q = Normal(torch.randn(4, 5), torch.rand(4, 5) + 0.1)
    a1, a2, shared = ada_gvae_average(q, Normal(q.loc.clone(), q.scale.clone()))
    assert not shared.any()
    assert torch.equal(a1.loc, q.loc) and torch.equal(a2.scale, q.scale)


def test_gradients_flow_through_selected_posteriors():
    loc1 = torch.tensor([[0.0, 0.0, 4.0]], requires_grad=True)
    loc2 = torch.tensor([[0.1, 0.0, -4.0]], requires_grad=True)
    a1, _, shared = ada_gvae_average(Normal(loc1, torch.ones(1, 3)), Normal(loc2, torch.ones(1, 3)))
    assert shared.tolist() == [[True, True, False]]
    a1.loc.sum().backward()
    assert loc1.grad.tolist() == [[0.5, 0.5, 1.0]]
    assert loc2.grad.tolist() == [[0.5, 0.5, 0.0]]


def test_errors():
    q = Normal(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="same batch shape"):
        ada_gvae_average(q, Normal(torch.zeros(2, 4), torch.ones(2, 4)))
    with pytest.raises(ValueError, match="n_pairs, n_latent"):
        ada_gvae_average(
            Normal(torch.zeros(3), torch.ones(3)), Normal(torch.zeros(3), torch.ones(3))
        )
    with pytest.raises(TypeError, match="Normal"):
        ada_gvae_average(q, (torch.zeros(2, 3), torch.zeros(2, 3)))
