"""SparseShiftVI: the sparse mechanism shift model (sVAE+) as an scvi-tools model."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalJointObsField,
    CategoricalObsField,
    LayerField,
    NumericalJointObsField,
)
from scvi.model._utils import _init_library_size
from scvi.model.base import BaseModelClass, RNASeqMixin, UnsupervisedTrainingMixin, VAEMixin
from scvi.utils import setup_anndata_dsp

from scvi_causal._constants import (
    DEFAULT_ALIGN_AT,
    DEFAULT_DIRECT_PENALTY,
    DEFAULT_INTERVENTION_LR_FACTOR,
    DEFAULT_MASK_INIT_PROB,
    DEFAULT_N_STEPS,
    DEFAULT_SLAB_SCALE,
    DEFAULT_SPARSITY_PENALTY,
    DEFAULT_SPARSITY_SCALE,
    MATRIX_LABEL_KEY,
    PERTURBATION_KEY,
    default_prior_prob,
)
from scvi_causal._encoding import PerturbationEncoding, control_labels
from scvi_causal.core._priors import check_intervention_prior
from scvi_causal.module import SparseShiftVAE
from scvi_causal.train import SparseShiftTrainingPlan

from ._counterfactual import CounterfactualMixin
from ._evaluate import EvaluationMixin
from ._io import AtomicSaveMixin
from ._query import QueryMixin
from ._report import ReportMixin
from ._residual import ResidualMixin
from ._scverse import ScverseMixin
from ._validation import (
    check_counts,
    check_perturbations,
    perturbation_matrix_labels,
)

logger = logging.getLogger(__name__)


class SparseShiftVI(
    AtomicSaveMixin,
    QueryMixin,
    CounterfactualMixin,
    EvaluationMixin,
    ReportMixin,
    ResidualMixin,
    ScverseMixin,
    RNASeqMixin,
    VAEMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    r"""Sparse mechanism shift variational inference for perturbation screens (sVAE+).

    Each perturbation is a sparse stochastic intervention on the latent units: a learned mask
    :math:`m_p` (spike-and-slab, relaxed Bernoulli) selects the units it moves and a learned
    shift :math:`\mu_p` moves them, :math:`z \mid p \sim \mathcal{N}(m_p \odot \mu_p, I)`;
    control cells follow :math:`\mathcal{N}(0, I)` :cite:p:`lopez2023learning`. Expression is
    decoded from :math:`z` as in scVI :cite:p:`lopez2018deep`. The perturbation label enters only
    through the prior, never the encoder or decoder.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Number of latent units.
    n_hidden
        Hidden units per layer of encoder and decoder.
    n_layers
        Hidden layers of encoder and decoder.
    dropout_rate
        Dropout in the encoder.
    gene_likelihood
        ``"nb"`` (default), ``"zinb"`` or ``"poisson"``.
    dispersion
        As in :class:`scvi.model.SCVI`.
    intervention_prior
        ``"spike_slab"`` (default, sVAE+), ``"l1"`` (continuous mask with an L1 penalty, sVAE),
        ``"dense"`` (every perturbation shifts every unit, iVAE) or ``"none"`` (plain VAE, labels
        ignored).
    beta
        Weight of the KL term on :math:`z` (:math:`\beta`-VAE when > 1).
    prior_prob
        Prior inclusion probability :math:`\pi` of a (perturbation, unit) edge for
        ``"spike_slab"`` (counted once per data set). ``None``: ``1 / n_latent`` (at most 0.5),
        about one target per perturbation a priori.
    sparsity_penalty
        Per-cell cost :math:`c` of each unit that a cell's perturbation targets
        (``"spike_slab"`` and ``"l1"``). Charged per cell, so the sparsity pressure does not
        change with the number of cells per perturbation (see
        :class:`~scvi_causal.core.SparseShiftPrior`). The default 0.25 goes with the alignment
        steps of :meth:`train` (with them it identifies more true edges than 0.5 at the same
        precision; see the model guide).
    sparsity_scale
        ``"relative"`` (default): the cost is in units of the perturbation's largest shift
        gain :math:`\max_k \mu_{pk}^2 / 2`, so an edge survives only if it carries at least
        :math:`\sqrt{c}` (0.5 at the default 0.25) of the perturbation's largest shift, whatever
        the effect size of the screen. ``"absolute"``: :math:`c` nats per cell (suits screens with
        large effects, prunes weak real effects). ``"energy"``: in units of the total shift
        gain (see :class:`~scvi_causal.core.SparseShiftPrior`).
    slab_scale
        Standard deviation of the Gaussian slab on shifts.
    mask_init_prob
        Initial inclusion probability of every edge.
    tc_weight
        Extra weight on the total correlation of the aggregate posterior (beta-TCVAE
        :cite:p:`chen2018isolating`; use with ``intervention_prior="none"`` for the
        unsupervised baseline). ``0`` (default) turns it off. The exact minibatch estimate
        compares every cell of a minibatch with every other, quadratic in the batch size (at
        batch 1024 on one CPU thread a simulated-benchmark run took over 20 times as long as
        without it); ``tc_query_size`` bounds that cost.
    tc_query_size
        With ``tc_weight > 0``: cells of each minibatch whose total-correlation estimate is
        computed, each against the whole minibatch (default 128; ``None``: all cells, exact
        minibatch-weighted sampling). The mean estimate keeps its expectation.
    direct_penalty
        Laplace rate :math:`\lambda` of the perturbations' *direct* gene-level effects: a
        sparse offset :math:`\delta_p` on the decoder's log-proportions of the cells under
        :math:`p` that bypasses the latent units (:class:`~scvi_causal.core.DirectEffects`), for
        what a latent unit should not have to carry: a guide's knockdown of its own gene, or the
        few genes a weak perturbation moves. Learned from ``direct_start`` (a fraction of
        training, default 0.75, after the alignment steps) so that the target graph is learned
        first; counted once per data set, so a direct effect is kept when the evidence of the
        perturbation's cells outweighs :math:`\lambda` (about :math:`\lambda` excess counts) and
        shrunk otherwise. ``None`` turns them off (every effect through the latent units, as
        in sVAE+). Ignored (off) for ``intervention_prior="none"``, which ignores labels.
        :meth:`predict` and :meth:`target_report` use them; :meth:`get_direct_effects` returns
        them.
    latent_graph
        ``"none"`` (default): the latent units are independent under the prior. ``"dag"``
        (experimental): a linear-Gaussian structural causal model among the units with a
        learned sparse DAG (:class:`~scvi_causal.core.LinearSCMPrior`); a perturbation is a
        hard intervention on its *direct* targets (:meth:`get_target_graph`): their incoming
        edges are cut and their value shifted, and the effect propagates to their
        descendants, in the prior and in :meth:`predict`. Training runs with independent
        units (and the alignment steps) until ``graph_start`` (a training-plan argument,
        default 0.75 of the epochs), when a graph-alignment step fits the graph and a linear
        change of frame on the cells' posterior means
        (:func:`~scvi_causal.core.fit_latent_graph`). :meth:`get_latent_graph` returns the
        graph. See the model guide for what is identifiable and what was measured.
    graph_kwargs
        More arguments of :class:`~scvi_causal.core.LinearSCMPrior` (``edge_penalty``,
        ``acyclicity_weight``, ``edge_prior_prob``).
    **vae_kwargs
        Other keyword arguments of :class:`scvi.module.VAE` (``use_batch_norm``,
        ``encode_covariates``, ...).

    Examples
    --------
    >>> from scvi_causal.data import simulate_sparse_shift
    >>> from scvi_causal.model import SparseShiftVI
    >>> adata = simulate_sparse_shift(n_perturbations=5, n_cells_per_perturbation=30, seed=0)
    >>> SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation",
    ...                             control_category="control")
    >>> model = SparseShiftVI(adata, n_latent=15)
    >>> model.train(max_epochs=2)  # doctest: +SKIP
    >>> graph = model.get_target_graph()
    >>> graph.shape
    (5, 15)
    """

    _module_cls = SparseShiftVAE
    _training_plan_cls = SparseShiftTrainingPlan

    def __init__(
        self,
        adata: AnnData | None = None,
        n_latent: int = 15,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gene_likelihood: Literal["nb", "zinb", "poisson"] = "nb",
        dispersion: Literal["gene", "gene-batch", "gene-cell"] = "gene",
        intervention_prior: Literal["spike_slab", "l1", "dense", "none"] = "spike_slab",
        beta: float = 1.0,
        prior_prob: float | None = None,
        sparsity_penalty: float = DEFAULT_SPARSITY_PENALTY,
        sparsity_scale: Literal["absolute", "relative", "energy"] = DEFAULT_SPARSITY_SCALE,
        slab_scale: float | None = DEFAULT_SLAB_SCALE,
        mask_init_prob: float = DEFAULT_MASK_INIT_PROB,
        tc_weight: float = 0.0,
        tc_query_size: int | None = 128,
        direct_penalty: float | None = DEFAULT_DIRECT_PENALTY,
        latent_graph: Literal["none", "dag"] = "none",
        graph_kwargs: dict | None = None,
        **vae_kwargs,
    ):
        if not isinstance(n_latent, int | np.integer) or n_latent < 1:
            raise ValueError(f"`n_latent` must be a positive integer, got {n_latent!r}.")
        if gene_likelihood not in ("nb", "zinb", "poisson"):
            raise ValueError(
                f"gene_likelihood must be 'nb', 'zinb' or 'poisson', got {gene_likelihood!r}."
            )
        check_intervention_prior(intervention_prior)
        super().__init__(adata)
        setup_args = self.adata_manager.registry["setup_args"]
        categories = self.adata_manager.get_state_registry(PERTURBATION_KEY).categorical_mapping
        self.control_categories_ = control_labels(setup_args["control_category"])
        encoding = PerturbationEncoding.from_labels(
            list(categories), self.control_categories_, setup_args["perturbation_delimiter"]
        )
        self.perturbation_names_ = list(encoding.names)
        intervention_matrix = encoding.encode(categories)
        prior_kwargs = {
            "prior_prob": prior_prob if prior_prob is not None else default_prior_prob(n_latent),
            "sparsity_penalty": sparsity_penalty,
            "sparsity_scale": sparsity_scale,
            "slab_scale": slab_scale,
            "mask_init_prob": mask_init_prob,
        }
        n_cats_per_cov = (
            self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).n_cats_per_key
            if REGISTRY_KEYS.CAT_COVS_KEY in self.adata_manager.data_registry
            else None
        )
        library_kwargs = {}
        if not vae_kwargs.get("use_observed_lib_size", True):
            means, variances = _init_library_size(self.adata_manager, self.summary_stats.n_batch)
            library_kwargs = {"library_log_means": means, "library_log_vars": variances}
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            intervention_matrix=intervention_matrix,
            intervention_prior=intervention_prior,
            beta=beta,
            tc_weight=tc_weight,
            tc_query_size=tc_query_size,
            prior_kwargs=None if intervention_prior == "none" else prior_kwargs,
            direct_penalty=None if intervention_prior == "none" else direct_penalty,
            latent_graph=latent_graph,
            graph_kwargs=graph_kwargs,
            n_batch=self.summary_stats.n_batch,
            n_continuous_cov=self.summary_stats.get("n_extra_continuous_covs", 0),
            n_cats_per_cov=n_cats_per_cov,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            dispersion=dispersion,
            **library_kwargs,
            **vae_kwargs,
        )
        self._model_summary_string = (
            f"SparseShiftVI: {len(self.perturbation_names_)} perturbations, "
            f"n_latent={n_latent}, intervention_prior={intervention_prior!r}, "
            f"gene_likelihood={gene_likelihood!r}"
            + (f", latent_graph={latent_graph!r}" if latent_graph != "none" else "")
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        perturbation_key: str | None = None,
        control_category: str | Sequence[str] | None = "control",
        perturbation_delimiter: str | None = "+",
        layer: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        perturbation_obsm_key: str | None = None,
        perturbation_names: Sequence[str] | None = None,
        **kwargs,
    ):
        """%(summary)s.

        Registers raw counts, the perturbation column (never passed to encoder or decoder) and
        optional batch and covariates (injected as in scVI). Checks the inputs first and
        raises a clear error on missing keys, a control label that is not present, missing
        labels, categories with zero cells, negative or non-finite values (non-integer values
        warn, as in scVI).

        Parameters
        ----------
        %(param_adata)s
        perturbation_key
            Column of ``adata.obs`` with each cell's perturbation label (default
            ``"perturbation"``). Combinations are written ``"A+B"``.
        control_category
            Label (or list of labels) of control cells, e.g. ``"non-targeting"``. Must be
            present. ``None`` for a screen without control cells. With
            ``perturbation_obsm_key``, the label given to the rows of zeros.
        perturbation_delimiter
            Separator of combinations; ``None`` to treat every label as one perturbation.
        %(param_layer)s
        %(param_batch_key)s
        %(param_cat_cov_keys)s
        %(param_cont_cov_keys)s
        perturbation_obsm_key
            Instead of ``perturbation_key``: a key of ``adata.obsm`` holding a cells x
            perturbations matrix, as high-MOI screens are written. A DataFrame whose columns
            name the perturbations, or a dense or sparse 0/1 or count matrix with
            ``perturbation_names``. A non-zero entry means that the cell carries the
            perturbation; a row of zeros is a control cell. Each cell's intervention is the
            union of its perturbations' masks. The matrix is written as labels (``"A+B"``, in
            column order) into ``adata.obs["_scvi_causal_perturbation"]``, so that everything
            downstream (target graph, scores, ``predict``, report, queries) reads it as it
            reads labels. :func:`scvi_causal.data.assign_guides` builds the matrix from
            guide UMI counts.
        perturbation_names
            Names of the matrix columns when ``adata.obsm[perturbation_obsm_key]`` is not a
            DataFrame.

        Examples
        --------
        >>> from scvi_causal.data import simulate_sparse_shift
        >>> adata = simulate_sparse_shift(n_perturbations=3, n_cells_per_perturbation=20)
        >>> SparseShiftVI.setup_anndata(adata, control_category="control")

        A high-MOI screen, written as a cells x perturbations matrix:

        >>> adata.obsm["guides"] = pd.get_dummies(adata.obs["perturbation"]).drop(
        ...     columns="control").astype(int)
        >>> SparseShiftVI.setup_anndata(adata, perturbation_obsm_key="guides")
        >>> int(adata.obs["_scvi_causal_perturbation"].value_counts()["p00"])
        20
        """
        # a query mapped onto a reference (load_query_data) need not hold control cells
        query = kwargs.get("source_registry") is not None
        if perturbation_obsm_key is not None:
            if perturbation_key not in (None, MATRIX_LABEL_KEY):
                raise ValueError(
                    "Pass either perturbation_key (labels) or "
                    "perturbation_obsm_key (a matrix), not both."
                )
            perturbation_key = MATRIX_LABEL_KEY
            _write_matrix_labels(
                adata,
                perturbation_obsm_key,
                perturbation_names,
                control_category,
                perturbation_delimiter,
                query,
            )
        elif perturbation_names is not None:
            raise ValueError("perturbation_names goes with perturbation_obsm_key.")
        perturbation_key = perturbation_key or "perturbation"
        check_perturbations(adata, perturbation_key, None if query else control_category)
        check_counts(adata, layer)
        covariates = [*(categorical_covariate_keys or []), *(continuous_covariate_keys or [])]
        for key in [batch_key, *covariates]:
            if key is not None and key not in adata.obs:
                raise KeyError(f"Covariate {key!r} is not a column of adata.obs.")
            if key == perturbation_key:
                raise ValueError(
                    "The perturbation column cannot also be a batch or covariate: a "
                    "perturbation acts only through the latent shift."
                )
        # the arguments as resolved above (e.g. the derived label column), nothing else
        params = inspect.signature(cls.setup_anndata).parameters
        setup_method_args = cls._get_setup_method_args(
            **{k: v for k, v in locals().items() if k in params or k == "cls"}
        )
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(PERTURBATION_KEY, perturbation_key),
            CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys),
            NumericalJointObsField(REGISTRY_KEYS.CONT_COVS_KEY, continuous_covariate_keys),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 1024,
        lr: float = 3e-3,
        intervention_lr_factor: float = DEFAULT_INTERVENTION_LR_FACTOR,
        n_epochs_kl_warmup: int | None = None,
        align_at: Sequence[float] | None = None,
        plan_kwargs: dict | None = None,
        ckpt_path: str | None = None,
        fit_residual: bool = False,
        **kwargs,
    ):
        """Train the model.

        Defaults are those that identify targets on the benchmarks: large minibatches, a
        learning rate on per-perturbation parameters 10x the networks', a KL warm-up over the
        first quarter of training and enough optimisation steps (about
        ``DEFAULT_N_STEPS = 10,000``). Mask density and temperature are logged per epoch in
        ``model.history`` (``mask_density_train``, ``mask_temperature_train``).

        Parameters
        ----------
        max_epochs
            Epochs; default ``clip(10,000 * batch_size / n_cells, 20, 1000)``.
        batch_size
            Minibatch size.
        lr
            Learning rate of the networks (sparsity needs steps large enough to rotate the
            latent space onto the true units; the measurements behind this and every other
            default are in the model guide, "Defaults at a glance").
        intervention_lr_factor
            Learning-rate multiplier for mask logits and shifts.
        n_epochs_kl_warmup
            Epochs of linear KL warm-up; default a quarter of ``max_epochs``.
        align_at
            Fractions of ``max_epochs`` after which the latent space is rotated onto the frame
            in which the perturbations' effects are sparsest, with masks and shifts reset in
            that frame (:func:`~scvi_causal.core.sparse_rotation`, see the model guide).
            Gradient descent turns the latent space onto the true units only slowly; these
            steps take the turn directly. Default ``(0.3, 0.5, 0.7)`` for
            ``intervention_prior="spike_slab"`` with trainable networks, ``()`` (off)
            otherwise, so that ``"l1"`` stays the published sVAE. The ratio by which each step
            lowered the l1 norm of the effects is logged as ``alignment_l1_ratio_train``.
        plan_kwargs
            More arguments of :class:`~scvi_causal.train.SparseShiftTrainingPlan`.
        ckpt_path
            Resume an interrupted run from this Lightning checkpoint (Lightning's ``ckpt_path``
            of ``Trainer.fit``): the file written by a :class:`~scvi_causal.train.ResumeCheckpoint`
            callback (``"<dirpath>/last.ckpt"``), or ``"last"`` for the newest one of the
            ``ResumeCheckpoint`` in ``callbacks`` (a new run if there is none yet). Weights,
            optimizer state, epoch counter, schedules and random states go on from the
            checkpoint, in a model built with the same arguments on the same data; pass the
            interrupted run's ``max_epochs``, training arguments and ``scvi.settings.seed``
            (otherwise a warning says what differs). ``model.history`` then starts at the
            resumed epoch.
        fit_residual
            After training, fit the residual effects that :meth:`predict` then adds
            (:meth:`fit_residual_effects`; a query model fits those of its new perturbations).
            Off by default: measured on Papalexi 2021 they moved predictions towards the
            training cells' noisy log fold changes and lowered the held-out top-20 Pearson
            delta (``benchmarks/counterfactual/residual/``).
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` (``accelerator``,
            ``devices``, ``strategy``, ``early_stopping``, ``train_size``, ...).

        Notes
        -----
        Data-parallel training uses Lightning's DDP, as scvi-tools does:
        ``model.train(accelerator="gpu", devices=4, strategy="ddp")`` (or ``accelerator="cpu"``
        with the gloo backend; on several nodes add ``num_nodes``). Each process sees its share
        of every minibatch epoch; gradients of all parameters, the per-perturbation mask logits
        and shifts included, are averaged across processes, so every replica keeps identical
        masks and shifts. ``strategy="ddp"`` is run as ``"ddp_find_unused_parameters_true"``
        because scVI's library-size encoder is unused with observed library sizes. Run DDP
        from a script (``python train.py``), not a notebook: Lightning starts the other
        processes by re-running the script.

        Examples
        --------
        >>> model.train(max_epochs=50)  # doctest: +SKIP
        >>> model.history["mask_density_train"].tail()  # doctest: +SKIP
        >>> model.train(accelerator="cpu", devices=2, strategy="ddp")  # doctest: +SKIP

        Checkpoint every epoch; run the same lines again after an interruption to resume:

        >>> from scvi_causal.train import ResumeCheckpoint
        >>> model.train(max_epochs=400, callbacks=[ResumeCheckpoint("runs/screen1")],
        ...             ckpt_path="last")  # doctest: +SKIP
        """
        if not any(p.requires_grad for p in self.module.parameters()):
            logger.warning("Nothing to train: every parameter of this model is frozen.")
            self.is_trained_ = True
            return None
        if max_epochs is None:
            max_epochs = default_max_epochs(self.adata.n_obs, batch_size)
        if align_at is None:
            sparse = self.module.intervention_prior == "spike_slab"
            align_at = DEFAULT_ALIGN_AT if sparse and self.module.can_rotate_latent_space() else ()
        plan = {
            "align_at": tuple(align_at),
            "lr": lr,
            "intervention_lr_factor": intervention_lr_factor,
            "n_epochs_kl_warmup": (
                max(1, max_epochs // 4) if n_epochs_kl_warmup is None else n_epochs_kl_warmup
            ),
        }
        plan.update(plan_kwargs or {})
        if kwargs.get("strategy") == "ddp":
            # scVI's library-size encoder has no gradient with observed library sizes
            kwargs["strategy"] = "ddp_find_unused_parameters_true"
        out = super().train(
            max_epochs=max_epochs,
            batch_size=batch_size,
            plan_kwargs=plan,
            ckpt_path=ckpt_path,
            **kwargs,
        )
        if fit_residual and self.module.n_interventions:
            self.fit_residual_effects(perturbations=getattr(self, "new_perturbations_", None))
        return out

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True):
        """Validate ``adata``; unseen perturbation labels get a clear error first."""
        if adata is not None and adata is not self.adata:
            self._write_matrix_labels(adata)
            key = self.adata_manager.get_state_registry(PERTURBATION_KEY).original_key
            if key not in adata.obs:
                raise KeyError(f"perturbation_key {key!r} is not a column of adata.obs.")
            known = set(
                map(
                    str, self.adata_manager.get_state_registry(PERTURBATION_KEY).categorical_mapping
                )
            )
            unseen = sorted(set(map(str, adata.obs[key].unique())) - known)
            if unseen:
                raise ValueError(
                    f"Perturbations not seen by the model: {unseen[:10]}"
                    f"{' ...' if len(unseen) > 10 else ''}. This model can only score "
                    "perturbations it was trained on; drop those cells, or train a model "
                    "that includes them."
                )
            if adata.n_vars != self.summary_stats.n_vars:
                raise ValueError(
                    f"adata has {adata.n_vars} genes but the model was trained on "
                    f"{self.summary_stats.n_vars}; subset adata to the model's genes "
                    "(model.adata.var_names) in the same order."
                )
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    # ------------------------------------------------------------------ results
    def _write_matrix_labels(self, adata: AnnData) -> None:
        """For a model set up with ``perturbation_obsm_key``: (re)write ``adata``'s labels."""
        setup_args = self.adata_manager.registry["setup_args"]
        key = setup_args.get("perturbation_obsm_key")
        if key is None or (key not in adata.obsm and MATRIX_LABEL_KEY in adata.obs):
            return
        _write_matrix_labels(
            adata,
            key,
            setup_args.get("perturbation_names"),
            setup_args["control_category"],
            setup_args["perturbation_delimiter"],
            allow_unused=True,
        )

    @property
    def perturbation_encoding(self) -> PerturbationEncoding:
        """How this model reads perturbation labels: its atomic perturbations (in the order of
        the rows of :meth:`get_target_graph`), control labels and combination delimiter.

        Examples
        --------
        >>> model.perturbation_encoding.encode(["IFNGR1+JAK2"])  # doctest: +SKIP
        """
        return PerturbationEncoding(
            tuple(self.perturbation_names_),
            tuple(self.control_categories_),
            self.adata_manager.registry["setup_args"]["perturbation_delimiter"],
        )

    def _latent_columns(self) -> list[str]:
        return [f"z{k}" for k in range(self.module.n_latent)]

    def _require_sparse_prior(self, what: str):
        if self.module.intervention_prior == "none":
            raise ValueError(
                f"{what} is not defined for intervention_prior='none' (a plain VAE has no "
                "per-perturbation parameters); use get_perturbation_shifts(source='latent')."
            )

    @torch.inference_mode()
    def get_target_graph(self) -> pd.DataFrame:
        """Perturbation x latent target graph: posterior inclusion probabilities.

        Returns
        -------
        pandas.DataFrame
            Indexed by perturbation (controls excluded), columns ``z0..z{K-1}``, values in
            [0, 1]. For ``"dense"`` every entry is 1; for ``"l1"`` the continuous mask values.

        Examples
        --------
        >>> graph = model.get_target_graph()  # doctest: +SKIP
        >>> (graph > 0.5).sum(axis=1)  # number of targets per perturbation  # doctest: +SKIP
        """
        self._require_sparse_prior("A target graph")
        probs = self.module.prior.inclusion_probs().detach().cpu().numpy()
        return pd.DataFrame(probs, index=self.perturbation_names_, columns=self._latent_columns())

    @torch.inference_mode()
    def get_latent_graph(self, dag: bool = False) -> pd.DataFrame:
        """Learned causal graph among the latent units (``latent_graph="dag"``).

        Parameters
        ----------
        dag
            Return the edges as 0/1 (inclusion probability >= 0.5), made acyclic by removing
            the weakest edge of any remaining cycle; default the inclusion probabilities.

        Returns
        -------
        pandas.DataFrame
            Units x units, rows = parent, columns = child: edge inclusion probabilities in
            [0, 1] (or 0/1 with ``dag=True``); the diagonal is 0.

        Examples
        --------
        >>> graph = model.get_latent_graph()  # doctest: +SKIP
        >>> graph.stack().nlargest(5)  # the strongest parent -> child edges  # doctest: +SKIP
        """
        prior = self.module.prior
        if self.module.latent_graph != "dag":
            raise ValueError("This model has no latent graph; train with latent_graph='dag'.")
        values = prior.dag().float() if dag else prior.latent_graph().detach()
        cols = self._latent_columns()
        return pd.DataFrame(values.cpu().numpy(), index=cols, columns=cols)

    @torch.inference_mode()
    def get_perturbation_shifts(
        self,
        source: Literal["model", "latent"] = "model",
        adata: AnnData | None = None,
        masked: bool = True,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """Latent shift of each perturbation.

        Parameters
        ----------
        source
            ``"model"``: the learned shifts :math:`\\mu_p` (times the posterior mode of the mask
            when ``masked``). ``"latent"``: the mean latent representation of the cells of each
            (single) perturbation minus that of control cells (of all cells when the screen has
            no controls), which also works for ``intervention_prior="none"``.
        adata, batch_size
            Cells used for ``source="latent"``.
        masked
            Multiply learned shifts by the mask mode.

        Returns
        -------
        pandas.DataFrame
            Indexed by perturbation, columns ``z0..z{K-1}``.

        Examples
        --------
        >>> shifts = model.get_perturbation_shifts()  # doctest: +SKIP
        """
        cols = self._latent_columns()
        if source == "model":
            self._require_sparse_prior("A learned shift")
            prior = self.module.prior
            shifts = prior.shifts.detach()
            if masked:
                shifts = shifts * (prior.inclusion_probs() > 0.5).float()
            return pd.DataFrame(shifts.cpu().numpy(), index=self.perturbation_names_, columns=cols)
        if source != "latent":
            raise ValueError(f"`source` must be 'model' or 'latent', got {source!r}.")
        means, control, overall = self._mean_latents(adata, batch_size)
        return means - (control if control is not None else overall)

    @torch.inference_mode()
    def get_direct_effects(self) -> pd.DataFrame:
        r"""Direct gene-level effect of each perturbation (bypassing the latent units).

        The offsets :math:`\delta_p` that the perturbation adds to the log-proportions of its
        cells (see ``direct_penalty``), e.g. the knockdown of a CRISPRi guide's own gene.
        Natural-log units: :math:`-0.69` halves the gene's share of the counts.

        Returns
        -------
        pandas.DataFrame
            Perturbations x genes; all zeros for a model trained without direct effects or
            before they were switched on.

        Examples
        --------
        >>> direct = model.get_direct_effects()  # doctest: +SKIP
        >>> direct.loc["IRF1"].nsmallest(3)  # doctest: +SKIP
        """
        effects = self.module.direct_effects()
        names = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names
        if effects is None:
            values = np.zeros((len(self.perturbation_names_), len(names)), dtype=np.float32)
        else:
            values = effects.cpu().numpy()
        return pd.DataFrame(values, index=self.perturbation_names_, columns=list(names))

    def _mean_latents(
        self, adata: AnnData | None, batch_size: int | None
    ) -> tuple[pd.DataFrame, np.ndarray | None, np.ndarray]:
        """Mean posterior latent of each perturbation's own cells (NaN rows without cells),
        of the control cells (None without controls) and of all cells."""
        adata = self._validate_anndata(adata)
        z = self.get_latent_representation(adata, batch_size=batch_size)
        labels = self._perturbation_labels(adata)
        is_control = labels.isin(self.control_categories_).to_numpy()
        means = pd.DataFrame(np.nan, index=self.perturbation_names_, columns=self._latent_columns())
        for name in self.perturbation_names_:
            sel = (labels == name).to_numpy()
            if sel.any():
                means.loc[name] = z[sel].mean(0)
        control = z[is_control].mean(0) if is_control.any() else None
        return means, control, z.mean(0)

    @torch.inference_mode()
    def get_off_mask_shifts(
        self,
        adata: AnnData | None = None,
        threshold: float = 0.5,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """How much of each perturbation's latent displacement its target mask leaves out.

        The displacement :math:`d_p` of perturbation :math:`p` is the mean latent representation
        of its (single-perturbation) cells minus that of the control cells, or minus the prior's
        unperturbed mean 0 for a screen without controls. The part of :math:`d_p` on units that
        are *not* targeted (inclusion probability below ``threshold``) is what the sparse model
        pays for as prior mismatch instead of explaining it with an edge. A large off-mask share
        with one dominant unit flags a possibly missed target (how often this happens, and how
        often the top off-mask unit is the missed one, is measured by
        ``benchmarks/simulated/diagnose.py``; see the model guide).

        Parameters
        ----------
        adata
            Cells to use (default: the training data).
        threshold
            Inclusion probability from which a unit counts as a target.
        batch_size
            Minibatch size for encoding.

        Returns
        -------
        pandas.DataFrame
            Indexed by perturbation: ``n_targets``, ``shift_norm`` (:math:`\\|d_p\\|`),
            ``off_mask_norm`` (norm of :math:`d_p` on non-targeted units), ``off_mask_fraction``
            (share of :math:`\\|d_p\\|^2` off the mask, in [0, 1]), ``top_off_mask_unit`` and
            ``top_off_mask_shift`` (the non-targeted unit with the largest :math:`|d_{pk}|` and
            its signed value). NaN for perturbations without cells of their own (seen only in
            combinations).

        Examples
        --------
        >>> off = model.get_off_mask_shifts()  # doctest: +SKIP
        >>> off.sort_values("off_mask_fraction", ascending=False).head()  # doctest: +SKIP
        """
        self._require_sparse_prior("An off-mask shift")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"`threshold` must be in (0, 1), got {threshold}.")
        means, control, _ = self._mean_latents(adata, batch_size)
        # without controls, the prior's unperturbed mean 0 is the reference
        displacement = (means - control if control is not None else means).to_numpy()
        on = self.get_target_graph().to_numpy() >= threshold
        cols = self._latent_columns()
        rows = []
        for i, d in enumerate(displacement):
            if np.isnan(d).any():  # no cells of its own
                rows.append({"n_targets": int(on[i].sum())})
                continue
            off = np.where(on[i], 0.0, d)
            total = float(np.sum(d**2))
            top = int(np.argmax(np.abs(off))) if (~on[i]).any() else None
            rows.append(
                {
                    "n_targets": int(on[i].sum()),
                    "shift_norm": float(np.sqrt(total)),
                    "off_mask_norm": float(np.linalg.norm(off)),
                    "off_mask_fraction": float(np.sum(off**2) / total) if total > 0 else 0.0,
                    "top_off_mask_unit": cols[top] if top is not None else None,
                    "top_off_mask_shift": float(off[top]) if top is not None else np.nan,
                }
            )
        columns = [
            "n_targets",
            "shift_norm",
            "off_mask_norm",
            "off_mask_fraction",
            "top_off_mask_unit",
            "top_off_mask_shift",
        ]
        return pd.DataFrame(rows, index=self.perturbation_names_, columns=columns)

    def _perturbation_labels(self, adata: AnnData) -> pd.Series:
        state = self.get_anndata_manager(adata).get_state_registry(PERTURBATION_KEY)
        return adata.obs[state.original_key].astype(str).reset_index(drop=True)

    @torch.inference_mode()
    def get_perturbation_scores(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        n_mc_samples: int = 100,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """Held-out fit per perturbation: mean per-cell ELBO and IWELBO (higher is better).

        Masks are at their posterior mode; ``n_mc_samples`` importance samples from the
        encoder per cell give the ELBO (mean log weight) and the importance-weighted bound
        :cite:p:`burda2016importance` (log mean weight, tighter).

        Parameters
        ----------
        adata
            Cells to score (default: the training AnnData). Their perturbations must be known
            to the model.
        indices
            Subset of cells.
        n_mc_samples
            Importance samples per cell.
        batch_size
            Minibatch size.

        Returns
        -------
        pandas.DataFrame
            Indexed by perturbation category, with columns ``n_cells``, ``elbo``, ``iwelbo``
            and ``is_control``.

        Examples
        --------
        >>> scores = model.get_perturbation_scores(n_mc_samples=50)  # doctest: +SKIP
        >>> scores["iwelbo"].mean()  # doctest: +SKIP
        """
        if n_mc_samples < 1:
            raise ValueError("`n_mc_samples` must be >= 1.")
        adata = self._validate_anndata(adata)
        dl = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        elbo, iwelbo, codes = [], [], []
        for tensors in dl:
            log_w = self.module.importance_weights(tensors, n_samples=n_mc_samples)
            elbo.append(log_w.mean(0).cpu())
            iwelbo.append((torch.logsumexp(log_w, 0) - np.log(log_w.shape[0])).cpu())
            codes.append(tensors[PERTURBATION_KEY].view(-1).long().cpu())
        mapping = (
            self.get_anndata_manager(adata).get_state_registry(PERTURBATION_KEY).categorical_mapping
        )
        df = pd.DataFrame(
            {
                "perturbation": np.asarray(mapping)[torch.cat(codes).numpy()],
                "elbo": torch.cat(elbo).numpy(),
                "iwelbo": torch.cat(iwelbo).numpy(),
            }
        )
        out = df.groupby("perturbation", sort=True).agg(
            n_cells=("elbo", "size"), elbo=("elbo", "mean"), iwelbo=("iwelbo", "mean")
        )
        out["is_control"] = out.index.isin(self.control_categories_)
        return out


def _write_matrix_labels(
    adata: AnnData,
    obsm_key: str,
    names,
    control_category,
    delimiter: str | None,
    allow_unused: bool = False,
) -> None:
    """Write the labels of ``adata.obsm[obsm_key]`` into ``adata.obs[MATRIX_LABEL_KEY]``.

    ``allow_unused``: columns carried by no cell are allowed (a query, new data to predict
    from, which need not hold every perturbation of the reference).
    """
    controls = control_labels(control_category)
    labels, _ = perturbation_matrix_labels(
        adata,
        obsm_key,
        names,
        controls[0] if controls else None,
        delimiter,
        allow_unused=allow_unused,
    )
    adata.obs[MATRIX_LABEL_KEY] = pd.Categorical(labels)


def default_max_epochs(n_obs: int, batch_size: int) -> int:
    """Default epochs: about ``DEFAULT_N_STEPS`` optimisation steps, clipped to [20, 1000].

    Examples
    --------
    >>> default_max_epochs(16_000, 1024)
    640
    """
    return int(np.clip(round(DEFAULT_N_STEPS * batch_size / max(n_obs, 1)), 20, 1000))
