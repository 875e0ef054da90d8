r"""A linear-Gaussian structural causal model among latent units, with sparse interventions.

:math:`z = z W + e`, with :math:`W` a weighted adjacency among the :math:`K` units (row = parent,
column = child) that is learned together with a sparse gate per edge, and exogenous noise
:math:`e \sim \mathcal{N}(\sum_p a_p\, m_p \odot \mu_p, I)`: a perturbation shifts the noise of
the units it targets directly (a soft intervention, the masks and shifts of
:class:`~scvi_causal.core.SparseShiftPrior`), and the effect propagates to their descendants,
:math:`z = e (I - W)^{-1}`.

Written in plain torch, not as a Pyro program. The prior is a Gaussian with a closed-form
density and a closed-form KL divergence from the encoder's diagonal posterior, so it plugs into
the existing scvi-tools module and training plans through the :class:`LatentPrior` interface
(``pz.log_prob``, ``kl_divergence(qz, pz)``); ``do`` and abduction are one linear solve each.
``pyro.poutine.do`` would give the same interventions on a program, but it needs the whole
generative model written as a Pyro program on scvi-tools' Pyro base classes, giving up the
``VAE`` / ``TrainingPlan`` machinery (likelihoods, covariates, minibatching, alignment steps)
that every other prior of the package shares.

Acyclicity is the NOTEARS function :math:`h(A) = \operatorname{tr} e^{A} - K` of the expected
squared weights :cite:p:`zheng2018dags`, zero exactly when the graph is a DAG; it is defined for
any weights (DAGMA's log-determinant is not, outside its domain), which matters when it is
charged during stochastic training rather than on a central path.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.distributions import Distribution, Normal, constraints
from torch.distributions.kl import register_kl

from scvi_causal._constants import DEFAULT_MASK_INIT_PROB, GRAPH_FIT_MASK_DRAWS

from ._masks import InterventionMask
from ._priors import SparseShiftPrior, make_prior
from ._sparsity import bernoulli_kl


def notears_acyclicity(weights: torch.Tensor) -> torch.Tensor:
    r"""NOTEARS acyclicity :math:`\operatorname{tr} \exp(W \circ W) - K`: 0 iff ``weights`` (a
    ``(K, K)`` weighted adjacency) has no directed cycle, positive otherwise.

    Examples
    --------
    >>> import torch
    >>> chain = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    >>> float(notears_acyclicity(chain)), float(notears_acyclicity(chain + chain.T)) > 0
    (0.0, True)
    """
    return _trace_exp_excess(weights * weights)


def _trace_exp_excess(nonnegative: torch.Tensor) -> torch.Tensor:
    """``tr exp(A) - K`` of a non-negative ``(K, K)`` matrix: 0 iff ``A`` has no cycle."""
    return (
        torch.linalg.matrix_exp(nonnegative).diagonal(dim1=-2, dim2=-1).sum(-1)
        - (nonnegative.shape[-1])
    )


def check_latent_graph(latent_graph: str, intervention_prior: str, what: str) -> str:
    """Validate a model's ``latent_graph`` option (``"none"`` or ``"dag"``); a graph needs
    interventions (``what``: how the model calls them) to shift the SCM's noise.

    Examples
    --------
    >>> check_latent_graph("dag", "spike_slab", "perturbations")
    'dag'
    """
    if latent_graph not in ("none", "dag"):
        raise ValueError(f"`latent_graph` must be 'none' or 'dag', got {latent_graph!r}.")
    if latent_graph == "dag" and intervention_prior == "none":
        raise ValueError(
            f"latent_graph='dag' needs the {what} (they shift the SCM's noise); "
            "intervention_prior='none' ignores them."
        )
    return latent_graph


def make_latent_prior(
    latent_graph: str,
    intervention_prior: str,
    n_interventions: int,
    n_latent: int,
    prior_kwargs: dict | None = None,
    graph_kwargs: dict | None = None,
):
    """The prior of a model's latent units: :class:`LinearSCMPrior` with its graph off (the
    units are independent until the training plan's graph-alignment step switches it on) for
    ``latent_graph="dag"``, else :func:`~scvi_causal.core.make_prior`'s.

    Examples
    --------
    >>> prior = make_latent_prior("dag", "spike_slab", 2, 3)
    >>> type(prior).__name__, bool(prior.graph_active)
    ('LinearSCMPrior', False)
    """
    if latent_graph == "dag":
        prior = LinearSCMPrior(
            n_interventions,
            n_latent,
            intervention_prior,
            **(prior_kwargs or {}),
            **(graph_kwargs or {}),
        )
        prior.activate_graph(False)
        return prior
    return make_prior(intervention_prior, n_interventions, n_latent, **(prior_kwargs or {}))


class LinearSCMNormal(Distribution):
    r"""Law of :math:`z = e (I - W)^{-1}` with rows :math:`e \sim \mathcal{N}(\text{loc}, I)`.

    A drop-in for the :class:`torch.distributions.Normal` that the other priors return: its
    :meth:`log_prob` has the shape of ``loc`` (``(..., n, K)``) and holds per-unit terms whose
    sum over the last axis is the joint log-density :math:`\log p(z)` (the log-determinant of
    :math:`I - W`, 0 for a DAG, is spread evenly over the units); likewise
    ``kl_divergence(qz, pz)`` for a diagonal Normal ``qz``. Sum over the last axis, as for a
    factorised prior.

    Parameters
    ----------
    loc
        ``(..., n, K)`` means of the exogenous noise.
    weights
        ``(K, K)`` weighted adjacency (row = parent, column = child).
    keep
        Optional ``(..., n, K)`` factor in [0, 1] on the edges *into* each unit of each sample:
        0 cuts them (a hard intervention, :math:`do`, on that unit: it no longer listens to
        its parents), 1 (or None) keeps the observational mechanism.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([[0.0, 2.0], [0.0, 0.0]])  # unit 0 -> unit 1
    >>> p = LinearSCMNormal(torch.tensor([[1.0, 0.0]]), w)
    >>> p.mean  # the shift of unit 0 reaches unit 1 through the edge
    tensor([[1., 2.]])
    """

    arg_constraints = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor | None = None):
        self.loc = loc
        self.weights = weights
        self.keep = keep
        k = weights.shape[-1]
        eye = torch.eye(k, dtype=weights.dtype, device=weights.device)
        if keep is None:
            self.mixing = eye - weights  # I - W
        else:  # one matrix per sample, (..., n, K, K): the edges into unit k scaled by keep_k
            self.mixing = eye - weights * keep.unsqueeze(-2)
        super().__init__(batch_shape=loc.shape, validate_args=False)

    def _logdet(self) -> torch.Tensor:
        r""":math:`\log|\det(I - W)|`, 0-d, or ``(..., n, 1)`` with per-sample cuts."""
        logdet = torch.linalg.slogdet(self.mixing)[1]
        return logdet if self.keep is None else logdet.unsqueeze(-1)

    @property
    def mean(self) -> torch.Tensor:
        """:math:`\\text{loc} (I - W)^{-1}`."""
        return self.propagate(self.loc)

    def propagate(self, noise: torch.Tensor) -> torch.Tensor:
        """Latents :math:`z = e (I - W)^{-1}` of exogenous noise ``e`` (``(..., K)``)."""
        if self.keep is None:
            return torch.linalg.solve(self.mixing, noise, left=False)
        mixing = self.mixing.expand(*noise.shape[:-1], *self.mixing.shape[-2:])
        return torch.linalg.solve(mixing, noise.unsqueeze(-2), left=False).squeeze(-2)

    def abduct(self, z: torch.Tensor) -> torch.Tensor:
        """Exogenous noise :math:`e = z (I - W)` of latents ``z`` (abduction)."""
        if self.keep is None:
            return z @ self.mixing
        return z - (z @ self.weights) * self.keep

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Reparameterised samples: noise drawn around ``loc``, propagated through the SCM."""
        shape = self._extended_shape(torch.Size(sample_shape))
        noise = self.loc.expand(shape) + torch.randn(
            shape, dtype=self.loc.dtype, device=self.loc.device
        )
        return self.propagate(noise)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Per-unit terms of :math:`\\log p(z)` (sum over the last axis for the density)."""
        noise = self.abduct(value)
        per_unit = -0.5 * (noise - self.loc) ** 2 - 0.5 * math.log(2 * math.pi)
        return per_unit + self._logdet() / value.shape[-1]


@register_kl(Normal, LinearSCMNormal)
def _kl_normal_scm(q: Normal, p: LinearSCMNormal) -> torch.Tensor:
    r"""Per-unit terms of :math:`\mathrm{KL}(q \| p)`, :math:`q` a diagonal Normal.

    In noise space :math:`e = z B` (:math:`B = I - W`), :math:`q` becomes
    :math:`\mathcal{N}(m B, B^\top \operatorname{diag}(s^2) B)` and :math:`p` is
    :math:`\mathcal{N}(\text{loc}, I)`; the KL is invariant under the map.
    """
    mixing = p.mixing
    k = mixing.shape[-1]
    var = q.scale**2
    if p.keep is None:
        trace = var @ (mixing**2)  # (..., K): sum_i s_i^2 B_ik^2
    else:
        trace = (var.unsqueeze(-2) @ (mixing**2)).squeeze(-2)
    mean_term = (p.abduct(q.loc) - p.loc) ** 2
    logdet = p._logdet()
    return 0.5 * (trace + mean_term - 1.0 - torch.log(var)) - logdet / k


class LinearSCMPrior(SparseShiftPrior):
    r"""Latent SCM prior: a learned sparse DAG among units, perturbations shift the noise.

    :math:`z = z W + e`, :math:`W = G \odot V` with a spike-and-slab gate :math:`G_{ij}` per
    edge (:class:`InterventionMask` over units x units, relaxed while training, at its posterior
    mode in evaluation) and a weight :math:`V_{ij}`, and :math:`e \sim \mathcal{N}(\sum_p a_p\,
    m_p \odot \mu_p, I)`: the masks and shifts of :class:`SparseShiftPrior` (inherited, with its
    per-sample sparsity cost) act on the exogenous noise of the *direct* targets, and the effect
    propagates to their descendants. Samples without intervention follow the observational SCM.

    Sparsity and acyclicity of the graph:

    * every sample pays ``edge_penalty`` nats per expected edge, so that an edge is kept only
      where it improves the fit of the samples by more than that (an edge whose weight goes to
      zero would otherwise keep its gate at the initial probability); the edges also have a
      Bernoulli prior (``edge_prior_prob``) and a Gaussian slab on the weights, counted once
      per data set (:meth:`kl_global`);
    * every sample pays ``acyclicity_weight`` times the NOTEARS function of the expected squared
      weights (:func:`notears_acyclicity`, 0 iff the graph is a DAG), so that acyclicity does
      not weaken with the number of samples. :meth:`dag` returns a DAG in any case, removing
      the weakest edges of any remaining cycle.

    The latent space of an SCM is not rotated by the alignment steps
    (:meth:`can_reset_in_frame` is False): a rotation would mix the units of the graph.

    Parameters
    ----------
    n_interventions, n_latent
        :math:`P` and :math:`K`.
    intervention_prior
        Mask kind of the interventions (``"spike_slab"``, ``"l1"``, ``"dense"``).
    edge_prior_prob
        Prior inclusion probability of an edge (default ``1 / K``: about one parent per unit).
    edge_slab_scale
        Standard deviation of the Gaussian slab on edge weights.
    edge_init_prob
        Initial inclusion probability of every edge.
    edge_penalty
        Per-sample cost (nats) of each expected edge. An edge from a unit-variance parent with
        weight :math:`w` explains about :math:`\tfrac12 \log(1 + w^2)` nats per sample, so
        the default 0.3 keeps edges of :math:`|w| \gtrsim 0.9`. Measured on a 4-unit chain
        (weights 1.2, one soft intervention per unit, 250 samples per regime, 1000 Adam steps;
        ``tests/test_core_scm.py``): 0.3 recovers the chain exactly for 4 of 4 seeds, while
        0.05-0.25 leave transitive or reversed edges (stochastic gates under NOTEARS fall into
        local minima). Not yet tuned inside the VAE.
    acyclicity_weight
        Per-sample weight of the acyclicity function.
    intervention_type
        ``"do"`` (default): a hard intervention, the direct targets' incoming edges are cut
        (:math:`z_k = \mu_{pk} + e_k`), as a knock-out decouples a gene from its regulators.
        ``"shift"``: a perturbation shifts the noise of its direct targets, which keep
        listening to their parents (a soft intervention). Inside a VAE only ``"do"`` makes the
        graph identifiable: noise shifts are single-unit shifts of the exogenous noise, which
        is itself an independent latent space (the decoder can absorb
        :math:`(I - W)^{-1}`), so an empty graph explains them with the same targets and no
        edge.
    **shift_kwargs
        Passed to :class:`SparseShiftPrior` (``sparsity_penalty``, ``prior_prob``, ...).

    Examples
    --------
    >>> import torch
    >>> prior = LinearSCMPrior(n_interventions=2, n_latent=3)
    >>> a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> prior(a).log_prob(torch.zeros(2, 3)).shape
    torch.Size([2, 3])
    >>> prior.latent_graph().shape
    torch.Size([3, 3])
    """

    def __init__(
        self,
        n_interventions: int,
        n_latent: int,
        intervention_prior: str = "spike_slab",
        edge_prior_prob: float | None = None,
        edge_slab_scale: float | None = 2.0,
        edge_init_prob: float = DEFAULT_MASK_INIT_PROB,
        edge_penalty: float = 0.3,
        acyclicity_weight: float = 10.0,
        intervention_type: str = "do",
        **shift_kwargs,
    ):
        if intervention_type not in ("shift", "do"):
            raise ValueError(
                f"`intervention_type` must be 'shift' or 'do', got {intervention_type!r}."
            )
        if n_latent < 2:
            raise ValueError(f"A latent graph needs n_latent >= 2, got {n_latent}.")
        super().__init__(n_interventions, n_latent, intervention_prior, **shift_kwargs)
        if acyclicity_weight < 0:
            raise ValueError(f"`acyclicity_weight` must be >= 0, got {acyclicity_weight}.")
        if edge_penalty < 0:
            raise ValueError(f"`edge_penalty` must be >= 0, got {edge_penalty}.")
        self.edge_prior_prob = (
            float(edge_prior_prob) if edge_prior_prob is not None else 1.0 / n_latent
        )
        if not 0.0 < self.edge_prior_prob < 1.0:
            raise ValueError(f"`edge_prior_prob` must be in (0, 1), got {edge_prior_prob}.")
        self.edge_slab_scale = edge_slab_scale
        self.edge_penalty = float(edge_penalty)
        self.acyclicity_weight = float(acyclicity_weight)
        self.intervention_type = intervention_type
        self.edges = InterventionMask(
            n_latent, n_latent, kind="spike_slab", init_prob=edge_init_prob
        )
        self.edge_weights = nn.Parameter(torch.zeros(n_latent, n_latent))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n_latent))
        self.register_buffer("graph_active", torch.tensor(True))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # saved before the graph could be switched off: it was always on
        state_dict.setdefault(prefix + "graph_active", torch.tensor(True))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def activate_graph(self, active: bool = True) -> None:
        """Switch the graph on, or off: the prior is then :class:`SparseShiftPrior`'s, with
        independent units (the first phase of training, before :func:`fit_latent_graph`)."""
        self.graph_active.fill_(bool(active))

    # ------------------------------------------------------------------ interface
    def weights(self) -> torch.Tensor:
        """One draw of the gated weights :math:`G \\odot V`, ``(K, K)``, zero diagonal (the
        gates' posterior mode in evaluation mode)."""
        return self.edges() * self.edge_weights * self.off_diagonal * self.graph_active

    def forward(self, intervention: torch.Tensor | None = None, n: int | None = None):
        """The SCM's law of the latents of samples with ``intervention`` (``(n, P)``)."""
        if not bool(self.graph_active):
            return super().forward(intervention, n=n)
        hard = self.intervention_type == "do" and intervention is not None
        loc, untouched = self._shift_and_reach(intervention, n, reach=hard)
        return LinearSCMNormal(loc, self.weights(), keep=untouched)

    def local_penalty(self, intervention: torch.Tensor | None = None) -> torch.Tensor | None:
        """Per sample: the interventions' sparsity cost, ``edge_penalty`` per expected edge and
        ``acyclicity_weight`` times the acyclicity of the expected graph (None without
        ``intervention``, which gives the number of samples)."""
        if intervention is None:
            return None
        if not bool(self.graph_active):
            return super().local_penalty(intervention)
        graph = self.edge_penalty * self.latent_graph().sum()
        graph = (graph + self.acyclicity_weight * self.acyclicity()).expand(intervention.shape[0])
        cost = super().local_penalty(intervention)
        return graph if cost is None else cost + graph

    def acyclicity(self) -> torch.Tensor:
        """NOTEARS function of the expected squared weights (0 iff the graph is a DAG)."""
        return _trace_exp_excess(self.latent_graph() * self.edge_weights**2)  # E[(G V)^2]

    def kl_global(self) -> torch.Tensor:
        """The interventions' term, the edges' Bernoulli KL and the slab on edge weights."""
        probs = self.latent_graph()
        out = super().kl_global()
        if not bool(self.graph_active):
            return out
        out = (
            out + (bernoulli_kl(self.edges.logits, self.edge_prior_prob) * self.off_diagonal).sum()
        )
        if self.edge_slab_scale is not None:
            s = self.edge_slab_scale
            log_slab = (
                -0.5 * (self.edge_weights / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
            )
            out = out - (probs * log_slab).sum()
        return out

    def set_temperature(self, temperature: float) -> None:
        """Temperature of the intervention masks and of the edge gates."""
        super().set_temperature(temperature)
        self.edges.set_temperature(temperature)

    def can_reset_in_frame(self) -> bool:
        """False once the graph is on: rotating the latent space would mix its units."""
        return not bool(self.graph_active) and super().can_reset_in_frame()

    def expected_effects(self) -> torch.Tensor:
        """``(P, K)`` effect of each intervention on the latents' mean: its expected noise
        shift propagated through the graph (gates at their posterior mode)."""
        with torch.no_grad():
            weights = (self.latent_graph() > 0.5) * self.edge_weights
            keep = 1.0 - self.inclusion_probs() if self.intervention_type == "do" else None
        return LinearSCMNormal(super().expected_effects(), weights, keep=keep).mean

    def extra_metrics(self) -> dict[str, torch.Tensor]:
        """The interventions' diagnostics, the acyclicity and the edge density."""
        out = dict(super().extra_metrics())
        with torch.no_grad():
            out["dag_acyclicity"] = self.acyclicity()
            out["edge_density"] = (self.latent_graph() > 0.5).float().sum() / (
                self.n_latent * (self.n_latent - 1)
            )
        return out

    # ------------------------------------------------------------------ the graph
    def latent_graph(self) -> torch.Tensor:
        """Edge inclusion probabilities, ``(K, K)`` (row = parent, column = child); zero while
        the graph is off."""
        return self.edges.inclusion_probs() * self.off_diagonal * self.graph_active

    @torch.no_grad()
    def dag(self, threshold: float = 0.5) -> torch.Tensor:
        """Edges (bool ``(K, K)``) with probability >= ``threshold``, made acyclic by removing
        the edge of smallest expected weight from each remaining cycle."""
        on = self.latent_graph() >= threshold
        strength = (self.latent_graph() * self.edge_weights.abs()).masked_fill(~on, float("inf"))
        while bool(on.any()) and float(notears_acyclicity(on.to(strength.dtype))) > 1e-6:
            cyclic = _on_cycle(on)
            candidates = strength.masked_fill(~cyclic, float("inf"))
            flat = int(torch.argmin(candidates))
            on.view(-1)[flat] = False
            strength.view(-1)[flat] = float("inf")
        return on

    # ------------------------------------------------------------------ interventions
    @torch.no_grad()
    def do(
        self, values: dict[int, float], n: int, intervention: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` samples under the hard intervention :math:`do(z_k = v_k)` for ``values``
        (unit -> value), on top of the soft ``intervention`` (``(n, P)``) if given: the edges
        into the fixed units are cut, the fixed values propagate to their descendants."""
        weights = self.weights().clone()
        units = torch.as_tensor(list(values), dtype=torch.long)
        weights[:, units] = 0.0
        loc = super().forward(intervention, n=n).loc.clone()
        noise = loc + torch.randn_like(loc)
        noise[:, units] = torch.as_tensor(list(values.values()), dtype=loc.dtype)
        return LinearSCMNormal(loc, weights).propagate(noise)

    @torch.no_grad()
    def counterfactual(
        self, z: torch.Tensor, intervention: torch.Tensor, new_intervention: torch.Tensor
    ) -> torch.Tensor:
        """Latents of ``z`` (observed under ``intervention``) had they received
        ``new_intervention``: abduction of their noise, action on its mean, propagation."""
        observed = self(intervention, n=z.shape[-2])
        noise = observed.abduct(z) - observed.loc
        new = self(new_intervention, n=z.shape[-2])
        return new.propagate(noise + new.loc)


def _on_cycle(on: torch.Tensor) -> torch.Tensor:
    """Edges ``i -> j`` of the bool graph ``on`` that lie on a directed cycle (``j`` reaches
    ``i``)."""
    k = on.shape[0]
    reach = on.clone()
    for _ in range(k):
        reach = reach | (reach.float() @ on.float() > 0)
    return on & reach.T


def fit_latent_graph(
    prior: LinearSCMPrior,
    latents: torch.Tensor,
    intervention: torch.Tensor,
    n_steps: int = 3000,
    free_fraction: float = 2 / 3,
    lr: float = 0.03,
    n_restarts: int = 4,
    seed: int = 0,
    method: str = "likelihood",
    min_edge_weight: float = 0.3,
    n_bootstrap: int = 20,
    n_mask_draws: int = GRAPH_FIT_MASK_DRAWS,
) -> torch.Tensor:
    r"""Fit the latent graph and the linear frame in which the latents follow it.

    The graph-alignment step of ``latent_graph="dag"``, on ``latents`` (e.g. the posterior
    means of a VAE trained with independent units so far). A VAE with independent units finds
    the frame of the *exogenous noise*, where hard interventions are not sparse; a linear change
    of frame :math:`z' = z M` moves it to the frame of the causal variables. Two methods:

    * ``"likelihood"`` (default): maximum likelihood of the frame (with its log-Jacobian
      :math:`\log|\det M|`) and of the prior's graph, masks and shifts by full-batch Adam.
      The edges are learned without their per-sample cost during the first
      ``free_fraction`` of the steps (from an empty graph and the noise frame, an edge only
      pays off once the frame has moved), then with it. The gates' temperature is annealed
      from 1 to the prior's final temperature. The problem is not convex: the fit is restarted
      ``n_restarts`` times (the first from zero edge weights, the others from random ones)
      and the restart with the lowest penalised objective (gates at their mode) is kept.
    * ``"moments"``: the frame and the edge weights are the closed-form estimate of
      :func:`latent_graph_from_moments` (mean shift of each perturbation's group, regressions
      within it); an edge's inclusion probability is the fraction of ``n_bootstrap`` bootstrap
      resamples of the cells in which its weight reaches ``min_edge_weight`` (in units of the
      noise's standard deviation), so the graph at probability 0.5 is the majority graph of the
      resamples. Each perturbation with a unit starts as a hard intervention on it (mask 0.95
      there, 0.05 elsewhere, shift at its cells' mean), and the masks and shifts are then
      fitted by ``n_steps`` Adam steps with the frame and the graph fixed. Falls back to
      ``"likelihood"`` (with a warning) when the moments do not determine a frame.

    Which to use: on latents that are a linear mixture of the causal variables the moments are
    exact (the tests check every true edge above every false one; on the 8-unit DAG screens of
    ``benchmarks/causal_graph/WARP.md``, edge AUPRC 0.944 over 3 seeds, where the likelihood
    fit found 3 of 7 edges as the best of 4 starts on the noise frame of one of them).
    On a VAE's posterior means neither recovers the graph reliably: the encoder trained with
    independent units is not linear in the causal variables, and the moments then fail as
    badly as the likelihood (measured in the model guide, "Latent causal graph"). The default
    stays the likelihood, which was benchmarked first.

    Both methods score the cells of one intervention row (a perturbation, a combination, the
    controls) together, from their count, mean and covariance: the objective is the same as
    scoring every cell, and its cost per step grows with the number of distinct rows times
    ``n_mask_draws``, not with the number of cells (on the sVAE protocol, 20,000 cells and 80
    perturbations, training with ``latent_graph="dag"`` went from 9.7 to 1.9 times the
    default's time; ``benchmarks/simulated/latent_graph/``).

    ``prior`` is updated in place (edges, weights, masks, shifts); it is left in the mode it
    was in.

    Parameters
    ----------
    prior
        The prior to fit (its masks and shifts are the starting point).
    latents
        ``(n, K)`` latents, in the current frame.
    intervention
        ``(n, P)`` interventions of the samples.
    n_steps, free_fraction, lr
        Full-batch Adam steps (per restart), the fraction of them without edge cost
        (``"likelihood"``), learning rate.
    n_restarts, seed
        Number of starts of ``"likelihood"``; the seed of its random weights and relaxed
        gates, and of the bootstrap.
    method
        ``"moments"`` or ``"likelihood"`` (see above).
    min_edge_weight, n_bootstrap
        ``"moments"``: the smallest absolute weight counted as an edge in a resample, and the
        number of resamples.
    n_mask_draws
        Relaxed mask draws per intervention row and step, each shared by a share of the row's
        cells (more draws: lower-variance gradients for the masks, at a higher cost per step).

    Returns
    -------
    torch.Tensor
        ``(K, K)`` frame change :math:`M` (row convention, new = old @ M).

    Examples
    --------
    >>> import torch
    >>> prior = LinearSCMPrior(n_interventions=2, n_latent=2, intervention_type="do")
    >>> a = torch.eye(2).repeat_interleave(50, 0)
    >>> m = fit_latent_graph(prior, torch.randn(100, 2) + 3 * a, a, n_steps=20, n_restarts=2)
    >>> m.shape
    torch.Size([2, 2])
    """
    if not 0.0 <= free_fraction <= 1.0:
        raise ValueError(f"`free_fraction` must be in [0, 1], got {free_fraction}.")
    if n_restarts < 1:
        raise ValueError(f"`n_restarts` must be >= 1, got {n_restarts}.")
    if n_mask_draws < 1:
        raise ValueError(f"`n_mask_draws` must be >= 1, got {n_mask_draws}.")
    if method not in ("moments", "likelihood"):
        raise ValueError(f"`method` must be 'moments' or 'likelihood', got {method!r}.")
    k = prior.n_latent
    if latents.ndim != 2 or latents.shape[1] != k or intervention.shape[0] != latents.shape[0]:
        raise ValueError(
            f"Expected latents (n, {k}) and interventions (n, P), got {tuple(latents.shape)} "
            f"and {tuple(intervention.shape)}."
        )
    was_training = prior.training
    latents = latents.detach().to(prior.shifts)
    intervention = intervention.detach().to(prior.shifts)
    if method == "moments" and prior.n_interventions > 0:
        frame = _moment_fit(
            prior,
            latents,
            intervention,
            n_steps,
            lr,
            min_edge_weight,
            n_bootstrap,
            seed,
            n_mask_draws,
        )
        if frame is not None:
            prior.train(was_training)
            return frame
        warnings.warn(
            "The moments of the perturbation groups do not determine a frame (too few "
            "controls, or mean shifts that do not span the latent space); fitting the graph "
            "by likelihood instead.",
            UserWarning,
            stacklevel=2,
        )
    start = {name: value.clone() for name, value in prior.state_dict().items()}
    generator_state = torch.get_rng_state()
    scored = _InterventionGroups(latents, intervention, n_draws=1)
    drawn = _InterventionGroups(latents, intervention, n_draws=n_mask_draws)
    best = None
    try:
        for restart in range(n_restarts):
            prior.load_state_dict(start)
            torch.manual_seed(seed + restart)
            if restart > 0:
                with torch.no_grad():
                    prior.edge_weights.normal_(0.0, 0.3)
            frame = _fit_frame_once(prior, drawn, n_steps, free_fraction, lr)
            prior.eval()
            with torch.no_grad():
                objective = float(
                    _grouped_objective(prior, frame, scored) - torch.linalg.slogdet(frame)[1]
                )
            if best is None or objective < best[0]:
                best = (objective, frame, {n: v.clone() for n, v in prior.state_dict().items()})
    finally:
        torch.set_rng_state(generator_state)
    prior.load_state_dict(best[2])
    prior.train(was_training)
    return best[1]


@torch.no_grad()
def latent_graph_from_moments(
    latents: torch.Tensor,
    intervention: torch.Tensor,
    targets: torch.Tensor | None = None,
    min_cells: int | None = None,
    min_shift: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""Frame and graph of a linear SCM from the moments of hard-intervention groups.

    The closed-form estimate of the graph-alignment step (:func:`fit_latent_graph`'s
    ``method="moments"``). The latents :math:`x` are taken to be a linear mixture of causal
    variables :math:`z = zW + e` with one hard intervention (or more) per targeted unit, as in
    the linear causal disentanglement of :cite:t:`squires2023linear`. Two facts identify the
    frame and the graph:

    1. a hard intervention on unit :math:`i` moves the mean of :math:`x` along the image of the
       *total* effects of :math:`i`, so the matrix :math:`F` of mean shifts (one row per unit,
       from the single-perturbation groups of ``targets``) gives the frame of the exogenous
       noise, :math:`y = (x - \bar x_0) F^{-1}`, scaled to unit variance in the controls
       (:math:`y = e` there);
    2. in that frame, within the cells of an intervention on :math:`i`, every :math:`y_k`
       (:math:`k \ne i`) is still the noise of unit :math:`k`, while :math:`y_i =
       \mathrm{const} + \varepsilon - \sum_k T_{ki} y_k` with :math:`T = (I - W)^{-1}` the
       total effects (the intervened value no longer listens to its parents). The regression
       of :math:`y_i` on the other units within the group therefore gives the total effects
       into :math:`i`.

    The total effects are made acyclic along the causal order that they imply (repeatedly the
    unit with the least remaining ancestral mass), which gives the frame :math:`M = F^{-1}
    S^{-1} T^\top` (:math:`S` the noise scales) of the causal variables :math:`z = xM`; the
    weights :math:`W` are then the regressions of each unit on the units before it in the
    order, on all cells whose mechanism for that unit is intact (controls and the groups that
    target other units). Groups with several perturbations are not used; units without a
    single-perturbation group keep their own axis and get no parents. Under soft interventions
    (noise shifts) the regressions are zero and the graph comes out empty, as it should: noise
    shifts do not identify it.

    Parameters
    ----------
    latents
        ``(n, K)`` latents in the current frame (e.g. posterior means).
    intervention
        ``(n, P)`` interventions of the samples (all zero for controls).
    targets
        ``(P,)`` long: the unit each perturbation targets, ``-1`` for none or unknown.
        Default: the unit of its largest mean shift in control standard deviations, for the
        perturbations that move some unit by at least ``min_shift`` of them (in the frame of
        the noise, where a VAE with independent units puts its latents, a hard intervention
        moves the mean of its target only).
    min_cells
        Smallest group used (default ``K + 5``), controls included.
    min_shift
        See ``targets``.

    Returns
    -------
    tuple of torch.Tensor or None
        ``(M, W)``: the frame change (row convention, ``z = x @ M``) and the weighted
        adjacency (row = parent, column = child, a DAG); None when there are too few controls
        or the mean shifts do not span a frame.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> n = 3000
    >>> a = torch.zeros(3 * n, 2)
    >>> a[n : 2 * n, 0] = 1.0
    >>> a[2 * n :, 1] = 1.0
    >>> e = torch.randn(3 * n, 2, generator=g)
    >>> z0 = torch.where(a[:, 0] > 0, 3.0 + e[:, 0], e[:, 0])
    >>> z1 = torch.where(a[:, 1] > 0, 3.0 + e[:, 1], 1.2 * z0 + e[:, 1])  # edge 0 -> 1
    >>> x = torch.stack([z0, z1], 1) @ torch.tensor([[1.0, 0.5], [-0.3, 1.0]])
    >>> frame, weights = latent_graph_from_moments(x, a, targets=torch.tensor([0, 1]))
    >>> round(float(weights[0, 1]), 1), round(float(weights[1, 0]), 1)
    (1.2, 0.0)
    """
    x = latents.detach().to(torch.float64)
    a = intervention.detach().to(x.device, torch.float64)
    n, k = x.shape
    if targets is not None:
        targets = torch.as_tensor(targets, dtype=torch.long, device=x.device)
    if a.shape[0] != n or (targets is not None and targets.shape != (a.shape[1],)):
        raise ValueError(
            f"Expected latents (n, K), interventions (n, P) and targets (P,), got "
            f"{tuple(x.shape)}, {tuple(a.shape)} and "
            f"{None if targets is None else tuple(targets.shape)}."
        )
    min_cells = k + 5 if min_cells is None else int(min_cells)
    n_active = (a != 0).sum(1)
    controls = n_active == 0
    if int(controls.sum()) < min_cells:
        return None
    center = x[controls].mean(0)
    if targets is None:
        targets = _moment_targets(x, a, min_shift)
    groups: dict[int, list[torch.Tensor]] = {}
    for p in range(a.shape[1]):
        rows = (n_active == 1) & (a[:, p] != 0)
        if int(targets[p]) >= 0 and int(rows.sum()) >= min_cells:
            groups.setdefault(int(targets[p]), []).append(rows)
    if not groups:
        return None
    shifts = torch.eye(k, dtype=x.dtype, device=x.device)
    for unit, members in groups.items():
        sizes = [int(rows.sum()) for rows in members]
        moves = [x[rows].mean(0) - center for rows in members]
        reference = moves[max(range(len(moves)), key=sizes.__getitem__)]
        direction = sum(
            size * torch.sign(move @ reference) * move / move.norm().clamp_min(1e-12)
            for move, size in zip(moves, sizes)
        )
        shifts[unit] = direction / direction.norm().clamp_min(1e-12)
    if float(torch.linalg.cond(shifts)) > 1e4:
        return None
    to_noise = torch.linalg.inv(shifts)
    y = (x - center) @ to_noise
    # unit j's noise scale, pooled over the groups where j is not intervened on
    variance = torch.zeros(k, dtype=x.dtype, device=x.device)
    dof = torch.zeros(k, dtype=x.dtype, device=x.device)
    pools = [(-1, controls)] + [(u, rows) for u, members in groups.items() for rows in members]
    for unit, rows in pools:
        centered = y[rows] - y[rows].mean(0)
        use = torch.arange(k, device=x.device) != unit
        variance += use * (centered**2).sum(0)
        dof += use * (int(rows.sum()) - 1)
    scale = (variance / dof).sqrt().clamp_min(1e-8)
    to_noise, y = to_noise / scale, y / scale
    coefs = torch.zeros(k, k, dtype=x.dtype, device=x.device)  # [child, parent]
    for unit, members in groups.items():
        others = [j for j in range(k) if j != unit]
        fits, sizes = [], []
        for rows in members:
            design = torch.cat([torch.ones_like(y[rows, :1]), y[rows][:, others]], 1)
            beta = torch.linalg.lstsq(design, y[rows, unit : unit + 1]).solution[1:, 0]
            fits.append(beta)
            sizes.append(float(rows.sum()))
        coefs[unit, others] = sum(s * b for s, b in zip(sizes, fits)) / sum(sizes)
    total = torch.eye(k, dtype=x.dtype, device=x.device) - coefs  # total[i, j]: j on i
    remaining, order = list(range(k)), []
    while remaining:
        mass = [float(sum(total[i, j] ** 2 for j in remaining if j != i)) for i in remaining]
        order.append(remaining.pop(min(range(len(mass)), key=mass.__getitem__)))
    position = torch.empty(k, dtype=torch.long, device=x.device)
    position[torch.as_tensor(order, device=x.device)] = torch.arange(k, device=x.device)
    total = torch.where(position[None, :] < position[:, None], total, torch.zeros_like(total))
    total.fill_diagonal_(1.0)
    frame = to_noise @ total.T
    # the mechanisms, by regression of each unit on the units before it, on every cell whose
    # mechanism for that unit is intact (controls and the groups that target another unit)
    z = (x - center) @ frame
    weights = torch.zeros(k, k, dtype=x.dtype, device=x.device)
    for step, unit in enumerate(order[1:], start=1):
        parents = order[:step]
        rows = controls.clone()
        for other, members in groups.items():
            if other != unit:
                for member in members:
                    rows |= member
        design = torch.cat([torch.ones_like(z[rows, :1]), z[rows][:, parents]], 1)
        fit = torch.linalg.lstsq(design, z[rows, unit : unit + 1]).solution[1:, 0]
        weights[parents, unit] = fit
    return frame.to(latents.dtype), weights.to(latents.dtype)


def _moment_fit(
    prior: LinearSCMPrior,
    latents: torch.Tensor,
    intervention: torch.Tensor,
    n_steps: int,
    lr: float,
    min_edge_weight: float,
    n_bootstrap: int,
    seed: int,
    n_mask_draws: int,
) -> torch.Tensor | None:
    """``method="moments"`` of :func:`fit_latent_graph` (None when the moments do not
    determine a frame)."""
    targets = _moment_targets(latents, intervention)
    estimate = latent_graph_from_moments(latents, intervention, targets)
    if estimate is None:
        return None
    frame, weights = estimate
    generator = torch.Generator().manual_seed(seed)
    counts = torch.zeros_like(weights)
    done = 0
    for _ in range(n_bootstrap):
        rows = torch.randint(len(latents), (len(latents),), generator=generator)
        rows = rows.to(latents.device)
        resampled = latent_graph_from_moments(latents[rows], intervention[rows], targets)
        if resampled is not None:
            counts += (resampled[1].abs() >= min_edge_weight).to(counts)
            done += 1
    if done:
        probs = counts / done
    else:
        probs = (weights.abs() >= min_edge_weight).to(weights)
    probs = probs.clamp(0.02, 0.98).to(prior.edge_weights)
    z = latents @ frame.to(latents)
    n_active = (intervention != 0).sum(1)
    with torch.no_grad():
        prior.edge_weights.copy_(weights)
        prior.edges.logits.copy_(torch.logit(probs))
        # each assigned perturbation starts as a hard intervention on its unit, at its mean
        for p in (targets >= 0).nonzero().view(-1).tolist():
            rows = (n_active == 1) & (intervention[:, p] != 0)
            unit = int(targets[p])
            if prior.mask.kind == "spike_slab":
                prior.mask.logits[p] = math.log(0.05 / 0.95)
                prior.mask.logits[p, unit] = math.log(0.95 / 0.05)
            prior.shifts[p] = 0.0
            prior.shifts[p, unit] = z[rows, unit].mean()
    # the graph is fixed here, so its per-sample cost is a constant of this fit
    drawn = _InterventionGroups(latents, intervention, n_draws=n_mask_draws)
    _fit_frame_once(prior, drawn, n_steps, 1.0, lr, fixed_frame=frame)
    return frame


def _moment_targets(
    latents: torch.Tensor,
    intervention: torch.Tensor,
    min_shift: float = 1.0,
    same_direction: float = 0.98,
) -> torch.Tensor:
    """A unit per perturbation for :func:`latent_graph_from_moments`, -1 for none.

    Mean shifts of the single-perturbation cells in control standard deviations; from the
    strongest perturbation down, one whose shift points where an assigned one's does (absolute
    cosine >= ``same_direction``) joins its unit (the same target), any other takes the free
    unit it moves most. Shifts below ``min_shift`` in every unit, and perturbations left when
    the units run out, get -1. In the frame of the noise a hard intervention moves its target
    only, so this is the unit it moves most."""
    n_active = (intervention != 0).sum(1)
    controls = n_active == 0
    targets = torch.full((intervention.shape[1],), -1, dtype=torch.long)
    if int(controls.sum()) < 2:
        return targets
    center = latents[controls].mean(0)
    spread = latents[controls].std(0).clamp_min(1e-8)
    moves = {}
    for p in range(intervention.shape[1]):
        rows = (n_active == 1) & (intervention[:, p] != 0)
        if int(rows.sum()) > 0:
            move = (latents[rows].mean(0) - center) / spread
            if float(move.abs().max()) >= min_shift:
                moves[p] = move
    free = torch.ones(latents.shape[1], dtype=torch.bool)
    assigned: list[tuple[torch.Tensor, int]] = []
    for p in sorted(moves, key=lambda q: -float(moves[q].norm())):
        direction = moves[p] / moves[p].norm()
        same = [unit for d, unit in assigned if float((d @ direction).abs()) >= same_direction]
        if same:
            targets[p] = same[0]
        elif bool(free.any()):
            unit = int(moves[p].abs().masked_fill(~free, -1.0).argmax())
            free[unit] = False
            targets[p] = unit
            assigned.append((direction, unit))
    return targets


def _fit_frame_once(
    prior: LinearSCMPrior,
    groups: _InterventionGroups,
    n_steps: int,
    free_fraction: float,
    lr: float,
    fixed_frame: torch.Tensor | None = None,
) -> torch.Tensor:
    """One start of :func:`fit_latent_graph` on the statistics ``groups`` of the latents:
    Adam on the frame and the prior; with ``fixed_frame``, on the interventions' masks and
    shifts only (frame and graph fixed)."""
    k = prior.n_latent
    penalty = prior.edge_penalty
    if fixed_frame is None:
        frame = nn.Parameter(torch.eye(k, dtype=groups.mean.dtype, device=groups.mean.device))
        params = [p for p in prior.parameters() if p.requires_grad] + [frame]
    else:
        frame = fixed_frame.detach().to(groups.mean)
        params = prior.intervention_parameters()
    optimizer = torch.optim.Adam(params, lr=lr)
    final_temperature = float(prior.mask.temperature)
    decay = (final_temperature ** (1.0 / max(n_steps, 1))) if final_temperature < 1 else 1.0
    n_free = int(round(free_fraction * n_steps))
    prior.train()
    try:
        with torch.enable_grad():
            for step in range(n_steps):
                prior.set_temperature(max(decay**step, final_temperature))
                prior.edge_penalty = 0.0 if step < n_free else penalty
                optimizer.zero_grad()
                loss = _grouped_objective(prior, frame, groups)
                loss = loss - torch.linalg.slogdet(frame)[1] + prior.kl_global() / groups.n
                loss.backward()
                optimizer.step()
    finally:
        prior.edge_penalty = penalty
        prior.set_temperature(final_temperature)
    return frame.detach()


class _InterventionGroups:
    """Sufficient statistics of ``latents`` (``(n, K)``) per distinct intervention row and
    mask draw: the Gaussian log-density of the samples of one row depends on them only
    through their count, mean and covariance.

    Each distinct row of ``intervention`` (``(n, P)``) is repeated ``n_draws`` times
    (``rows``; fewer when the rows have fewer samples on average), and its samples are spread
    evenly over the repeats, each of which draws its own masks during the fit.
    """

    def __init__(self, latents: torch.Tensor, intervention: torch.Tensor, n_draws: int):
        distinct, inverse = torch.unique(intervention, dim=0, return_inverse=True)
        n, k = latents.shape
        n_draws = max(1, min(n_draws, n // len(distinct)))
        counts = torch.bincount(inverse, minlength=len(distinct))
        order = torch.argsort(inverse, stable=True)
        rank = torch.empty_like(inverse)
        first = torch.cumsum(counts, 0) - counts
        rank[order] = torch.arange(n, device=inverse.device) - first[inverse[order]]
        index = inverse * n_draws + rank % n_draws
        n_rows = len(distinct) * n_draws
        self.n = n
        self.distinct = distinct
        self.distinct_weights = counts.to(latents.dtype) / n
        self.rows = distinct.repeat_interleave(n_draws, 0)
        size = torch.bincount(index, minlength=n_rows).to(latents.dtype)
        self.weights = size / n
        self.mean = latents.new_zeros(n_rows, k).index_add(0, index, latents)
        self.mean = self.mean / size.clamp(min=1).unsqueeze(-1)
        centred = latents - self.mean[index]
        outer = centred.unsqueeze(-1) * centred.unsqueeze(-2)
        self.cov = latents.new_zeros(n_rows, k, k).index_add(0, index, outer)
        self.cov = self.cov / size.clamp(min=1).view(-1, 1, 1)


def _grouped_objective(
    prior: LinearSCMPrior, frame: torch.Tensor, groups: _InterventionGroups
) -> torch.Tensor:
    r"""Mean over the samples of :math:`-\log p(z M \mid a)` plus the prior's per-sample
    cost, from the statistics of :class:`_InterventionGroups`: for the samples of one row, with
    mixing :math:`B` (:math:`e = z M B`), mean :math:`\bar z` and covariance :math:`C`,
    :math:`\tfrac12 \operatorname{tr}(B^\top M^\top C M B) + \tfrac12 \|\bar z M B -
    \text{loc}\|^2 + \tfrac K2 \log 2\pi - \log|\det B|` per sample. The same objective as
    scoring every sample (in expectation over the masks), at a cost that grows with the number
    of distinct intervention rows, not of samples."""
    law = prior(groups.rows)
    k = frame.shape[0]
    mean = groups.mean @ frame
    cov = frame.T @ groups.cov @ frame
    if isinstance(law, LinearSCMNormal):
        mixing = law.mixing.expand(len(mean), k, k)
        logdet = torch.linalg.slogdet(mixing)[1]
    else:  # the graph is off: independent units with unit variance
        mixing = torch.eye(k, dtype=mean.dtype, device=mean.device).expand(len(mean), k, k)
        logdet = mean.new_zeros(len(mean))
    spread = ((cov @ mixing) * mixing).sum((-2, -1))
    offset = ((mean.unsqueeze(-2) @ mixing).squeeze(-2) - law.loc).pow(2).sum(-1)
    per_row = 0.5 * (spread + offset) + 0.5 * k * math.log(2 * math.pi) - logdet
    out = (per_row * groups.weights).sum()
    penalty = prior.local_penalty(groups.distinct)
    return out if penalty is None else out + (penalty * groups.distinct_weights).sum()
