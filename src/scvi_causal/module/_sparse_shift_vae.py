"""The sparse-mechanism-shift VAE module (sVAE+) on top of scvi-tools' :class:`~scvi.module.VAE`."""

from __future__ import annotations

import numpy as np
import torch
from scvi import REGISTRY_KEYS
from scvi.module import VAE
from scvi.module._constants import MODULE_KEYS
from scvi.module.base import LossOutput, auto_move_data
from torch.distributions import Normal, kl_divergence

from scvi_causal._constants import DIRECT_INTERVENTION_KEY, INTERVENTION_KEY, PERTURBATION_KEY
from scvi_causal._encoding import PerturbationEncoding
from scvi_causal.core import (
    DirectEffects,
    LatentRotationMixin,
    apply_log_offset,
    total_correlation,
)
from scvi_causal.core._priors import InterventionPrior
from scvi_causal.core._scm import check_latent_graph, make_latent_prior
from scvi_causal.core._training import negative_elbo

__all__ = [
    "DIRECT_INTERVENTION_KEY",
    "INTERVENTION_KEY",
    "PERTURBATION_KEY",
    "SparseShiftVAE",
    "parse_interventions",
]


class SparseShiftVAE(LatentRotationMixin, VAE):
    r"""scVI-style VAE whose latent prior is shifted sparsely by perturbations.

    Encoder, decoder, likelihoods (NB, ZINB, Poisson), library size and covariate injection are
    those of :class:`scvi.module.VAE`; only the prior changes: a cell under perturbation(s)
    :math:`a` has :math:`z \sim \mathcal{N}(\sum_p a_p\, m_p \odot \mu_p, I)` and control cells
    :math:`\mathcal{N}(0, I)` :cite:p:`lopez2023learning`. The perturbation label never enters the
    encoder or the decoder: it acts only through the prior.

    Parameters
    ----------
    n_input
        Number of genes.
    intervention_matrix
        ``(n_categories, P)`` multi-hot matrix mapping each category code of the registered
        perturbation column to its atomic perturbations (a zero row for controls).
    intervention_prior
        ``"spike_slab"`` (sVAE+, default), ``"l1"`` (sVAE), ``"dense"`` (iVAE) or ``"none"``
        (plain VAE, labels ignored).
    beta
        Weight of the local KL term (:math:`\beta`-VAE :cite:p:`higgins2017beta`).
    prior_kwargs
        Passed to :class:`~scvi_causal.core.SparseShiftPrior` (``prior_prob``,
        ``sparsity_penalty``, ``slab_scale``, ``mask_init_prob``, ``temperature``).
    tc_weight
        Extra weight on the total correlation of the aggregate posterior (beta-TCVAE
        :cite:p:`chen2018isolating`), estimated per minibatch by
        :func:`~scvi_causal.core.total_correlation`; ``0`` turns it off.
    tc_query_size
        Cells of a minibatch scored against the whole minibatch in the total-correlation
        estimate (``n_query`` of :func:`~scvi_causal.core.total_correlation`): the cost per step
        is ``O(tc_query_size * batch_size * n_latent)`` instead of quadratic in the batch size.
        ``None`` scores every cell.
    direct_penalty
        Laplace rate of the perturbations' direct gene-level effects
        (:class:`~scvi_causal.core.DirectEffects`: offsets on the decoder's log-proportions that
        bypass the latent units, e.g. the knockdown of a guide's own gene), counted once per
        data set. ``None``: no direct effects (every effect goes through the latent units).
        The effects are zero until the training plan activates them.
    latent_graph
        ``"none"`` (default): independent latent units under the prior. ``"dag"``: a learned
        linear-Gaussian SCM among the units (:class:`~scvi_causal.core.LinearSCMPrior`), whose
        exogenous noise the perturbations shift; the masks then select *direct* targets.
    graph_kwargs
        Passed to :class:`~scvi_causal.core.LinearSCMPrior` (``edge_penalty``,
        ``acyclicity_weight``, ...) with ``latent_graph="dag"``.
    **vae_kwargs
        Passed to :class:`scvi.module.VAE` (``n_latent``, ``n_hidden``, ``gene_likelihood``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> module = SparseShiftVAE(50, intervention_matrix=np.eye(3), n_latent=4)
    >>> module.prior.inclusion_probs().shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        n_input: int,
        intervention_matrix: np.ndarray,
        intervention_prior: InterventionPrior = "spike_slab",
        beta: float = 1.0,
        prior_kwargs: dict | None = None,
        tc_weight: float = 0.0,
        tc_query_size: int | None = 128,
        direct_penalty: float | None = None,
        latent_graph: str = "none",
        graph_kwargs: dict | None = None,
        **vae_kwargs,
    ):
        super().__init__(n_input, **vae_kwargs)
        self.latent_graph = check_latent_graph(latent_graph, intervention_prior, "perturbations")
        matrix = torch.as_tensor(np.asarray(intervention_matrix), dtype=torch.float32)
        if matrix.ndim != 2:
            raise ValueError("`intervention_matrix` must be 2-d (n_categories, n_interventions).")
        if beta <= 0:
            raise ValueError(f"`beta` must be positive, got {beta}.")
        if tc_weight < 0:
            raise ValueError(f"`tc_weight` must be >= 0, got {tc_weight}.")
        if tc_query_size is not None and tc_query_size < 1:
            raise ValueError(f"`tc_query_size` must be >= 1 or None, got {tc_query_size}.")
        self.tc_weight = float(tc_weight)
        self.tc_query_size = tc_query_size
        self.register_buffer("intervention_matrix", matrix)
        self.intervention_prior = intervention_prior
        self.beta = beta
        # with a graph: independent units until the training plan fits it (graph_start)
        self.prior = make_latent_prior(
            latent_graph,
            intervention_prior,
            matrix.shape[1],
            self.n_latent,
            prior_kwargs,
            graph_kwargs,
        )
        if direct_penalty is not None and intervention_prior == "none":
            raise ValueError(
                "Direct effects need perturbation labels; intervention_prior='none' "
                "ignores them (pass direct_penalty=None)."
            )
        self.direct = (
            None
            if direct_penalty is None
            else DirectEffects(matrix.shape[1], n_input, penalty=direct_penalty)
        )
        # residual effects, fitted after training (SparseShiftVI.fit_residual_effects) and
        # added by predict only; they never enter the likelihood
        self.register_buffer("residual_effects", torch.zeros(matrix.shape[1], n_input))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a model saved before residual effects existed: load them as zero
        if prefix + "residual_effects" not in state_dict:
            state_dict[prefix + "residual_effects"] = torch.zeros_like(self.residual_effects)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def n_interventions(self) -> int:
        """Number of atomic perturbations."""
        return self.intervention_matrix.shape[1]

    def intervention_parameters(self) -> list[torch.nn.Parameter]:
        """Per-perturbation parameters (mask logits, shifts, direct effects), trained at a
        higher learning rate."""
        params = self.prior.intervention_parameters()
        if self.direct is not None and self.direct.effects.requires_grad:
            params.append(self.direct.effects)
        return params

    def _intervention(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
        codes = tensors.get(PERTURBATION_KEY)
        if codes is None:
            return None
        return self.intervention_matrix[codes.long().view(-1)]

    def _get_generative_input(self, tensors, inference_outputs):
        size_factor = tensors.get(REGISTRY_KEYS.SIZE_FACTOR_KEY, None)
        if size_factor is not None:
            size_factor = torch.log(size_factor)
        return {
            MODULE_KEYS.Z_KEY: inference_outputs[MODULE_KEYS.Z_KEY],
            MODULE_KEYS.LIBRARY_KEY: inference_outputs[MODULE_KEYS.LIBRARY_KEY],
            MODULE_KEYS.BATCH_INDEX_KEY: tensors[REGISTRY_KEYS.BATCH_KEY],
            MODULE_KEYS.Y_KEY: None,
            MODULE_KEYS.CONT_COVS_KEY: tensors.get(REGISTRY_KEYS.CONT_COVS_KEY, None),
            MODULE_KEYS.CAT_COVS_KEY: tensors.get(REGISTRY_KEYS.CAT_COVS_KEY, None),
            MODULE_KEYS.SIZE_FACTOR_KEY: size_factor,
            INTERVENTION_KEY: self._intervention(tensors),
        }

    @auto_move_data
    def generative(
        self,
        z,
        library,
        batch_index,
        intervention=None,
        direct_intervention=None,
        transform_batch=None,
        **kwargs,
    ):
        """Decode ``z`` as scVI does, with the perturbation-dependent prior as ``pz``.

        With direct effects (``direct_penalty``, once active), the perturbations'
        gene-level offsets are added to the decoder's log-proportions; they are those of
        ``direct_intervention`` when given (a counterfactual label), else of ``intervention``.
        ``transform_batch`` decodes every cell in that batch, as in :class:`scvi.module.VAE`
        (named here so that scvi's ``RNASeqMixin`` methods find it).
        """
        outputs = super().generative(
            z, library, batch_index, transform_batch=transform_batch, **kwargs
        )
        n = z.shape[-2]
        outputs[MODULE_KEYS.PZ_KEY] = self.prior(intervention, n=n)
        if self.direct is not None:
            rows = intervention if direct_intervention is None else direct_intervention
            offset = self.direct(rows)
            if offset is not None:
                outputs[MODULE_KEYS.PX_KEY] = _offset_likelihood(
                    outputs[MODULE_KEYS.PX_KEY], offset
                )
        return outputs

    def decode(
        self,
        tensors: dict[str, torch.Tensor],
        z: torch.Tensor,
        library: torch.Tensor,
        direct: torch.Tensor | None = None,
    ):
        """Count likelihood of latents ``z`` decoded with the cells' own library size, batch and
        covariates (from ``tensors``), as counterfactual predictions need.

        The prior is left unshifted: a perturbation acts through ``z`` and, with direct
        effects, through those of the multi-hot row(s) ``direct`` (``(1, P)``, broadcast over
        the cells, or ``(n, P)``; None: no direct effect, as for control cells).

        Examples
        --------
        >>> import numpy as np, torch
        >>> module = SparseShiftVAE(5, intervention_matrix=np.eye(2), n_latent=3)
        >>> tensors = {"X": torch.ones(4, 5), "batch": torch.zeros(4, 1)}
        >>> px = module.decode(tensors, torch.zeros(4, 3), torch.zeros(4, 1))
        >>> px.scale.shape
        torch.Size([4, 5])
        """
        gen_input = self._get_generative_input(
            tensors, {MODULE_KEYS.Z_KEY: z, MODULE_KEYS.LIBRARY_KEY: library}
        )
        gen_input[INTERVENTION_KEY] = None
        if direct is not None:
            # one row is broadcast over the cells (its offset computed once, not per cell)
            gen_input[DIRECT_INTERVENTION_KEY] = (
                direct if direct.shape[0] == 1 else direct.expand(z.shape[-2], -1)
            )
        return self.generative(**gen_input)[MODULE_KEYS.PX_KEY]

    def direct_effects(self) -> torch.Tensor | None:
        """``(P, G)`` direct effects on log-proportions (None without direct effects; zeros
        until activated)."""
        if self.direct is None:
            return None
        if not bool(self.direct.active):
            return torch.zeros_like(self.direct.effects)
        return self.direct.effects.detach()

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float | torch.Tensor = 1.0,
        n_obs: int = 1,
    ) -> LossOutput:
        """Negative ELBO: per-cell sparsity cost, global term scaled by ``1 / n_obs``.

        ``n_obs`` (the number of training cells) is injected by the training plan, so that the
        global per-perturbation terms are counted once per data set rather than once per
        minibatch. KL warm-up multiplies the local KL, the sparsity cost and the global term
        alike, so that warm-up does not prune masks before shifts can pay for themselves.
        With ``tc_weight > 0`` each cell also pays ``kl_weight * tc_weight`` times its
        minibatch estimate of the total correlation (reported in ``kl_local`` as
        ``"total_correlation"``; zero for a single-cell minibatch), the beta-TCVAE objective
        :cite:p:`chen2018isolating`.
        """
        x = tensors[REGISTRY_KEYS.X_KEY]
        qz: Normal = inference_outputs[MODULE_KEYS.QZ_KEY]
        pz: Normal = generative_outputs[MODULE_KEYS.PZ_KEY]
        kl_z = kl_divergence(qz, pz).sum(-1)
        reconst_loss = -generative_outputs[MODULE_KEYS.PX_KEY].log_prob(x).sum(-1)
        if not self.use_observed_lib_size:
            kl_l = kl_divergence(
                inference_outputs[MODULE_KEYS.QL_KEY], generative_outputs[MODULE_KEYS.PL_KEY]
            ).sum(dim=1)
        else:
            kl_l = torch.zeros_like(kl_z)
        sparsity = self.prior.local_penalty(
            self._intervention(tensors) if self.intervention_prior != "none" else None
        )
        if sparsity is None:
            sparsity = torch.zeros_like(kl_z)
        kl_global = self.prior.kl_global()
        if self.direct is not None:
            kl_global = kl_global + self.direct.kl_global()
        tc = None
        extra = {}
        if self.tc_weight > 0:
            # needs >= 2 cells; with several posterior samples (marginal_ll) average over them
            z = inference_outputs[MODULE_KEYS.Z_KEY]
            n_cells = z.shape[-2]
            tc = torch.zeros_like(kl_z)
            if n_cells > 1:
                n_total = max(int(n_obs), n_cells)
                z_sets = z.reshape(-1, n_cells, z.shape[-1])
                if self.tc_query_size is None or self.tc_query_size >= n_cells:
                    tc = torch.stack(
                        [total_correlation(zs, qz.loc, qz.scale, n_total) for zs in z_sets]
                    ).mean(0)
                else:  # a random subset of cells scored against the minibatch: its mean
                    tc = (
                        torch.stack(
                            [
                                total_correlation(
                                    zs, qz.loc, qz.scale, n_total, self.tc_query_size
                                ).mean()
                                for zs in z_sets
                            ]
                        )
                        .mean()
                        .expand(n_cells)
                    )
            extra["total_correlation"] = tc
        loss = negative_elbo(
            reconst_loss,
            kl_z,
            kl_global,
            beta=self.beta,
            sparsity=sparsity,
            total_correlation=tc,
            tc_weight=self.tc_weight,
            kl_weight=kl_weight,
            n_obs=n_obs,
            unweighted=kl_l,
        )
        return LossOutput(
            loss=loss,
            reconstruction_loss=reconst_loss,
            kl_local={
                MODULE_KEYS.KL_Z_KEY: kl_z,
                MODULE_KEYS.KL_L_KEY: kl_l,
                "sparsity": sparsity,
                **extra,
            },
            kl_global=kl_global,
        )

    def _latent_layers(self):
        """Encoder mean head, the decoder's first layer and the log-variance head (when the
        variance activation is exp), for :meth:`rotate_latent_space`."""
        encoder = self.z_encoder
        var_head = encoder.var_encoder if encoder.var_activation is torch.exp else None
        return encoder.mean_encoder, self.decoder.px_decoder.fc_layers[0][0], var_head

    def _networks_rotatable(self) -> bool:
        return self.latent_distribution == "normal"

    @torch.inference_mode()
    def marginal_ll(
        self,
        tensors: dict[str, torch.Tensor],
        n_mc_samples: int,
        return_mean: bool = False,
        n_mc_samples_per_pass: int = 1,
    ):
        r"""Importance-sampled :math:`\log p(x)` under this model (perturbation shifts, masks at
        their posterior mode and direct effects included).

        Replaces :meth:`scvi.module.VAE.marginal_ll`, whose prior is :math:`\mathcal{N}(0, I)`
        for every cell, so that :meth:`~scvi.model.base.VAEMixin.get_marginal_ll` is correct for
        this model. Same arguments and return values as scvi's.
        """
        per_pass = max(1, min(int(n_mc_samples_per_pass), int(n_mc_samples)))
        chunks, left = [], int(n_mc_samples)
        was_training = self.training
        self.eval()  # masks at their posterior mode, whatever mode the caller left
        try:
            while left > 0:
                chunks.append(self.importance_weights(tensors, n_samples=min(per_pass, left)))
                left -= per_pass
        finally:
            self.train(was_training)
        log_w = torch.cat(chunks, dim=0)
        ll = torch.logsumexp(log_w, dim=0) - np.log(log_w.shape[0])
        return torch.mean(ll).item() if return_mean else ll.cpu()

    @torch.inference_mode()
    def importance_weights(
        self, tensors: dict[str, torch.Tensor], n_samples: int = 100
    ) -> torch.Tensor:
        r"""Log importance weights :math:`\log p(x, z_s) - \log q(z_s \mid x)`, shape ``(S, n)``.

        Masks are at their posterior mode (the module should be in eval mode). The mean over
        samples is an ELBO estimate, the log-mean-exp the importance-weighted bound (IWELBO)
        :cite:p:`burda2016importance`.

        Parameters
        ----------
        tensors
            Minibatch of ``n`` cells, as yielded by an scvi-tools data loader.
        n_samples
            Number :math:`S` of importance samples per cell.

        Returns
        -------
        torch.Tensor
            Log importance weights of shape ``(S, n)`` (nats).
        """
        inference_outputs, generative_outputs = self.forward(
            tensors,
            inference_kwargs={"n_samples": n_samples},
            compute_loss=False,
        )
        z = inference_outputs[MODULE_KEYS.Z_KEY]
        qz = inference_outputs[MODULE_KEYS.QZ_KEY]
        x = tensors[REGISTRY_KEYS.X_KEY]
        log_px = generative_outputs[MODULE_KEYS.PX_KEY].log_prob(x).sum(-1)
        log_pz = generative_outputs[MODULE_KEYS.PZ_KEY].log_prob(z).sum(-1)
        log_qz = qz.log_prob(z).sum(-1)
        log_w = log_px + log_pz - log_qz
        if not self.use_observed_lib_size:
            library = inference_outputs[MODULE_KEYS.LIBRARY_KEY]
            log_w = (
                log_w
                + generative_outputs[MODULE_KEYS.PL_KEY].log_prob(library).sum(-1)
                - inference_outputs[MODULE_KEYS.QL_KEY].log_prob(library).sum(-1)
            )
        return log_w if log_w.ndim == 2 else log_w.unsqueeze(0)


def _offset_likelihood(px, offset: torch.Tensor):
    """The count likelihood ``px`` with its proportions shifted by ``offset`` (log scale)."""
    from scvi.distributions import NegativeBinomial, Poisson, ZeroInflatedNegativeBinomial

    scale, factor = apply_log_offset(px.scale, offset)
    if isinstance(px, ZeroInflatedNegativeBinomial):
        return ZeroInflatedNegativeBinomial(
            mu=px.mu * factor, theta=px.theta, zi_logits=px.zi_logits, scale=scale
        )
    if isinstance(px, NegativeBinomial):
        return NegativeBinomial(mu=px.mu * factor, theta=px.theta, scale=scale)
    if isinstance(px, Poisson):
        return Poisson(rate=px.rate * factor, scale=scale)
    raise TypeError(f"Direct effects are not defined for a {type(px).__name__} likelihood.")


def parse_interventions(
    categories: list[str] | np.ndarray,
    control_categories: list[str],
    delimiter: str | None = "+",
) -> tuple[list[str], np.ndarray]:
    """Map perturbation categories to atomic perturbations (multi-hot).

    Parameters
    ----------
    categories
        Category labels in the order of their integer codes.
    control_categories
        Labels of control cells (zero rows).
    delimiter
        Separator of combinations such as ``"A+B"``; ``None`` treats every label as atomic.

    Returns
    -------
    names : list[str]
        Atomic perturbation names, sorted.
    matrix : numpy.ndarray
        ``(n_categories, P)`` multi-hot matrix (float) with columns in the order of ``names``.

    Examples
    --------
    >>> names, m = parse_interventions(["A", "A+B", "ctrl"], ["ctrl"])
    >>> names
    ['A', 'B']
    >>> m.tolist()
    [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    """
    encoding = PerturbationEncoding.from_labels(categories, control_categories, delimiter)
    return list(encoding.names), encoding.encode(categories)
