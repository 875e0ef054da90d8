"""Latent causal graph recovery: the DAG among latent units, and direct versus downstream targets.

A latent graph is a ``(n_units, n_units)`` matrix whose entry ``(i, j)`` is an edge
``z_i -> z_j`` (rows = parent, columns = child), as returned by
:meth:`~scvi_causal.model.SparseShiftVI.get_latent_graph` and stored by
:func:`~scvi_causal.data.simulate_sparse_shift` in ``uns["true_latent_graph"]``. Estimated units
are identified only up to permutation, so rows *and* columns of an estimate are first aligned with
the true units through the matching of :func:`~scvi_causal.metrics.match_latents`.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import shortest_path
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from ._graph import _check_graph, align_columns, check_matching, target_graph_scores


def _check_square(x, name: str) -> np.ndarray:
    if np.ndim(x) != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (n_units, n_units), got ndim={np.ndim(x)}."
        )
    arr = _check_graph(x, name)
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"`{name}` must be square (units x units), got shape {arr.shape}.")
    return arr


def _check_true_dag(x, name: str) -> np.ndarray:
    arr = _check_square(x, name)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"`{name}` must be binary (entries 0 or 1).")
    if np.any(np.diag(arr)):
        raise ValueError(f"`{name}` must have a zero diagonal (no self-loops).")
    return arr


def _align_units(est: np.ndarray, matching, n_true: int) -> np.ndarray:
    """``est`` with rows and columns in the order of the true units (unmatched units: 0)."""
    if matching is None:
        if est.shape[0] != n_true:
            raise ValueError(
                f"`est_graph` has {est.shape[0]} units but `true_graph` has {n_true}; pass the "
                "`matching` returned by `match_latents` to align them."
            )
        return est
    matching = check_matching(matching, n_true, est.shape[0])
    aligned = np.zeros((n_true, n_true))
    units = np.flatnonzero(matching >= 0)
    aligned[np.ix_(units, units)] = est[np.ix_(matching[units], matching[units])]
    return aligned


def _binary_scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true.astype(np.int64),
        y_pred.astype(np.int64),
        average="binary",
        pos_label=1,
        zero_division=0,
    )
    return float(precision), float(recall), float(f1)


def descendant_depths(graph, threshold: float = 0.5) -> np.ndarray:
    """Depth of every unit below every other in a latent graph: shortest directed path lengths.

    Parameters
    ----------
    graph
        Array of shape ``(n_units, n_units)``, rows = parent, columns = child: edge inclusion
        probabilities or a 0/1 graph.
    threshold
        Entries ``>= threshold`` (off the diagonal) are edges.

    Returns
    -------
    numpy.ndarray
        Float array of shape ``(n_units, n_units)``: entry ``(i, j)`` is the number of edges on a
        shortest directed path from unit ``i`` to unit ``j`` (1 for a child, 2 for a grandchild,
        ...), ``inf`` when ``j`` is not a descendant of ``i``, and 0 on the diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> chain = np.array([[0, 0.9, 0], [0, 0, 0.8], [0.2, 0, 0]])  # z0 -> z1 -> z2
    >>> descendant_depths(chain)
    array([[ 0.,  1.,  2.],
           [inf,  0.,  1.],
           [inf, inf,  0.]])
    """
    graph = _check_square(graph, "graph")
    edges = (graph >= threshold) & ~np.eye(graph.shape[0], dtype=bool)
    return shortest_path(edges.astype(float), directed=True, unweighted=True)


def latent_graph_scores(
    true_graph, est_graph, matching=None, threshold: float = 0.5
) -> dict[str, float]:
    """Score an estimated latent DAG (units x units) against the true one.

    The estimate's units are aligned with the true units (rows and columns), then every ordered
    pair of distinct units is an edge or not; the diagonal is ignored.

    Parameters
    ----------
    true_graph
        Binary array of shape ``(n_true, n_true)``, rows = parent, columns = child, zero diagonal.
    est_graph
        Array of shape ``(n_hat, n_hat)``, rows = parent: edge inclusion probabilities in
        ``[0, 1]`` (:meth:`~scvi_causal.model.SparseShiftVI.get_latent_graph`) or a 0/1 graph.
    matching
        Output of :func:`~scvi_causal.metrics.match_latents` (length ``n_true``): estimated unit
        ``matching[i]`` is true unit ``i``; the estimate is read as
        ``est_graph[matching][:, matching]``, and edges of unmatched true units (``-1``) as
        absent. If ``None``, ``n_hat`` must equal ``n_true`` and the units are compared as
        they are.
    threshold
        Probabilities ``>= threshold`` count as edges for all scores except ``auprc``.

    Returns
    -------
    dict[str, float]
        Dictionary with keys

        - ``precision``, ``recall``, ``f1``: of the directed edges (a reversed edge is both a
          false positive and a false negative; 0 when undefined);
        - ``skeleton_f1``: F1 of the undirected edges (a reversed edge counts as found);
        - ``shd``: structural Hamming distance, the number of unordered pairs of units whose
          edges differ: a missing, an extra and a reversed edge each count 1;
        - ``n_reversed``: true edges estimated in the opposite direction only;
        - ``auprc``: average precision of the probabilities over the ordered pairs (NaN if the
          truth has no edges);
        - ``n_true_edges``, ``n_est_edges``: edge counts of the truth and the binarised
          estimate.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])  # z0 -> z1 -> z2
    >>> est = np.array([[0, 0.1, 0.2], [0.9, 0, 0.7], [0.1, 0, 0]])  # z1 -> z0 reversed
    >>> scores = latent_graph_scores(truth, est)
    >>> scores["f1"], scores["shd"], scores["skeleton_f1"]
    (0.5, 1.0, 1.0)

    An estimate whose units are permuted scores perfectly once matched:

    >>> perm = np.array([2, 0, 1])  # estimated unit k is true unit perm[k]
    >>> latent_graph_scores(truth, truth[np.ix_(perm, perm)], matching=np.argsort(perm))["shd"]
    0.0
    """
    truth = _check_true_dag(true_graph, "true_graph")
    est = _align_units(_check_square(est_graph, "est_graph"), matching, truth.shape[0])
    off = ~np.eye(truth.shape[0], dtype=bool)
    true_edges = truth.astype(bool) & off
    est_edges = (est >= threshold) & off
    n_true = int(true_edges.sum())
    precision, recall, f1 = _binary_scores(true_edges[off], est_edges[off])
    # unordered pairs i < j: the state of each is (edge i -> j, edge j -> i)
    upper = np.triu(off)
    _, _, skeleton_f1 = _binary_scores(
        (true_edges | true_edges.T)[upper], (est_edges | est_edges.T)[upper]
    )
    differs = (true_edges != est_edges) | (true_edges.T != est_edges.T)
    reversed_ = true_edges & ~est_edges & est_edges.T & ~true_edges.T
    auprc = (
        float(average_precision_score(true_edges[off].astype(np.int64), est[off]))
        if n_true > 0
        else float("nan")
    )
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "skeleton_f1": skeleton_f1,
        "shd": float((differs & upper).sum()),
        "n_reversed": float(reversed_.sum()),
        "auprc": auprc,
        "n_true_edges": float(n_true),
        "n_est_edges": float(est_edges.sum()),
    }


def direct_target_scores(
    true_targets, est_targets, true_latent_graph, matching=None, threshold: float = 0.5
) -> dict[str, float]:
    """Score estimated *direct* targets of perturbations on a latent DAG.

    On a latent causal graph a perturbation moves its direct targets and, through the graph,
    their descendants. A model that reports a descendant as a target has found an effect, not
    a target: here it is a false positive. The scores are those of
    :func:`~scvi_causal.metrics.target_graph_scores` against the direct targets, with the false
    positives split into descendants and others, and the precision that crediting descendants
    would give (the precision of a model without a latent graph, whose targets are total
    effects, is best read beside it).

    Parameters
    ----------
    true_targets
        Binary array of shape ``(n_perturbations, n_true)``: the direct targets
        (``uns["true_graph"]`` of :func:`~scvi_causal.data.simulate_sparse_shift`).
    est_targets
        Array of shape ``(n_perturbations, n_hat)``: target inclusion probabilities or a 0/1
        graph (:meth:`~scvi_causal.model.SparseShiftVI.get_target_graph`).
    true_latent_graph
        Binary array of shape ``(n_true, n_true)``, rows = parent, columns = child: the true DAG
        (``uns["true_latent_graph"]``).
    matching
        Output of :func:`~scvi_causal.metrics.match_latents` (length ``n_true``); see
        :func:`~scvi_causal.metrics.target_graph_scores`.
    threshold
        Scores ``>= threshold`` count as targets.

    Returns
    -------
    dict[str, float]
        The keys of :func:`~scvi_causal.metrics.target_graph_scores` (``precision``,
        ``recall``, ``f1``, ``auprc``, ``shd``, ``n_true_edges``, ``n_est_edges``) for the
        direct targets, and

        - ``n_descendant_fp``: estimated targets that are not direct targets but descendants of
          a direct target of the same perturbation;
        - ``n_other_fp``: the other false positives;
        - ``precision_with_descendants``: the precision when descendants count as correct.

    Examples
    --------
    >>> import numpy as np
    >>> dag = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]])  # z0 -> z1
    >>> direct = np.array([[1, 0, 0], [0, 0, 1]])  # p0 hits z0, p1 hits z2
    >>> est = np.array([[1, 1, 0], [0, 0, 1]])  # p0 reported on z0 and its child z1
    >>> scores = direct_target_scores(direct, est, dag)
    >>> scores["precision"], scores["n_descendant_fp"], scores["precision_with_descendants"]
    (0.6666666666666666, 1.0, 1.0)
    """
    truth = _check_graph(true_targets, "true_targets")
    dag = _check_true_dag(true_latent_graph, "true_latent_graph")
    if dag.shape[0] != truth.shape[1]:
        raise ValueError(
            f"`true_latent_graph` has {dag.shape[0]} units but `true_targets` has "
            f"{truth.shape[1]} columns."
        )
    scores = target_graph_scores(truth, est_targets, matching=matching, threshold=threshold)
    est = align_columns(_check_graph(est_targets, "est_targets"), matching, truth.shape[1])
    reported = est >= threshold
    direct = truth == 1
    below = np.isfinite(descendant_depths(dag)) & ~np.eye(dag.shape[0], dtype=bool)
    downstream = ((direct.astype(int) @ below.astype(int)) > 0) & ~direct
    n_descendant_fp = int((reported & downstream).sum())
    n_fp = int((reported & ~direct).sum())
    n_reported = int(reported.sum())
    return scores | {
        "n_descendant_fp": float(n_descendant_fp),
        "n_other_fp": float(n_fp - n_descendant_fp),
        "precision_with_descendants": (
            float((n_reported - n_fp + n_descendant_fp) / n_reported) if n_reported else 0.0
        ),
    }
