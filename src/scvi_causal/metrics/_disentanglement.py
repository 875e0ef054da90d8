"""Disentanglement metrics: pure functions of ``(latents, factors)`` arrays.

Each metric takes ``latents`` ``(n_samples, n_latents)`` (continuous) and ``factors``
``(n_samples, n_factors)`` (discrete values, e.g. dSprites classes, or continuous values that
are binned) and returns numbers. The split between sampling and a pure metric core follows
disentanglement_lib :cite:p:`locatello2019challenging`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score


def _check(latents, factors) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(latents, dtype=np.float64)
    v = np.asarray(factors)
    if z.ndim != 2 or v.ndim != 2:
        raise ValueError(
            f"`latents` and `factors` must be 2-d, got shapes {z.shape} and {v.shape}."
        )
    if z.shape[0] != v.shape[0]:
        raise ValueError(f"Sample numbers differ: {z.shape[0]} latents vs {v.shape[0]} factors.")
    if z.shape[0] < 2 or z.shape[1] < 1 or v.shape[1] < 1:
        raise ValueError("Need at least 2 samples, 1 latent and 1 factor.")
    if not np.isfinite(z).all():
        raise ValueError("`latents` contains NaN or infinite values.")
    if np.issubdtype(v.dtype, np.number) and not np.isfinite(v.astype(np.float64)).all():
        raise ValueError("`factors` contains NaN or infinite values.")
    return z, v


def _discretize(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width histogram bins per column (as in disentanglement_lib)."""
    out = np.zeros(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        col = x[:, j]
        lo, hi = col.min(), col.max()
        if hi > lo:
            edges = np.linspace(lo, hi, n_bins + 1)[1:-1]
            out[:, j] = np.digitize(col, edges)
    return out


def _codes(v: np.ndarray, n_bins: int) -> np.ndarray:
    """Integer codes of factors: discrete values as they are, many-valued ones binned."""
    out = np.zeros(v.shape, dtype=np.int64)
    for j in range(v.shape[1]):
        values = np.unique(v[:, j])
        if len(values) > max(n_bins, 50) and np.issubdtype(v.dtype, np.floating):
            out[:, j] = _discretize(v[:, [j]].astype(np.float64), n_bins)[:, 0]
        else:
            out[:, j] = np.searchsorted(values, v[:, j])
    return out


def mutual_information_matrix(latents, factors, n_bins: int = 20) -> np.ndarray:
    """``(n_latents, n_factors)`` mutual information (nats) of binned latents and factors.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 4, size=(1000, 2))
    >>> mutual_information_matrix(v + 0.1 * rng.normal(size=v.shape), v).round(1)
    array([[1.4, 0. ],
           [0. , 1.4]])
    """
    z, v = _check(latents, factors)
    zd, vd = _discretize(z, n_bins), _codes(v, n_bins)
    return np.array([[mutual_info_score(vd[:, k], zd[:, j]) for k in range(vd.shape[1])]
                     for j in range(zd.shape[1])])


def _entropy(codes: np.ndarray) -> float:
    return mutual_info_score(codes, codes)


def mig(latents, factors, n_bins: int = 20) -> float:
    r"""Mutual information gap :cite:p:`chen2018isolating`.

    For each factor :math:`v_k`, the difference between the largest and the second largest
    mutual information :math:`I(z_j; v_k)` over latent units, divided by the entropy
    :math:`H(v_k)`, averaged over factors (constant factors are skipped). 1: each factor is
    captured by one unit only; 0: no unit is more informative than another.

    Parameters
    ----------
    latents
        ``(n_samples, n_latents)``; binned into ``n_bins`` equal-width bins per unit.
    factors
        ``(n_samples, n_factors)`` ground-truth factors.
    n_bins
        Bins of the latents (and of continuous factors with many values).

    Returns
    -------
    float
        MIG in [0, 1].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 5, size=(2000, 3))
    >>> round(mig(v + 0.01 * rng.normal(size=v.shape), v), 2)
    1.0
    >>> mig(rng.normal(size=(2000, 3)), v) < 0.05
    True
    """
    z, v = _check(latents, factors)
    mi = mutual_information_matrix(z, v, n_bins)
    vd = _codes(v, n_bins)
    scores = []
    for k in range(vd.shape[1]):
        h = _entropy(vd[:, k])
        if h <= 0:
            continue
        top = np.sort(mi[:, k])[::-1]
        second = top[1] if len(top) > 1 else 0.0
        scores.append((top[0] - second) / h)
    return float(np.mean(scores)) if scores else 0.0


def modularity(latents, factors, n_bins: int = 20) -> float:
    r"""Modularity score :cite:p:`ridgeway2018learning`.

    A latent unit is modular if it carries information about one factor only: with
    :math:`m_{jk} = I(z_j; v_k)` and :math:`\theta_j = \max_k m_{jk}`, the unit's deviation from
    an ideal template (all information on its best factor) is
    :math:`\delta_j = \sum_{k \ne k^*} m_{jk}^2 / (\theta_j^2 (K - 1))` and the score is the mean
    of :math:`1 - \delta_j` over units carrying information.

    Parameters
    ----------
    latents, factors, n_bins
        As in :func:`mig`.

    Returns
    -------
    float
        Modularity in [0, 1].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 5, size=(2000, 2))
    >>> round(modularity(v + 0.01 * rng.normal(size=v.shape), v), 2)
    1.0
    """
    z, v = _check(latents, factors)
    mi = mutual_information_matrix(z, v, n_bins)
    n_factors = mi.shape[1]
    if n_factors < 2:
        return 1.0
    scores = []
    for row in mi:
        theta = row.max()
        if theta <= 0:
            continue
        template = np.zeros_like(row)
        template[row.argmax()] = theta
        delta = ((row - template) ** 2).sum() / (theta**2 * (n_factors - 1))
        scores.append(1.0 - delta)
    return float(np.mean(scores)) if scores else 0.0


def _importance_matrix(z: np.ndarray, vd: np.ndarray, seed: int, train_frac: float):
    """Feature importances of gradient-free tree ensembles and held-out accuracy per factor."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    n = z.shape[0]
    order = rng.permutation(n)
    n_train = max(1, min(n - 1, int(round(train_frac * n))))
    tr, te = order[:n_train], order[n_train:]
    importance = np.zeros((z.shape[1], vd.shape[1]))
    accuracy = np.zeros(vd.shape[1])
    for k in range(vd.shape[1]):
        if len(np.unique(vd[tr, k])) < 2:
            accuracy[k] = 1.0
            continue
        clf = RandomForestClassifier(n_estimators=30, max_depth=8, max_features=None,
                                     min_samples_leaf=5, random_state=seed, n_jobs=1)
        clf.fit(z[tr], vd[tr, k])
        importance[:, k] = clf.feature_importances_
        accuracy[k] = clf.score(z[te], vd[te, k])
    return importance, accuracy


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    p = p / np.clip(p.sum(axis=axis, keepdims=True), 1e-12, None)
    base = p.shape[axis]
    if base < 2:
        return np.zeros(p.shape[1 - axis])
    ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=axis)
    return ent / np.log(base)


def dci(latents, factors, n_bins: int = 20, train_frac: float = 0.8, seed: int = 0) -> dict:
    r"""Disentanglement, completeness and informativeness :cite:p:`eastwood2018framework`.

    A random forest (30 trees, depth 8, ``seed``) predicts each factor from the latents; its
    impurity-based feature importances form the ``(n_latents, n_factors)`` matrix :math:`R`.
    *Disentanglement*: one minus the normalised entropy of each unit's importance over factors,
    weighted by the unit's share of total importance. *Completeness*: one minus the normalised
    entropy of each factor's importance over units, averaged. *Informativeness*: held-out
    accuracy of the classifiers (fraction ``1 - train_frac`` of the samples), averaged.
    Random forests stand in for the gradient-boosted trees of disentanglement_lib (much faster
    on CPUs, the same kind of importance).

    Parameters
    ----------
    latents, factors, n_bins
        As in :func:`mig` (continuous factors with many values are binned into classes).
    train_frac
        Fraction of samples used to fit the classifiers.
    seed
        Seed of the split and the forests.

    Returns
    -------
    dict
        ``disentanglement``, ``completeness``, ``informativeness`` (each in [0, 1]) and the
        ``importance`` matrix.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 4, size=(1500, 3))
    >>> scores = dci(v + 0.05 * rng.normal(size=v.shape), v)
    >>> scores["disentanglement"] > 0.9, scores["informativeness"] > 0.9
    (True, True)
    """
    z, v = _check(latents, factors)
    vd = _codes(v, n_bins)
    importance, accuracy = _importance_matrix(z, vd, seed, train_frac)
    total = importance.sum()
    if total <= 0:
        return {"disentanglement": 0.0, "completeness": 0.0,
                "informativeness": float(accuracy.mean()), "importance": importance}
    per_unit = 1.0 - _normalised_entropy(importance, axis=1)
    weights = importance.sum(1) / total
    per_factor = 1.0 - _normalised_entropy(importance, axis=0)
    informative = importance.sum(0) > 0
    return {
        "disentanglement": float((per_unit * weights).sum()),
        "completeness": float(per_factor[informative].mean()) if informative.any() else 0.0,
        "informativeness": float(accuracy.mean()),
        "importance": importance,
    }


def sap(latents, factors, n_bins: int = 20, train_frac: float = 0.8, seed: int = 0) -> float:
    r"""Separated attribute predictability :cite:p:`kumar2018variational`.

    For each factor and each latent unit, the held-out accuracy of the best single threshold
    classifier of that unit (a depth-limited decision tree on one feature) is computed; the
    score of a factor is the gap between the best and the second-best unit, normalised by the
    chance-corrected best accuracy, and SAP is its mean over factors.

    Parameters
    ----------
    latents, factors, n_bins
        As in :func:`mig`.
    train_frac
        Fraction of samples used to fit the classifiers.
    seed
        Seed of the split.

    Returns
    -------
    float
        SAP in [0, 1].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 4, size=(1500, 2))
    >>> sap(v + 0.05 * rng.normal(size=v.shape), v) > 0.9
    True
    >>> sap(rng.normal(size=(1500, 2)), v) < 0.1
    True
    """
    from sklearn.tree import DecisionTreeClassifier

    z, v = _check(latents, factors)
    vd = _codes(v, n_bins)
    rng = np.random.default_rng(seed)
    order = rng.permutation(z.shape[0])
    n_train = max(1, min(z.shape[0] - 1, int(round(train_frac * z.shape[0]))))
    tr, te = order[:n_train], order[n_train:]
    scores = []
    for k in range(vd.shape[1]):
        classes = np.unique(vd[:, k])
        if len(classes) < 2:
            continue
        chance = np.bincount(np.searchsorted(classes, vd[te, k])).max() / len(te)
        acc = []
        for j in range(z.shape[1]):
            tree = DecisionTreeClassifier(max_leaf_nodes=len(classes), random_state=seed)
            tree.fit(z[tr, j : j + 1], vd[tr, k])
            acc.append(tree.score(z[te, j : j + 1], vd[te, k]))
        acc = np.sort(np.clip((np.array(acc) - chance) / max(1 - chance, 1e-12), 0, 1))[::-1]
        scores.append(acc[0] - (acc[1] if len(acc) > 1 else 0.0))
    return float(np.mean(scores)) if scores else 0.0
