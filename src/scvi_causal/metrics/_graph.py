"""Target-graph recovery metrics: which latent dimensions does each perturbation shift?

A target graph is a ``(n_perturbations, n_latent)`` matrix whose entry ``(p, j)`` says whether
perturbation ``p`` shifts the mechanism of latent ``j`` :cite:p:`lopez2023learning`. Estimated
latents are identified only up to permutation, so the estimated columns are first aligned with
the true ones using the matching from :func:`~scvi_causal.metrics.match_latents`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support


def _check_graph(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (n_perturbations, n_latent), "
            f"got ndim={arr.ndim}."
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"`{name}` must be non-empty, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return arr


def check_matching(matching, n_true: int, n_hat: int) -> np.ndarray:
    """Validate a :func:`~scvi_causal.metrics.match_latents` matching of ``n_hat`` units onto
    ``n_true`` true ones: integers, length ``n_true``, ``-1`` (unmatched) or in ``[0, n_hat)``."""
    matching = np.asarray(matching)
    if matching.shape != (n_true,):
        raise ValueError(
            f"`matching` must have shape (n_true,) = ({n_true},), got {matching.shape}."
        )
    if not np.issubdtype(matching.dtype, np.integer):
        raise ValueError(f"`matching` must contain integers, got dtype {matching.dtype}.")
    if np.any(matching < -1) or np.any(matching >= n_hat):
        raise ValueError(
            f"`matching` entries must be -1 (unmatched) or column indices in [0, {n_hat})."
        )
    return matching


def align_columns(est: np.ndarray, matching, n_true: int) -> np.ndarray:
    """Columns of ``est`` in the order of the ``n_true`` true units (unmatched units: 0)."""
    n_hat = est.shape[1]
    if matching is None:
        if n_hat != n_true:
            raise ValueError(
                f"`est_graph` has {n_hat} columns but `true_graph` has {n_true}; pass the "
                "`matching` returned by `match_latents` to align them."
            )
        return est
    matching = check_matching(matching, n_true, n_hat)
    matched = matching >= 0
    aligned = np.zeros((est.shape[0], n_true))
    aligned[:, matched] = est[:, matching[matched]]
    return aligned


def binarize_top_k(scores, k) -> np.ndarray:
    """Keep the ``k`` entries of largest absolute value in each row.

    Reads a binary target graph from dense per-perturbation shifts, as the published sVAE
    evaluation protocol does when the number of targets per perturbation is known
    :cite:p:`lopez2023learning`. Ties are broken by column order.

    Parameters
    ----------
    scores
        Array of shape ``(n_rows, n_cols)``, e.g. estimated mean shifts of each latent under each
        perturbation.
    k
        Number of entries to keep per row: an int, or an integer array of length ``n_rows``.
        ``k=0`` gives an all-zero row.

    Returns
    -------
    numpy.ndarray
        Integer array of the same shape as ``scores`` with ``k`` ones per row.

    Examples
    --------
    >>> import numpy as np
    >>> shifts = np.array([[0.1, -2.0, 0.5], [3.0, 0.0, 1.0]])
    >>> binarize_top_k(shifts, 1)
    array([[0, 1, 0],
           [1, 0, 0]])
    >>> binarize_top_k(shifts, [2, 0])
    array([[0, 1, 1],
           [0, 0, 0]])
    """
    scores = _check_graph(scores, "scores")
    n_rows, n_cols = scores.shape
    k_arr = np.asarray(k)
    if k_arr.ndim == 0:
        k_arr = np.full(n_rows, k_arr)
    if k_arr.ndim != 1 or len(k_arr) != n_rows:
        raise ValueError(
            f"`k` must be an int or a 1-D array of length n_rows={n_rows}, got shape {np.shape(k)}."
        )
    if not np.issubdtype(k_arr.dtype, np.integer):
        if not (np.issubdtype(k_arr.dtype, np.floating) and np.all(k_arr == np.round(k_arr))):
            raise ValueError(f"`k` must contain integers, got {k!r}.")
        k_arr = k_arr.astype(np.int64)
    if np.any(k_arr < 0) or np.any(k_arr > n_cols):
        raise ValueError(f"`k` must lie in [0, n_cols={n_cols}], got {k!r}.")
    order = np.argsort(-np.abs(scores), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(n_cols)[None, :].repeat(n_rows, axis=0), axis=1)
    return (ranks < k_arr[:, None]).astype(np.int64)


def target_graph_scores(
    true_graph, est_graph, matching=None, threshold: float = 0.5
) -> dict[str, float]:
    """Score an estimated perturbation-by-latent target graph against the truth.

    Parameters
    ----------
    true_graph
        Binary array of shape ``(n_perturbations, n_true)``.
    est_graph
        Array of shape ``(n_perturbations, n_hat)``: inclusion probabilities in ``[0, 1]`` or an
        already binary graph. For dense shifts, binarise first with :func:`binarize_top_k` or
        pass absolute shifts with a suitable ``threshold``.
    matching
        Output of :func:`~scvi_causal.metrics.match_latents` (length ``n_true``). The estimated
        columns are reordered as ``est_graph[:, matching]``; columns of unmatched true
        dimensions (``-1``) are set to 0. If ``None``, ``n_hat`` must equal ``n_true`` and the
        columns are compared as they are.
    threshold
        Scores ``>= threshold`` count as edges for precision, recall, F1 and SHD.

    Returns
    -------
    dict[str, float]
        Dictionary with keys

        - ``precision``, ``recall``, ``f1``: of the binarised estimate (0 when undefined);
        - ``auprc``: average precision of the continuous scores against the flattened truth
          (NaN if the truth has no edges);
        - ``shd``: structural Hamming distance, the number of differing entries after
          binarising;
        - ``n_true_edges``, ``n_est_edges``: edge counts of the truth and the binarised
          estimate.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 0, 0], [0, 1, 1]])
    >>> est = np.array([[0.1, 0.9, 0.0], [0.8, 0.2, 0.7]])
    >>> scores = target_graph_scores(truth, est, matching=np.array([1, 0, 2]))
    >>> scores["f1"], scores["shd"]
    (1.0, 0.0)
    """
    truth = _check_graph(true_graph, "true_graph")
    est = _check_graph(est_graph, "est_graph")
    if not np.all((truth == 0) | (truth == 1)):
        raise ValueError("`true_graph` must be binary (entries 0 or 1).")
    n_pert, n_true = truth.shape
    if est.shape[0] != n_pert:
        raise ValueError(
            "`true_graph` and `est_graph` must have the same number of perturbations (rows), "
            f"got {n_pert} and {est.shape[0]}."
        )
    aligned = align_columns(est, matching, n_true)

    y_true = truth.ravel().astype(np.int64)
    y_score = aligned.ravel()
    y_pred = (y_score >= threshold).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=1, zero_division=0
    )
    n_true_edges = int(y_true.sum())
    auprc = float(average_precision_score(y_true, y_score)) if n_true_edges > 0 else float("nan")
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "auprc": auprc,
        "shd": float(np.sum(y_true != y_pred)),
        "n_true_edges": float(n_true_edges),
        "n_est_edges": float(y_pred.sum()),
    }
