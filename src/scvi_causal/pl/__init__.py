"""Plotting functions; each returns a :class:`matplotlib.figure.Figure`."""

from ._graph import target_graph_heatmap, training_history
from ._images import latent_traversal
from ._report import unit_gene_heatmap

__all__ = ["latent_traversal", "target_graph_heatmap", "training_history", "unit_gene_heatmap"]
