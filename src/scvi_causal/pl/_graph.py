"""Plots of perturbation x latent target graphs, latent causal graphs and training diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch

_LAYOUTS = ("auto", "circle", "layered")
_NODE_RADIUS = 0.12


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


def latent_graph(
    graph: pd.DataFrame,
    threshold: float = 0.5,
    layout: Literal["auto", "circle", "layered"] = "auto",
    highlight: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw a causal graph among latent units: nodes, and an arrow for every edge.

    Parameters
    ----------
    graph
        Units x units DataFrame, rows = parent, columns = child, with edge inclusion
        probabilities in [0, 1] (:meth:`~scvi_causal.model.SparseShiftVI.get_latent_graph`) or
        0/1 edges (``uns["true_latent_graph"]`` of
        :func:`~scvi_causal.data.simulate_sparse_shift`); an array gets the names
        ``z0, z1, ...``.
    threshold
        Edges with probability ``>= threshold`` (off the diagonal) are drawn; an arrow's width
        and opacity grow with its probability.
    layout
        ``"circle"``: units on a circle. ``"layered"``: units in rows by depth (the length of
        the longest path from a unit without parents), parents above children; needs an acyclic
        graph. ``"auto"``: ``"layered"`` when the drawn edges are acyclic, else ``"circle"``.
    highlight
        Units to fill in colour, e.g. the direct targets of a perturbation.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Examples
    --------
    >>> import pandas as pd
    >>> g = pd.DataFrame(
    ...     [[0, 0.9, 0.2], [0, 0, 0.7], [0, 0, 0]], index=["z0", "z1", "z2"],
    ...     columns=["z0", "z1", "z2"],
    ... )
    >>> fig = latent_graph(g)  # z0 -> z1 -> z2, in three layers
    >>> len(fig.axes)
    1
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"`layout` must be one of {_LAYOUTS}, got {layout!r}.")
    shape = np.shape(graph)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise ValueError(f"`graph` must be a non-empty square units x units table, got {shape}.")
    if not isinstance(graph, pd.DataFrame):
        names = [f"z{k}" for k in range(shape[0])]
        graph = pd.DataFrame(np.asarray(graph, dtype=float), index=names, columns=names)
    if list(graph.index) != list(graph.columns):
        raise ValueError("`graph` must have the same units as rows (parents) and columns.")
    probs = graph.to_numpy(dtype=float)
    n = probs.shape[0]
    edges = (probs >= threshold) & ~np.eye(n, dtype=bool)
    depth = _longest_path_depths(edges)
    if layout == "layered" and depth is None:
        raise ValueError(
            'layout="layered" needs an acyclic graph; the edges drawn have a cycle '
            '(use "circle", or a higher `threshold`).'
        )
    layered = layout != "circle" and depth is not None
    if not layered:
        angle = np.pi / 2 - 2 * np.pi * np.arange(n) / n
        pos = np.column_stack([np.cos(angle), np.sin(angle)])
    else:
        pos = np.zeros((n, 2))
        for d in np.unique(depth):
            layer = np.flatnonzero(depth == d)
            if d > 0:  # children under the mean position of their parents
                layer = layer[
                    np.argsort([pos[edges[:, k], 0].mean() for k in layer], kind="stable")
                ]
            pos[layer, 0] = (np.arange(len(layer)) - (len(layer) - 1) / 2) * 0.6
            pos[layer, 1] = -0.6 * d
    size = np.ptp(pos, axis=0) + 1.0
    fig, ax = plt.subplots(figsize=(min(12.0, 1.5 + 2.0 * size[0]), min(12.0, 1.2 + 2.0 * size[1])))
    highlighted = set(highlight or [])
    for (x, y), name in zip(pos, graph.index, strict=True):
        fill = "tab:orange" if name in highlighted else "white"
        ax.add_patch(Circle((x, y), _NODE_RADIUS, facecolor=fill, edgecolor="black", zorder=3))
        ax.text(x, y, str(name), ha="center", va="center", fontsize=8, zorder=4)
    for i, j in zip(*np.nonzero(edges), strict=True):
        start, end = pos[i], pos[j]
        unit = (end - start) / np.linalg.norm(end - start)
        p = float(np.clip(probs[i, j], 0.0, 1.0))
        # an edge that skips layers bends more, around the units between
        bend = 0.12 * (max(1, depth[j] - depth[i]) if layered else 1)
        ax.add_patch(
            FancyArrowPatch(
                start + _NODE_RADIUS * unit,
                end - _NODE_RADIUS * unit,
                arrowstyle="-|>",
                mutation_scale=12,
                connectionstyle=f"arc3,rad={bend:g}",
                linewidth=0.5 + 2.5 * p,
                alpha=0.3 + 0.7 * p,
                color="tab:blue",
                zorder=2,
                gid=f"{graph.index[i]}->{graph.columns[j]}",
            )
        )
    margin = 2 * _NODE_RADIUS
    ax.set_xlim(pos[:, 0].min() - margin, pos[:, 0].max() + margin)
    ax.set_ylim(pos[:, 1].min() - margin, pos[:, 1].max() + margin)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"Latent graph: {int(edges.sum())} edges (probability >= {threshold:g})")
    fig.tight_layout()
    return fig


def _longest_path_depths(edges: np.ndarray) -> np.ndarray | None:
    """Length of the longest path from a unit without parents to each unit; None if cyclic."""
    n = edges.shape[0]
    depth = np.zeros(n, dtype=np.int64)
    n_parents = edges.sum(axis=0)
    ready = list(np.flatnonzero(n_parents == 0))
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for child in np.flatnonzero(edges[node]):
            depth[child] = max(depth[child], depth[node] + 1)
            n_parents[child] -= 1
            if n_parents[child] == 0:
                ready.append(child)
    return depth if seen == n else None


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
