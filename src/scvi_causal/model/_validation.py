"""Input checks shared by the models: clear errors before anything is registered."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

logger = logging.getLogger(__name__)

_CHUNK = 10_000


def check_counts(adata: AnnData, layer: str | None = None) -> None:
    """Raise on NaN/inf or negative values; warn on non-integer values (chunked, never densifies).

    Works on in-memory dense or sparse matrices and on backed AnnData.
    """
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in adata.layers ({list(adata.layers)}).")
    X = adata.X if layer is None else adata.layers[layer]
    if X is None:
        raise ValueError("adata.X is empty; pass the layer that holds raw counts via `layer=`.")
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    non_integer = False
    for start in range(0, adata.n_obs, _CHUNK):
        block = X[start : start + _CHUNK]
        values = block.data if sparse.issparse(block) else np.asarray(block)
        if values.size == 0:
            continue
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"{where} contains NaN or infinite values; the model needs raw counts."
            )
        if values.min() < 0:
            raise ValueError(
                f"{where} contains negative values; the model needs raw (non-negative) counts, "
                "not normalised or scaled data."
            )
        if not non_integer and np.any(values != np.round(values)):
            non_integer = True
    if non_integer:
        warnings.warn(
            f"{where} contains non-integer values; the NB/ZINB/Poisson likelihoods expect raw "
            "counts. Make sure this is the right layer.",
            UserWarning,
            stacklevel=3,
        )


def check_perturbations(
    adata: AnnData,
    perturbation_key: str,
    control_category: str | Sequence[str] | None,
) -> list[str]:
    """Check the perturbation column and the control label(s); return the control labels."""
    if perturbation_key not in adata.obs:
        raise KeyError(
            f"perturbation_key {perturbation_key!r} is not a column of adata.obs "
            f"(columns: {list(adata.obs.columns)})."
        )
    labels = adata.obs[perturbation_key]
    if labels.isna().any():
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] has {int(labels.isna().sum())} missing labels; "
            "label every cell (controls with the control category)."
        )
    if isinstance(labels.dtype, pd.CategoricalDtype):
        counts = labels.value_counts()
        empty = counts.index[counts == 0].tolist()
        if empty:
            raise ValueError(
                f"Perturbation categories with zero cells in adata.obs[{perturbation_key!r}]: "
                f"{empty[:10]}{' ...' if len(empty) > 10 else ''}. Drop them with "
                f"adata.obs[{perturbation_key!r}] = "
                f"adata.obs[{perturbation_key!r}].cat.remove_unused_categories()."
            )
    present = set(map(str, labels.unique()))
    if control_category is None:
        return []
    controls = [control_category] if isinstance(control_category, str) else list(control_category)
    missing = [c for c in controls if str(c) not in present]
    if missing:
        raise ValueError(
            f"control_category {missing} not found in adata.obs[{perturbation_key!r}]. "
            f"Some labels present: {sorted(present)[:10]}. Use control_category=None for a "
            "screen without control cells."
        )
    if len(controls) and set(map(str, controls)) == present:
        logger.warning("Every cell is a control: the model has no perturbation to learn.")
    return [str(c) for c in controls]
