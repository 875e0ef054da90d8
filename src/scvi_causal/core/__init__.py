"""Causal priors, intervention masks and sparsity penalties (torch only, no AnnData, no scvi)."""

from ._masks import InterventionMask
from ._priors import SparseShiftPrior, StandardNormalPrior, make_prior
from ._sparsity import bernoulli_kl, l1_penalty

__all__ = [
    "InterventionMask",
    "SparseShiftPrior",
    "StandardNormalPrior",
    "bernoulli_kl",
    "l1_penalty",
    "make_prior",
]
