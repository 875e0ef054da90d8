"""Identifiability metrics: compare estimated latents with ground-truth latents.

All functions are pure functions of ``(n_samples, n_dims)`` arrays (numpy arrays or pandas
DataFrames). They follow the evaluation protocol of identifiable VAEs
:cite:p:`khemakhem2020ivae` and of sparse mechanism shift models :cite:p:`lopez2023learning`:
the mean correlation coefficient (MCC) measures identifiability up to permutation and
element-wise rescaling, the linear :math:`R^2` measures identifiability up to linear maps.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

_METHODS = ("pearson", "spearman")


def _check_2d(x, name: str, min_samples: int = 2) -> np.ndarray:
    """Convert ``x`` to a finite 2-D float array or raise a ``ValueError``."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (n_samples, n_dims), got ndim={arr.ndim}."
        )
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"`{name}` must have at least {min_samples} samples (rows), got {arr.shape[0]}."
        )
    if arr.shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one column, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return arr


def _check_pair(z_true, z_hat, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    z_true = _check_2d(z_true, "z_true", min_samples=min_samples)
    z_hat = _check_2d(z_hat, "z_hat", min_samples=min_samples)
    if z_true.shape[0] != z_hat.shape[0]:
        raise ValueError(
            "`z_true` and `z_hat` must have the same number of samples, got "
            f"{z_true.shape[0]} and {z_hat.shape[0]}."
        )
    return z_true, z_hat


def _standardize(x: np.ndarray) -> np.ndarray:
    """Center columns and scale them to unit norm; constant columns become all zeros."""
    centered = x - x.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(centered, axis=0, keepdims=True)
    # A column is constant if its spread is at round-off level relative to its magnitude.
    magnitude = np.abs(x).max(axis=0, keepdims=True) * np.sqrt(x.shape[0])
    constant = norm <= 1e-12 * magnitude
    return np.where(constant, 0.0, centered / np.where(constant, 1.0, norm))


def _abs_correlation(z_true: np.ndarray, z_hat: np.ndarray, method: str) -> np.ndarray:
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
    if method == "spearman":
        z_true = rankdata(z_true, axis=0)
        z_hat = rankdata(z_hat, axis=0)
    corr = _standardize(z_true).T @ _standardize(z_hat)
    return np.clip(np.abs(corr), 0.0, 1.0)


def match_latents(
    z_true, z_hat, method: Literal["pearson", "spearman"] = "pearson"
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of estimated to true latent dimensions.

    Solves the linear assignment problem on the negative absolute correlation matrix
    (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`), as in the MCC
    protocol of :cite:p:`khemakhem2020ivae` and :cite:p:`hyvarinen2016tcl`.

    Parameters
    ----------
    z_true
        Ground-truth latents, shape ``(n_samples, n_true)``.
    z_hat
        Estimated latents, shape ``(n_samples, n_hat)``. ``n_hat`` may differ from ``n_true``.
    method
        ``"pearson"`` (identifiability up to affine maps per dimension) or ``"spearman"``
        (up to monotone maps per dimension).

    Returns
    -------
    matching : numpy.ndarray
        Integer array of length ``n_true``; ``matching[i]`` is the column of ``z_hat`` matched to
        true dimension ``i``, or ``-1`` if ``n_hat < n_true`` and dimension ``i`` is unmatched.
    abs_corr : numpy.ndarray
        ``(n_true, n_hat)`` matrix of absolute correlations. Constant columns have
        correlation 0.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(500, 3))
    >>> z_hat = np.column_stack([-2 * z[:, 2], z[:, 0], 5 * z[:, 1] + 1])
    >>> matching, abs_corr = match_latents(z, z_hat)
    >>> matching
    array([1, 2, 0])
    >>> abs_corr.shape
    (3, 3)
    """
    z_true, z_hat = _check_pair(z_true, z_hat)
    abs_corr = _abs_correlation(z_true, z_hat, method)
    rows, cols = linear_sum_assignment(-abs_corr)
    matching = np.full(z_true.shape[1], -1, dtype=np.int64)
    matching[rows] = cols
    return matching, abs_corr


def mcc(z_true, z_hat, method: Literal["pearson", "spearman"] = "pearson") -> float:
    """Mean correlation coefficient (MCC) between true and estimated latents.

    The mean over true dimensions of the absolute correlation of the matched pair found by
    :func:`match_latents` :cite:p:`khemakhem2020ivae,lopez2023learning`. Unmatched true
    dimensions (when ``z_hat`` has fewer columns) count as 0. The MCC is 1 when ``z_hat`` equals
    ``z_true`` up to permutation, rescaling, shifts and sign flips (and, with
    ``method="spearman"``, up to any strictly monotone element-wise map).

    Parameters
    ----------
    z_true
        Ground-truth latents, shape ``(n_samples, n_true)``.
    z_hat
        Estimated latents, shape ``(n_samples, n_hat)``.
    method
        ``"pearson"`` or ``"spearman"``.

    Returns
    -------
    float
        The MCC, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(500, 3))
    >>> round(mcc(z, -3 * z[:, ::-1]), 6)
    1.0
    >>> mcc(z, rng.normal(size=(500, 3))) < 0.2
    True
    """
    matching, abs_corr = match_latents(z_true, z_hat, method=method)
    matched = matching >= 0
    scores = np.zeros(len(matching))
    scores[matched] = abs_corr[np.flatnonzero(matched), matching[matched]]
    return float(scores.mean())


def r2(z_true, z_hat, test_size: float = 0.5, random_state: int | None = 0) -> float:
    """Held-out linear :math:`R^2` of the true latents given the estimated latents.

    For each true dimension ``i``, fits :class:`sklearn.linear_model.LinearRegression` of
    ``z_true[:, i]`` on all columns of ``z_hat`` on a training split and reports the
    coefficient of determination on the held-out split, clipped at 0 from below; the result is
    the mean over true dimensions. This measures identifiability up to an invertible linear map
    :cite:p:`khemakhem2020ivae,lopez2023learning`: a rotated (mixed) estimate has an MCC below 1
    but an :math:`R^2` close to 1.

    Parameters
    ----------
    z_true
        Ground-truth latents, shape ``(n_samples, n_true)``.
    z_hat
        Estimated latents, shape ``(n_samples, n_hat)``.
    test_size
        Fraction (or absolute number) of samples held out, passed to
        :func:`sklearn.model_selection.train_test_split`.
    random_state
        Seed of the train/test split.

    Returns
    -------
    float
        The mean held-out :math:`R^2`, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(500, 3))
    >>> rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    >>> round(r2(z, z @ rotation), 6)
    1.0
    """
    z_true, z_hat = _check_pair(z_true, z_hat, min_samples=4)
    idx_train, idx_test = train_test_split(
        np.arange(z_true.shape[0]), test_size=test_size, random_state=random_state
    )
    if len(idx_train) < 2 or len(idx_test) < 2:
        raise ValueError(
            "The train/test split must leave at least 2 samples on each side, got "
            f"{len(idx_train)} train and {len(idx_test)} test samples; "
            "use more samples or change `test_size`."
        )
    reg = LinearRegression().fit(z_hat[idx_train], z_true[idx_train])
    pred = reg.predict(z_hat[idx_test])
    scores = r2_score(z_true[idx_test], pred, multioutput="raw_values")
    return float(np.clip(scores, 0.0, None).mean())
