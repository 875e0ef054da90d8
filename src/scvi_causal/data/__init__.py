"""Simulators, dataset loaders and perturbation-label parsing."""

from ._datasets import data_dirs, gasperini_2019, papalexi_2021, prepare_screen, zhao_2021
from ._simulate import simulate_sparse_shift

__all__ = [
    "data_dirs",
    "gasperini_2019",
    "papalexi_2021",
    "prepare_screen",
    "simulate_sparse_shift",
    "zhao_2021",
]
