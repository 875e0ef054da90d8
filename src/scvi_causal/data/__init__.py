"""Simulators, dataset loaders and perturbation-label parsing."""

from ._datasets import data_dirs, gasperini_2019, papalexi_2021, prepare_screen, zhao_2021
from ._guides import assign_guides, labels_from_matrix, read_condition
from ._simulate import simulate_sparse_shift

__all__ = [
    "assign_guides",
    "data_dirs",
    "gasperini_2019",
    "labels_from_matrix",
    "papalexi_2021",
    "prepare_screen",
    "read_condition",
    "simulate_sparse_shift",
    "zhao_2021",
]
