"""Plotting functions; each returns a :class:`matplotlib.figure.Figure`."""

from ._graph import target_graph_heatmap, training_history
from ._report import unit_gene_heatmap

__all__ = ["target_graph_heatmap", "training_history", "unit_gene_heatmap"]
