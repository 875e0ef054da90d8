"""Input checks shared by the models: clear errors before anything is registered."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scvi_causal._constants import MATRIX_LABEL_KEY
from scvi_causal._encoding import control_labels

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
) -> None:
    """Check the perturbation column and the control label(s)."""
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
        return
    controls = control_labels(control_category)
    missing = [c for c in controls if str(c) not in present]
    if missing:
        raise ValueError(
            f"control_category {missing} not found in adata.obs[{perturbation_key!r}]. "
            f"Some labels present: {sorted(present)[:10]}. Use control_category=None for a "
            "screen without control cells."
        )
    if len(controls) and set(map(str, controls)) == present:
        logger.warning("Every cell is a control: the model has no perturbation to learn.")


__all__ = [
    "MATRIX_LABEL_KEY",
    "check_counts",
    "check_perturbations",
    "perturbation_matrix_labels",
    "source_cells",
]


def perturbation_matrix_labels(
    adata: AnnData,
    obsm_key: str,
    names: Sequence[str] | None,
    control: str | None,
    delimiter: str | None,
    allow_unused: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Labels (``"A+B"``; ``control`` for rows of zeros) of a cells x perturbations matrix.

    ``adata.obsm[obsm_key]`` is a DataFrame (columns = perturbation names) or a dense or
    sparse matrix with ``names`` given; any non-zero entry means that the cell carries that
    perturbation (0/1 calls or guide counts). Never densifies a sparse matrix. Raises a clear
    error on a missing key, names that do not match the columns, NaN/inf or negative values,
    perturbations carried by no cell (unless ``allow_unused``), a name that contains the
    delimiter or equals the control label, and rows of zeros without a control label.
    Returns the labels and the perturbation names (column order).
    """
    if obsm_key not in adata.obsm:
        raise KeyError(
            f"perturbation_obsm_key {obsm_key!r} is not a key of adata.obsm "
            f"(keys: {list(adata.obsm.keys())})."
        )
    values = adata.obsm[obsm_key]
    where = f"adata.obsm[{obsm_key!r}]"
    if isinstance(values, pd.DataFrame):
        columns = [str(c) for c in values.columns]
        if names is not None and [str(n) for n in names] != columns:
            raise ValueError(
                f"perturbation_names do not match the columns of {where} "
                f"({columns[:5]} ...); leave perturbation_names out for a DataFrame."
            )
        names = columns
        values = values.to_numpy()
    elif names is None:
        raise ValueError(
            f"{where} is a matrix without column names: pass perturbation_names (one per "
            "column) or store a DataFrame whose columns name the perturbations."
        )
    names = [str(n) for n in names]
    if getattr(values, "ndim", 2) != 2 or values.shape[0] != adata.n_obs:
        raise ValueError(
            f"{where} must be a cells x perturbations matrix, got shape "
            f"{getattr(values, 'shape', None)}."
        )
    if values.shape[1] != len(names):
        raise ValueError(
            f"{where} has {values.shape[1]} columns but {len(names)} perturbation_names."
        )
    if len(set(names)) < len(names):
        raise ValueError("Perturbation names must be distinct.")
    if delimiter is not None:
        bad = [n for n in names if delimiter in n]
        if bad:
            raise ValueError(
                f"Perturbation names contain the delimiter {delimiter!r}: {bad[:5]}; pass "
                "another perturbation_delimiter."
            )
    if control is not None and control in names:
        raise ValueError(f"{control!r} is the control label and cannot name a perturbation.")
    matrix = sparse.csr_matrix(values, dtype=np.float64)
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"{where} contains NaN or infinite values.")
    if matrix.data.size and matrix.data.min() < 0:
        raise ValueError(
            f"{where} contains negative values; non-zero (positive) entries mark the "
            "perturbations a cell carries."
        )
    matrix.eliminate_zeros()
    matrix.sort_indices()
    unused = np.flatnonzero(np.diff(matrix.tocsc().indptr) == 0)
    if len(unused) and not allow_unused:
        raise ValueError(
            f"Perturbations carried by no cell in {where}: "
            f"{[names[i] for i in unused[:10]]}{' ...' if len(unused) > 10 else ''}. Drop "
            "these columns."
        )
    joiner = delimiter if delimiter is not None else "+"
    if delimiter is None and matrix.getnnz(axis=1).max(initial=0) > 1:
        raise ValueError(
            "Cells carry several perturbations but perturbation_delimiter is None; pass a "
            "delimiter (e.g. '+') that no perturbation name contains."
        )
    named = np.asarray(names, dtype=object)
    labels = np.empty(adata.n_obs, dtype=object)
    for i in range(adata.n_obs):
        cols = matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]]
        labels[i] = joiner.join(named[cols]) if len(cols) else control
    if control is None and any(label is None for label in labels):
        raise ValueError(
            f"{where} has rows of zeros (cells without perturbation), but control_category "
            "is None; give the control label those cells get."
        )
    return labels, names


def source_cells(
    labels: pd.Series,
    controls: Sequence[str],
    source_category: str | Sequence[str] | None = None,
    all_without_controls: bool = False,
) -> tuple[list[str], np.ndarray]:
    """The cells counterfactual predictions start from: their labels and indices.

    ``source_category`` (a label or labels) or, by default, the control labels; a screen
    without controls raises a clear error, unless ``all_without_controls`` (then every cell is a
    source). Raises if no cell carries a source label.

    Examples
    --------
    >>> labels = pd.Series(["ctrl", "A", "ctrl"])
    >>> source_cells(labels, ["ctrl"])
    (['ctrl'], array([0, 2]))
    """
    if source_category is None:
        if controls:
            sources = list(controls)
        elif all_without_controls:
            sources = sorted(map(str, labels.unique()))
        else:
            raise ValueError(
                "The model has no control category; pass `source_category` (the label of the "
                "cells to start from)."
            )
    else:
        sources = control_labels(source_category)
    indices = np.flatnonzero(labels.isin(sources).to_numpy())
    if len(indices) == 0:
        raise ValueError(
            f"No cells with source_category {sources} in adata (labels present: "
            f"{sorted(map(str, labels.unique()))[:10]})."
        )
    return sources, indices
