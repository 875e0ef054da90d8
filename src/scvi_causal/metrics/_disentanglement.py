"""Disentanglement metrics: pure functions of ``(latents, factors)`` arrays.

Every metric takes ``latents`` of shape ``(n_samples, n_latents)`` (continuous codes, e.g. the
posterior means of a VAE) and ``factors`` of shape ``(n_samples, n_factors)`` (ground-truth
factors of variation) and returns numbers. The split between sampling the data and a pure
metric core follows disentanglement_lib :cite:p:`locatello2019challenging`.

Factors may be discrete (class labels, such as the shape, scale, orientation and position
classes of dSprites) or continuous. By default a factor is discrete if its column is not of a
floating-point type (integers, booleans, strings) or if it takes at most 50 distinct values,
and at most ``n_samples // 2``; ``discrete_factors`` overrides this. Mutual-information based
metrics (:func:`mig`, :func:`modularity`) bin continuous latents and factors into ``n_bins``
equal-width bins per column; predictor based metrics (:func:`dci`, :func:`sap`) classify
discrete factors and regress continuous ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import chi2
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import mutual_info_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from ._identifiability import _check_2d, _standardize

_MAX_CLASSES = 50
# Random forests of :func:`dci`: small and seeded so that the metric is fast and deterministic.
_FOREST_KWARGS = {
    "n_estimators": 30,
    "max_depth": 8,
    "max_features": None,
    "min_samples_leaf": 5,
    "n_jobs": 1,
}


class _Factors:
    """Validated factors: integer codes per column, a discrete mask and continuous values."""

    def __init__(self, factors, n_samples: int, n_bins: int, discrete_factors):
        columns = _factor_columns(factors)
        if len(columns[0]) != n_samples:
            raise ValueError(
                "`latents` and `factors` must have the same number of samples, got "
                f"{n_samples} and {len(columns[0])}."
            )
        n_factors = len(columns)
        if discrete_factors is None:
            discrete = [_is_discrete(col) for col in columns]
        elif isinstance(discrete_factors, bool | np.bool_):
            discrete = [bool(discrete_factors)] * n_factors
        else:
            discrete = [bool(d) for d in discrete_factors]
            if len(discrete) != n_factors:
                raise ValueError(
                    f"`discrete_factors` must have one entry per factor ({n_factors}), "
                    f"got {len(discrete)}."
                )
        self.discrete = np.array(discrete)
        self.codes = np.zeros((n_samples, n_factors), dtype=np.int64)
        self.values = np.zeros((n_samples, n_factors))
        for k, (col, is_discrete) in enumerate(zip(columns, discrete)):
            if is_discrete:
                self.codes[:, k] = np.unique(col, return_inverse=True)[1].ravel()
            else:
                if col.dtype.kind not in "biuf":
                    raise ValueError(
                        f"Factor {k} is not numeric and cannot be continuous; "
                        "set `discrete_factors` accordingly."
                    )
                self.values[:, k] = col.astype(np.float64)
                self.codes[:, k] = _discretize(self.values[:, [k]], n_bins)[:, 0]
        self.varying = np.array([len(np.unique(c)) > 1 for c in self.codes.T])
        if not self.varying.any():
            raise ValueError("All factors are constant; there is nothing to disentangle.")


def _factor_columns(factors) -> list[np.ndarray]:
    """Split ``factors`` into 1-D columns, keeping each column's own dtype (DataFrames)."""
    if hasattr(factors, "iloc") and getattr(factors, "ndim", None) == 2:
        columns = [np.asarray(factors.iloc[:, k]) for k in range(factors.shape[1])]
        shape = factors.shape
    else:
        arr = np.asarray(factors)
        if arr.ndim != 2:
            raise ValueError(
                "`factors` must be a 2-D array of shape (n_samples, n_factors), "
                f"got ndim={arr.ndim}."
            )
        columns = list(arr.T)
        shape = arr.shape
    if shape[1] < 1:
        raise ValueError(f"`factors` must have at least one column, got shape {shape}.")
    for col in columns:
        if col.dtype.kind in "biuf" and not np.all(np.isfinite(col)):
            raise ValueError("`factors` contains NaN or infinite values.")
        if col.dtype.kind == "O":
            try:
                np.unique(col)
            except TypeError as err:
                raise ValueError(
                    "`factors` has a column of values that cannot be sorted "
                    "(mixed types?); encode it as integers or strings."
                ) from err
    return columns


def _is_discrete(col: np.ndarray) -> bool:
    if col.dtype.kind != "f":
        return True
    n_unique = len(np.unique(col))
    return n_unique <= min(_MAX_CLASSES, len(col) // 2)


def _prepare(latents, factors, n_bins: int, discrete_factors, min_samples: int = 2):
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ValueError(f"`n_bins` must be an integer >= 2, got {n_bins!r}.")
    z = _check_2d(latents, "latents", min_samples=min_samples)
    return z, _Factors(factors, z.shape[0], n_bins, discrete_factors)


def _discretize(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width histogram bins per column (as in disentanglement_lib); constant -> bin 0."""
    out = np.zeros(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        col = x[:, j]
        lo, hi = col.min(), col.max()
        if hi > lo:
            out[:, j] = np.digitize(col, np.linspace(lo, hi, n_bins + 1)[1:-1])
    return out


def _mi_matrix(z_codes: np.ndarray, v_codes: np.ndarray) -> np.ndarray:
    return np.array(
        [
            [mutual_info_score(v_codes[:, k], z_codes[:, j]) for k in range(v_codes.shape[1])]
            for j in range(z_codes.shape[1])
        ]
    )


def _entropy(codes: np.ndarray) -> float:
    return float(mutual_info_score(codes, codes))


def _split(n_samples: int, test_size: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(test_size, float) and not 0.0 < test_size < 1.0:
        raise ValueError(f"`test_size` must be in (0, 1) as a fraction, got {test_size}.")
    idx_train, idx_test = train_test_split(
        np.arange(n_samples), test_size=test_size, random_state=seed
    )
    if len(idx_train) < 2 or len(idx_test) < 1:
        raise ValueError(
            "The train/test split must leave at least 2 training and 1 test sample, got "
            f"{len(idx_train)} and {len(idx_test)}; use more samples or change `test_size`."
        )
    return idx_train, idx_test


def _return(per_factor: np.ndarray, return_per_factor: bool):
    if return_per_factor:
        return per_factor
    return float(np.nanmean(per_factor))


def mutual_information_matrix(
    latents, factors, n_bins: int = 20, discrete_factors: bool | Sequence[bool] | None = None
) -> np.ndarray:
    """Mutual information between binned latent units and factors.

    Plug-in estimate (:func:`sklearn.metrics.mutual_info_score`, in nats) after binning every
    latent unit, and every continuous factor, into ``n_bins`` equal-width bins; discrete
    factors are used as they are. It is the common ingredient of :func:`mig` and
    :func:`modularity`.

    Parameters
    ----------
    latents
        Latent codes, shape ``(n_samples, n_latents)``.
    factors
        Ground-truth factors, shape ``(n_samples, n_factors)``; discrete or continuous.
    n_bins
        Number of equal-width bins per latent unit (and per continuous factor).
    discrete_factors
        Whether each factor is discrete (one bool for all, or one per factor). ``None``:
        decided per column, see the module docstring.

    Returns
    -------
    numpy.ndarray
        ``(n_latents, n_factors)`` matrix of mutual informations, in nats.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 4, size=(1000, 2))
    >>> mutual_information_matrix(v + 0.1 * rng.normal(size=v.shape), v).round(1)
    array([[1.4, 0. ],
           [0. , 1.4]])
    """
    z, v = _prepare(latents, factors, n_bins, discrete_factors)
    return _mi_matrix(_discretize(z, n_bins), v.codes)


def mig(
    latents,
    factors,
    n_bins: int = 20,
    discrete_factors: bool | Sequence[bool] | None = None,
    return_per_factor: bool = False,
) -> float | np.ndarray:
    r"""Mutual information gap (MIG) :cite:p:`chen2018isolating`.

    For each factor :math:`v_k`, the gap between the largest and the second largest mutual
    information :math:`I(z_j; v_k)` over latent units (:func:`mutual_information_matrix`),
    divided by the entropy :math:`H(v_k)`; MIG is the mean over factors. It is 1 when each
    factor is captured by a single unit, and close to 0 when no unit is more informative than
    the others (independent noise) or when a factor is spread over, or copied into, several
    units. Constant factors have no entropy and are left out.

    Parameters
    ----------
    latents
        Latent codes, shape ``(n_samples, n_latents)``; binned into ``n_bins`` equal-width
        bins per unit, so invariant to permutations and affine rescalings of the units.
    factors
        Ground-truth factors, shape ``(n_samples, n_factors)``.
    n_bins
        Number of equal-width bins per latent unit (and per continuous factor).
    discrete_factors
        Whether each factor is discrete, see :func:`mutual_information_matrix`.
    return_per_factor
        Return the score of every factor (``NaN`` for constant factors) instead of the mean.

    Returns
    -------
    float or numpy.ndarray
        MIG in ``[0, 1]``, or the ``(n_factors,)`` array of per-factor gaps.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 5, size=(2000, 3))
    >>> round(mig(v + 0.01 * rng.normal(size=v.shape), v), 2)
    1.0
    >>> mig(rng.normal(size=(2000, 3)), v) < 0.05
    True
    >>> z = np.column_stack([v, v[:, 0]])  # factor 0 copied into two units
    >>> mig(z, v, return_per_factor=True).round(2)
    array([0., 1., 1.])
    """
    z, v = _prepare(latents, factors, n_bins, discrete_factors)
    mi = _mi_matrix(_discretize(z, n_bins), v.codes)
    per_factor = np.full(mi.shape[1], np.nan)
    for k in np.flatnonzero(v.varying):
        top = np.sort(mi[:, k])[::-1]
        second = top[1] if len(top) > 1 else 0.0
        per_factor[k] = np.clip((top[0] - second) / _entropy(v.codes[:, k]), 0.0, 1.0)
    return _return(per_factor, return_per_factor)


def modularity(
    latents,
    factors,
    n_bins: int = 20,
    alpha: float | None = 1e-3,
    discrete_factors: bool | Sequence[bool] | None = None,
) -> float:
    r"""Modularity score :cite:p:`ridgeway2018learning`.

    A latent unit is modular if it carries information about at most one factor. With
    :math:`m_{jk} = I(z_j; v_k)` (:func:`mutual_information_matrix`),
    :math:`\theta_j = \max_k m_{jk}` and :math:`K` factors, the deviation of unit :math:`j` from
    the ideal template (all information on its best factor) is
    :math:`\delta_j = \sum_{k \ne k^*} m_{jk}^2 / (\theta_j^2 (K - 1))`, and the score is the
    mean of :math:`1 - \delta_j` over units. As in disentanglement_lib
    :cite:p:`locatello2019challenging`, a unit without information (:math:`\theta_j = 0`)
    scores 0, so extra uninformative units lower the score.

    The plug-in mutual information is biased upwards by about
    :math:`(|z_j| - 1)(|v_k| - 1) / 2n` nats, more for factors with many values, which makes
    independent noise look modular (about 0.65 on dSprites-like factors). By default,
    entries that are not significantly above zero by the G-test of independence at level
    ``alpha`` (:math:`2 n\, m_{jk}` against a :math:`\chi^2` quantile) are set to 0, so that
    noise scores about 0 and an exact copy of the factors scores 1; ``alpha=None`` gives the
    uncorrected score of :cite:p:`ridgeway2018learning`.

    Parameters
    ----------
    latents
        Latent codes, shape ``(n_samples, n_latents)``.
    factors
        Ground-truth factors, shape ``(n_samples, n_factors)``.
    n_bins
        Number of equal-width bins per latent unit (and per continuous factor).
    alpha
        Level of the per-entry G-test; ``None`` keeps all mutual informations.
    discrete_factors
        Whether each factor is discrete, see :func:`mutual_information_matrix`.

    Returns
    -------
    float
        Modularity in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 5, size=(2000, 2))
    >>> round(modularity(v + 0.01 * rng.normal(size=v.shape), v), 2)
    1.0
    >>> modularity(rng.normal(size=(2000, 2)), v) < 0.1
    True
    """
    if alpha is not None and not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be in (0, 1) or None, got {alpha!r}.")
    z, v = _prepare(latents, factors, n_bins, discrete_factors)
    z_codes = _discretize(z, n_bins)
    codes = v.codes[:, v.varying]
    mi = _mi_matrix(z_codes, codes)
    if alpha is not None:
        levels_z = np.array([len(np.unique(c)) for c in z_codes.T])
        levels_v = np.array([len(np.unique(c)) for c in codes.T])
        dof = np.outer(levels_z - 1, levels_v - 1)
        critical = chi2.isf(alpha, np.maximum(dof, 1)) / (2 * z.shape[0])
        mi = np.where((dof > 0) & (mi > critical), mi, 0.0)
    n_factors = mi.shape[1]
    theta = mi.max(axis=1)
    informative = theta > 0
    scores = np.zeros(mi.shape[0])
    if n_factors == 1:
        scores[informative] = 1.0
    else:
        sq = mi[informative] ** 2
        delta = (sq.sum(axis=1) - theta[informative] ** 2) / (
            theta[informative] ** 2 * (n_factors - 1)
        )
        scores[informative] = 1.0 - delta
    return float(np.clip(scores, 0.0, 1.0).mean())


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of the normalised rows/columns of ``p`` with the log base = their length."""
    base = p.shape[axis]
    if base < 2:
        return np.zeros(p.shape[1 - axis])
    total = p.sum(axis=axis, keepdims=True)
    q = p / np.where(total > 0, total, 1.0)
    ent = -(q * np.log(np.where(q > 0, q, 1.0))).sum(axis=axis)
    # A row/column without importance carries no information: maximal entropy.
    return np.where(total.squeeze(axis) > 0, ent / np.log(base), 1.0)


def dci(
    latents,
    factors,
    test_size: float = 0.2,
    seed: int | None = 0,
    discrete_factors: bool | Sequence[bool] | None = None,
) -> dict:
    r"""Disentanglement, completeness and informativeness (DCI) :cite:p:`eastwood2018framework`.

    For each factor, a random forest (30 trees of depth at most 8, seeded with ``seed``)
    predicts the factor from all latent units: a classifier for discrete factors, a regressor
    for continuous ones. Its impurity-based feature importances form the column of the
    ``(n_latents, n_factors)`` importance matrix :math:`R`.

    - *Disentanglement*: per unit, one minus the entropy (base ``n_factors``) of its
      normalised row of :math:`R`; averaged with weights given by each unit's share of the
      total importance.
    - *Completeness*: per factor, one minus the entropy (base ``n_latents``) of its normalised
      column of :math:`R`; averaged with weights given by each factor's share.
    - *Informativeness*: held-out accuracy (discrete factors) or :math:`R^2` clipped at 0
      (continuous factors), averaged over factors.

    Random forests stand in for the gradient-boosted trees of disentanglement_lib
    :cite:p:`locatello2019challenging`: the same kind of importance (captures non-linear and
    non-monotone codes, invariant to monotone rescalings of the units) at a fraction of the
    cost; a linear model (Lasso) would miss codes that are not linear in the factor.
    Constant factors are left out.

    Parameters
    ----------
    latents
        Latent codes, shape ``(n_samples, n_latents)``.
    factors
        Ground-truth factors, shape ``(n_samples, n_factors)``.
    test_size
        Fraction (or absolute number) of samples held out for the informativeness, passed to
        :func:`sklearn.model_selection.train_test_split`; the forests are fit on the rest.
    seed
        Seed of the split and of the forests.
    discrete_factors
        Whether each factor is discrete, see :func:`mutual_information_matrix`.

    Returns
    -------
    dict
        ``"disentanglement"``, ``"completeness"``, ``"informativeness"`` (floats in
        ``[0, 1]``) and ``"importance"``, the ``(n_latents, n_factors)`` matrix :math:`R`
        (zero columns for constant factors).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 4, size=(1000, 3))
    >>> scores = dci(v + 0.05 * rng.normal(size=v.shape), v)
    >>> [round(scores[key], 2) for key in ("disentanglement", "completeness", "informativeness")]
    [1.0, 1.0, 1.0]
    >>> scores["importance"].argmax(axis=0)
    array([0, 1, 2])
    """
    z, v = _prepare(latents, factors, 20, discrete_factors, min_samples=3)
    idx_train, idx_test = _split(z.shape[0], test_size, seed)
    importance = np.zeros((z.shape[1], v.codes.shape[1]))
    informativeness = []
    for k in np.flatnonzero(v.varying):
        if v.discrete[k]:
            y = v.codes[:, k]
            if len(np.unique(y[idx_train])) < 2:
                raise ValueError(f"Factor {k} is constant on the training split; use more samples.")
            model = RandomForestClassifier(random_state=seed, **_FOREST_KWARGS)
            model.fit(z[idx_train], y[idx_train])
            score = model.score(z[idx_test], y[idx_test])
        else:
            y = v.values[:, k]
            model = RandomForestRegressor(random_state=seed, **_FOREST_KWARGS)
            model.fit(z[idx_train], y[idx_train])
            score = r2_score(y[idx_test], model.predict(z[idx_test])) if len(idx_test) > 1 else 0
        importance[:, k] = model.feature_importances_
        informativeness.append(float(np.clip(score, 0.0, 1.0)))
    total = importance.sum()
    if total <= 0:  # no forest made a single split: the latents carry nothing usable
        d = c = 0.0
    else:
        unit_share = importance.sum(axis=1) / total
        factor_share = importance.sum(axis=0) / total
        d = float(((1.0 - _normalised_entropy(importance, axis=1)) * unit_share).sum())
        c = float(((1.0 - _normalised_entropy(importance, axis=0)) * factor_share).sum())
    return {
        "disentanglement": float(np.clip(d, 0.0, 1.0)),
        "completeness": float(np.clip(c, 0.0, 1.0)),
        "informativeness": float(np.mean(informativeness)),
        "importance": importance,
    }


def _adjusted_balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Balanced accuracy adjusted for chance: 0 for a constant or random guess, 1 if perfect."""
    classes = np.unique(y_true)
    if len(classes) < 2:
        return 0.0
    recall = np.array([np.mean(y_pred[y_true == c] == c) for c in classes])
    chance = 1.0 / len(classes)
    return float((recall.mean() - chance) / (1.0 - chance))


def sap(
    latents,
    factors,
    test_size: float = 0.2,
    seed: int | None = 0,
    discrete_factors: bool | Sequence[bool] | None = None,
    return_per_factor: bool = False,
) -> float | np.ndarray:
    r"""Separated attribute predictability (SAP) :cite:p:`kumar2018variational`.

    For every factor, each latent unit alone predicts the factor; the factor's score is the gap
    between the best and the second-best unit, and SAP is the mean over factors. It is high when
    each factor is predicted well by exactly one unit.

    - Continuous factors: :math:`R^2` of the linear regression of the factor on the unit
      (the squared Pearson correlation), as in :cite:p:`kumar2018variational`.
    - Discrete factors: a threshold classifier on the unit (a decision tree on that single
      feature with as many leaves as classes, i.e. ``n_classes - 1`` thresholds, balanced
      class weights) is fit on a training split; its score is the held-out balanced accuracy
      adjusted for chance (0 for guessing, 1 for perfect), clipped at 0. The chance
      adjustment makes the scores of factors with different numbers of classes comparable.

    Constant factors are left out.

    Parameters
    ----------
    latents
        Latent codes, shape ``(n_samples, n_latents)``.
    factors
        Ground-truth factors, shape ``(n_samples, n_factors)``.
    test_size
        Fraction (or absolute number) of samples held out to score the threshold classifiers,
        passed to :func:`sklearn.model_selection.train_test_split`.
    seed
        Seed of the split and of the trees.
    discrete_factors
        Whether each factor is discrete, see :func:`mutual_information_matrix`.
    return_per_factor
        Return the score of every factor (``NaN`` for constant factors) instead of the mean.

    Returns
    -------
    float or numpy.ndarray
        SAP in ``[0, 1]``, or the ``(n_factors,)`` array of per-factor gaps.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 4, size=(1500, 2))
    >>> round(sap(v + 0.05 * rng.normal(size=v.shape), v), 2)
    1.0
    >>> sap(rng.normal(size=(1500, 2)), v) < 0.1
    True
    >>> g = rng.normal(size=(1500, 2))  # continuous factors
    >>> sap(np.column_stack([3 * g[:, 1], g[:, 0] - 1]), g, return_per_factor=True).round(2)
    array([1., 1.])
    """
    z, v = _prepare(latents, factors, 20, discrete_factors, min_samples=3)
    per_factor = np.full(v.codes.shape[1], np.nan)
    split = None
    for k in np.flatnonzero(v.varying):
        if v.discrete[k]:
            if split is None:
                split = _split(z.shape[0], test_size, seed)
            idx_train, idx_test = split
            y = v.codes[:, k]
            n_classes = len(np.unique(y[idx_train]))
            scores = np.zeros(z.shape[1])
            if n_classes >= 2:
                for j in range(z.shape[1]):
                    tree = DecisionTreeClassifier(
                        max_leaf_nodes=n_classes, class_weight="balanced", random_state=seed
                    )
                    tree.fit(z[idx_train, j : j + 1], y[idx_train])
                    pred = tree.predict(z[idx_test, j : j + 1])
                    scores[j] = _adjusted_balanced_accuracy(y[idx_test], pred)
        else:
            corr = _standardize(v.values[:, [k]]).T @ _standardize(z)
            scores = corr.ravel() ** 2
        scores = np.sort(np.clip(scores, 0.0, 1.0))[::-1]
        per_factor[k] = scores[0] - (scores[1] if len(scores) > 1 else 0.0)
    return _return(per_factor, return_per_factor)
