"""Plots of latent-unit gene effects."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def unit_gene_heatmap(effects: pd.DataFrame, n_top: int = 5, title: str | None = None) -> Figure:
    """Heatmap of the top genes of every latent unit (units x genes log fold changes).

    For each unit (row of ``effects``) its ``n_top`` most increased and ``n_top`` most decreased
    genes are selected; the heatmap shows every unit's effect on the union of those genes, so
    that the genes specific to one unit stand out.

    Parameters
    ----------
    effects
        Units x genes log fold changes, e.g. from
        :meth:`~scvi_causal.model.SparseShiftVI.get_latent_gene_effects`.
    n_top
        Genes per unit and direction.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Examples
    --------
    >>> import pandas as pd
    >>> eff = pd.DataFrame([[1.0, -0.5, 0.0], [0.0, 0.2, -1.0]], index=["z0", "z1"],
    ...                    columns=["g1", "g2", "g3"])
    >>> fig = unit_gene_heatmap(eff, n_top=1)
    >>> len(fig.axes)
    2
    """
    effects = pd.DataFrame(effects)
    if effects.empty:
        raise ValueError("`effects` is empty.")
    if n_top < 1:
        raise ValueError("`n_top` must be >= 1.")
    genes: list = []
    for _, row in effects.iterrows():
        for g in [*row.nlargest(n_top).index, *row.nsmallest(n_top).index]:
            if g not in genes:
                genes.append(g)
    values = effects[genes].to_numpy()
    lim = float(np.abs(values).max()) or 1.0
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.22 * len(genes) + 1.5), max(2.5, 0.3 * len(effects) + 1.0))
    )
    im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_yticks(range(len(effects)), effects.index)
    ax.set_xticks(range(len(genes)), [str(g) for g in genes], rotation=90, fontsize=7)
    fig.colorbar(im, ax=ax, label="log fold change", shrink=0.8)
    ax.set_title(title or "Top genes of each latent unit")
    fig.tight_layout()
    return fig
