"""Evaluation of counterfactual predictions: log fold changes and distribution distances."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from scvi_causal._constants import LFC_SCALE


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 2-D array, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x


def normalize_counts(counts) -> np.ndarray:
    """Per-cell proportions of counts (each row sums to 1; empty rows stay 0).

    Examples
    --------
    >>> normalize_counts([[1, 3], [0, 0]]).tolist()
    [[0.25, 0.75], [0.0, 0.0]]
    """
    x = _as_2d(counts, "counts")
    total = x.sum(1, keepdims=True)
    return np.divide(x, total, out=np.zeros_like(x), where=total > 0)


def log_fold_change(expression, control_expression, scale: float = LFC_SCALE) -> np.ndarray:
    r"""Per-gene log fold change of mean normalised expression against control.

    :math:`\mathrm{LFC}_g = \log(1 + s\,\bar x_g) - \log(1 + s\,\bar c_g)` with :math:`\bar x,
    \bar c` the mean normalised expression (rows summing to 1, e.g. from
    :func:`normalize_counts` or ``SparseShiftVI.predict``) of the perturbed and control cells and
    :math:`s` = ``scale`` (counts per 10,000 by default), a pseudocount that keeps lowly
    expressed genes from dominating.

    Parameters
    ----------
    expression, control_expression
        ``(n_cells, n_genes)`` normalised expression of perturbed and control cells.
    scale
        Multiplier before ``log1p``.

    Returns
    -------
    numpy.ndarray
        ``(n_genes,)`` log fold changes (natural log).

    Examples
    --------
    >>> lfc = log_fold_change([[0.5, 0.5]], [[0.25, 0.75]], scale=1.0)
    >>> bool(lfc[0] > 0 > lfc[1])
    True
    """
    x = _as_2d(expression, "expression")
    c = _as_2d(control_expression, "control_expression")
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"Gene numbers differ: {x.shape[1]} vs {c.shape[1]}.")
    return np.log1p(scale * x.mean(0)) - np.log1p(scale * c.mean(0))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0 when either vector is constant (no linear association can be read)."""
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    ss_tot = ((observed - observed.mean()) ** 2).sum()
    if ss_tot == 0:
        return float("nan")
    return float(1.0 - ((observed - predicted) ** 2).sum() / ss_tot)


def logfc_agreement(predicted_lfc, observed_lfc, top_k: int = 20) -> dict[str, float]:
    """Agreement of predicted and observed log fold changes against control.

    Pearson r and the coefficient of determination :math:`R^2 = 1 - SS_{res}/SS_{tot}` (no
    refit: a prediction with the right direction but the wrong magnitude is penalised) on all
    genes and on the ``top_k`` genes with the largest observed ``|LFC|``. A constant prediction
    (e.g. the ``mean`` baseline, LFC = 0) gets r = 0.

    Parameters
    ----------
    predicted_lfc, observed_lfc
        ``(n_genes,)`` log fold changes (see :func:`log_fold_change`).
    top_k
        Number of most changed observed genes for the ``*_top`` scores.

    Returns
    -------
    dict
        ``pearson_all``, ``r2_all``, ``pearson_top``, ``r2_top``.

    Examples
    --------
    >>> obs = [2.0, -1.0, 0.1, 0.0]
    >>> scores = logfc_agreement([1.8, -0.9, 0.0, 0.1], obs, top_k=2)
    >>> round(scores["pearson_top"], 3), scores["r2_all"] > 0.9
    (1.0, True)
    """
    p = np.asarray(predicted_lfc, dtype=np.float64).ravel()
    o = np.asarray(observed_lfc, dtype=np.float64).ravel()
    if p.shape != o.shape or p.size < 2:
        raise ValueError(f"Need two LFC vectors of equal length >= 2, got {p.shape}, {o.shape}.")
    if not (np.isfinite(p).all() and np.isfinite(o).all()):
        raise ValueError("LFC vectors contain NaN or infinite values.")
    if top_k < 2:
        raise ValueError("`top_k` must be >= 2.")
    top = np.argsort(-np.abs(o), kind="stable")[: min(top_k, o.size)]
    return {
        "pearson_all": _pearson(p, o),
        "r2_all": _r2(o, p),
        "pearson_top": _pearson(p[top], o[top]),
        "r2_top": _r2(o[top], p[top]),
    }


def energy_distance(x, y, max_cells: int = 2000, seed: int = 0) -> float:
    r"""Energy distance between two sets of cells (E-distance of Rizzo & Székely).

    :math:`E = 2\,\mathbb{E}\|X - Y\| - \mathbb{E}\|X - X'\| - \mathbb{E}\|Y - Y'\|`, which is
    zero iff the two distributions are equal. Compute it on a representation where Euclidean
    distance is meaningful, e.g. ``log1p(1e4 * normalised expression)`` or a PCA of it.

    Parameters
    ----------
    x, y
        ``(n, d)`` and ``(m, d)`` arrays.
    max_cells
        Each set is subsampled to at most this many cells (memory is quadratic).
    seed
        Seed of the subsampling.

    Returns
    -------
    float
        Non-negative energy distance (the V-statistic).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    >>> energy_distance(a, b) < energy_distance(a, b + 3.0)
    True
    """
    x = _as_2d(x, "x")
    y = _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Dimensions differ: {x.shape[1]} vs {y.shape[1]}.")
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_cells:
        x = x[rng.choice(x.shape[0], max_cells, replace=False)]
    if y.shape[0] > max_cells:
        y = y[rng.choice(y.shape[0], max_cells, replace=False)]
    e = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    return float(max(e, 0.0))


def baseline_lfc(
    method: str,
    perturbation: str,
    observed_lfc: dict[str, np.ndarray],
    delimiter: str = "+",
) -> np.ndarray:
    """Log fold change predicted by a baseline from observed training perturbations.

    ``"mean"``: predict the control mean (LFC = 0 for every gene). ``"additive"``: the sum of the
    observed LFCs of the members of a combination (``"A+B"`` -> LFC(A) + LFC(B)); for a single
    perturbation, its own observed LFC from the training cells.

    Parameters
    ----------
    method
        ``"mean"`` or ``"additive"``.
    perturbation
        Label to predict, combinations joined by ``delimiter``.
    observed_lfc
        Observed LFC (:func:`log_fold_change`) of each training perturbation, by label; must
        hold every member of ``perturbation`` for ``"additive"``.
    delimiter
        Separator of combinations.

    Returns
    -------
    numpy.ndarray
        ``(n_genes,)`` predicted log fold changes.

    Examples
    --------
    >>> lfcs = {"A": np.array([1.0, 0.0]), "B": np.array([0.5, -1.0])}
    >>> baseline_lfc("additive", "A+B", lfcs).tolist()
    [1.5, -1.0]
    >>> baseline_lfc("mean", "A+B", lfcs).tolist()
    [0.0, 0.0]
    """
    if not observed_lfc:
        raise ValueError("`observed_lfc` is empty.")
    n_genes = len(next(iter(observed_lfc.values())))
    if method == "mean":
        return np.zeros(n_genes)
    if method != "additive":
        raise ValueError(f"`method` must be 'mean' or 'additive', got {method!r}.")
    members = [m.strip() for m in str(perturbation).split(delimiter) if m.strip()]
    missing = [m for m in members if m not in observed_lfc]
    if missing:
        raise ValueError(f"No observed LFC for {missing}: the additive baseline needs them.")
    return np.sum([np.asarray(observed_lfc[m], dtype=np.float64) for m in members], axis=0)
