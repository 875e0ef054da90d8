"""Simulators, dataset loaders and perturbation-label parsing."""

from ._simulate import simulate_sparse_shift

__all__ = [
    "simulate_sparse_shift",
]
