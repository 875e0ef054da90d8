"""Latent priors with interventions (torch only, no AnnData, no scvi).

Every prior is an :class:`torch.nn.Module` with the same interface, so a single-cell VAE and an
image VAE use them unchanged:

* ``prior(intervention)`` returns a :class:`torch.distributions.Normal` over ``(n, K)``;
* ``prior.log_prob(z, intervention)`` and ``prior.kl(qz, intervention)`` are per-sample
  (summed over latent units);
* ``prior.kl_global()`` is the 0-d term on global (per-intervention) variables, counted once
  per data set (a model scales it by ``1 / n_obs`` in a minibatch loss).

``intervention`` is a float ``(n, P)`` multi-hot matrix: row ``i`` has a 1 for each
intervention applied to sample ``i`` (all zeros for control / observational samples; several
ones for a combination).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from scvi_causal._constants import (
    DEFAULT_MASK_INIT_PROB,
    DEFAULT_SLAB_SCALE,
    DEFAULT_SPARSITY_PENALTY,
    DEFAULT_SPARSITY_SCALE,
    DEFAULT_TEMPERATURE_START,
    default_prior_prob,
)

from ._masks import InterventionMask
from ._sparsity import bernoulli_kl, l1_penalty_per_sample

InterventionPrior = Literal["spike_slab", "l1", "dense", "none"]
#: The names of :data:`InterventionPrior`.
INTERVENTION_PRIORS = ("spike_slab", "l1", "dense", "none")


def check_intervention_prior(name: str) -> str:
    """Return ``name`` if it is a known intervention prior, else raise a clear error.

    Examples
    --------
    >>> check_intervention_prior("l1")
    'l1'
    """
    if name not in INTERVENTION_PRIORS:
        raise ValueError(
            f"Unknown intervention_prior {name!r}; use 'spike_slab', 'l1', 'dense' or 'none'."
        )
    return name


class LatentPrior(nn.Module, ABC):
    """Interface of every latent prior with interventions (the models and training plans use
    only these methods).

    A subclass implements :meth:`forward` (the prior of each sample given its interventions)
    and :meth:`kl_global` (the term on global per-intervention variables). The rest has
    defaults for a prior without per-intervention parameters: no per-sample sparsity cost, no
    mask (so no temperature and no rotation reset), no extra diagnostics.

    Examples
    --------
    >>> issubclass(SparseShiftPrior, LatentPrior), issubclass(StandardNormalPrior, LatentPrior)
    (True, True)
    """

    #: Per-sample sparsity cost ``c`` (None: the prior has none); training plans may anneal it.
    sparsity_penalty: float | None = None

    @abstractmethod
    def forward(self, intervention: torch.Tensor | None = None, n: int | None = None) -> Normal:
        """Prior over ``(n, K)`` for samples with multi-hot ``intervention`` (``(n, P)``)."""

    @abstractmethod
    def kl_global(self) -> torch.Tensor:
        """0-d term on global (per-intervention) variables, counted once per data set."""

    def log_prob(self, z: torch.Tensor, intervention: torch.Tensor | None = None) -> torch.Tensor:
        """Log-density of ``z`` (``(..., n, K)``), summed over units."""
        return self(intervention, n=z.shape[-2]).log_prob(z).sum(-1)

    def kl(self, qz: Normal, intervention: torch.Tensor | None = None) -> torch.Tensor:
        """``KL(qz || prior)`` per sample, summed over units."""
        return kl_divergence(qz, self(intervention, n=qz.loc.shape[-2])).sum(-1)

    def local_penalty(self, intervention: torch.Tensor | None = None) -> torch.Tensor | None:
        """Per-sample sparsity cost, shape ``(n,)``; None when there is none."""
        return None

    def intervention_parameters(self) -> list[nn.Parameter]:
        """Per-intervention parameters (trained with a larger learning rate); none here."""
        return []

    def set_temperature(self, temperature: float) -> None:
        """Set the relaxed-mask temperature (a no-op without masks)."""

    def can_reset_in_frame(self) -> bool:
        """Whether the per-intervention parameters can be re-expressed in a rotated latent
        frame (:meth:`SparseShiftPrior.reset_in_frame`)."""
        return False

    def extra_metrics(self) -> dict[str, torch.Tensor]:
        """Diagnostics to log during training (none)."""
        return {}


class StandardNormalPrior(LatentPrior):
    """Isotropic :math:`\\mathcal{N}(0, I)` prior; interventions are ignored (a plain VAE).

    Parameters
    ----------
    n_latent
        Number of latent units.

    Examples
    --------
    >>> import torch
    >>> prior = StandardNormalPrior(4)
    >>> prior(n=3).loc.shape
    torch.Size([3, 4])
    >>> float(prior.kl_global())
    0.0
    """

    def __init__(self, n_latent: int):
        super().__init__()
        if n_latent < 1:
            raise ValueError(f"`n_latent` must be >= 1, got {n_latent}.")
        self.n_latent = n_latent
        self.register_buffer("_zero", torch.zeros(()))

    def forward(self, intervention: torch.Tensor | None = None, n: int | None = None) -> Normal:
        """Prior distribution for ``n`` samples (``n`` defaults to ``len(intervention)``)."""
        n = _n_samples(intervention, n)
        loc = self._zero.new_zeros((n, self.n_latent))
        return Normal(loc, torch.ones_like(loc))

    def kl_global(self) -> torch.Tensor:
        """No global variables: 0."""
        return self._zero


class SparseShiftPrior(LatentPrior):
    r"""Sparse mechanism shift prior.

    :math:`p(z \mid a) = \mathcal{N}(\sum_p a_p\, m_p \odot \mu_p, I)`.

    Each intervention :math:`p` has a learned shift :math:`\mu_p \in \mathbb{R}^K` and a mask
    :math:`m_p` (see :class:`InterventionMask`) that selects the units it moves
    :cite:p:`lopez2023learning`. Combinations add the masked shifts of their members (and so
    act on the union of their masks). Samples with no intervention follow :math:`\mathcal{N}(0, I)`.

    Sparsity acts at two levels.

    * Per sample (:meth:`local_penalty`, ``"spike_slab"`` and ``"l1"``): every sample pays
      ``sparsity_penalty`` nats for each unit its intervention(s) target (expected under the
      mask posterior), :math:`c \sum_p a_p \sum_k q_{pk}`. An edge is kept only if it improves
      the fit of that perturbation's cells by more than :math:`c` nats *per cell*, so the
      decision depends on the effect size and not on how many cells the screen has (a prior
      counted once per data set becomes negligible on large screens, which lets masks stay
      dense and the latent space rotate; a penalty counted per minibatch prunes real effects
      on small screens). For ``"l1"`` the mask is continuous, as in the sVAE
      :cite:p:`lachapelle2022disentanglement`.
    * Global (:meth:`kl_global`, counted once per data set):
      ``"spike_slab"`` (sVAE+) adds
      :math:`\sum_{p,k} \mathrm{KL}(\mathrm{Bern}(q_{pk}) \| \mathrm{Bern}(\pi))`
      with prior inclusion probability ``prior_prob``; all kinds add a Gaussian slab
      :math:`\mathcal{N}(0, s^2)` on the shifts weighted by the inclusion probabilities.

    Parameters
    ----------
    n_interventions
        Number of atomic interventions :math:`P`.
    n_latent
        Number of latent units :math:`K`.
    intervention_prior
        ``"spike_slab"``, ``"l1"`` or ``"dense"``.
    prior_prob
        Prior inclusion probability :math:`\pi` of the spike-and-slab. ``None`` (default):
        ``1 / n_latent`` (at most 0.5), about one target per intervention a priori; a flat
        prior (0.5) lets every mask stay on.
    sparsity_penalty
        Cost :math:`c` per cell of each targeted unit (``"spike_slab"``, ``"l1"``).
    sparsity_scale
        ``"absolute"``: :math:`c` nats. ``"relative"``: :math:`c` times the intervention's
        largest shift gain :math:`\max_k q_{pk} \mu_{pk}^2 / 2` (held fixed within a step), so
        that an edge must carry at least :math:`\sqrt{c}` of the intervention's largest shift.
        The default, and the measurements behind it, are in the model guide
        (``docs/model.md``, "Defaults"). ``"energy"``: :math:`c` times the
        intervention's total shift gain :math:`\sum_k q_{pk} \mu_{pk}^2 / 2`, so an edge must
        carry a fraction :math:`c` of the shift's energy and the total cost grows with the
        number of edges.
    slab_scale
        Standard deviation :math:`s` of the Gaussian slab on shifts; ``None`` for a flat slab.
    mask_init_prob
        Initial inclusion probability.
    temperature
        Initial relaxed-Bernoulli temperature.
    per_sample_masks
        While training, draw a mask per (sample, intervention) pair rather than one per step.

    Examples
    --------
    >>> import torch
    >>> prior = SparseShiftPrior(n_interventions=2, n_latent=3)
    >>> a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])  # control, p0, p0+p1
    >>> prior(a).loc.shape
    torch.Size([3, 3])
    >>> prior.kl_global().shape
    torch.Size([])
    """

    def __init__(
        self,
        n_interventions: int,
        n_latent: int,
        intervention_prior: Literal["spike_slab", "l1", "dense"] = "spike_slab",
        prior_prob: float | None = None,
        sparsity_penalty: float = DEFAULT_SPARSITY_PENALTY,
        slab_scale: float | None = DEFAULT_SLAB_SCALE,
        mask_init_prob: float = DEFAULT_MASK_INIT_PROB,
        temperature: float = DEFAULT_TEMPERATURE_START,
        per_sample_masks: bool = True,
        sparsity_scale: Literal["absolute", "relative", "energy"] = DEFAULT_SPARSITY_SCALE,
    ):
        super().__init__()
        if prior_prob is None:
            prior_prob = default_prior_prob(n_latent)
        if n_latent < 1:
            raise ValueError(f"`n_latent` must be >= 1, got {n_latent}.")
        if n_interventions < 0:
            raise ValueError(f"`n_interventions` must be >= 0, got {n_interventions}.")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"`prior_prob` must be in (0, 1), got {prior_prob}.")
        self.intervention_prior = intervention_prior
        self.n_latent = n_latent
        self.n_interventions = n_interventions
        if sparsity_penalty < 0:
            raise ValueError(f"`sparsity_penalty` must be >= 0, got {sparsity_penalty}.")
        self.prior_prob = prior_prob
        self.sparsity_penalty = sparsity_penalty
        self.per_sample_masks = per_sample_masks
        if sparsity_scale not in ("absolute", "relative", "energy"):
            raise ValueError(
                "`sparsity_scale` must be 'absolute', 'relative' or 'energy', "
                f"got {sparsity_scale!r}."
            )
        self.sparsity_scale = sparsity_scale
        self.slab_scale = slab_scale
        self.mask = InterventionMask(
            n_interventions,
            n_latent,
            kind=intervention_prior,
            init_prob=mask_init_prob,
            temperature=temperature,
        )
        self.shifts = nn.Parameter(torch.zeros(n_interventions, n_latent))

    def effects(self) -> torch.Tensor:
        """One draw of the masked shifts :math:`m_p \\odot \\mu_p`, shape ``(P, K)``."""
        return self.mask() * self.shifts

    def forward(self, intervention: torch.Tensor | None = None, n: int | None = None) -> Normal:
        """Prior for samples with interventions ``intervention`` (``(n, P)``, or None: none).

        In training mode with ``per_sample_masks``, every (sample, intervention) pair draws its
        own mask, as in the published sVAE+ (lower-variance gradients for the mask logits than
        one draw per step); otherwise one mask per intervention is shared by all samples.
        """
        loc, _ = self._shift_and_reach(intervention, n)
        return Normal(loc, torch.ones_like(loc))

    def _shift_and_reach(
        self, intervention: torch.Tensor | None, n: int | None, reach: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(n, K)`` summed masked shifts of each sample and, with ``reach``, the probability
        that each unit is left untouched by all of the sample's interventions (the product of
        ``1 - m`` over them, from the same mask draws; None otherwise)."""
        if intervention is None or self.n_interventions == 0:
            loc = self.shifts.new_zeros((_n_samples(intervention, n), self.n_latent))
            return loc, (torch.ones_like(loc) if reach else None)
        untouched = None
        if self.per_sample_masks and self.training and self.mask.kind == "spike_slab":
            cells, perts = intervention.nonzero(as_tuple=True)
            weights = intervention[cells, perts].to(self.shifts.dtype).unsqueeze(-1)
            masks = self.mask(rows=perts)
            loc = self.shifts.new_zeros((intervention.shape[0], self.n_latent))
            loc = loc.index_add(0, cells, masks * self.shifts[perts] * weights)
            if reach:
                log_keep = torch.log1p(-masks.clamp(max=1.0 - 1e-6))
                untouched = torch.zeros_like(loc).index_add(0, cells, log_keep).exp()
        else:
            masks = self.mask()
            loc = intervention.to(self.shifts.dtype) @ (masks * self.shifts)
            if reach:
                log_keep = torch.log1p(-masks.clamp(max=1.0 - 1e-6))
                untouched = ((intervention != 0).to(log_keep.dtype) @ log_keep).exp()
        return loc, untouched

    def intervention_parameters(self) -> list[nn.Parameter]:
        """Mask logits and shifts (those that train)."""
        return [p for p in (self.mask.logits, self.shifts) if p.requires_grad]

    def set_temperature(self, temperature: float) -> None:
        """Set the relaxed-Bernoulli temperature of the masks."""
        self.mask.set_temperature(temperature)

    def inclusion_probs(self) -> torch.Tensor:
        """Posterior inclusion probabilities, ``(P, K)``."""
        return self.mask.inclusion_probs()

    def expected_effects(self) -> torch.Tensor:
        """``(P, K)`` effect of each intervention on the latents' mean: the shifts times the
        masks' posterior expectation (inclusion probabilities, not their mode)."""
        return self.inclusion_probs() * self.shifts

    def local_penalty(self, intervention: torch.Tensor | None) -> torch.Tensor | None:
        """Per-sample sparsity cost ``c * sum_p a_p * sum_k q_pk``, shape ``(n,)`` (or None)."""
        if (
            intervention is None
            or self.intervention_prior == "dense"
            or self.sparsity_penalty == 0
            or self.n_interventions == 0
        ):
            return None
        learned = (~self.mask.frozen).to(self.shifts.dtype)
        probs = self.inclusion_probs()
        mass = probs.sum(-1) * learned
        if self.sparsity_scale == "relative":
            # cost of an edge in units of the perturbation's largest (masked) shift gain
            # mu^2 / 2, held fixed within a step: scale-free in the effect size
            with torch.no_grad():
                gain = 0.5 * (probs * self.shifts**2).amax(-1)
            mass = mass * gain
        elif self.sparsity_scale == "energy":
            # cost of an edge in units of the perturbation's total (masked) shift gain: the
            # total cost grows with the number of edges whatever the effect size
            with torch.no_grad():
                gain = 0.5 * (probs * self.shifts**2).sum(-1)
            mass = mass * gain
        return l1_penalty_per_sample(intervention.to(mass.dtype), mass, self.sparsity_penalty)

    def kl_global(self) -> torch.Tensor:
        """Sparsity (and slab) term on the masks and shifts, 0-d, counted once per data set."""
        probs = self.inclusion_probs()
        learned = (~self.mask.frozen).to(probs.dtype).unsqueeze(-1)
        if self.intervention_prior == "spike_slab":
            out = (bernoulli_kl(self.mask.logits, self.prior_prob) * learned).sum()
        else:
            out = self.shifts.new_zeros(())
        if self.slab_scale is not None:
            # log N(shift; 0, s^2), written out (no distribution object per step)
            s = self.slab_scale
            log_slab = -0.5 * (self.shifts / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
            out = out - (probs * log_slab).sum()
        return out

    def can_reset_in_frame(self) -> bool:
        """Whether :meth:`reset_in_frame` applies: a sparse mask (``"spike_slab"``, ``"l1"``)
        over at least one intervention, with no frozen rows."""
        return (
            self.intervention_prior in ("spike_slab", "l1")
            and self.n_interventions > 0
            and not bool(self.mask.frozen.any())
        )

    def edge_threshold(self) -> float:
        r"""Relative shift (of the intervention's largest) at which an edge pays its sparsity
        cost: :math:`\sqrt{c}` for the ``"relative"`` cost (clipped to [0.1, 0.9]), 0.5
        otherwise. Used to switch masks on when the latent space is rotated.

        Examples
        --------
        >>> SparseShiftPrior(2, 3, sparsity_penalty=0.25).edge_threshold()
        0.5
        """
        if self.sparsity_scale != "relative":
            return 0.5
        return min(max(float(self.sparsity_penalty) ** 0.5, 0.1), 0.9)

    @torch.no_grad()
    def reset_in_frame(
        self,
        rotation: torch.Tensor,
        effects: torch.Tensor | None = None,
        threshold: float = 0.5,
        logit: float = 2.0,
        min_shift: torch.Tensor | None = None,
    ) -> list[nn.Parameter]:
        r"""Express the shifts in the rotated latent frame and reset the masks from them.

        The new shifts are ``effects @ Q`` (rows of ``effects`` with a NaN, or all rows when
        ``effects`` is None, use the expected masked shifts :math:`q_p \odot \mu_p`). A mask
        is switched on (logit ``+logit``) where the shift reaches ``threshold`` times the
        intervention's largest one and, if given, ``min_shift``; off (``-logit``) elsewhere.

        Parameters
        ----------
        rotation
            ``(K, K)`` orthogonal matrix (new = old @ Q).
        effects
            ``(P, K)`` effect of each intervention in the current frame (e.g. the mean latent
            of its samples minus the observational mean).
        threshold
            Relative size of a shift for its mask to be switched on.
        logit
            Magnitude of the reset mask logits.
        min_shift
            ``(P,)`` smallest shift that may be switched on (e.g. a multiple of the standard
            error of the intervention's mean latent); default no floor.

        Returns
        -------
        list of torch.nn.Parameter
            The shifts and the mask logits.

        Examples
        --------
        >>> import torch
        >>> prior = SparseShiftPrior(n_interventions=1, n_latent=2)
        >>> _ = prior.reset_in_frame(torch.eye(2), effects=torch.tensor([[3.0, 0.2]]))
        >>> prior.inclusion_probs() > 0.5
        tensor([[ True, False]])
        """
        expected = self.inclusion_probs() * self.shifts
        if effects is not None:
            effects = effects.to(expected)
            expected = torch.where(torch.isnan(effects), expected, effects)
        shifts = expected @ rotation.to(expected)
        largest = shifts.abs().amax(-1, keepdim=True).clamp_min(1e-8)
        on = shifts.abs() >= threshold * largest
        if min_shift is not None:
            on &= shifts.abs() >= min_shift.to(shifts).reshape(-1, 1)
        self.shifts.copy_(shifts)
        self.mask.logits.copy_(torch.where(on, logit, -logit).to(self.mask.logits))
        return [self.shifts, self.mask.logits]

    def extra_metrics(self) -> dict[str, torch.Tensor]:
        """Mask density (mean inclusion probability) and temperature, for training logs."""
        with torch.no_grad():
            probs = self.inclusion_probs()
            return {
                "mask_density": probs.mean() if probs.numel() else probs.new_zeros(()),
                "mask_on_fraction": (probs > 0.5).float().mean()
                if probs.numel()
                else probs.new_zeros(()),
                "mask_temperature": self.mask.temperature.clone(),
            }


def _n_samples(intervention: torch.Tensor | None, n: int | None) -> int:
    if n is not None:
        return n
    if intervention is None:
        raise ValueError("Pass `intervention` or the number of samples `n`.")
    return intervention.shape[0]


def make_prior(
    intervention_prior: InterventionPrior, n_interventions: int, n_latent: int, **kwargs
) -> LatentPrior:
    """Build a prior from its name: ``"none"`` gives :class:`StandardNormalPrior`.

    Examples
    --------
    >>> make_prior("none", 3, 4).__class__.__name__
    'StandardNormalPrior'
    >>> make_prior("spike_slab", 3, 4).__class__.__name__
    'SparseShiftPrior'
    """
    if check_intervention_prior(intervention_prior) == "none":
        return StandardNormalPrior(n_latent)
    return SparseShiftPrior(n_interventions, n_latent, intervention_prior, **kwargs)
