"""Metrics: pure functions of ``(n_samples, n_dims)`` arrays, numpy in, numpy/dict out."""

from ._counterfactual import (
    baseline_lfc,
    energy_distance,
    log_fold_change,
    logfc_agreement,
    normalize_counts,
)
from ._dag import descendant_depths, direct_target_scores, latent_graph_scores
from ._disentanglement import dci, mig, modularity, mutual_information_matrix, sap
from ._graph import binarize_top_k, target_graph_scores
from ._identifiability import match_latents, mcc, r2
from ._latent_edits import (
    counterfactual_factor_scores,
    label_intervention_scores,
    moved_units,
    unit_factor_assignment,
)
from ._lsbd import d_lsbd
from ._prediction import (
    additive_baseline,
    compare_methods,
    cosine_similarity,
    linear_baseline,
    pearson_delta,
    rank_metric,
    rmse,
    score_predictions,
    top_k_recall,
)

__all__ = [
    "baseline_lfc",
    "energy_distance",
    "log_fold_change",
    "logfc_agreement",
    "normalize_counts",
    "additive_baseline",
    "compare_methods",
    "cosine_similarity",
    "linear_baseline",
    "pearson_delta",
    "rank_metric",
    "rmse",
    "score_predictions",
    "top_k_recall",
    "binarize_top_k",
    "d_lsbd",
    "dci",
    "descendant_depths",
    "direct_target_scores",
    "latent_graph_scores",
    "mig",
    "modularity",
    "mutual_information_matrix",
    "sap",
    "match_latents",
    "mcc",
    "r2",
    "target_graph_scores",
    "label_intervention_scores",
    "unit_factor_assignment",
    "moved_units",
    "counterfactual_factor_scores",
]
