"""Consensus of the target graphs of several trained models (e.g. seeds of one screen).

Latent units are identified only up to permutation, sign and scale, so the units of every model
are first matched one-to-one to those of a reference model (Hungarian assignment on absolute
correlations, :func:`~scvi_causal.metrics.match_latents`); the matched graphs are then
averaged edge by edge. The matching and the aggregation are pure functions of arrays
(:func:`match_to_reference`, :func:`aggregate_matched`); :func:`consensus_target_graph` reads the
arrays from the models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scvi import REGISTRY_KEYS

from scvi_causal.metrics import match_latents

if TYPE_CHECKING:
    from anndata import AnnData

    from ._sparse_shift_vi import SparseShiftVI

_MATCH_ON = ("latent", "shifts")


@dataclass(repr=False)
class ConsensusGraph:
    """Target graphs of several models after matching their latent units to a reference.

    Returned by :func:`consensus_target_graph`. Columns of the edge tables are the reference
    model's units; a model's unit matched to reference unit ``z3`` is counted as ``z3``.

    Attributes
    ----------
    stability
        Perturbations x reference units: fraction of models in which the edge is present
        (inclusion probability ``> threshold``) after matching.
    mean_probability
        Perturbations x reference units: mean matched inclusion probability over models.
    matching
        Models x reference units: name of each model's unit matched to the reference unit
        (the reference row is the identity).
    correlation
        Models x reference units: signed Pearson correlation of the matched pair of features
        (latents of the same cells, or shift profiles; see ``match_on``). The reference row is 1.
        A unit whose ``|correlation|`` is low in some model did not replicate there, and its
        edges are counted against a unit that means something else.
    threshold
        Inclusion probability above which an edge counts as present.
    reference
        Name of the reference model (an index entry of ``matching``).
    match_on
        ``"latent"`` or ``"shifts"``: what the units were matched on.
    """

    stability: pd.DataFrame
    mean_probability: pd.DataFrame
    matching: pd.DataFrame
    correlation: pd.DataFrame
    threshold: float
    reference: object
    match_on: str

    @property
    def n_models(self) -> int:
        """Number of models."""
        return len(self.matching)

    def unit_replication(self) -> pd.Series:
        """Smallest ``|correlation|`` of each reference unit over the other models.

        Returns
        -------
        pandas.Series
            Indexed by reference unit, values in ``[0, 1]``.
        """
        others = self.correlation.drop(index=self.reference)
        return others.abs().min(axis=0).rename("min_abs_correlation")

    def stable_edges(self, min_stability: float = 0.8) -> pd.DataFrame:
        """Edges present in at least a fraction ``min_stability`` of the models.

        Parameters
        ----------
        min_stability
            Edges with ``stability >= min_stability`` are kept (default 0.8: 4 of 5 models).

        Returns
        -------
        pandas.DataFrame
            One row per stable edge, columns ``perturbation``, ``unit`` (reference unit),
            ``stability``, ``mean_probability`` and ``min_abs_correlation`` (the unit's
            :meth:`unit_replication`), sorted by decreasing stability and mean probability.
        """
        if not 0 <= min_stability <= 1:
            raise ValueError(f"`min_stability` must lie in [0, 1], got {min_stability!r}.")
        long = pd.DataFrame(
            {
                "stability": self.stability.stack(),
                "mean_probability": self.mean_probability.stack(),
            }
        )
        long.index.names = ["perturbation", "unit"]
        long = long[long["stability"] >= min_stability - 1e-12].reset_index()
        long["min_abs_correlation"] = long["unit"].map(self.unit_replication()).astype(float)
        return long.sort_values(
            ["stability", "mean_probability"], ascending=False, kind="stable"
        ).reset_index(drop=True)

    def __repr__(self) -> str:
        n_pert, n_units = self.stability.shape
        return (
            f"ConsensusGraph: {self.n_models} models, {n_pert} perturbations x {n_units} units, "
            f"matched on {self.match_on!r} to reference {self.reference!r}, "
            f"threshold={self.threshold}, {len(self.stable_edges())} edges with stability >= 0.8"
        )


def match_to_reference(features: Sequence, reference: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Match the columns of several feature matrices one-to-one to those of a reference.

    For each model, :func:`~scvi_causal.metrics.match_latents` (Hungarian assignment on the
    absolute Pearson correlation of columns) is run with the reference's features as the
    "truth", so the matching is invariant to permutation, sign flips and rescaling of units.

    Parameters
    ----------
    features
        One array of shape ``(n_samples, n_units)`` per model, rows describing the same samples
        in every array: latents of the same cells, or shift profiles over the same
        perturbations.
    reference
        Position of the reference model in ``features``.

    Returns
    -------
    matching : numpy.ndarray
        Integer array ``(n_models, n_units)``; ``matching[m, i]`` is the column of model ``m``
        matched to reference unit ``i`` (the reference row is ``0, 1, ...``).
    correlation : numpy.ndarray
        ``(n_models, n_units)`` signed Pearson correlation of each matched pair (the reference
        row is 1; a constant column gives 0).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(200, 3))
    >>> matching, corr = match_to_reference([z, -2 * z[:, [2, 0, 1]]])
    >>> matching
    array([[0, 1, 2],
           [1, 2, 0]])
    >>> corr.round(3)
    array([[ 1.,  1.,  1.],
           [-1., -1., -1.]])
    """
    arrays = _check_stack(features, "features", rows="samples")
    n_models, n_units = len(arrays), arrays[0].shape[1]
    ref = _check_reference(reference, n_models)
    matching = np.tile(np.arange(n_units), (n_models, 1))
    correlation = np.ones((n_models, n_units))
    z_ref = arrays[ref]
    for m, z in enumerate(arrays):
        if m == ref:
            continue
        match, abs_corr = match_latents(z_ref, z)
        matched = abs_corr[np.arange(n_units), match]
        cross = ((z_ref - z_ref.mean(0)) * (z[:, match] - z[:, match].mean(0))).sum(0)
        matching[m] = match
        correlation[m] = np.where(cross < 0, -matched, matched)
    return matching, correlation


def aggregate_matched(
    graphs: Sequence, matching, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Edge stability and mean inclusion probability of matched graphs.

    Parameters
    ----------
    graphs
        One array ``(n_perturbations, n_units)`` of inclusion probabilities per model, rows in
        the same perturbation order.
    matching
        ``(n_models, n_units)`` output of :func:`match_to_reference`: column ``i`` of the
        aligned graph of model ``m`` is ``graphs[m][:, matching[m, i]]``.
    threshold
        An edge is present when its inclusion probability is ``> threshold``.

    Returns
    -------
    stability : numpy.ndarray
        ``(n_perturbations, n_units)``: fraction of models in which the aligned edge is present.
    mean_probability : numpy.ndarray
        ``(n_perturbations, n_units)``: mean aligned inclusion probability.

    Examples
    --------
    >>> import numpy as np
    >>> g0 = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> g1 = g0[:, ::-1]  # the same graph with its units swapped
    >>> g2 = np.array([[0.9, 0.1], [0.2, 0.1]])
    >>> stability, mean_prob = aggregate_matched([g0, g1, g2], [[0, 1], [1, 0], [0, 1]])
    >>> stability.round(3)
    array([[1.   , 0.   ],
           [0.   , 0.667]])
    """
    arrays = _check_stack(graphs, "graphs", rows="perturbations")
    n_models, n_units = len(arrays), arrays[0].shape[1]
    _check_threshold(threshold)
    matching = np.asarray(matching)
    if matching.shape != (n_models, n_units):
        raise ValueError(
            f"`matching` must have shape (n_models, n_units) = ({n_models}, {n_units}), "
            f"got {matching.shape}."
        )
    if not np.issubdtype(matching.dtype, np.integer):
        raise ValueError(f"`matching` must contain integers, got dtype {matching.dtype}.")
    for m, row in enumerate(matching):
        if sorted(row.tolist()) != list(range(n_units)):
            raise ValueError(
                f"`matching[{m}]` must be a permutation of 0..{n_units - 1}, got {row.tolist()}."
            )
    aligned = np.stack([g[:, row] for g, row in zip(arrays, matching)])
    return (aligned > threshold).mean(axis=0), aligned.mean(axis=0)


def consensus_target_graph(
    models: Sequence[SparseShiftVI] | Mapping[object, SparseShiftVI],
    adata: AnnData | None = None,
    *,
    threshold: float = 0.5,
    reference: object = None,
    match_on: Literal["latent", "shifts"] = "latent",
    indices: Sequence[int] | None = None,
    batch_size: int | None = None,
) -> ConsensusGraph:
    """Consensus target graph of several trained models, e.g. seeds of one screen.

    Each model's latent units are matched one-to-one to the reference model's units
    (:func:`match_to_reference`), its target graph
    (:meth:`~scvi_causal.model.SparseShiftVI.get_target_graph`) is reordered accordingly, and
    every (perturbation, reference unit) edge gets a stability, the fraction of models in which
    it is present, and a mean inclusion probability (:func:`aggregate_matched`). Edges present
    in most seeds are the ones to trust: on the published sVAE simulation the edges present in
    at least 4 of 5 seeds are more precise than each seed's graph (model guide, "Consensus
    over seeds").

    Parameters
    ----------
    models
        At least two trained :class:`~scvi_causal.model.SparseShiftVI` with the same
        perturbations (in any order) and the same ``n_latent``; a sequence (models are named
        ``0, 1, ...``) or a mapping from names (e.g. seeds) to models.
    adata
        Cells whose latent representations are matched (``match_on="latent"``), with the
        models' genes in their order. Default: the reference model's training data.
    threshold
        An edge is present in a model when its inclusion probability is ``> threshold``.
    reference
        Name of the reference model (a key of ``models``, or a position for a sequence).
        Default: the first model.
    match_on
        ``"latent"`` (default): absolute Pearson correlation of the latent means of the same
        cells under every model. Thousands of cells per unit make this the accurate choice
        whenever every model can encode the same cells. ``"shifts"``: absolute correlation of
        the effective shift profiles over perturbations (inclusion probability times learned
        shift, :meth:`~scvi_causal.model.SparseShiftVI.get_perturbation_shifts`), for models
        that cannot encode the same cells (trained on different genes). It has one sample per
        perturbation and units with few targets have almost constant profiles, so it matches
        less reliably; check ``correlation``.
    indices
        Indices of the cells of ``adata`` to use (``match_on="latent"``).
    batch_size
        Minibatch size for the latent representations.

    Returns
    -------
    ConsensusGraph
        A dataclass with the DataFrames ``stability`` and ``mean_probability`` (perturbations
        in the reference's order x reference units), ``matching`` and ``correlation`` (models x
        reference units), the method ``stable_edges(min_stability=0.8)`` (long DataFrame:
        perturbation, unit, stability, mean_probability, min_abs_correlation) and
        ``unit_replication()``.

    Examples
    --------
    >>> import scvi
    >>> from scvi_causal.model import SparseShiftVI, consensus_target_graph
    >>> models = {}
    >>> for seed in (0, 1, 2):  # doctest: +SKIP
    ...     scvi.settings.seed = seed
    ...     models[seed] = SparseShiftVI(adata)
    ...     models[seed].train()
    >>> consensus = consensus_target_graph(models)  # doctest: +SKIP
    >>> consensus.stable_edges(0.8)  # doctest: +SKIP
    >>> consensus.correlation  # a unit with low |r| did not replicate  # doctest: +SKIP
    """
    names, model_list = _named_models(models)
    ref = _reference_position(reference, names, models)
    _check_threshold(threshold)
    if match_on not in _MATCH_ON:
        raise ValueError(f"`match_on` must be one of {_MATCH_ON}, got {match_on!r}.")
    for name, model in zip(names, model_list):
        if not getattr(model, "is_trained_", False):
            raise ValueError(f"Model {name!r} is not trained; train it before the consensus.")

    graphs = [model.get_target_graph() for model in model_list]
    perts = list(graphs[ref].index)
    units = list(graphs[ref].columns)
    for name, graph in zip(names, graphs):
        if graph.shape[1] != len(units):
            raise ValueError(
                f"Model {name!r} has n_latent={graph.shape[1]} but the reference "
                f"{names[ref]!r} has {len(units)}; the consensus needs the same n_latent."
            )
        if len(graph.index) != len(perts) or set(graph.index) != set(perts):
            missing = sorted(set(perts) - set(graph.index))
            extra = sorted(set(graph.index) - set(perts))
            raise ValueError(
                f"Model {name!r} has different perturbations from the reference "
                f"{names[ref]!r}: missing {missing[:10]}, extra {extra[:10]}."
            )
    graphs = [graph.loc[perts] for graph in graphs]

    if match_on == "latent":
        adata = _latent_adata(adata, names, model_list, ref)
        features = [
            model.get_latent_representation(adata, indices=indices, batch_size=batch_size)
            for model in model_list
        ]
    else:
        if adata is not None or indices is not None:
            raise ValueError("`adata` and `indices` are used only with match_on='latent'.")
        features = [
            (model.get_perturbation_shifts(masked=False).loc[perts] * graph).to_numpy()
            for model, graph in zip(model_list, graphs)
        ]
    matching, correlation = match_to_reference(features, reference=ref)
    stability, mean_prob = aggregate_matched(
        [graph.to_numpy() for graph in graphs], matching, threshold
    )
    index = pd.Index(names, name="model")
    return ConsensusGraph(
        stability=pd.DataFrame(stability, index=perts, columns=units),
        mean_probability=pd.DataFrame(mean_prob, index=perts, columns=units),
        matching=pd.DataFrame(
            [[str(g.columns[j]) for j in row] for g, row in zip(graphs, matching)],
            index=index,
            columns=units,
        ),
        correlation=pd.DataFrame(correlation, index=index, columns=units),
        threshold=float(threshold),
        reference=names[ref],
        match_on=match_on,
    )


def _check_stack(arrays: Sequence, name: str, rows: str) -> list[np.ndarray]:
    """At least two finite 2-D float arrays of one shape."""
    if isinstance(arrays, np.ndarray) and arrays.ndim == 3:
        arrays = list(arrays)
    if len(arrays) < 2:
        raise ValueError(f"`{name}` needs at least 2 models, got {len(arrays)}.")
    out = [np.asarray(a, dtype=float) for a in arrays]
    for m, arr in enumerate(out):
        if arr.ndim != 2 or min(arr.shape) < 1:
            raise ValueError(
                f"`{name}[{m}]` must be a non-empty 2-D array (n_{rows}, n_units), "
                f"got shape {arr.shape}."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}[{m}]` contains NaN or infinite values.")
        if arr.shape[1] != out[0].shape[1]:
            raise ValueError(
                f"`{name}[{m}]` has {arr.shape[1]} units but `{name}[0]` has "
                f"{out[0].shape[1]}; every model needs the same n_latent."
            )
        if arr.shape[0] != out[0].shape[0]:
            raise ValueError(
                f"`{name}[{m}]` has {arr.shape[0]} {rows} but `{name}[0]` has "
                f"{out[0].shape[0]}; rows must describe the same {rows} in every model."
            )
    return out


def _check_reference(reference: int, n_models: int) -> int:
    if not isinstance(reference, int | np.integer) or not -n_models <= reference < n_models:
        raise ValueError(f"`reference` must be a position in [0, {n_models}), got {reference!r}.")
    return int(reference) % n_models


def _check_threshold(threshold: float) -> None:
    if not 0 <= threshold < 1:
        raise ValueError(f"`threshold` must lie in [0, 1), got {threshold!r}.")


def _named_models(models) -> tuple[list, list]:
    if isinstance(models, Mapping):
        names, model_list = list(models.keys()), list(models.values())
    else:
        model_list = list(models)
        names = list(range(len(model_list)))
    if len(model_list) < 2:
        raise ValueError(f"A consensus needs at least 2 models, got {len(model_list)}.")
    return names, model_list


def _reference_position(reference, names: list, models) -> int:
    if reference is None:
        return 0
    if isinstance(models, Mapping):
        if reference not in names:
            raise ValueError(f"`reference` {reference!r} is not a key of `models` ({names}).")
        return names.index(reference)
    return _check_reference(reference, len(names))


def _model_genes(model) -> np.ndarray:
    """Gene names a model was trained on (also for a model loaded without its AnnData)."""
    if model.adata_manager is not None:
        return np.asarray(model.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names)
    registry = model.registry_["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]
    return np.asarray(registry["column_names"])


def _latent_adata(adata, names: list, models: list, ref: int):
    """The cells to encode: ``adata`` or the reference's data, with every model's genes."""
    if adata is None:
        adata = models[ref].adata
        if adata is None:
            raise ValueError(
                f"The reference model {names[ref]!r} has no AnnData (loaded without it); "
                "pass `adata`."
            )
    genes = pd.Index(adata.var_names)
    for name, model in zip(names, models):
        model_genes = _model_genes(model)
        if len(model_genes) != len(genes) or not np.array_equal(model_genes, genes):
            raise ValueError(
                f"Model {name!r} was trained on {len(model_genes)} genes that differ from the "
                f"{len(genes)} genes of `adata` (names or order); pass cells with the models' "
                "genes, or match_on='shifts' for models trained on different genes."
            )
    return adata
