"""Plotting functions; each returns a :class:`matplotlib.figure.Figure`."""

from ._consensus import consensus_heatmap
from ._graph import latent_graph, target_graph_heatmap, training_history
from ._images import latent_traversal
from ._report import unit_gene_heatmap

__all__ = [
    "consensus_heatmap",
    "latent_graph",
    "latent_traversal",
    "target_graph_heatmap",
    "training_history",
    "unit_gene_heatmap",
]
