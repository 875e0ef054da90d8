"""Plotting functions; each returns a :class:`matplotlib.figure.Figure`."""

from ._graph import target_graph_heatmap, training_history

__all__ = ["target_graph_heatmap", "training_history"]
