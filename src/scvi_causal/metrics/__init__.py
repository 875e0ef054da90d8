"""Metrics: pure functions of ``(n_samples, n_dims)`` arrays, numpy in, numpy/dict out."""

from ._graph import binarize_top_k, target_graph_scores
from ._identifiability import match_latents, mcc, r2

__all__ = [
    "binarize_top_k",
    "match_latents",
    "mcc",
    "r2",
    "target_graph_scores",
]
