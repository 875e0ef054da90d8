"""scvi-tools' expression API, conditioned on perturbations: normalised expression and DE."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi import REGISTRY_KEYS, settings
from scvi.model.base import DifferentialComputation
from scvi.model.base._de_core import _fdr_de_prediction
from torch.distributions import Normal

from scvi_causal._constants import PERTURBATION_KEY

logger = logging.getLogger(__name__)

#: Arguments of ``predict`` that :meth:`ScverseMixin.get_normalized_expression` sets itself.
_PREDICT_ARGS_SET = (
    "adata",
    "perturbations",
    "source_category",
    "n_samples",
    "return_counts",
    "batch_size",
    "return_mean",
)


class ScverseMixin:
    """scvi-tools' ``get_normalized_expression`` and differential expression, with perturbations.

    Mixed into :class:`~scvi_causal.model.SparseShiftVI` before
    :class:`~scvi.model.base.RNASeqMixin`; relies on its ``predict``, ``control_categories_``,
    ``perturbation_names_`` and the module's prior.
    """

    # ------------------------------------------------------------ normalised expression
    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        transform_batch: Sequence[int | str] | None = None,
        gene_list: Sequence[str] | None = None,
        library_size: float | Literal["latent"] = 1,
        n_samples: int = 1,
        n_samples_overall: int | None = None,
        weights: Literal["uniform", "importance"] | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        silent: bool = True,
        dataloader=None,
        data_loader_kwargs: dict | None = None,
        perturbation: str | None = None,
        predict_kwargs: dict | None = None,
        **importance_weighting_kwargs,
    ) -> np.ndarray | pd.DataFrame:
        r"""Normalised (decoded) expression, optionally under a perturbation.

        Without ``perturbation`` this is scvi's
        :meth:`~scvi.model.base.RNASeqMixin.get_normalized_expression`, unchanged: each cell
        decoded from its posterior, with its own perturbation's direct gene-level effects (a
        reconstruction of what was observed).

        With ``perturbation``, each selected cell is decoded as it would be under that
        perturbation, by :meth:`predict` (abduction, action, prediction): its own shift is
        removed, the requested one added, and the requested perturbation's direct effects are
        applied. For control cells this is ``predict(perturbations=[perturbation])``; for cells
        of another perturbation it replaces their perturbation by the requested one; a control
        label gives the cells as they would be unperturbed. The returned values follow scvi's
        conventions (rows are cells, columns genes; ``library_size``, ``n_samples``,
        ``return_mean``, ``n_samples_overall``, ``gene_list``, ``return_numpy``).

        Parameters
        ----------
        adata
            AnnData set up like the training data (default: the training data).
        indices
            Cells of ``adata`` to use (default: all).
        transform_batch
            Batch(es) to decode in, as in scvi. Without ``perturbation`` only; under a
            perturbation the batch is chosen by ``predict``'s ``context`` (pass it in
            ``predict_kwargs``).
        gene_list
            Genes to return (default: all).
        library_size
            Multiply the proportions by this number (default 1: proportions summing to 1), or
            ``"latent"``: by the cell's own library size (expected counts; under a
            perturbation only for models with observed library sizes, the default).
        n_samples
            Posterior samples per cell. Under a perturbation, ``n_samples=1`` decodes the
            posterior mean (as :meth:`predict` does), more samples draw from the posterior.
        n_samples_overall
            Draw this many rows in all, uniformly over cells and samples, as in scvi (for
            differential expression); returns a ``(n_samples_overall, n_genes)`` array.
        weights
            ``"uniform"`` (default) or, without ``perturbation``, ``"importance"`` (see
            :meth:`get_importance_weights`).
        batch_size
            Minibatch size.
        return_mean
            With ``n_samples > 1``: average over samples (default) or return the samples,
            ``(n_samples, n_cells, n_genes)``.
        return_numpy
            Return an array instead of a DataFrame indexed by cell with gene columns. Samples
            (``return_mean=False``) and ``n_samples_overall`` are always arrays.
        silent
            Hide progress bars.
        dataloader
            As in scvi, without ``perturbation`` only.
        data_loader_kwargs
            As in scvi, without ``perturbation`` only.
        perturbation
            Label to decode the cells under: a trained perturbation, a combination (``"A+B"``)
            or a control label. ``None`` (default): scvi's behaviour, no counterfactual.
        predict_kwargs
            More arguments of :meth:`predict` (``shift``, ``context``), with ``perturbation``.
        **importance_weighting_kwargs
            Passed to :meth:`get_importance_weights`, without ``perturbation``.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            ``(n_cells, n_genes)`` (a DataFrame unless ``return_numpy``), ``(n_samples,
            n_cells, n_genes)`` for ``n_samples > 1`` with ``return_mean=False``, or
            ``(n_samples_overall, n_genes)``.

        Examples
        --------
        >>> expr = model.get_normalized_expression(library_size=1e4)  # doctest: +SKIP

        What the control cells would express under IRF1 (as ``predict`` has it):

        >>> ctrl = np.flatnonzero(adata.obs["perturbation"] == "control")  # doctest: +SKIP
        >>> irf1 = model.get_normalized_expression(indices=ctrl, perturbation="IRF1",
        ...                                        library_size=1e4)  # doctest: +SKIP
        """
        if perturbation is None:
            return super().get_normalized_expression(
                adata=adata,
                indices=indices,
                transform_batch=transform_batch,
                gene_list=gene_list,
                library_size=library_size,
                n_samples=n_samples,
                n_samples_overall=n_samples_overall,
                weights=weights,
                batch_size=batch_size,
                return_mean=return_mean,
                return_numpy=return_numpy,
                silent=silent,
                dataloader=dataloader,
                data_loader_kwargs=data_loader_kwargs,
                **importance_weighting_kwargs,
            )
        if not isinstance(perturbation, str):
            raise TypeError(f"`perturbation` must be one label (a str), got {perturbation!r}.")
        unsupported = {
            "transform_batch": transform_batch is not None,
            "dataloader": dataloader is not None,
            "data_loader_kwargs": bool(data_loader_kwargs),
            "weights='importance'": weights not in (None, "uniform"),
            "importance_weighting_kwargs": bool(importance_weighting_kwargs),
        }
        if any(unsupported.values()):
            names = [k for k, v in unsupported.items() if v]
            raise ValueError(
                f"{names} cannot be combined with `perturbation`: the expression under a "
                "perturbation comes from `predict` (batches through predict_kwargs={'context': "
                "...})."
            )
        predict_kwargs = dict(predict_kwargs or {})
        clash = sorted(set(predict_kwargs) & set(_PREDICT_ARGS_SET))
        if clash:
            raise ValueError(f"predict_kwargs cannot set {clash}; they follow from the arguments.")
        if n_samples < 1:
            raise ValueError("`n_samples` must be >= 1.")

        adata = self._validate_anndata(adata)
        indices = _as_indices(indices, adata.n_obs)
        if n_samples_overall is not None:
            n_samples = n_samples_overall // len(indices) + 1
        keep_samples = n_samples > 1 and (not return_mean or n_samples_overall is not None)

        if np.array_equal(indices, np.arange(adata.n_obs)):
            source = adata
        else:  # predict starts from every cell of the AnnData it is given
            source = self._validate_anndata(adata[indices].copy())
        labels = self._perturbation_labels(source)
        pred = self.predict(
            source,
            perturbations=[perturbation],
            source_category=sorted(labels.unique()),
            n_samples=n_samples,
            return_counts=False,
            batch_size=batch_size,
            return_mean=not keep_samples,
            **predict_kwargs,
        )
        exprs = np.asarray(pred.X)
        if keep_samples:  # cell-major (n * S, G) -> (S, n, G)
            exprs = exprs.reshape(len(indices), n_samples, -1).transpose(1, 0, 2)
        gene_mask = slice(None) if gene_list is None else adata.var_names.isin(gene_list)
        exprs = exprs[..., gene_mask]
        if library_size == "latent":
            exprs = exprs * self._observed_library(adata, indices)[:, None]
        else:
            exprs = exprs * library_size

        if n_samples_overall is not None:
            flat = exprs.reshape(-1, exprs.shape[-1])
            rows = torch.randint(flat.shape[0], (n_samples_overall,)).numpy()  # scvi's seed
            return flat[rows]
        if keep_samples:
            if return_numpy is False:
                warnings.warn(
                    "`return_numpy` must be `True` if `n_samples > 1` and `return_mean` is "
                    "`False`, returning an `np.ndarray`.",
                    UserWarning,
                    stacklevel=settings.warnings_stacklevel,
                )
            return exprs
        if return_numpy:
            return exprs
        return pd.DataFrame(
            exprs, index=adata.obs_names[indices], columns=adata.var_names[gene_mask]
        )

    def _observed_library(self, adata: AnnData, indices: np.ndarray) -> np.ndarray:
        """Total counts of the cells, the library size the decoder uses with observed sizes."""
        if not self.module.use_observed_lib_size:
            raise NotImplementedError(
                "library_size='latent' with a perturbation needs a model with observed library "
                "sizes (use_observed_lib_size=True, the default); pass a number instead."
            )
        counts = self.get_anndata_manager(adata, required=True).get_from_registry(
            REGISTRY_KEYS.X_KEY
        )[indices]
        return np.asarray(counts.sum(1)).ravel().astype(np.float32)

    # ---------------------------------------------------------------- importance weights
    def get_importance_weights(
        self,
        adata: AnnData | None,
        indices: Sequence[int] | None,
        qz: Normal,
        px,
        zs: torch.Tensor,
        **kwargs,
    ) -> np.ndarray:
        r"""Importance weights of posterior samples of a cell population, under this model's prior.

        scvi's :meth:`~scvi.model.base.RNASeqMixin.get_importance_weights` scores samples under
        :math:`\mathcal{N}(0, I)`; here a cell's prior is :math:`\mathcal{N}(s_a, I)`, shifted by
        its perturbation (masks at their posterior mode, as in
        :meth:`~scvi.model.base.VAEMixin.get_marginal_ll`). The population must share one prior
        (one perturbation, or only control cells); scvi's estimator is then applied in the frame
        in which that prior is standard (``z - s_a``, which leaves :math:`q(z \mid x)` densities
        unchanged).

        Parameters
        ----------
        adata, indices
            The population (as in scvi).
        qz, px, zs
            Posterior distributions, likelihoods and samples of its cells (as in scvi).
        **kwargs
            Passed to :meth:`scvi.model.base.RNASeqMixin.get_importance_weights`.

        Returns
        -------
        numpy.ndarray
            Normalised importance weights, one per sample.

        Examples
        --------
        >>> p00 = np.flatnonzero(adata.obs["perturbation"] == "p00")  # doctest: +SKIP
        >>> rho = model.get_normalized_expression(indices=p00, n_samples_overall=500,
        ...                                       weights="importance")  # doctest: +SKIP
        """
        adata = self._validate_anndata(adata)
        indices = _as_indices(indices, adata.n_obs)
        codes = (
            np.asarray(
                self.get_anndata_manager(adata, required=True).get_from_registry(PERTURBATION_KEY)
            )
            .ravel()[indices]
            .astype(np.int64)
        )
        rows = self.module.intervention_matrix[torch.as_tensor(np.unique(codes))]
        if torch.unique(rows, dim=0).shape[0] > 1:
            raise NotImplementedError(
                "Importance weights need cells that share one prior (one perturbation label, or "
                "only controls); use weights='uniform' for this population."
            )
        self.module.eval()
        shift = self.module.prior(rows[:1], n=1).loc.detach().to(zs.device)  # (1, K)
        qz = Normal(qz.loc - shift.to(qz.loc.device), qz.scale)
        return super().get_importance_weights(adata, indices, qz=qz, px=px, zs=zs - shift, **kwargs)

    # --------------------------------------------------------- differential expression
    def differential_expression_perturbation(
        self,
        perturbations: str | Sequence[str] | None = None,
        control: str | Sequence[str] | None = None,
        adata: AnnData | None = None,
        counterfactual: bool = False,
        mode: Literal["vanilla", "change"] = "change",
        delta: float = 0.25,
        batch_size: int | None = None,
        all_stats: bool = True,
        fdr_target: float = 0.05,
        silent: bool = True,
        predict_kwargs: dict | None = None,
        **kwargs,
    ) -> pd.DataFrame:
        r"""Differential expression of perturbations against controls, by scvi's Bayesian DE.

        scvi-tools' differential expression :cite:p:`lopez2018deep,boyeau2023empirical` (posterior
        log-fold changes, posterior probability of differential expression and Bayes factors,
        :meth:`~scvi.model.base.RNASeqMixin.differential_expression`) with the groups that a
        screen asks about:

        - ``counterfactual=False`` (default): the perturbation's **observed** cells against the
          control cells, each decoded from its own posterior (scvi's
          ``differential_expression(idx1=perturbed, idx2=controls)``).
        - ``counterfactual=True``: the **control cells under the perturbation**
          (:meth:`get_normalized_expression` with ``perturbation``, i.e. :meth:`predict`)
          against the same control cells unperturbed. The same cells on both sides, so the
          comparison holds cell state fixed and needs no perturbed cells: it works for
          combinations never observed and shows what the model attributes to the perturbation.
          Posterior samples of both groups go through scvi's
          :class:`~scvi.model.base.DifferentialComputation`.

        Parameters
        ----------
        perturbations
            Label(s) to test. Default: every non-control label with cells in ``adata``
            (observed), or every trained perturbation (``counterfactual=True``, which also
            takes combinations ``"A+B"``).
        control
            Control label(s) (default: the model's control categories). All control cells
            form the reference group (and, with ``counterfactual=True``, the source cells).
        adata
            AnnData set up like the training data (default: the training data).
        counterfactual
            Compare predicted against reconstructed control cells instead of observed groups.
        mode
            ``"change"`` (default, posterior LFC with the region :math:`|LFC| > \delta`) or
            ``"vanilla"`` (as in scvi).
        delta
            Threshold on the log2 fold change of ``"change"`` mode (as in scvi).
        batch_size
            Minibatch size.
        all_stats
            Add scvi's raw-count statistics of the two groups (observed comparisons only; the
            counterfactual group has no counts).
        fdr_target
            Posterior expected FDR of the ``is_de_fdr_<fdr_target>`` column (``"change"``).
        silent
            Hide progress bars.
        predict_kwargs
            More arguments of :meth:`predict` (``shift``, ``context``), for
            ``counterfactual=True``.
        **kwargs
            Passed to :meth:`scvi.model.base.DifferentialComputation.get_bayes_factors`
            (``n_samples_overall``, ``pseudocounts``, ``test_mode``, ...); observed
            comparisons also take the other arguments of scvi's ``differential_expression``
            (``batch_correction``, ``weights``, ``filter_outlier_cells``, ...).

        Returns
        -------
        pandas.DataFrame
            scvi's DE table (one row per gene and comparison, sorted by ``proba_de`` in
            ``"change"`` mode or ``bayes_factor`` in ``"vanilla"`` mode within a comparison),
            with ``comparison``, ``group1`` (the perturbation) and ``group2`` (the control
            label(s), joined by ``","``) columns. ``group1`` keeps the perturbation label; the
            comparison reads ``"<p> (counterfactual) vs <control>"`` for counterfactual rows.

        Examples
        --------
        >>> de = model.differential_expression_perturbation("IRF1")  # doctest: +SKIP
        >>> de.query("`is_de_fdr_0.05`").sort_values("lfc_mean").head()  # doctest: +SKIP

        What the model predicts a never-observed combination does to control cells:

        >>> cf = model.differential_expression_perturbation(
        ...     "IRF1+STAT1", counterfactual=True)  # doctest: +SKIP
        """
        adata = self._validate_anndata(adata)
        labels = self._perturbation_labels(adata)
        controls = self._control_labels(control)
        is_control = labels.isin(controls).to_numpy()
        if not is_control.any():
            raise ValueError(f"No control cells ({controls}) in adata.")
        if perturbations is None:
            perturbations = (
                list(self.perturbation_names_)
                if counterfactual
                else sorted(set(labels[~is_control]))
            )
        elif isinstance(perturbations, str):
            perturbations = [perturbations]
        perturbations = [str(p) for p in perturbations]
        if not perturbations:
            raise ValueError("No perturbation to test.")
        group2 = ",".join(controls)
        results = []
        for label in perturbations:
            if counterfactual:
                res = self._counterfactual_de(
                    adata,
                    label,
                    np.flatnonzero(is_control),
                    controls[0],
                    mode=mode,
                    delta=delta,
                    batch_size=batch_size,
                    fdr_target=fdr_target,
                    predict_kwargs=predict_kwargs,
                    **kwargs,
                )
                comparison = f"{label} (counterfactual) vs {group2}"
            else:
                idx1 = (labels == label).to_numpy()
                if not idx1.any():
                    raise ValueError(
                        f"No cells of {label!r} in adata; counterfactual=True compares the "
                        "control cells under it instead."
                    )
                res = self.differential_expression(
                    adata,
                    idx1=idx1,
                    idx2=is_control,
                    mode=mode,
                    delta=delta,
                    batch_size=batch_size,
                    all_stats=all_stats,
                    fdr_target=fdr_target,
                    silent=silent,
                    **kwargs,
                )
                comparison = f"{label} vs {group2}"
            res["comparison"] = comparison
            res["group1"] = label
            res["group2"] = group2
            results.append(res)
        return pd.concat(results, axis=0)

    def _control_labels(self, control: str | Sequence[str] | None) -> list[str]:
        if control is None:
            if not self.control_categories_:
                raise ValueError("The model has no control category; pass `control`.")
            return list(self.control_categories_)
        return [control] if isinstance(control, str) else [str(c) for c in control]

    def _counterfactual_de(
        self,
        adata: AnnData,
        label: str,
        sources: np.ndarray,
        control_label: str,
        mode: str,
        delta: float,
        batch_size: int | None,
        fdr_target: float,
        predict_kwargs: dict | None,
        **kwargs,
    ) -> pd.DataFrame:
        """scvi's DE between the source cells under ``label`` and under ``control_label``."""
        n = len(sources)

        def model_fn(_adata, indices, transform_batch=None, n_samples_overall=None):
            indices = np.asarray(indices)
            under = label if indices.max() < n else control_label
            return self.get_normalized_expression(
                adata,
                indices=sources[indices % n],
                perturbation=under,
                n_samples_overall=n_samples_overall,
                batch_size=batch_size,
                return_numpy=True,
                predict_kwargs=predict_kwargs,
            )

        counts = self.get_anndata_manager(adata, required=True).get_from_registry(
            REGISTRY_KEYS.X_KEY
        )[sources]
        groups = _StackedGroups(counts)
        idx1 = np.arange(2 * n) < n
        computation = DifferentialComputation(model_fn, None, groups)
        info = computation.get_bayes_factors(
            idx1, ~idx1, mode=mode, delta=delta, use_observed_batches=True, **kwargs
        )
        res = pd.DataFrame(info, index=adata.var_names)
        res = res.sort_values(
            by="proba_de" if mode == "change" else "bayes_factor", ascending=False
        )
        if mode == "change":
            res[f"is_de_fdr_{fdr_target}"] = _fdr_de_prediction(res["proba_de"], fdr=fdr_target)
        return res


class _StackedGroups:
    """What :class:`~scvi.model.base.DifferentialComputation` reads of an AnnDataManager, for
    the two groups of a counterfactual comparison: rows ``0..n-1`` are the source cells under
    the perturbation, rows ``n..2n-1`` the same cells unperturbed. Both carry the source cells'
    observed counts (used only to find genes that are not expressed, in ``"change"`` mode)."""

    def __init__(self, counts):
        self._counts = (
            sparse.vstack([counts, counts]).tocsr()
            if sparse.issparse(counts)
            else np.concatenate([counts, counts])
        )
        n = self._counts.shape[0]
        self.adata = AnnData(obs=pd.DataFrame(index=[str(i) for i in range(n)]))

    def get_from_registry(self, key: str):
        if key != REGISTRY_KEYS.X_KEY:
            raise KeyError(f"Only the counts are available here, not {key!r}.")
        return self._counts


def _as_indices(indices, n_obs: int) -> np.ndarray:
    """Positions of the selected cells (all when None; boolean masks allowed)."""
    if indices is None:
        return np.arange(n_obs)
    indices = np.asarray(indices)
    if indices.dtype == bool:
        if indices.shape[0] != n_obs:
            raise ValueError("A boolean `indices` mask must have one entry per cell.")
        return np.flatnonzero(indices)
    return indices.astype(np.int64).ravel()
