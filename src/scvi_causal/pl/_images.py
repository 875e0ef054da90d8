"""Latent traversals of an image model."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def latent_traversal(
    model,
    image,
    values=None,
    units=None,
    unit_labels=None,
    title: str | None = None,
) -> Figure:
    """Decode an image's latent with one unit moved at a time (rows: units; columns: values).

    Parameters
    ----------
    model
        An object with ``get_latent_representation(images)`` and ``decode(latents)``, e.g.
        :class:`~scvi_causal.images.ImageVAE`.
    image
        One ``(64, 64)`` image whose posterior mean is the starting point.
    values
        Values each unit is set to (default ``np.linspace(-2.5, 2.5, 7)``).
    units
        Units to traverse (default: all).
    unit_labels
        Row labels (default ``z0``, ``z1``, ...).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = latent_traversal(vae, data.images[0])  # doctest: +SKIP
    """
    image = np.asarray(image)
    if image.shape != (64, 64):
        raise ValueError(f"`image` must be (64, 64), got {image.shape}.")
    values = np.linspace(-2.5, 2.5, 7) if values is None else np.asarray(values, dtype=float)
    z0 = model.get_latent_representation(image[None])[0]
    units = list(range(len(z0))) if units is None else list(units)
    if not units:
        raise ValueError("`units` is empty.")
    labels = unit_labels or [f"z{u}" for u in units]
    latents = np.repeat(z0[None], len(units) * len(values), axis=0)
    for i, u in enumerate(units):
        latents[i * len(values) : (i + 1) * len(values), u] = values
    decoded = model.decode(latents).reshape(len(units), len(values), 64, 64)
    fig, axes = plt.subplots(
        len(units),
        len(values),
        figsize=(0.9 * len(values), 0.9 * len(units) + 0.4),
        squeeze=False,
    )
    for i in range(len(units)):
        for j in range(len(values)):
            ax = axes[i][j]
            ax.imshow(decoded[i, j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(labels[i], rotation=0, ha="right", va="center")
            if i == len(units) - 1:
                ax.set_xlabel(f"{values[j]:.1f}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
