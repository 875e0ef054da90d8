"""Guide calling (guide UMI counts -> targets per cell) and perturbation-label conventions."""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import gammaln, log_ndtr

from ._datasets import PERTURBATION_KEY

logger = logging.getLogger(__name__)

#: UMI threshold of ``assign_guides(method="threshold")`` when none is given: the default of
#: sceptre's thresholding method (``assign_grnas(method="thresholding")``, ``threshold = 5``).
DEFAULT_UMI_THRESHOLD = 5
_METHODS = ("threshold", "mixture")
_UNASSIGNED = ("drop", "control", "nan")
_DELIMITER = "+"
# The mixture is not fitted to a guide seen in fewer cells (sceptre's ``n_nonzero_cells_cutoff``).
_MIN_NONZERO_CELLS = 10
_EM_MAX_ITER = 500
_EM_TOL = 1e-9  # relative change of the log-likelihood that stops EM
_MIN_RATE = 1e-8  # background rate of a guide never seen outside its cells
_MIN_LOG_SD = 1e-2  # floor of the signal's standard deviation on the log scale
_MIN_SHARE = 1e-12  # a signal share below this is no signal
_N_EXAMPLES = 5


def assign_guides(
    guide_counts: np.ndarray | sparse.spmatrix | pd.DataFrame | ad.AnnData,
    guide_names: Sequence[str] | str | None = None,
    guide_targets: Sequence[str] | Mapping[str, str] | str | None = None,
    *,
    method: Literal["threshold", "mixture"] = "threshold",
    threshold: float | Sequence[float] | Mapping[str, float] | None = None,
    min_umi: int | None = None,
    non_targeting: Sequence[str] | str = ("non-targeting",),
    unassigned: Literal["drop", "control", "nan"] = "drop",
    obsm_key: str = "grna_counts",
) -> pd.DataFrame:
    """Call the guides present in each cell and collapse them to their targets.

    A guide is called in a cell from its UMI count, then each target is present in a cell
    when any of its guides is (``guide_targets``). Targets listed in ``non_targeting`` are not
    columns of the result: a cell whose called guides are all non-targeting is a control row
    (all zeros).

    ``method="threshold"`` calls a guide when its UMI count is ``>= threshold``. The default
    threshold, 5, is the default of sceptre's thresholding
    method (Barry et al. 2024, ``assign_grnas(method="thresholding")``) and the UMI floor of its
    low-MOI maximum method (and of the ``confident`` cells :func:`papalexi_2021` keeps); Cell
    Ranger's floor for protospacer calls (``min-crispr-umi``) is 3. Ambient guide molecules give
    cells a few UMIs of guides they do not carry, which thresholds of 1 or 2 call.

    ``method="mixture"`` fits, for each guide, a two-component mixture to its counts in all
    cells: a Poisson background (ambient molecules) and a signal whose log intensity is
    Gaussian and is observed as an integer count, i.e. a Gaussian on the log scale censored to
    the bin ``[log c, log(c + 1))`` of count ``c`` (``(-inf, 0)`` for zero). This is the
    Poisson-Gaussian model of Replogle et al. 2022 (Cell 185, genome-wide Perturb-seq; crispat's
    ``Poisson-Gauss``), which fits a Gaussian to the log of the non-zero counts; censoring it
    instead makes both components probability mass functions of the same counts, so that the
    zeros take part, a UMI value shared by many cells cannot collapse a Gaussian onto itself,
    and the fits can be compared. A two-Gaussian mixture on log counts (crispat's ``Gauss``)
    has that collapse: the mass of zeros and single UMIs. The mixture is fitted by EM on the
    histogram of the counts, without random initialisation. A guide is called where the
    posterior probability of the signal is above 0.5 and the count above the background mean
    (and ``>= min_umi``). A guide gets no calls, and a warning, when its counts do not
    separate: fewer than 10 cells with a count (sceptre's ``n_nonzero_cells_cutoff``), or one
    Poisson (background only) or one censored log-normal (one population) fits better by BIC
    than the mixture.

    Parameters
    ----------
    guide_counts
        Cells x guides UMI counts (non-negative integers): a NumPy array, a SciPy sparse
        matrix, a :class:`pandas.DataFrame` (columns are the guide names, index the cell
        names) or an :class:`anndata.AnnData` whose ``obsm[obsm_key]`` holds them (its
        ``obs_names`` name the cells).
    guide_names
        Names of the guides (columns), needed when ``guide_targets`` or ``threshold`` are
        mappings; default: the DataFrame's columns, else ``"guide_0"``, ``"guide_1"``, ...
        With an AnnData, a string is a key of ``adata.uns``.
    guide_targets
        Target of each guide: a sequence aligned with the guides, or a mapping guide name ->
        target (it may hold guides that are not in the counts; a Series is read as one, by its
        index). With an AnnData, a string is a key of ``adata.uns``. Default: every guide is
        its own target.
    method
        ``"threshold"`` or ``"mixture"`` (see above).
    threshold
        ``method="threshold"`` only: a guide is called when its count is ``>= threshold``; a
        number, a sequence aligned with the guides, or a mapping guide name -> threshold (a
        Series is read as one; guides not in it get the default, 5). Every threshold must be
        ``> 0``.
    min_umi
        ``method="mixture"`` only: calls also need at least ``min_umi`` UMIs. Default: the
        mixture alone decides.
    non_targeting
        Targets of the non-targeting (control) guides, dropped from the columns.
    unassigned
        What to do with cells in which no guide at all is called (not even a non-targeting
        one): ``"drop"`` them (default), keep them as ``"control"`` rows (all zeros), or keep
        them as ``"nan"`` rows (float columns). See Notes.
    obsm_key
        Key of ``adata.obsm`` with the counts, when ``guide_counts`` is an AnnData.

    Returns
    -------
    pandas.DataFrame
        Cells x targets, 1 where the target is present and 0 where it is not (``int8``;
        ``float32`` with NaN rows for ``unassigned="nan"``), columns sorted by name (so
        :func:`labels_from_matrix` writes combinations in sorted order), index the cell names
        (positions when the counts carry none).

    Notes
    -----
    A cell with no guide called may be a control that lost its guide, a perturbed cell whose
    guide was not captured (guide capture is incomplete, more so in high-MOI screens), or a cell
    without integration. It is not a control, so by default it is dropped rather than turned
    into one; ``"nan"`` keeps the rows aligned with the input and :func:`labels_from_matrix`
    gives them a missing label. ``unassigned="control"`` is the convention of high-MOI analyses
    such as sceptre's (and of :func:`gasperini_2019`), where every cell serves as a control for
    the guides it does not carry; choose it knowingly.

    Examples
    --------
    >>> counts = pd.DataFrame(
    ...     [[12, 0, 0, 0], [0, 7, 30, 0], [0, 0, 0, 9], [1, 0, 0, 0]],
    ...     index=["c0", "c1", "c2", "c3"],
    ...     columns=["A-1", "A-2", "B-1", "NT-1"],
    ... )
    >>> targets = {"A-1": "A", "A-2": "A", "B-1": "B", "NT-1": "non-targeting"}
    >>> calls = assign_guides(counts, guide_targets=targets)
    >>> calls
        A  B
    c0  1  0
    c1  1  1
    c2  0  0
    >>> labels_from_matrix(calls).tolist()
    ['A', 'A+B', 'control']
    >>> assign_guides(counts, guide_targets=targets, unassigned="control").shape
    (4, 2)

    From an AnnData (here the Gasperini et al. 2019 screen :cite:p:`gasperini2019genome`):

    >>> from scvi_causal.data import gasperini_2019
    >>> adata = gasperini_2019()  # doctest: +SKIP
    >>> calls = assign_guides(  # doctest: +SKIP
    ...     adata, "grna_ids", "grna_groups", unassigned="control"
    ... )
    """
    if method not in _METHODS:
        raise ValueError(f"Unknown method {method!r}; use one of {_METHODS}.")
    if unassigned not in _UNASSIGNED:
        raise ValueError(f"Unknown unassigned={unassigned!r}; use one of {_UNASSIGNED}.")
    if method == "mixture" and threshold is not None:
        raise ValueError("threshold is for method='threshold'; the mixture takes min_umi.")
    if method == "threshold" and min_umi is not None:
        raise ValueError("min_umi is for method='mixture'; method='threshold' takes threshold.")
    if min_umi is not None and (
        isinstance(min_umi, bool) or not isinstance(min_umi, int) or min_umi < 1
    ):
        raise ValueError(f"min_umi must be an integer >= 1, got {min_umi!r}.")
    if isinstance(non_targeting, str):
        non_targeting = (non_targeting,)

    counts, names, targets, cells = _read_counts(guide_counts, guide_names, guide_targets, obsm_key)
    if method == "threshold":
        called = _call_threshold(counts, _guide_thresholds(threshold, names))
    else:
        called = _call_mixture(counts, names, min_umi or 1)

    target_names = sorted(set(targets))
    controls = set(non_targeting)
    if controls and not controls & set(target_names):
        warnings.warn(
            f"No guide targets any of non_targeting={tuple(non_targeting)!r}, so no cell is a "
            "control; pass the name your library gives its non-targeting guides "
            "(or non_targeting=() for a screen without them).",
            UserWarning,
            stacklevel=2,
        )
    columns = [t for t in target_names if t not in controls]
    position = {t: j for j, t in enumerate(columns)}
    rows = [j for j, t in enumerate(targets) if t in position]
    membership = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, [position[targets[j]] for j in rows])),
        shape=(len(targets), len(columns)),
    )
    called = called.tocsr()
    present = (called @ membership).toarray() > 0
    no_guide = np.diff(called.indptr) == 0  # not even a non-targeting guide
    logger.info(
        "%d of %d cells have no guide called (unassigned=%r).",
        no_guide.sum(),
        len(no_guide),
        unassigned,
    )
    if no_guide.all() and len(no_guide):
        warnings.warn(
            "No guide is called in any cell; check the threshold and that the counts "
            "are cells x guides.",
            UserWarning,
            stacklevel=2,
        )

    result = pd.DataFrame(present.astype(np.int8), index=cells, columns=pd.Index(columns))
    if unassigned == "drop":
        return result.loc[~no_guide]
    if unassigned == "nan":
        result = result.astype(np.float32)
        result.loc[no_guide] = np.nan
    return result


def labels_from_matrix(
    matrix: pd.DataFrame, control: str = "control", delimiter: str = _DELIMITER
) -> pd.Series:
    """Write a cells x perturbations 0/1 matrix as perturbation labels.

    The package's label convention: the perturbations present in a cell joined by
    ``delimiter`` in column order (``"A"``, ``"A+B"``), and ``control`` for a row of zeros.
    A row with a missing value (the ``unassigned="nan"`` rows of :func:`assign_guides`) gets a
    missing label.

    Parameters
    ----------
    matrix
        Cells x perturbations, 1 (or True) where present and 0 where not; the columns name the
        perturbations.
    control
        Label of the rows of zeros.
    delimiter
        Separator of combinations; no column name may contain it.

    Returns
    -------
    pandas.Series
        String labels (``object`` dtype, NaN for rows with a missing value), indexed like
        ``matrix`` and named ``"perturbation"``.

    Examples
    --------
    >>> m = pd.DataFrame({"A": [1, 0, 1], "B": [0, 0, 1]}, index=["c0", "c1", "c2"])
    >>> labels_from_matrix(m).tolist()
    ['A', 'control', 'A+B']
    """
    if not isinstance(matrix, pd.DataFrame):
        raise TypeError(f"matrix must be a pandas DataFrame, got {type(matrix).__name__}.")
    names = [str(c) for c in matrix.columns]
    if len(set(names)) < len(names):
        raise ValueError("The columns of matrix must have distinct names.")
    bad = [n for n in names if delimiter in n]
    if bad:
        raise ValueError(f"Column names contain the delimiter {delimiter!r}: {bad[:_N_EXAMPLES]}.")
    if control in names:
        raise ValueError(f"{control!r} is the control label and cannot name a column.")
    try:
        values = matrix.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise ValueError("matrix must hold 0/1 (or boolean) values.") from err
    missing = np.isnan(values)
    if not np.isin(values[~missing], (0.0, 1.0)).all():
        raise ValueError(
            "matrix must hold 0/1 (or boolean) values: 1 where a perturbation is present."
        )
    present = values == 1.0
    labels = np.full(len(matrix), control, dtype=object)
    if present.shape[1]:
        packed = np.ascontiguousarray(np.packbits(present, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        column_names = np.asarray(names, dtype=object)
        patterns = [delimiter.join(column_names[present[i]]) or control for i in first]
        labels = np.asarray(patterns, dtype=object)[inverse.ravel()]
    labels[missing.any(axis=1)] = np.nan
    return pd.Series(labels, index=matrix.index, name=PERTURBATION_KEY, dtype=object)


def read_condition(
    labels,
    control_tokens: Sequence[str] = ("ctrl",),
    delimiter: str = _DELIMITER,
    control: str = "control",
) -> pd.Series:
    """Convert "condition" labels of other perturbation tools to the package's convention.

    GEARS :cite:p:`roohani2023predicting` and the CPA data that follow it write a single
    perturbation with a control token (``"A+ctrl"``, ``"ctrl+A"``), controls as ``"ctrl"`` and
    combinations as ``"A+B"``; scPerturb files write controls as ``"control"`` (pass
    ``control_tokens=("control",)``). The package writes ``"A"``, ``"control"`` and ``"A+B"``:
    the control tokens are dropped, the remaining perturbations kept in their order (a repeat
    once) and joined by ``"+"``, and a label with nothing left is ``control``.

    Parameters
    ----------
    labels
        One label per cell: a :class:`pandas.Series` (its index is kept), a list, an array, a
        Categorical or an Index.
    control_tokens
        Tokens that mean "no perturbation" (compared exactly, after stripping whitespace).
    delimiter
        Separator of the input combinations (``"+"`` for GEARS / CPA, ``"_"`` in some scPerturb
        files).
    control
        Label given to the controls.

    Returns
    -------
    pandas.Series
        String labels (``object`` dtype), named ``"perturbation"``.

    Examples
    --------
    >>> read_condition(["A+ctrl", "ctrl+B", "ctrl", "A+B"]).tolist()
    ['A', 'B', 'control', 'A+B']
    """
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of labels (one per cell), not a string.")
    if isinstance(control_tokens, str):
        control_tokens = (control_tokens,)
    series = labels if isinstance(labels, pd.Series) else pd.Series(labels)
    empty = series.isna().to_numpy() | (series.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        where = list(series.index[empty][:_N_EXAMPLES])
        raise ValueError(
            f"{int(empty.sum())} labels are empty or missing (e.g. at index {where}); every cell "
            f"needs a condition, and controls are written {tuple(control_tokens)[:1]!r}."
        )
    tokens = set(control_tokens)
    converted, malformed = {}, []
    for label in pd.unique(series.astype(str)):
        parts = [p.strip() for p in label.split(delimiter)]
        kept = list(dict.fromkeys(p for p in parts if p not in tokens))
        if not all(parts) or control in kept or any(_DELIMITER in p for p in kept):
            malformed.append(label)
            continue
        converted[label] = _DELIMITER.join(kept) if kept else control
    if malformed:
        raise ValueError(
            f"Malformed labels (an empty part between {delimiter!r}, the control label "
            f"{control!r} used as a perturbation, or a {_DELIMITER!r} inside a perturbation): "
            f"{malformed[:_N_EXAMPLES]}."
        )
    out = series.astype(str).map(converted)
    return pd.Series(
        out.to_numpy(dtype=object), index=series.index, name=PERTURBATION_KEY, dtype=object
    )


def _read_counts(guide_counts, guide_names, guide_targets, obsm_key: str):
    """The counts as CSC (cells x guides), guide names, targets and cell names, validated."""
    uns = None
    cells = None
    if isinstance(guide_counts, ad.AnnData):
        if obsm_key not in guide_counts.obsm:
            raise KeyError(
                f"{obsm_key!r} is not a key of adata.obsm ({list(guide_counts.obsm.keys())})."
            )
        uns, cells = guide_counts.uns, guide_counts.obs_names
        guide_counts = guide_counts.obsm[obsm_key]
    guide_names = _from_uns(guide_names, uns, "guide_names")
    guide_targets = _from_uns(guide_targets, uns, "guide_targets")
    if isinstance(guide_targets, pd.Series):  # indexed by guide name
        guide_targets = guide_targets.to_dict()

    if isinstance(guide_counts, pd.DataFrame):
        if guide_names is not None:
            raise ValueError("The guide names are the DataFrame's columns; pass no guide_names.")
        guide_names = [str(c) for c in guide_counts.columns]
        cells = guide_counts.index if cells is None else cells
        if (
            all(isinstance(d, pd.SparseDtype) for d in guide_counts.dtypes)
            and guide_counts.shape[1]
        ):
            guide_counts = guide_counts.sparse.to_coo()
        else:
            guide_counts = guide_counts.to_numpy()
    try:
        counts = (
            sparse.csc_matrix(guide_counts, dtype=np.float64)
            if sparse.issparse(guide_counts)
            else np.asarray(guide_counts, dtype=np.float64)
        )
    except (TypeError, ValueError) as err:
        raise ValueError("guide_counts must hold numbers (UMI counts).") from err
    if counts.ndim != 2:
        raise ValueError(f"guide_counts must be 2-D (cells x guides), got shape {counts.shape}.")
    data = counts.data if sparse.issparse(counts) else counts
    if not np.isfinite(data).all():
        raise ValueError("guide_counts has NaN or infinite values.")
    if (data < 0).any():
        raise ValueError("guide_counts has negative values; it must hold UMI counts.")
    if not np.array_equal(data, np.round(data)):
        raise ValueError("guide_counts has non-integer values; it must hold raw UMI counts.")
    counts = sparse.csc_matrix(counts)
    counts.eliminate_zeros()
    n_cells, n_guides = counts.shape

    if guide_names is None:
        names = [f"guide_{j}" for j in range(n_guides)]
    else:
        names = [str(n) for n in _as_list(guide_names, "guide_names")]
        if len(names) != n_guides:
            hint = " (are the counts guides x cells?)" if len(names) == n_cells else ""
            raise ValueError(
                f"{len(names)} guide_names for {n_guides} guides (columns of guide_counts){hint}."
            )
        duplicated = pd.Index(names)[pd.Index(names).duplicated()].unique()
        if len(duplicated):
            raise ValueError(f"Duplicated guide names: {list(duplicated[:_N_EXAMPLES])}.")

    if guide_targets is None:
        targets = names
    elif isinstance(guide_targets, Mapping):
        absent = [n for n in names if n not in guide_targets]
        if absent:
            raise ValueError(
                f"guide_targets has no target for {len(absent)} guides, e.g. "
                f"{absent[:_N_EXAMPLES]}."
            )
        targets = [guide_targets[n] for n in names]
    else:
        targets = _as_list(guide_targets, "guide_targets")
        if len(targets) != n_guides:
            raise ValueError(
                f"{len(targets)} guide_targets for {n_guides} guides (columns of guide_counts)."
            )
    if any(
        t is None or (isinstance(t, float) and np.isnan(t)) or str(t).strip() == "" for t in targets
    ):
        raise ValueError("guide_targets has missing or empty targets.")
    targets = [str(t) for t in targets]
    cells = pd.RangeIndex(n_cells) if cells is None else pd.Index(cells)
    return counts, names, targets, cells


def _from_uns(value, uns, argument: str):
    """``adata.uns[value]`` when ``value`` is a key (AnnData input only)."""
    if not isinstance(value, str):
        return value
    if uns is None:
        raise TypeError(
            f"{argument}={value!r}: a string is a key of adata.uns, so it needs an "
            "AnnData; pass a sequence or a mapping otherwise."
        )
    if value not in uns:
        raise KeyError(f"{value!r} is not a key of adata.uns ({list(uns.keys())}).")
    return uns[value]


def _as_list(values, argument: str) -> list:
    if isinstance(values, str) or not isinstance(
        values, Sequence | np.ndarray | pd.Index | pd.Series
    ):
        raise TypeError(
            f"{argument} must be a sequence aligned with the guides (or a mapping), "
            f"got {type(values).__name__}."
        )
    return list(np.asarray(values, dtype=object).ravel())


def _guide_thresholds(threshold, names: list[str]) -> np.ndarray:
    """One threshold per guide, validated."""
    thresholds = np.full(len(names), float(DEFAULT_UMI_THRESHOLD))
    if isinstance(threshold, pd.Series):  # indexed by guide name
        threshold = threshold.to_dict()
    if isinstance(threshold, Mapping):
        index = {n: j for j, n in enumerate(names)}
        unknown = [k for k in threshold if str(k) not in index]
        if unknown:
            raise ValueError(f"threshold names unknown guides: {unknown[:_N_EXAMPLES]}.")
        for key, value in threshold.items():
            thresholds[index[str(key)]] = value
    elif isinstance(threshold, numbers.Real):
        thresholds[:] = threshold
    elif threshold is not None:
        values = np.asarray(threshold, dtype=float).ravel()
        if len(values) != len(names):
            raise ValueError(f"{len(values)} thresholds for {len(names)} guides.")
        thresholds = values
    if not (np.isfinite(thresholds) & (thresholds > 0)).all():
        raise ValueError(f"threshold must be > 0 for every guide, got {threshold!r}.")
    return thresholds


def _call_threshold(counts: sparse.csc_matrix, thresholds: np.ndarray) -> sparse.csc_matrix:
    """Guide calls: count >= threshold of its guide (the thresholds are > 0)."""
    columns = np.repeat(np.arange(counts.shape[1]), np.diff(counts.indptr))
    return _with_calls(counts, counts.data >= thresholds[columns])


def _call_mixture(counts: sparse.csc_matrix, names: list[str], min_umi: int) -> sparse.csc_matrix:
    """Guide calls by a background + signal mixture fitted to each guide's counts."""
    n_cells = counts.shape[0]
    calls = np.zeros(counts.nnz, dtype=bool)
    failed: dict[str, list[str]] = {}
    for j, name in enumerate(names):
        span = slice(counts.indptr[j], counts.indptr[j + 1])
        data = counts.data[span]
        if len(data) < _MIN_NONZERO_CELLS:
            failed.setdefault(f"fewer than {_MIN_NONZERO_CELLS} cells with a count", []).append(
                name
            )
            continue
        values, weights = np.unique(data, return_counts=True)
        if len(data) < n_cells:
            values = np.r_[0.0, values]
            weights = np.r_[n_cells - len(data), weights]
        signal, reason = _fit_mixture(values, weights.astype(float))
        if signal is None:
            failed.setdefault(reason, []).append(name)
            continue
        called_values = values[signal & (values >= min_umi)]
        calls[span] = np.isin(data, called_values)
    if failed:
        n_failed = sum(len(v) for v in failed.values())
        detail = "; ".join(
            f"{reason}: {v[:_N_EXAMPLES]}" + (" ..." if len(v) > _N_EXAMPLES else "")
            for reason, v in failed.items()
        )
        warnings.warn(
            f"method='mixture' made no calls for {n_failed} of {len(names)} guides whose counts do "
            f"not separate into background and signal ({detail}). Use method='threshold' for "
            "them.",
            UserWarning,
            stacklevel=3,
        )
    return _with_calls(counts, calls)


def _with_calls(counts: sparse.csc_matrix, calls: np.ndarray) -> sparse.csc_matrix:
    called = sparse.csc_matrix((calls, counts.indices, counts.indptr), shape=counts.shape)
    called.eliminate_zeros()
    return called


def _fit_mixture(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Which distinct counts the signal component claims, or ``None`` and why not.

    ``values`` are the distinct counts of one guide (including 0) and ``weights`` the number of
    cells with each. The mixture must beat one Poisson and one censored log-normal by BIC.
    """
    n_cells = weights.sum()
    lower = np.full_like(values, -np.inf)
    np.log(values, out=lower, where=values > 0)
    upper = np.log1p(values)

    rate = max(np.dot(weights, values) / n_cells, _MIN_RATE)
    bic_poisson = -2 * np.dot(weights, _poisson_logpmf(values, rate)) + np.log(n_cells)
    log_one, _, _ = _em(values, lower, upper, weights, np.ones_like(values), mixture=False)
    bic_lognormal = -2 * log_one + 2 * np.log(n_cells)
    nonzero = values > 0
    start = upper >= np.average(upper[nonzero], weights=weights[nonzero])
    log_mix, signal, rate = _em(values, lower, upper, weights, start.astype(float), mixture=True)
    bic_mixture = -2 * log_mix + 4 * np.log(n_cells)
    if bic_mixture >= bic_poisson:
        return None, "background only (one Poisson fits better)"
    if bic_mixture >= bic_lognormal:
        return None, "one population (one log-normal fits better)"
    return (signal > 0.5) & (values > rate), ""


def _em(values, lower, upper, weights, signal, mixture: bool):
    """EM for a Poisson background and an interval-censored log-normal signal.

    ``signal`` is the starting responsibility of the signal for each distinct count; with
    ``mixture=False`` it stays 1 (a single censored log-normal). Returns the log-likelihood,
    the signal responsibilities and the background rate.
    """
    w = weights * signal
    centre = upper  # log(c + 1): the upper edge of each bin, finite for zero too
    mu = np.dot(w, centre) / w.sum()
    sd = max(np.sqrt(np.dot(w, (centre - mu) ** 2) / w.sum()), _MIN_LOG_SD)
    share, rate, previous, log_lik = 1.0, _MIN_RATE, -np.inf, -np.inf
    for _ in range(_EM_MAX_ITER):
        w = weights * signal
        if mixture:
            share = w.sum() / weights.sum()
            if share < _MIN_SHARE:
                break
            share = min(share, 1 - _MIN_SHARE)
            background = weights - w
            rate = max(np.dot(background, values) / background.sum(), _MIN_RATE)
        mean, var = _censored_moments(lower, upper, mu, sd)
        mu = np.dot(w, mean) / w.sum()
        sd = max(np.sqrt(np.dot(w, var + (mean - mu) ** 2) / w.sum()), _MIN_LOG_SD)

        log_signal = _censored_logpmf(lower, upper, mu, sd)
        if mixture:
            log_a = np.log1p(-share) + _poisson_logpmf(values, rate)
            log_b = np.log(share) + log_signal
            log_total = np.logaddexp(log_a, log_b)
            signal = np.exp(log_b - log_total)
        else:
            log_total = log_signal
        log_lik = np.dot(weights, log_total)
        if log_lik - previous <= _EM_TOL * abs(log_lik):
            break
        previous = log_lik
    return log_lik, signal, rate


def _poisson_logpmf(values: np.ndarray, rate: float) -> np.ndarray:
    return values * np.log(rate) - rate - gammaln(values + 1)


def _log_prob_between(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``log(Phi(beta) - Phi(alpha))`` for ``alpha < beta``, accurate in both tails."""
    flip = alpha > 0  # in the upper tail use the symmetric lower-tail form
    low, high = np.where(flip, -beta, alpha), np.where(flip, -alpha, beta)
    log_high = log_ndtr(high)
    return log_high + np.log1p(-np.exp(np.minimum(log_ndtr(low) - log_high, -1e-300)))


def _censored_logpmf(lower, upper, mu: float, sd: float) -> np.ndarray:
    """Log-probability that a ``N(mu, sd**2)`` log intensity falls in each count's bin."""
    return _log_prob_between((lower - mu) / sd, (upper - mu) / sd)


def _standard_density(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``phi(z)`` and ``z * phi(z)``, both 0 at infinite ``z``."""
    finite = np.isfinite(z)
    zf = np.where(finite, z, 0.0)
    density = np.where(finite, np.exp(-0.5 * zf * zf) / np.sqrt(2 * np.pi), 0.0)
    return density, zf * density


def _censored_moments(lower, upper, mu: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``N(mu, sd**2)`` restricted to each count's bin."""
    alpha, beta = (lower - mu) / sd, (upper - mu) / sd
    mass = np.exp(_log_prob_between(alpha, beta))
    phi_a, a_phi_a = _standard_density(alpha)
    phi_b, b_phi_b = _standard_density(beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = (phi_a - phi_b) / mass
        spread = (a_phi_a - b_phi_b) / mass
    exact = (mass > 1e-12) & np.isfinite(shift) & np.isfinite(spread)
    nearest_edge = np.where(alpha > 0, lower, upper)  # a bin far in a tail: its edge
    mean = np.where(exact, mu + sd * shift, nearest_edge)
    var = np.where(exact, np.maximum(sd * sd * (1 + spread - shift * shift), 0.0), 0.0)
    return mean, var
