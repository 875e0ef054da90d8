"""Tests of the sparse rotation of intervention effects."""

import numpy as np
import pytest
import torch

from scvi_causal.core import (
    SparseShiftPrior,
    rotate_latent_layers,
    sparse_alignment,
    sparse_rotation,
)
from scvi_causal.metrics import mcc


def _sparse_effects(n=60, k=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    effects = torch.zeros(n, k, dtype=torch.float64)
    for p in range(n):
        targets = torch.randperm(k, generator=gen)[: 1 + p % 2]
        signs = torch.randint(0, 2, (len(targets),), generator=gen) * 2 - 1
        effects[p, targets] = signs * (
            4.0 + torch.rand(len(targets), generator=gen, dtype=torch.float64)
        )
    return effects


def _rotation(k=5, angle=0.4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(k, k, generator=gen, dtype=torch.float64) * angle
    return torch.linalg.matrix_exp(x - x.T)


def test_sparse_rotation_recovers_a_rotated_sparse_matrix():
    sparse = _sparse_effects()
    mixed = sparse @ _rotation()
    q, before, after = sparse_rotation(mixed)
    assert torch.allclose(q @ q.T, torch.eye(5, dtype=q.dtype), atol=1e-8)
    assert after < 0.8 * before
    # the rotated effects equal the sparse ones up to a signed permutation of the units
    recovered = (mixed @ q).numpy()
    assert mcc(sparse.numpy(), recovered) > 0.99
    assert (np.abs(recovered) > 0.5).sum() == (sparse.numpy() != 0).sum()
    # the mixed matrix itself is far from it
    assert mcc(sparse.numpy(), mixed.numpy()) < 0.95


def test_sparse_rotation_keeps_a_sparse_frame():
    sparse = _sparse_effects()
    q, before, after = sparse_rotation(sparse)
    assert after <= before
    assert torch.allclose(q.abs(), torch.eye(5, dtype=q.dtype), atol=1e-2)


def test_sparse_rotation_weights_and_dtype():
    sparse = _sparse_effects().float()
    mixed = sparse @ _rotation().float()
    q, _, _ = sparse_rotation(mixed, weights=torch.ones(60) * 3.0, n_steps=300)
    assert q.dtype == torch.float32 and q.shape == (5, 5)
    q0, before, after = sparse_rotation(mixed, n_steps=0)
    assert torch.equal(q0, torch.eye(5)) and before == after


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"effects": torch.zeros(3)}, "2-d"),
        ({"effects": torch.tensor([[float("nan"), 1.0]])}, "finite"),
        ({"effects": torch.ones(3, 2), "weights": -torch.ones(3)}, "non-negative"),
        ({"effects": torch.ones(3, 2), "weights": torch.ones(2)}, "one per row"),
        ({"effects": torch.ones(3, 2), "n_steps": -1}, "n_steps"),
    ],
)
def test_sparse_rotation_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sparse_rotation(**kwargs)


def test_sparse_alignment_from_group_sums():
    torch.manual_seed(0)
    k = 3
    true = torch.tensor([[3.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, 2.5], [2.0, 2.0, 0.0]])
    q0 = torch.linalg.qr(torch.randn(k, k)).Q
    offset = torch.tensor([0.5, -0.3, 0.2])  # what the encoder puts on every sample
    # categories: control, p0, p1, p2, p0+p1 (combination), p2 with no samples
    matrix = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 1.0]])
    means = torch.stack([torch.zeros(k), true[0], true[1], true[2], true[3], true[2]]) @ q0
    means = means + offset
    counts = torch.tensor([200.0, 100, 100, 100, 50, 0])
    out = sparse_alignment(means * counts[:, None], counts, matrix, noise_z=2.0)
    assert out["l1_after"] < out["l1_before"]
    # the effects of the atomic perturbations: mean minus the controls' mean, current frame
    torch.testing.assert_close(out["effects"], true[:3] @ q0, atol=1e-5, rtol=1e-5)
    rotated = out["effects"] @ out["rotation"]
    assert ((rotated.abs() > 0.2).sum(-1) == 1).all()  # one unit each, as in the truth
    # noise floor: z / sqrt(cells of every category containing the perturbation)
    torch.testing.assert_close(out["min_shift"], 2.0 / torch.tensor([150.0, 150, 100]).sqrt())
    assert sparse_alignment(means * counts[:, None], counts, matrix)["min_shift"] is None
    # fewer than two intervened groups with samples: nothing to align
    assert sparse_alignment(means[:2] * counts[:2, None], counts[:2], matrix[:2]) is None


def test_rotate_latent_layers_is_a_change_of_coordinates():
    torch.manual_seed(0)
    mean_head, log_scale = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    decoder = torch.nn.Linear(5, 4)  # 3 latents + 2 covariates
    h, cov = torch.randn(8, 6), torch.randn(8, 2)
    before = decoder(torch.cat([mean_head(h), cov], -1))
    q = torch.linalg.qr(torch.randn(3, 3)).Q
    with torch.no_grad():
        log_scale.weight.zero_()
        log_scale.bias.fill_(-1.0)  # equal variances: the mixed log scales stay exact
    changed = rotate_latent_layers(q, mean_head, decoder, log_scale_head=log_scale)
    assert len(changed) == 5
    with torch.no_grad():
        torch.testing.assert_close(decoder(torch.cat([mean_head(h), cov], -1)), before)
        torch.testing.assert_close(log_scale(h), torch.full((8, 3), -1.0))
    with pytest.raises(ValueError, match="orthogonal"):
        rotate_latent_layers(2 * q, mean_head, decoder)
    with pytest.raises(ValueError, match="inputs"):
        rotate_latent_layers(q, mean_head, torch.nn.Linear(2, 4))


def test_prior_reset_in_frame_and_edge_threshold():
    prior = SparseShiftPrior(n_interventions=2, n_latent=3, sparsity_penalty=0.25)
    assert prior.edge_threshold() == 0.5
    assert SparseShiftPrior(1, 2, sparsity_scale="absolute").edge_threshold() == 0.5
    assert SparseShiftPrior(1, 2, sparsity_penalty=4.0).edge_threshold() == 0.9
    effects = torch.tensor([[4.0, 1.0, -2.5], [float("nan")] * 3])
    with torch.no_grad():
        prior.shifts[1] = torch.tensor([0.0, 3.0, 0.0])
        prior.mask.logits[1] = torch.tensor([-20.0, 20.0, -20.0])
    changed = prior.reset_in_frame(
        torch.eye(3), effects=effects, threshold=0.5, min_shift=torch.tensor([3.0, 0.0])
    )
    assert len(changed) == 2
    # row 0: above half the largest AND above the floor 3; row 1 (NaN) keeps its masked shift
    on = prior.inclusion_probs() > 0.5
    assert on.tolist() == [[True, False, False], [False, True, False]]
    torch.testing.assert_close(prior.shifts[0], effects[0])
    torch.testing.assert_close(prior.shifts[1], torch.tensor([0.0, 3.0, 0.0]), atol=1e-6, rtol=0)


def test_change_latent_frame_keeps_decoding_and_the_variances():
    """Any invertible frame change: same decoded output from the posterior mean, and with equal
    posterior variances the new diagonal is exactly that of :math:`M^T \\Sigma M`."""
    from scvi_causal.core import change_latent_frame

    torch.manual_seed(0)
    enc, dec, log_var = torch.nn.Linear(5, 3), torch.nn.Linear(4, 6), torch.nn.Linear(5, 3)
    with torch.no_grad():
        log_var.weight.zero_()
        log_var.bias.fill_(-1.0)  # every variance exp(-1)
    h, covariate = torch.randn(7, 5), torch.randn(7, 1)
    before = dec(torch.cat([enc(h), covariate], 1))
    m = torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.0, -1.0], [0.3, 0.0, 0.5]])
    change_latent_frame(m, enc, dec, log_scale_head=log_var)
    torch.testing.assert_close(dec(torch.cat([enc(h), covariate], 1)), before)
    expected = torch.diagonal(m.T @ (torch.exp(torch.tensor(-1.0)) * torch.eye(3)) @ m)
    torch.testing.assert_close(log_var(h).exp()[0], expected)
    with pytest.raises(ValueError, match="invertible"):
        change_latent_frame(torch.zeros(3, 3), enc, dec)
