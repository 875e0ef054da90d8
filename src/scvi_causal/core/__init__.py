"""Causal priors, intervention masks and sparsity penalties (torch only, no AnnData, no scvi)."""

from ._direct import DirectEffects, apply_log_offset
from ._masks import InterventionMask, geometric_temperature
from ._priors import LatentPrior, SparseShiftPrior, StandardNormalPrior, make_prior
from ._rotation import (
    LatentRotationMixin,
    change_latent_frame,
    rotate_latent_layers,
    sparse_alignment,
    sparse_rotation,
)
from ._scm import (
    LinearSCMNormal,
    LinearSCMPrior,
    fit_latent_graph,
    latent_graph_from_moments,
    notears_acyclicity,
)
from ._sparsity import bernoulli_kl, l1_penalty, l1_penalty_per_sample
from ._tc import total_correlation
from ._training import InterventionScheduleMixin, category_latent_sums, negative_elbo
from ._weak import ada_gvae_average

__all__ = [
    "DirectEffects",
    "ada_gvae_average",
    "apply_log_offset",
    "InterventionMask",
    "InterventionScheduleMixin",
    "LatentPrior",
    "LatentRotationMixin",
    "LinearSCMNormal",
    "LinearSCMPrior",
    "SparseShiftPrior",
    "StandardNormalPrior",
    "bernoulli_kl",
    "category_latent_sums",
    "change_latent_frame",
    "fit_latent_graph",
    "geometric_temperature",
    "l1_penalty",
    "latent_graph_from_moments",
    "l1_penalty_per_sample",
    "make_prior",
    "negative_elbo",
    "notears_acyclicity",
    "rotate_latent_layers",
    "sparse_alignment",
    "sparse_rotation",
    "total_correlation",
]
