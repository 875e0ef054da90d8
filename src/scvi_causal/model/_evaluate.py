"""Evaluation of counterfactual predictions against the baselines users compare with."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from scvi_causal.metrics import (
    additive_baseline,
    energy_distance,
    linear_baseline,
    log_fold_change,
    normalize_counts,
    score_predictions,
)

logger = logging.getLogger(__name__)

#: Baselines computed from the training cells by :meth:`EvaluationMixin.evaluate_predictions`.
BASELINES = ("control", "additive", "linear", "latent_additive")
#: Baselines of :meth:`EvaluationMixin.evaluate_predictions` by default.
DEFAULT_BASELINES = ("control", "additive", "linear")


def _log_expr(x: np.ndarray) -> np.ndarray:
    return np.log1p(1e4 * x)


class EvaluationMixin:
    """``evaluate_predictions``: the model's predictions against simple baselines.

    Relies only on the public model contract: ``adata`` (the training cells), ``predict``,
    ``perturbation_names_``, ``control_categories_`` and the registered perturbation column.
    """

    def _label_key(self) -> str:
        setup = self.adata_manager.registry["setup_args"]
        return setup["perturbation_key"]

    def evaluate_predictions(
        self,
        adata_test: AnnData,
        perturbations: Sequence[str] | None = None,
        baselines: Sequence[str] = DEFAULT_BASELINES,
        other_models: Mapping[str, object] | None = None,
        extra_predictions: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        source: AnnData | None = None,
        name: str = "SparseShiftVI",
        shift: str = "auto",
        extra_shifts: Sequence[str] = (),
        residual_ablation: bool = False,
        top_k: int = 20,
        max_source_cells: int = 2000,
        energy: bool = True,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Score :meth:`predict` on held-out cells, side by side with simple baselines.

        For every perturbation label of ``adata_test`` (combinations ``"A+B"`` allowed, also
        when never seen together in training) the observed change against control (log fold
        change of mean normalised expression, :func:`~scvi_causal.metrics.log_fold_change`) is
        compared with each method's prediction by
        :func:`~scvi_causal.metrics.score_predictions`: Pearson delta on all genes and on the
        ``top_k`` most changed genes :cite:p:`roohani2023predicting`, cosine of the log fold
        changes and the rank metric :cite:p:`wu2024perturbench`, recall of the top DE genes,
        RMSE of the mean expression and, for methods that predict cells, the energy distance.

        Methods:

        * ``name``: this model's :meth:`predict` with ``shift`` (control cells of the training
          data moved to each label, compared with the same cells decoded as control), and
          ``f"{name}-{s}"`` for every reading ``s`` in ``extra_shifts`` (without the residual
          effects: what the latent shift and the direct effects alone predict), and with
          ``residual_ablation`` ``f"{name}-no-residual"``: ``predict(residual=False)``;
        * ``"control"``: the control mean (no change);
        * ``"additive"``: the sum of the members' log fold changes observed in the training
          cells (for a seen label, its own training log fold change);
        * ``"linear"``: a ridge regression of the training labels' log fold changes on their
          perturbation indicators :cite:p:`ahlmann2025deep`;
        * ``"latent_additive"``: latent arithmetic in this model
          (``predict(shift="latent")``: the members' mean latent shifts added to control
          cells), the latent additive baseline of PerturBench :cite:p:`wu2024perturbench`
          (with the default ``shift="auto"`` it equals ``name`` whenever every member has
          cells of its own; a separately trained ``intervention_prior="none"`` model in
          ``other_models`` is the plain-VAE version);
        * every entry of ``other_models`` (e.g. ``intervention_prior="dense"`` or ``"none"``
          models trained on the same cells), by its own :meth:`predict`.

        The observed change uses the control cells of ``adata_test`` when it has any (held-out
        controls: the noise of the control mean is not shared with the training-based
        baselines), else the training controls.

        Parameters
        ----------
        adata_test
            Held-out cells with raw counts, the model's genes and the perturbation column.
        perturbations
            Labels to score (default: every non-control label of ``adata_test``).
        baselines
            Which of ``"control"``, ``"additive"``, ``"linear"``, ``"latent_additive"``
            (default the first three).
        other_models
            More models to score, by name.
        extra_predictions
            More predictions to score, by method name: label -> predicted log fold change
            (e.g. your own baseline).
        source
            Control cells to move to each label and to compute the baselines against
            (default: the training controls; e.g. one patient's or one batch's controls to
            predict the perturbation in that context). Must be set up like the training data.
        name
            Name of this model in the table.
        shift
            Reading of the latent shift for this model's predictions (see :meth:`predict`).
        extra_shifts
            Other readings of this model to score too, named ``f"{name}-{shift}"`` (e.g.
            ``("model",)``: what the sparse target graph alone predicts).
        residual_ablation
            Also score ``predict(residual=False)`` (see :meth:`fit_residual_effects`), named
            ``f"{name}-no-residual"``.
        top_k
            Genes of the ``*_top`` scores and of the recall.
        max_source_cells
            At most this many training control cells are moved (random subset, ``seed``).
        energy
            Also sample counts from the models and compute the energy distance to the
            observed cells (in ``log1p(1e4 x proportions)`` space; slower).
        seed
            Seed of the control-cell subset and of the energy-distance subsampling.

        Returns
        -------
        pandas.DataFrame
            One row per (method, perturbation), with ``n_test_cells``, the metrics and the
            Euclidean norms of the predicted and observed changes (``predicted_delta_norm`` 0:
            the label is predicted as control); summarise with
            :func:`~scvi_causal.metrics.compare_methods`.

        Examples
        --------
        >>> table = model.evaluate_predictions(adata_test)  # doctest: +SKIP
        >>> from scvi_causal.metrics import compare_methods
        >>> compare_methods(table, reference="SparseShiftVI")  # doctest: +SKIP
        """
        unknown = sorted(set(baselines) - set(BASELINES))
        if unknown:
            raise ValueError(f"Unknown baselines {unknown}; choose from {list(BASELINES)}.")
        if not self.control_categories_:
            raise ValueError("Evaluating predictions against control needs a control label.")
        key = self._label_key()
        if hasattr(self, "_write_matrix_labels"):  # a model set up with a perturbation matrix
            self._write_matrix_labels(adata_test)
        if key not in adata_test.obs:
            raise KeyError(f"perturbation_key {key!r} is not a column of adata_test.obs.")
        if not np.array_equal(np.asarray(adata_test.var_names), np.asarray(self.adata.var_names)):
            raise ValueError(
                "adata_test must hold the model's genes in the same order (model.adata.var_names)."
            )
        controls = list(self.control_categories_)
        test_labels = adata_test.obs[key].astype(str).to_numpy()
        if perturbations is None:
            perturbations = sorted(set(test_labels) - set(controls))
        perturbations = [str(p) for p in perturbations]
        missing = [p for p in perturbations if not (test_labels == p).any()]
        if missing:
            raise ValueError(f"No test cells for {missing[:10]}.")
        if not perturbations:
            raise ValueError("adata_test holds no perturbed cells to score.")

        layer = self.adata_manager.registry["setup_args"].get("layer")

        def counts(a: AnnData):
            return a.layers[layer] if layer else a.X

        train_labels = self.adata.obs[key].astype(str).to_numpy()
        train_expr = normalize_counts(counts(self.adata))
        test_expr = normalize_counts(counts(adata_test))
        rng = np.random.default_rng(seed)
        if source is None:
            control_idx = np.flatnonzero(np.isin(train_labels, controls))
            if len(control_idx) == 0:
                raise ValueError("The training data hold no control cells; pass `source`.")
            if len(control_idx) > max_source_cells:
                control_idx = np.sort(rng.choice(control_idx, max_source_cells, replace=False))
            source = self.adata[control_idx]
            train_control = train_expr[np.isin(train_labels, controls)]
        else:
            if not np.array_equal(np.asarray(source.var_names), np.asarray(self.adata.var_names)):
                raise ValueError("`source` must hold the model's genes in the same order.")
            if not source.obs[key].astype(str).isin(controls).all():
                raise ValueError("`source` must hold control cells only.")
            train_control = normalize_counts(counts(source))
        test_is_control = np.isin(test_labels, controls)
        obs_control = test_expr[test_is_control] if test_is_control.any() else train_control
        observed = {}
        for p in perturbations:
            cells = test_expr[test_labels == p]
            observed[p] = {
                "delta": log_fold_change(cells, obs_control),
                "mean": _log_expr(cells.mean(0)),
                "cells": cells,
            }

        train_deltas = {
            label: log_fold_change(train_expr[train_labels == label], train_control)
            for label in sorted(set(train_labels) - set(controls))
        }
        base_mean = _log_expr(train_control.mean(0))
        predicted: dict[str, dict[str, dict]] = {}
        models = [(name, self, {"shift": shift})]
        models += [(f"{name}-{s}", self, {"shift": s, "residual": False}) for s in extra_shifts]
        if residual_ablation:
            models.append((f"{name}-no-residual", self, {"shift": shift, "residual": False}))
        if "latent_additive" in baselines:
            models.append(("latent_additive", self, {"shift": "latent", "residual": False}))
        models += [(n, m, {"shift": shift}) for n, m in (other_models or {}).items()]
        for method, model, reading in models:
            predicted[method] = _model_predictions(
                model, source, perturbations, controls[0], reading, energy, observed, seed
            )
        delimiter = self.perturbation_encoding.delimiter or "+"
        if "control" in baselines:
            zero = np.zeros(self.adata.n_vars)
            predicted["control"] = {
                p: {
                    "delta": zero,
                    "mean": base_mean,
                    "energy_distance": _energy(train_control, observed[p]["cells"], seed)
                    if energy
                    else np.nan,
                }
                for p in perturbations
            }
        for method, by_label in (extra_predictions or {}).items():
            predicted[method] = {
                p: {
                    "delta": np.asarray(d, dtype=np.float64),
                    "mean": base_mean + np.asarray(d, dtype=np.float64),
                }
                for p, d in by_label.items()
                if p in observed
            }
        if "additive" in baselines:
            predicted["additive"] = {}
            for p in perturbations:
                try:
                    delta = additive_baseline(p, train_deltas, delimiter=delimiter)
                except ValueError:
                    continue  # a member without training cells of its own
                predicted["additive"][p] = {"delta": delta, "mean": base_mean + delta}
        if "linear" in baselines:
            encoding = self.perturbation_encoding
            members = {m for label in train_deltas for m in encoding.members(label)}
            predictable = [
                p for p in perturbations if all(m in members for m in encoding.members(p))
            ]
            if predictable:
                linear = linear_baseline(train_deltas, predictable, delimiter=delimiter)
                predicted["linear"] = {
                    p: {"delta": d, "mean": base_mean + d} for p, d in linear.items()
                }
        table = score_predictions(
            predicted,
            {p: {k: v for k, v in o.items() if k != "cells"} for p, o in observed.items()},
            top_k=top_k,
        )
        n_cells = {p: int(len(o["cells"])) for p, o in observed.items()}
        table["n_test_cells"] = table["perturbation"].map(n_cells)
        # size of each predicted and observed change: a prediction of exactly 0 is the control
        table["predicted_delta_norm"] = [
            float(np.linalg.norm(predicted[m][p]["delta"]))
            for m, p in zip(table["method"], table["perturbation"], strict=True)
        ]
        table["observed_delta_norm"] = [
            float(np.linalg.norm(observed[p]["delta"])) for p in table["perturbation"]
        ]
        return table


def _energy(cells: np.ndarray, observed: np.ndarray, seed: int) -> float:
    return energy_distance(_log_expr(cells), _log_expr(observed), max_cells=500, seed=seed)


def _model_predictions(
    model,
    source: AnnData,
    perturbations: list[str],
    control: str,
    reading: dict,
    energy: bool,
    observed: dict,
    seed: int,
) -> dict:
    """Predicted log fold change (and mean, energy distance) of every label by one model,
    with ``predict`` arguments ``reading`` (``shift``, ``residual``)."""
    out = {}
    try:
        pred = model.predict(source, perturbations=perturbations + [control], **reading)
    except ValueError as err:  # e.g. latent arithmetic without cells of a member
        logger.warning("No %s predictions: %s", reading, err)
        return out
    labels = pred.obs["perturbation"].astype(str).to_numpy()
    base = pred.X[labels == control]
    sampled = None
    if energy:
        counts = model.predict(source, perturbations=perturbations, return_counts=True, **reading)
        sampled = (normalize_counts(counts.X), counts.obs["perturbation"].astype(str).to_numpy())
    for p in perturbations:
        x = pred.X[labels == p]
        entry = {"delta": log_fold_change(x, base), "mean": _log_expr(x.mean(0))}
        if sampled is not None:
            entry["energy_distance"] = _energy(
                sampled[0][sampled[1] == p], observed[p]["cells"], seed
            )
        out[p] = entry
    return out
