"""Plot of the edge stability of a consensus target graph over several models."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def consensus_heatmap(
    consensus,
    min_stability: float = 0.8,
    drop_empty: bool = True,
    max_rows: int = 60,
    title: str | None = None,
) -> Figure:
    """Heatmap of edge stability over models, stable edges marked.

    Parameters
    ----------
    consensus
        Output of :func:`~scvi_causal.model.consensus_target_graph`, or a perturbations x units
        DataFrame of stabilities in [0, 1] (its ``stability`` attribute).
    min_stability
        Edges with ``stability >= min_stability`` are marked with a dot.
    drop_empty
        Leave out perturbations whose edges are present in no model (unless no edge is).
    max_rows
        Show at most this many perturbations (the first ones in the current order).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure. With a consensus result, each column label carries the unit's smallest
        ``|r|`` with its matched units in the other models (a low value: the unit did not
        replicate).

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame([[1.0, 0.2], [0.0, 0.8]], index=["A", "B"], columns=["z0", "z1"])
    >>> fig = consensus_heatmap(s)
    >>> len(fig.axes)
    2
    """
    stability = pd.DataFrame(getattr(consensus, "stability", consensus))
    values = stability.to_numpy(dtype=float)
    if values.size and (np.nanmin(values) < 0 or np.nanmax(values) > 1):
        raise ValueError("Stabilities must lie in [0, 1].")
    labels = [str(c) for c in stability.columns]
    if hasattr(consensus, "unit_replication"):
        replication = consensus.unit_replication()
        labels = [f"{c} (|r| {replication[c]:.2f})" for c in stability.columns]
    if drop_empty and stability.gt(0).any(axis=None):
        stability = stability.loc[stability.gt(0).any(axis=1)]
    stability = stability.iloc[:max_rows]
    height = 1.5 + 0.18 * max(len(stability), 1)
    fig, ax = plt.subplots(
        figsize=(2.5 + 0.4 * stability.shape[1], height), constrained_layout=True
    )
    im = ax.imshow(stability.to_numpy(dtype=float), vmin=0, vmax=1, cmap="Blues", aspect="auto")
    rows, cols = np.nonzero(stability.to_numpy(dtype=float) >= min_stability - 1e-12)
    ax.scatter(cols, rows, s=10, color="orange", marker="o")
    ax.set_title(f"dots: stable edges (stability >= {min_stability:g})", fontsize=8)
    ax.set_xticks(range(stability.shape[1]), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(stability.shape[0]), stability.index, fontsize=7)
    ax.set_xlabel("reference latent unit")
    ax.set_ylabel("perturbation")
    fig.colorbar(im, ax=ax, label="stability", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig
