"""Plotting functions; each returns a :class:`matplotlib.figure.Figure`."""
