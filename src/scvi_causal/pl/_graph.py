"""Plots of perturbation x latent target graphs and training diagnostics."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def target_graph_heatmap(
    graph: pd.DataFrame,
    true_graph: pd.DataFrame | None = None,
    matching: Sequence[int] | None = None,
    cluster: bool = False,
    max_rows: int = 60,
    title: str | None = None,
) -> Figure:
    """Heatmap of a perturbation x latent target graph (inclusion probabilities).

    Parameters
    ----------
    graph
        DataFrame indexed by perturbation with one column per latent unit, values in [0, 1]
        (:meth:`~scvi_causal.model.SparseShiftVI.get_target_graph`).
    true_graph
        Optional ground truth with the same index; drawn side by side. Its columns are the true
        latent factors.
    matching
        Output of :func:`~scvi_causal.metrics.match_latents`: learned columns are reordered so
        that column ``i`` is the unit matched to true factor ``i`` (unmatched units follow).
    cluster
        Order rows and columns by hierarchical clustering (scipy, average linkage on
        Jaccard-like distances of the probabilities). Ignored when ``matching`` is given for
        the columns.
    max_rows
        Show at most this many perturbations (the first ones in the current order).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Examples
    --------
    >>> import pandas as pd
    >>> g = pd.DataFrame([[0.9, 0.1], [0.0, 0.8]], index=["A", "B"], columns=["z0", "z1"])
    >>> fig = target_graph_heatmap(g)
    >>> len(fig.axes) >= 1
    True
    """
    graph = pd.DataFrame(graph)
    cols = list(graph.columns)
    if matching is not None:
        matched = [cols[j] for j in matching if j >= 0]
        cols = matched + [c for c in cols if c not in matched]
    rows = list(graph.index)
    if cluster and len(rows) > 2:
        rows = [rows[i] for i in _leaves(graph.to_numpy())]
        if matching is None and len(cols) > 2:
            cols = [cols[i] for i in _leaves(graph.to_numpy().T)]
    rows = rows[:max_rows]
    panels = [("learned", graph.loc[rows, cols])]
    if true_graph is not None:
        panels.insert(0, ("true", pd.DataFrame(true_graph).loc[rows]))
    height = 1.5 + 0.18 * len(rows)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(2.5 + 0.35 * sum(p.shape[1] for _, p in panels), height),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, (name, df) in zip(axes[0], panels):
        im = ax.imshow(df.to_numpy(dtype=float), vmin=0, vmax=1, cmap="Blues", aspect="auto")
        ax.set_xticks(range(df.shape[1]), df.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(df.shape[0]), df.index, fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("latent unit")
    axes[0][0].set_ylabel("perturbation")
    fig.colorbar(im, ax=axes[0][-1], label="inclusion probability", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def training_history(
    history: dict[str, pd.DataFrame] | pd.DataFrame,
    keys: Sequence[str] = (
        "elbo_train",
        "elbo_validation",
        "mask_density_train",
        "mask_temperature_train",
    ),
) -> Figure:
    """Learning curves from ``model.history``, one panel per available key.

    Parameters
    ----------
    history
        ``model.history``: a dict of one-column DataFrames indexed by epoch (scvi-tools
        models), or one DataFrame with a column per key (:class:`~scvi_causal.images.ImageVAE`).
    keys
        Keys to plot; missing ones are skipped.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Examples
    --------
    >>> import pandas as pd
    >>> h = {"elbo_train": pd.DataFrame({"elbo_train": [3.0, 2.0, 1.5]})}
    >>> fig = training_history(h)
    >>> len(fig.axes)
    1
    """
    if isinstance(history, pd.DataFrame):
        history = {k: history[[k]] for k in history.columns}
    present = [k for k in keys if k in history]
    if not present:
        raise ValueError(f"None of {list(keys)} is in the history ({list(history)}).")
    fig, axes = plt.subplots(
        1,
        len(present),
        figsize=(3.2 * len(present), 2.8),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, key in zip(axes[0], present):
        values = history[key].iloc[:, 0].astype(float)
        ax.plot(values.index, values.to_numpy())
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
    return fig


def _leaves(x: np.ndarray) -> list[int]:
    from scipy.cluster.hierarchy import leaves_list, linkage

    if x.shape[0] < 2:
        return list(range(x.shape[0]))
    return leaves_list(linkage(x, method="average", metric="cityblock")).tolist()
