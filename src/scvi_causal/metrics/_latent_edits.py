"""Scores of latent edits: label interventions and counterfactual explanations.

Pure numpy: the models that make the edits (``scvi_causal.images.CCVAE.intervene``,
``scvi_causal.images.latent_counterfactuals``) produce the arrays; these functions only count.

* :func:`label_intervention_scores`: after setting one label of an image (e.g. a CCVAE's label
  subspace set to another class), how often a classifier reads the new value, and how often the
  other labels changed with it.
* :func:`unit_factor_assignment`: which ground-truth factor each latent unit stands for, by
  correlation (the one-to-one matching of the MCC, or each unit's most correlated factor).
* :func:`counterfactual_factor_scores`: which units and factors the latent displacements of
  counterfactual explanations move, and how often they move only the causal factor.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._identifiability import _abs_correlation, _check_pair, match_latents


def _labels_2d(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty (n, n_labels) array, got {np.shape(x)}.")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"`{name}` must hold integer class labels.")
        arr = arr.astype(np.int64)
    return arr


def label_intervention_scores(labels_before, labels_after, label: int, value) -> dict:
    """How well an intervention on one label hits its target and leaves the other labels alone.

    Parameters
    ----------
    labels_before, labels_after
        ``(n, n_labels)`` integer class labels predicted (by the model's own classifier or an
        independent one) for the original images and for the images after the intervention.
        A 1-D array is one label.
    label
        Column of the intervened label.
    value
        The class it was set to: one integer, or ``(n,)`` integers (one per image).

    Returns
    -------
    dict
        ``accuracy``: fraction of images whose ``label`` reads ``value`` after the intervention;
        ``changed``: fraction whose ``label`` changed; ``other_changed``: mean over the other
        labels of the fraction of images whose label changed (0: the other characteristics are
        kept; NaN with one label); ``n_other_changed``: mean number of other labels changed per
        image; ``changed_per_label``: ``(n_labels,)`` fraction changed per label.

    Examples
    --------
    >>> before = np.array([[0, 1], [1, 1], [0, 0], [1, 0]])
    >>> after = np.array([[1, 1], [1, 1], [1, 1], [1, 0]])
    >>> scores = label_intervention_scores(before, after, label=0, value=1)
    >>> scores["accuracy"], scores["changed"], scores["other_changed"]
    (1.0, 0.5, 0.25)
    """
    before = _labels_2d(labels_before, "labels_before")
    after = _labels_2d(labels_after, "labels_after")
    if before.shape != after.shape:
        raise ValueError(
            f"`labels_before` and `labels_after` must have the same shape, got {before.shape} "
            f"and {after.shape}."
        )
    n, n_labels = before.shape
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise ValueError(f"`label` must be an integer column index, got {label!r}.")
    if not 0 <= label < n_labels:
        raise ValueError(f"`label` must be in [0, {n_labels}), got {label}.")
    value = np.asarray(value)
    if value.ndim not in (0, 1) or (value.ndim == 1 and len(value) != n):
        raise ValueError(f"`value` must be one integer or {n} integers, got shape {value.shape}.")
    changed = before != after
    others = np.delete(changed, label, axis=1)
    return {
        "accuracy": float(np.mean(after[:, label] == value)),
        "changed": float(changed[:, label].mean()),
        "other_changed": float(others.mean()) if others.shape[1] else float("nan"),
        "n_other_changed": float(others.sum(1).mean()),
        "changed_per_label": changed.mean(0),
    }


def unit_factor_assignment(
    factors,
    latents,
    method: Literal["matching", "argmax"] = "matching",
    min_corr: float = 0.0,
) -> np.ndarray:
    """The ground-truth factor each latent unit stands for, by absolute Pearson correlation.

    Parameters
    ----------
    factors
        ``(n, n_factors)`` true factors (e.g. dSprites factor classes).
    latents
        ``(n, n_latent)`` latents of the same samples (e.g. posterior means).
    method
        ``"matching"``: the one-to-one matching of :func:`~scvi_causal.metrics.match_latents`
        (the MCC's; at most one unit per factor, the other units unassigned). ``"argmax"``:
        every unit to its most correlated factor (several units may share a factor).
    min_corr
        Units whose correlation with their factor is below this stay unassigned (e.g. collapsed
        units).

    Returns
    -------
    numpy.ndarray
        ``(n_latent,)`` integer factor index of each unit, ``-1`` for unassigned units.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(300, 2))
    >>> z = np.column_stack([rng.normal(size=300), -f[:, 1], 2 * f[:, 0]])
    >>> unit_factor_assignment(f, z)
    array([-1,  1,  0])
    """
    factors, latents = _check_pair(factors, latents)
    if method not in ("matching", "argmax"):
        raise ValueError(f"`method` must be 'matching' or 'argmax', got {method!r}.")
    if not 0.0 <= min_corr <= 1.0:
        raise ValueError(f"`min_corr` must be in [0, 1], got {min_corr}.")
    out = np.full(latents.shape[1], -1, dtype=np.int64)
    if method == "matching":
        matching, abs_corr = match_latents(factors, latents)
        for factor, unit in enumerate(matching):
            if unit >= 0:
                out[unit] = factor
    else:
        abs_corr = _abs_correlation(factors, latents, "pearson")
        out[:] = abs_corr.argmax(0)
    units = np.flatnonzero(out >= 0)
    out[units[abs_corr[out[units], units] < min_corr]] = -1
    return out


def moved_units(displacement, threshold: float = 0.1) -> np.ndarray:
    """Which latent units a displacement moves: ``|delta_k| >= threshold * max_j |delta_j|``.

    Relative to the largest move of the same explanation, so that an L2 search (which moves
    every unit a little) and an L1 search are read alike; a zero displacement moves no unit.

    Parameters
    ----------
    displacement
        ``(n, n_latent)`` latent displacements.
    threshold
        Fraction of the row's largest absolute move, in ``(0, 1]``.

    Returns
    -------
    numpy.ndarray
        ``(n, n_latent)`` boolean.

    Examples
    --------
    >>> moved_units([[2.0, 0.1, -1.0], [0.0, 0.0, 0.0]], threshold=0.25)
    array([[ True, False,  True],
           [False, False, False]])
    """
    delta = np.abs(np.asarray(displacement, dtype=float))
    if delta.ndim != 2:
        raise ValueError(f"`displacement` must be (n, n_latent), got shape {delta.shape}.")
    if not np.all(np.isfinite(delta)):
        raise ValueError("`displacement` contains NaN or infinite values.")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold}.")
    largest = delta.max(1, keepdims=True) if delta.shape[1] else np.zeros((len(delta), 1))
    return (delta >= threshold * largest) & (delta > 0)


def counterfactual_factor_scores(
    displacement,
    unit_factors,
    causal_factor: int,
    threshold: float = 0.1,
    n_factors: int | None = None,
) -> dict:
    """Which factors counterfactual explanations move, and how often only the causal one.

    A unit moves when :func:`moved_units` says so; a factor moves when one of its units
    (``unit_factors``, e.g. from :func:`unit_factor_assignment`) moves. An explanation of a
    classifier that reads only one factor (e.g. the shape) is faithful and minimal when it moves
    that factor and no other.

    Parameters
    ----------
    displacement
        ``(n, n_latent)`` latent displacements, one explanation per row.
    unit_factors
        ``(n_latent,)`` factor index of each unit, ``-1`` for units assigned to no factor (their
        moves are counted in ``fraction_unassigned_moved`` only).
    causal_factor
        Index of the factor the classifier's decision depends on.
    threshold
        Relative threshold of :func:`moved_units`.
    n_factors
        Number of factors (default: the largest index in ``unit_factors`` or ``causal_factor``,
        plus one).

    Returns
    -------
    dict
        ``fraction_only_causal``: explanations that move the causal factor and no other;
        ``fraction_causal_moved``: explanations that move the causal factor;
        ``mean_factors_moved``: mean number of factors moved; ``fraction_unassigned_moved``:
        explanations that move a unit assigned to no factor; ``factor_move_rate``:
        ``(n_factors,)`` fraction of explanations that move each factor; ``unit_move_rate``:
        ``(n_latent,)`` the same per unit; ``moved_factors``: ``(n, n_factors)`` boolean.

    Examples
    --------
    >>> delta = np.array([[1.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 2.0]])
    >>> scores = counterfactual_factor_scores(delta, unit_factors=[0, 1, -1], causal_factor=0)
    >>> scores["fraction_only_causal"], scores["fraction_unassigned_moved"]
    (0.3333333333333333, 0.3333333333333333)
    >>> scores["factor_move_rate"]
    array([0.66666667, 0.33333333])
    """
    moved = moved_units(displacement, threshold)
    unit_factors = np.asarray(unit_factors)
    if unit_factors.shape != (moved.shape[1],) or not np.issubdtype(unit_factors.dtype, np.integer):
        raise ValueError(
            f"`unit_factors` must be {moved.shape[1]} integers (one per latent unit), got "
            f"{unit_factors.dtype} of shape {unit_factors.shape}."
        )
    if unit_factors.size and unit_factors.min() < -1:
        raise ValueError("`unit_factors` holds factor indices >= 0, or -1 for no factor.")
    if moved.shape[0] == 0:
        raise ValueError("`displacement` holds no explanations.")
    if (
        isinstance(causal_factor, bool)
        or not isinstance(causal_factor, int | np.integer)
        or causal_factor < 0
    ):
        raise ValueError(f"`causal_factor` must be a factor index >= 0, got {causal_factor!r}.")
    largest = max(int(unit_factors.max(initial=-1)), int(causal_factor)) + 1
    n_factors = largest if n_factors is None else int(n_factors)
    if n_factors < largest:
        raise ValueError(
            f"`n_factors` ({n_factors}) must exceed every factor index in `unit_factors` and "
            f"`causal_factor` (largest {largest - 1})."
        )
    assignment = np.zeros((moved.shape[1], n_factors), dtype=bool)
    assigned = np.flatnonzero(unit_factors >= 0)
    assignment[assigned, unit_factors[assigned]] = True
    moved_factors = (moved.astype(np.int64) @ assignment.astype(np.int64)) > 0
    others = np.delete(moved_factors, causal_factor, axis=1).any(1)
    return {
        "fraction_only_causal": float(np.mean(moved_factors[:, causal_factor] & ~others)),
        "fraction_causal_moved": float(moved_factors[:, causal_factor].mean()),
        "mean_factors_moved": float(moved_factors.sum(1).mean()),
        "fraction_unassigned_moved": float(moved[:, unit_factors < 0].any(1).mean()),
        "factor_move_rate": moved_factors.mean(0),
        "unit_move_rate": moved.mean(0),
        "moved_factors": moved_factors,
    }
