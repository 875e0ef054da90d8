"""Tests of the sparse rotation of intervention effects."""

import numpy as np
import pytest
import torch

from scvi_causal.core import sparse_rotation
from scvi_causal.metrics import mcc


def _sparse_effects(n=60, k=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    effects = torch.zeros(n, k, dtype=torch.float64)
    for p in range(n):
        targets = torch.randperm(k, generator=gen)[: 1 + p % 2]
        signs = torch.randint(0, 2, (len(targets),), generator=gen) * 2 - 1
        effects[p, targets] = signs * (4.0 + torch.rand(len(targets), generator=gen,
                                                        dtype=torch.float64))
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
