"""Residual effects: the part of each perturbation's observed change that the model misses.

After training, the model's default prediction of every perturbation with cells of its own can
be compared with what its training cells show; the difference (per gene, in log fold change) is
shrunk by empirical Bayes with adaptive shrinkage :cite:p:`stephens2017false` and added to
``predict``. A change the latent units and the direct effects do not carry (a CRISPRi guide's
knockdown of its own gene that the encoder absorbed into the cells' latents, a weak
perturbation whose mask was pruned) is then predicted as far as the training cells support it,
and noise is shrunk to zero. The target graph is not touched.

Opt-in (``train(fit_residual=True)`` or :meth:`ResidualMixin.fit_residual_effects`): measured
on Papalexi 2021, the residuals moved the predictions towards the training cells' noisy log
fold changes and lowered the held-out scores (``benchmarks/counterfactual/residual/``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS

from scvi_causal._constants import EFFECTS_CHUNK, LFC_SCALE

logger = logging.getLogger(__name__)

#: Perturbations need at least this many training cells of their own for a residual.
RESIDUAL_MIN_CELLS = 5
#: Largest residual offset (natural log of the rate ratio) applied to one gene.
RESIDUAL_MAX_OFFSET = 10.0
#: Floor of the standard error of an observed log fold change (log units).
RESIDUAL_MIN_SE = 1e-2
#: At most this many (perturbation, gene) estimates are used to fit the shrinkage prior.
ASH_MAX_FIT = 1_000_000


def adaptive_shrinkage(
    estimates: np.ndarray,
    standard_errors: np.ndarray,
    n_grid: int = 20,
    max_iter: int = 200,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Empirical-Bayes posterior means of effects under a sparse scale-mixture prior.

    The normal-means model :math:`\hat\beta_j \sim \mathcal{N}(\beta_j, s_j^2)` with the prior
    :math:`\beta_j \sim \pi_0 \delta_0 + \sum_k \pi_k \mathcal{N}(0, \sigma_k^2)` on a fixed
    grid of scales; the mixture weights are fitted by EM on the marginal likelihood (adaptive
    shrinkage, ``ashr``'s normal mixture :cite:p:`stephens2017false`). Effects that stand out
    of their noise keep most of their size; noise is shrunk to (nearly) zero, by an amount
    the data set itself decides.

    Parameters
    ----------
    estimates
        Observed effects :math:`\hat\beta` (any shape).
    standard_errors
        Their standard errors :math:`s > 0` (same shape).
    n_grid
        Number of non-zero prior scales (geometric grid from the smallest standard error / 10
        to twice the largest :math:`\sqrt{\hat\beta^2 - s^2}`).
    max_iter
        EM iterations.
    seed
        Seed of the subsample used to fit the weights when there are more than
        ``ASH_MAX_FIT`` estimates.

    Returns
    -------
    posterior_mean, non_null, weights
        Posterior means (shape of ``estimates``), posterior probabilities that the effect is
        not zero, and the fitted mixture weights (``pi_0`` first).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> beta = np.r_[np.zeros(990), np.full(10, 5.0)]  # 1 % of effects, 5 standard errors
    >>> mean, non_null, _ = adaptive_shrinkage(beta + rng.normal(size=1000), np.ones(1000))
    >>> bool(abs(mean[:990]).mean() < 0.1), bool(mean[990:].mean() > 3.0)
    (True, True)
    """
    b = np.asarray(estimates, dtype=np.float64)
    s = np.asarray(standard_errors, dtype=np.float64)
    if b.shape != s.shape:
        raise ValueError(f"estimates {b.shape} and standard_errors {s.shape} differ in shape.")
    if not (np.isfinite(b).all() and np.isfinite(s).all()) or (s <= 0).any():
        raise ValueError("Estimates must be finite and standard errors finite and positive.")
    flat_b, flat_s = b.ravel(), s.ravel()
    if flat_b.size == 0:
        return b.copy(), np.zeros_like(b), np.ones(1)
    excess = np.sqrt(np.maximum(flat_b**2 - flat_s**2, 0.0)).max()
    lo = flat_s.min() / 10
    hi = max(2 * excess, lo * 2)
    grid = np.r_[0.0, np.geomspace(lo, hi, n_grid)]

    fit_b, fit_s = flat_b, flat_s
    if flat_b.size > ASH_MAX_FIT:
        pick = np.random.default_rng(seed).choice(flat_b.size, ASH_MAX_FIT, replace=False)
        fit_b, fit_s = flat_b[pick], flat_s[pick]

    def log_lik(bb, ss):  # (n, K) log N(b; 0, s^2 + sigma_k^2)
        var = ss[:, None] ** 2 + grid[None, :] ** 2
        return -0.5 * (np.log(2 * np.pi * var) + bb[:, None] ** 2 / var)

    ll = log_lik(fit_b, fit_s)
    ll_max = ll.max(1, keepdims=True)
    lik = np.exp(ll - ll_max)
    # a small nudge towards the null component, as ashr's default prior on pi_0
    prior_counts = np.r_[10.0, np.zeros(n_grid)]
    weights = np.full(grid.size, 1.0 / grid.size)
    for _ in range(max_iter):
        resp = lik * weights
        resp /= resp.sum(1, keepdims=True)
        new = resp.sum(0) + prior_counts
        new /= new.sum()
        if np.abs(new - weights).max() < 1e-6:
            weights = new
            break
        weights = new

    mean = np.empty_like(flat_b)
    non_null = np.empty_like(flat_b)
    for start in range(0, flat_b.size, ASH_MAX_FIT):
        bb, ss = flat_b[start : start + ASH_MAX_FIT], flat_s[start : start + ASH_MAX_FIT]
        ll = log_lik(bb, ss)
        resp = np.exp(ll - ll.max(1, keepdims=True)) * weights
        resp /= resp.sum(1, keepdims=True)
        shrink = grid[None, :] ** 2 / (grid[None, :] ** 2 + ss[:, None] ** 2)
        mean[start : start + ASH_MAX_FIT] = (resp * shrink).sum(1) * bb
        non_null[start : start + ASH_MAX_FIT] = 1.0 - resp[:, 0]
    return mean.reshape(b.shape), non_null.reshape(b.shape), weights


def _moments(X, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and variance over ``rows`` of the per-cell proportions of counts ``X``."""
    x = X[rows]
    lib = np.asarray(x.sum(1), dtype=np.float64).ravel()
    lib[lib == 0] = 1.0
    if sparse.issparse(x):
        x = sparse.diags(1.0 / lib) @ x.tocsr().astype(np.float64)
        mean = np.asarray(x.mean(0)).ravel()
        sq = np.asarray(x.multiply(x).mean(0)).ravel()
    else:
        x = np.asarray(x, dtype=np.float64) / lib[:, None]
        mean, sq = x.mean(0), (x**2).mean(0)
    return mean, np.maximum(sq - mean**2, 0.0), len(rows)


class ResidualMixin:
    """Residual effects of the perturbations, fitted after training (see module docstring).

    Mixed into :class:`~scvi_causal.model.SparseShiftVI`.
    """

    def get_residual_effects(self) -> pd.DataFrame:
        """Residual effect of each perturbation on each gene (natural log of the rate ratio).

        What :meth:`fit_residual_effects` added to :meth:`predict` beyond the latent shift and
        the direct effects: zero for perturbations without enough cells of their own, for genes
        whose residual is noise, and before the fit.

        Returns
        -------
        pandas.DataFrame
            Perturbations x genes.

        Examples
        --------
        >>> residual = model.get_residual_effects()  # doctest: +SKIP
        >>> residual.loc["IRF1"].nsmallest(3)  # doctest: +SKIP
        """
        names = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names
        values = self.module.residual_effects.detach().cpu().numpy()
        return pd.DataFrame(values, index=self.perturbation_names_, columns=list(names))

    @torch.inference_mode()
    def fit_residual_effects(
        self,
        perturbations: Sequence[str] | None = None,
        min_cells: int = RESIDUAL_MIN_CELLS,
        max_cells: int = 1000,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> pd.DataFrame:
        r"""Fit the residual effects that :meth:`predict` adds (``train(fit_residual=True)``
        calls it).

        For every perturbation :math:`p` with at least ``min_cells`` training cells labelled
        with it alone:

        1. the observed log fold change :math:`\hat r^{obs}_{pg}` of its training cells
           against the control cells (:func:`~scvi_causal.metrics.log_fold_change`; with
           batches, the controls weighted to the perturbation's own mix of batches), with its
           delta-method standard error :math:`s_{pg}` from the cells' variance;
        2. the model's predicted log fold change :math:`\hat r^{pred}_{pg}` (:meth:`predict`
           without residuals, control cells of the same batches moved to :math:`p`);
        3. the residuals :math:`\hat r^{obs} - \hat r^{pred}` of all perturbations and genes
           are shrunk together by adaptive shrinkage (:func:`adaptive_shrinkage`: a sparse
           scale-mixture prior fitted to the data set), so few cells or a small effect give a
           residual near zero;
        4. each shrunk residual is turned into the rate offset that moves the predicted mean
           expression by it, and stored in ``module.residual_effects``.

        Predictions carried to a batch where the perturbation was never observed
        (``predict(context=...)``) do not get the residual: it measures the model's misfit where
        the perturbation was observed. Cells carrying several perturbations at once do not
        enter the fit; a perturbation seen only in combinations has no residual.

        Parameters
        ----------
        perturbations
            Perturbations to (re)fit (default: every trained perturbation; a query model fits
            its new ones). The others keep their residuals.
        min_cells
            Fewest training cells of a perturbation's own for a residual.
        max_cells
            At most this many control cells per batch are moved to each perturbation.
        batch_size
            Minibatch size of the predictions.
        seed
            Seed of the control-cell subset.

        Returns
        -------
        pandas.DataFrame
            One row per fitted perturbation: ``n_cells``, ``n_genes`` (genes whose residual
            is non-zero), ``max_abs_residual`` (log fold change) and ``mean_non_null`` (mean
            posterior probability of a non-zero residual).

        Examples
        --------
        >>> summary = model.fit_residual_effects()  # doctest: +SKIP
        >>> model.get_residual_effects().loc["VAPA_TSS"].nsmallest(3)  # doctest: +SKIP
        """
        adata = self.adata
        labels = self._perturbation_labels(adata).astype(str).to_numpy()
        names = list(self.perturbation_names_)
        row_of = {name: i for i, name in enumerate(names)}
        wanted = names if perturbations is None else [str(p) for p in perturbations]
        unknown = sorted(set(wanted) - set(row_of))
        if unknown:
            raise ValueError(f"Unknown perturbations {unknown[:10]}: not trained by this model.")
        is_control = np.isin(labels, self.control_categories_)
        empty = pd.DataFrame(columns=["n_cells", "n_genes", "max_abs_residual", "mean_non_null"])
        if not is_control.any():
            logger.info("No control cells: no residual effects fitted.")
            return empty
        # cells of each label, in one pass (a genome-wide screen has thousands of labels)
        by_label = pd.Series(np.arange(len(labels))).groupby(labels).indices
        eligible = [p for p in wanted if len(by_label.get(p, ())) >= min_cells]
        self.module.residual_effects[[row_of[p] for p in wanted]] = 0.0
        if not eligible:
            return empty

        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        n_batch = int(self.summary_stats.n_batch)
        batch = (
            np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY))
            .ravel()
            .astype(int)
            if n_batch > 1
            else np.zeros(adata.n_obs, dtype=int)
        )
        batches = np.unique(batch[is_control])
        control_moments = {
            b: _moments(X, np.flatnonzero(is_control & (batch == b))) for b in batches
        }

        # control source cells, up to max_cells per batch, decoded in their own batch
        rng = np.random.default_rng(seed)
        source_idx = []
        for b in batches:
            cells = np.flatnonzero(is_control & (batch == b))
            if len(cells) > max_cells:
                cells = np.sort(rng.choice(cells, max_cells, replace=False))
            source_idx.append(cells)
        source_idx = np.concatenate(source_idx)
        source_batch = batch[source_idx]
        source = adata[source_idx].copy()
        control = self.control_categories_[0]

        residuals, errors, predicted_means = [], [], []
        n_cells = []
        for start in range(0, len(eligible), EFFECTS_CHUNK):
            chunk = eligible[start : start + EFFECTS_CHUNK]
            pred = self.predict(
                source,
                perturbations=chunk + [control],
                batch_size=batch_size,
                context="own",
                residual=False,
            )
            n_src = len(source_idx)
            blocks = np.asarray(pred.X, dtype=np.float64).reshape(len(chunk) + 1, n_src, -1)
            base_by_batch = np.stack([blocks[-1][source_batch == b].mean(0) for b in batches])
            for j, p in enumerate(chunk):
                own = by_label[p]
                obs_mean, obs_var, n = _moments(X, own)
                # the perturbation's mix of batches; batches without controls are left out
                counts = np.bincount(batch[own], minlength=batch.max() + 1)[batches].astype(float)
                if counts.sum() == 0:
                    counts = np.ones(len(batches))
                w = counts / counts.sum()
                ctrl_mean = sum(w[i] * control_moments[b][0] for i, b in enumerate(batches))
                ctrl_var_of_mean = sum(
                    w[i] ** 2 * control_moments[b][1] / control_moments[b][2]
                    for i, b in enumerate(batches)
                )
                pred_by_batch = np.stack([blocks[j][source_batch == b].mean(0) for b in batches])
                pred_mean = w @ pred_by_batch
                pred_base = w @ base_by_batch
                observed = np.log1p(LFC_SCALE * obs_mean) - np.log1p(LFC_SCALE * ctrl_mean)
                predicted = np.log1p(LFC_SCALE * pred_mean) - np.log1p(LFC_SCALE * pred_base)
                se = np.sqrt(
                    (LFC_SCALE / (1 + LFC_SCALE * obs_mean)) ** 2 * obs_var / n
                    + (LFC_SCALE / (1 + LFC_SCALE * ctrl_mean)) ** 2 * ctrl_var_of_mean
                )
                residuals.append(observed - predicted)
                errors.append(np.maximum(se, RESIDUAL_MIN_SE))
                predicted_means.append(pred_mean)
                n_cells.append(n)

        shrunk, non_null, _ = adaptive_shrinkage(np.stack(residuals), np.stack(errors), seed=seed)
        pred_mean = np.stack(predicted_means)
        # the rate ratio that moves log1p(s * mean) by the shrunk residual
        target = ((1 + LFC_SCALE * pred_mean) * np.exp(shrunk) - 1) / LFC_SCALE
        tiny = np.finfo(np.float64).tiny
        offset = np.log(np.maximum(target, tiny)) - np.log(np.maximum(pred_mean, tiny))
        offset = np.clip(offset, -RESIDUAL_MAX_OFFSET, RESIDUAL_MAX_OFFSET)
        buffer = self.module.residual_effects
        buffer[[row_of[p] for p in eligible]] = torch.as_tensor(
            offset, dtype=buffer.dtype, device=buffer.device
        )
        return pd.DataFrame(
            {
                "n_cells": n_cells,
                "n_genes": (np.abs(shrunk) > 1e-3).sum(1),
                "max_abs_residual": np.abs(shrunk).max(1),
                "mean_non_null": non_null.mean(1),
            },
            index=eligible,
        )
