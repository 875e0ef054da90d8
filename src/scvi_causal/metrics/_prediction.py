"""Scores of perturbation-effect predictions used across the perturbation-prediction field.

Pure numpy functions of per-gene vectors: a *delta* is a predicted or observed change against
control (e.g. the log fold change of :func:`~scvi_causal.metrics.log_fold_change`), a *mean* is
a pseudobulk mean expression vector. The definitions follow GEARS
:cite:p:`roohani2023predicting` (Pearson r of deltas on all and on the most changed genes),
PerturBench :cite:p:`wu2024perturbench` (cosine of log fold changes, RMSE of means, the rank
metric) and the simple baselines of Ahlmann-Eltze et al. :cite:p:`ahlmann2025deep`.
:func:`score_predictions` builds one long table from them and :func:`compare_methods` tests a
method against baselines, paired on perturbations (and seeds).

Why not ``cell-eval`` (Arc Institute, checked at version 0.8.2): it resolves without conflicts
next to scvi-tools 1.4 / anndata 0.12 / Python 3.11, but it pulls ``polars``, ``pyarrow``,
``igraph``, ``pdex`` and ``numba-mwu`` (about 110 MB of wheels) and its metrics take a
``PerturbationAnndataPair`` of predicted and real AnnData objects (its CLI takes ``.h5ad`` files),
not per-gene numpy vectors. It also lacks a linear baseline and a paired method comparison, so the
metrics are implemented here, a few lines each, with their definitions cited, and cell-eval is not
a dependency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from ._counterfactual import _pearson, baseline_lfc

#: Metrics of :func:`score_predictions`, in column order.
PREDICTION_METRICS = (
    "pearson_delta_all",
    "pearson_delta_top",
    "cosine_all",
    "cosine_top",
    "top_k_recall",
    "rmse",
    "energy_distance",
    "rank_cosine",
)

#: Metrics for which a lower value is better (all others: higher is better).
LOWER_IS_BETTER = ("rmse", "energy_distance", "rank_cosine", "rank_rmse")


def _as_vector(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D array, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x


def _as_pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_vector(a, names[0]), _as_vector(b, names[1])
    if a.shape != b.shape:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` have different shapes {a.shape} and {b.shape}."
        )
    return a, b


def _check_k(k, name: str, minimum: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {k!r}.")
    return int(k)


def _top_observed(observed: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` genes with the largest observed ``|delta|`` (ties by gene order)."""
    return np.argsort(-np.abs(observed), kind="stable")[: min(k, observed.size)]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        return 0.0
    return float(np.clip(a @ b / norm, -1.0, 1.0))


def pearson_delta(predicted_delta, observed_delta, top_k: int | None = None) -> float:
    """Pearson r of predicted and observed changes against control.

    GEARS' ``pearson_delta`` :cite:p:`roohani2023predicting`: the correlation of the two delta
    vectors on all genes, or, with ``top_k``, on the ``top_k`` genes with the largest observed
    ``|delta|`` (the differentially expressed genes). A constant vector (e.g. a zero prediction)
    gets r = 0. Invariant to rescaling and shifting either vector.

    Parameters
    ----------
    predicted_delta, observed_delta
        ``(n_genes,)`` predicted and observed changes against control.
    top_k
        Restrict to this many most changed observed genes (at least 2); ``None``: all genes.

    Returns
    -------
    float
        Pearson r in ``[-1, 1]``.

    Examples
    --------
    >>> obs = np.array([3.0, -2.0, 0.1, 0.0])
    >>> round(pearson_delta(2 * obs, obs), 6)
    1.0
    >>> round(pearson_delta([3.0, -2.0, 5.0, -5.0], obs, top_k=2), 6)
    1.0
    >>> pearson_delta(np.zeros(4), obs)
    0.0
    """
    p, o = _as_pair(predicted_delta, observed_delta, ("predicted_delta", "observed_delta"))
    if top_k is not None:
        top = _top_observed(o, _check_k(top_k, "top_k", minimum=2))
        p, o = p[top], o[top]
    if p.size < 2:
        raise ValueError("Pearson r needs at least 2 genes.")
    return _pearson(p, o)


def cosine_similarity(predicted_delta, observed_delta, top_k: int | None = None) -> float:
    r"""Cosine similarity of predicted and observed changes against control.

    PerturBench's cosine of log fold changes :cite:p:`wu2024perturbench`:
    :math:`\langle \hat d, d\rangle / (\|\hat d\|\,\|d\|)`, on all genes or on the
    ``top_k`` genes with the largest observed ``|delta|``. Unlike :func:`pearson_delta` it is not
    centred, so a prediction with the right sign pattern but a constant offset is penalised. A
    zero vector gets 0. Invariant to positive rescaling.

    Parameters
    ----------
    predicted_delta, observed_delta
        ``(n_genes,)`` predicted and observed changes against control.
    top_k
        Restrict to this many most changed observed genes (at least 1); ``None``: all genes.

    Returns
    -------
    float
        Cosine similarity in ``[-1, 1]``.

    Examples
    --------
    >>> cosine_similarity([1.0, 0.0], [2.0, 0.0])
    1.0
    >>> cosine_similarity([0.0, 1.0], [2.0, 0.0])
    0.0
    >>> cosine_similarity([5.0, 1.0], [2.0, 0.0], top_k=1)
    1.0
    """
    p, o = _as_pair(predicted_delta, observed_delta, ("predicted_delta", "observed_delta"))
    if top_k is not None:
        top = _top_observed(o, _check_k(top_k, "top_k"))
        p, o = p[top], o[top]
    return _cosine(p, o)


def rmse(predicted_mean, observed_mean) -> float:
    r"""Root mean squared error of pseudobulk mean expression vectors.

    :math:`\sqrt{\frac{1}{G}\sum_g (\hat\mu_g - \mu_g)^2}` as in PerturBench
    :cite:p:`wu2024perturbench`; lower is better. Use the same scale for both vectors
    (e.g. ``log1p`` normalised expression).

    Parameters
    ----------
    predicted_mean, observed_mean
        ``(n_genes,)`` predicted and observed mean expression.

    Returns
    -------
    float
        Non-negative RMSE.

    Examples
    --------
    >>> rmse([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    1.0
    """
    p, o = _as_pair(predicted_mean, observed_mean, ("predicted_mean", "observed_mean"))
    return float(np.sqrt(np.mean((p - o) ** 2)))


def top_k_recall(predicted_delta, observed_delta, k: int = 20) -> float:
    """Fraction of the ``k`` most changed observed genes that the prediction ranks in its top ``k``.

    The observed set is the ``k`` genes with the largest observed ``|delta|`` (ties by gene
    order), the predicted set the ``k`` genes with the largest predicted ``|delta|``. Genes with
    a ``|delta|`` of exactly 0 are in neither set: a zero prediction (the control-mean baseline)
    scores 0 rather than an artefact of gene order, and with fewer than ``k`` changed observed
    genes the recall is over those. Ties of nonzero predicted values at the ``k``-th place
    count fractionally (the expected recall when the tie is broken at random), so a constant
    nonzero prediction scores chance, ``k / n_genes``. Overlap of the most changed genes is a
    standard score of GEARS :cite:p:`roohani2023predicting` and PerturBench
    :cite:p:`wu2024perturbench`.

    Parameters
    ----------
    predicted_delta, observed_delta
        ``(n_genes,)`` predicted and observed changes against control.
    k
        Number of top genes (at least 1; capped at ``n_genes``).

    Returns
    -------
    float
        Recall in ``[0, 1]``; NaN if no observed gene changes.

    Examples
    --------
    >>> obs = [5.0, -4.0, 0.1, 0.0]
    >>> top_k_recall([1.0, 0.0, 2.0, 0.0], obs, k=2)
    0.5
    >>> top_k_recall([0.0, 0.0, 0.0, 0.0], obs, k=2)
    0.0
    """
    p, o = _as_pair(predicted_delta, observed_delta, ("predicted_delta", "observed_delta"))
    k = min(_check_k(k, "k"), o.size)
    in_obs = np.zeros(o.size, dtype=bool)
    in_obs[_top_observed(o, k)] = True
    in_obs &= o != 0
    if not in_obs.any():
        return float("nan")
    a = np.abs(p)
    threshold = np.sort(a)[::-1][k - 1]
    if threshold == 0:  # fewer than k nonzero predictions: those are the predicted set
        hits = (in_obs & (a > 0)).sum()
    else:
        above, tied = a > threshold, a == threshold
        slots = k - above.sum()
        hits = (in_obs & above).sum() + slots * (in_obs & tied).sum() / tied.sum()
    return float(hits / in_obs.sum())


def _as_matrix(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 2-D array, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x


def _pairwise_distance(observed: np.ndarray, predicted: np.ndarray, distance: str) -> np.ndarray:
    """``d[p, q]`` = distance between observed row ``p`` and predicted row ``q``."""
    if distance == "cosine":
        norm_o = np.linalg.norm(observed, axis=1, keepdims=True)
        norm_p = np.linalg.norm(predicted, axis=1, keepdims=True)
        o = np.divide(observed, norm_o, out=np.zeros_like(observed), where=norm_o > 0)
        p = np.divide(predicted, norm_p, out=np.zeros_like(predicted), where=norm_p > 0)
        return 1.0 - np.clip(o @ p.T, -1.0, 1.0)
    if distance == "rmse":
        return np.sqrt(((observed[:, None, :] - predicted[None, :, :]) ** 2).mean(-1))
    raise ValueError(f"`distance` must be 'cosine' or 'rmse', got {distance!r}.")


def rank_metric(predicted_deltas, observed_deltas, distance: str = "cosine") -> np.ndarray:
    """PerturBench's rank metric: how many other predictions are closer to the observed effect.

    For each perturbation ``p``, the fraction of the other perturbations ``q != p`` whose
    prediction is closer to the observed effect of ``p`` than the prediction for ``p`` itself
    :cite:p:`wu2024perturbench`; ties count half. 0 is perfect, about 0.5 is chance, and a
    mode-collapsed model that predicts the same effect for every perturbation scores exactly 0.5
    however well that effect fits on average.

    Parameters
    ----------
    predicted_deltas, observed_deltas
        ``(n_perturbations, n_genes)`` predicted and observed changes, row ``p`` for the same
        perturbation in both; at least 2 perturbations.
    distance
        ``"cosine"`` (1 - cosine similarity) or ``"rmse"``.

    Returns
    -------
    numpy.ndarray
        ``(n_perturbations,)`` ranks in ``[0, 1]``.

    Examples
    --------
    >>> obs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> rank_metric(obs, obs).tolist()
    [0.0, 0.0, 0.0]
    >>> rank_metric(obs[[1, 0, 2]], obs).tolist()
    [1.0, 1.0, 0.0]
    """
    p = _as_matrix(predicted_deltas, "predicted_deltas")
    o = _as_matrix(observed_deltas, "observed_deltas")
    if p.shape != o.shape:
        raise ValueError(
            f"`predicted_deltas` and `observed_deltas` have different shapes {p.shape} and "
            f"{o.shape}."
        )
    n = p.shape[0]
    if n < 2:
        raise ValueError(f"The rank metric needs at least 2 perturbations, got {n}.")
    d = _pairwise_distance(o, p, distance)
    own = np.diag(d)[:, None]
    tie = np.isclose(d, own, rtol=1e-10, atol=1e-12)
    closer = (d < own) & ~tie
    np.fill_diagonal(tie, False)
    return (closer.sum(1) + 0.5 * tie.sum(1)) / (n - 1)


def _members(label: str, delimiter: str) -> list[str]:
    members = [m.strip() for m in str(label).split(delimiter) if m.strip()]
    if not members:
        raise ValueError(f"Perturbation label {label!r} has no members.")
    return members


def _delta_dict(deltas: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    if not deltas:
        raise ValueError(f"`{name}` is empty.")
    out = {str(k): _as_vector(v, f"{name}[{k!r}]") for k, v in deltas.items()}
    sizes = {v.size for v in out.values()}
    if len(sizes) > 1:
        raise ValueError(f"`{name}` holds vectors of different lengths {sorted(sizes)}.")
    return out


def additive_baseline(
    label: str, observed_deltas: Mapping[str, np.ndarray], delimiter: str = "+"
) -> np.ndarray:
    """Additive prediction of a combination: the sum of its members' observed changes.

    ``"A+B"`` -> delta(A) + delta(B), the baseline that deep models of combinatorial
    perturbations do not yet beat :cite:p:`ahlmann2025deep`. A single perturbation
    returns its own observed delta. Same as ``baseline_lfc("additive", ...)``.

    Parameters
    ----------
    label
        Perturbation to predict, members joined by ``delimiter``.
    observed_deltas
        Observed change of each training perturbation, by label; must hold every member.
    delimiter
        Separator of combinations.

    Returns
    -------
    numpy.ndarray
        ``(n_genes,)`` predicted change.

    Examples
    --------
    >>> deltas = {"A": np.array([1.0, 0.0]), "B": np.array([0.5, -1.0])}
    >>> additive_baseline("A+B", deltas).tolist()
    [1.5, -1.0]
    """
    _delta_dict(observed_deltas, "observed_deltas")
    _members(label, delimiter)
    return baseline_lfc("additive", label, observed_deltas, delimiter=delimiter)


def linear_baseline(
    train_deltas: Mapping[str, np.ndarray],
    labels: Sequence[str],
    delimiter: str = "+",
    ridge: float = 0.1,
) -> dict[str, np.ndarray]:
    r"""Linear model of changes on perturbation indicators, fitted by ridge regression.

    The "linear model on perturbation indicators" baseline of Ahlmann-Eltze et al.
    :cite:p:`ahlmann2025deep`: each training condition ``c`` (a single ``"A"`` or a
    combination ``"A+B"``) has a multi-hot indicator :math:`x_c` over the member perturbations
    seen in training, and the per-member effects :math:`W` solve
    :math:`\min_W \sum_c \|\Delta_c - x_c^\top W\|^2 + \lambda\|W\|^2` in closed form. The
    prediction for a label is the sum of its members' rows of :math:`W`. There is no intercept:
    deltas are already relative to control, which has the all-zero indicator. With singles only
    and ``ridge=0`` this is the additive baseline; observed combinations pull the members'
    effects towards their joint effect. Training labels are also predicted from the fit, not
    copied.

    Parameters
    ----------
    train_deltas
        Observed change of each training condition, by label.
    labels
        Labels to predict; each member must occur in some training label.
    delimiter
        Separator of combinations.
    ridge
        Ridge penalty :math:`\lambda \ge 0`; 0 gives the minimum-norm least-squares fit.

    Returns
    -------
    dict
        Label -> ``(n_genes,)`` predicted change.

    Examples
    --------
    >>> train = {"A": np.array([1.0, 0.0]), "B": np.array([0.0, 1.0])}
    >>> linear_baseline(train, ["A+B"], ridge=0.0)["A+B"].tolist()
    [1.0, 1.0]
    """
    train = _delta_dict(train_deltas, "train_deltas")
    ridge = float(ridge)
    if not np.isfinite(ridge) or ridge < 0:
        raise ValueError(f"`ridge` must be a finite number >= 0, got {ridge}.")
    if isinstance(labels, str):
        labels = [labels]
    train_members = {c: _members(c, delimiter) for c in train}
    vocabulary = sorted({m for ms in train_members.values() for m in ms})
    index = {m: i for i, m in enumerate(vocabulary)}
    test_members = {}
    for label in labels:
        members = _members(label, delimiter)
        unknown = [m for m in members if m not in index]
        if unknown:
            raise ValueError(
                f"Cannot predict {label!r}: {unknown} never occur in the training labels."
            )
        test_members[label] = members

    def indicators(members_by_label: dict[str, list[str]]) -> np.ndarray:
        x = np.zeros((len(members_by_label), len(vocabulary)))
        for row, members in enumerate(members_by_label.values()):
            x[row, [index[m] for m in members]] = 1.0
        return x

    x = indicators(train_members)
    y = np.stack(list(train.values()))
    if ridge > 0:
        w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    else:
        w = np.linalg.lstsq(x, y, rcond=None)[0]
    if not test_members:
        return {}
    predictions = indicators(test_members) @ w
    return dict(zip(test_members, predictions))


def score_predictions(
    predicted: Mapping[str, Mapping[str, Mapping]],
    observed: Mapping[str, Mapping],
    top_k: int = 20,
) -> pd.DataFrame:
    """Score each method's predictions of each perturbation; one row per (method, perturbation).

    Parameters
    ----------
    predicted
        ``predicted[method][perturbation]`` is a dict with ``"delta"`` (``(n_genes,)`` predicted
        change against control) and optionally ``"mean"`` (predicted pseudobulk mean
        expression) and ``"energy_distance"`` (a precomputed float, e.g. from
        :func:`~scvi_causal.metrics.energy_distance` on predicted and observed cells).
    observed
        ``observed[perturbation]`` is a dict with ``"delta"`` and optionally ``"mean"``; must hold
        every predicted perturbation.
    top_k
        Number of most changed observed genes for the ``*_top`` scores and
        :func:`top_k_recall` (at least 2).

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``perturbation`` and :data:`PREDICTION_METRICS`:
        ``pearson_delta_all``/``_top`` (:func:`pearson_delta`), ``cosine_all``/``_top``
        (:func:`cosine_similarity`), ``top_k_recall``, ``rmse`` (NaN unless both means are
        given), ``energy_distance`` (NaN unless given) and ``rank_cosine`` (:func:`rank_metric`
        across the perturbations that the method predicts; NaN if it predicts only one).
        Perturbations a method does not predict get no row.

    Examples
    --------
    >>> obs = {"A": {"delta": np.array([1.0, 0.0, 0.0])}, "B": {"delta": np.array([0.0, 2.0, 0.0])}}
    >>> table = score_predictions({"oracle": obs}, obs, top_k=2)
    >>> table[["perturbation", "cosine_all", "rank_cosine"]].values.tolist()
    [['A', 1.0, 0.0], ['B', 1.0, 0.0]]
    """
    top_k = _check_k(top_k, "top_k", minimum=2)
    if not observed:
        raise ValueError("`observed` is empty.")
    obs = {}
    for pert, entry in observed.items():
        if "delta" not in entry:
            raise ValueError(f"`observed[{pert!r}]` has no 'delta'.")
        obs[pert] = _as_vector(entry["delta"], f"observed[{pert!r}]['delta']")
    rows = []
    for method, preds in predicted.items():
        missing = [p for p in preds if p not in obs]
        if missing:
            raise ValueError(
                f"Method {method!r} predicts perturbations not in `observed`: {missing}."
            )
        perts = [p for p in obs if p in preds]
        deltas = {}
        for pert in perts:
            if "delta" not in preds[pert]:
                raise ValueError(f"`predicted[{method!r}][{pert!r}]` has no 'delta'.")
            deltas[pert] = _as_vector(preds[pert]["delta"], f"predicted[{method!r}][{pert!r}]")
        ranks = np.full(len(perts), np.nan)
        if len(perts) >= 2:
            ranks = rank_metric(np.stack(list(deltas.values())), np.stack([obs[p] for p in perts]))
        for pert, rank in zip(perts, ranks):
            p, o, entry = deltas[pert], obs[pert], preds[pert]
            means = entry.get("mean"), observed[pert].get("mean")
            energy = entry.get("energy_distance")
            rows.append(
                {
                    "method": method,
                    "perturbation": pert,
                    "pearson_delta_all": pearson_delta(p, o),
                    "pearson_delta_top": pearson_delta(p, o, top_k=top_k),
                    "cosine_all": cosine_similarity(p, o),
                    "cosine_top": cosine_similarity(p, o, top_k=top_k),
                    "top_k_recall": top_k_recall(p, o, k=top_k),
                    "rmse": np.nan if any(m is None for m in means) else rmse(*means),
                    "energy_distance": np.nan if energy is None else float(energy),
                    "rank_cosine": float(rank),
                }
            )
    return pd.DataFrame(rows, columns=["method", "perturbation", *PREDICTION_METRICS])


def compare_methods(
    table: pd.DataFrame,
    reference: str,
    metrics: Sequence[str] = PREDICTION_METRICS,
    higher_is_better: Mapping[str, bool] | None = None,
) -> pd.DataFrame:
    """Paired comparison of a reference method against every other method, metric by metric.

    Rows of ``table`` (e.g. from :func:`score_predictions`, possibly concatenated over seeds)
    are paired on ``perturbation``, and on ``(seed, perturbation)`` when the table has a
    ``seed`` column; pairs with a NaN score are dropped. For each baseline and metric, the
    difference is signed so that positive means the reference is better (for metrics in
    :data:`LOWER_IS_BETTER`, baseline - reference), and a two-sided Wilcoxon signed-rank test
    (:func:`scipy.stats.wilcoxon`) asks whether its median is 0.

    Parameters
    ----------
    table
        Long table with columns ``method``, ``perturbation``, optionally ``seed``, and the
        ``metrics``.
    reference
        Method to compare against all others.
    metrics
        Metric columns to compare; those absent from ``table`` raise.
    higher_is_better
        Direction per metric, overriding the default (lower is better for
        :data:`LOWER_IS_BETTER`, higher for everything else).

    Returns
    -------
    pandas.DataFrame
        One row per (baseline, metric): ``reference``, ``baseline``, ``metric``,
        ``higher_is_better``, ``n_pairs``, ``reference_mean``, ``baseline_mean`` (over the
        pairs), ``mean_difference`` (positive: reference better), ``n_reference_better`` (pairs
        where it is strictly better) and ``wilcoxon_p`` (NaN with fewer than 2 pairs or all
        differences 0).

    Examples
    --------
    >>> table = pd.DataFrame({
    ...     "method": ["ours"] * 3 + ["additive"] * 3,
    ...     "perturbation": ["A", "B", "C"] * 2,
    ...     "rmse": [1.0, 1.0, 2.0, 2.0, 1.5, 1.5],
    ... })
    >>> comparison = compare_methods(table, "ours", metrics=["rmse"])
    >>> comparison[["baseline", "metric", "mean_difference", "n_reference_better"]].round(3)
       baseline metric  mean_difference  n_reference_better
    0  additive   rmse            0.333                   2
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    keys = ["seed", "perturbation"] if "seed" in table.columns else ["perturbation"]
    required = ["method", *keys, *metrics]
    absent = [c for c in required if c not in table.columns]
    if absent:
        raise ValueError(f"`table` lacks the columns {absent}.")
    methods = list(dict.fromkeys(table["method"]))
    if reference not in methods:
        raise ValueError(f"Reference {reference!r} is not a method of `table`: {methods}.")
    if table.duplicated(["method", *keys]).any():
        raise ValueError(f"`table` has several rows for the same method and {keys}.")
    direction = {m: m not in LOWER_IS_BETTER for m in metrics}
    unknown = [m for m in (higher_is_better or {}) if m not in direction]
    if unknown:
        raise ValueError(f"`higher_is_better` names metrics not compared: {unknown}.")
    direction.update(higher_is_better or {})

    ref = table[table["method"] == reference].set_index(keys)
    rows = []
    for baseline in methods:
        if baseline == reference:
            continue
        base = table[table["method"] == baseline].set_index(keys)
        for metric in metrics:
            pair = pd.concat(
                [ref[metric].rename("reference"), base[metric].rename("baseline")],
                axis=1,
                join="inner",
            ).dropna()
            r = pair["reference"].to_numpy(np.float64)
            b = pair["baseline"].to_numpy(np.float64)
            diff = r - b if direction[metric] else b - r
            p_value = np.nan
            if diff.size >= 2 and np.any(diff != 0):
                p_value = float(wilcoxon(diff).pvalue)
            rows.append(
                {
                    "reference": reference,
                    "baseline": baseline,
                    "metric": metric,
                    "higher_is_better": bool(direction[metric]),
                    "n_pairs": int(diff.size),
                    "reference_mean": float(r.mean()) if r.size else np.nan,
                    "baseline_mean": float(b.mean()) if b.size else np.nan,
                    "mean_difference": float(diff.mean()) if diff.size else np.nan,
                    "n_reference_better": int((diff > 0).sum()),
                    "wilcoxon_p": p_value,
                }
            )
    return pd.DataFrame(rows)
