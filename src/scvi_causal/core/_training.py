"""What every training plan of a sparse-shift model does, written once (torch only).

:class:`~scvi_causal.train.SparseShiftTrainingPlan` (single cells, on scvi-tools'
``TrainingPlan``) and the image plan of :mod:`scvi_causal.images` (plain Lightning) both mix in
:class:`InterventionScheduleMixin`: two learning-rate groups, the annealed mask temperature and
the alignment steps that rotate the latent space onto the sparsest frame of the interventions'
effects, and the graph-alignment step of a latent graph prior. :func:`category_latent_sums` is
the one helper that accumulates mean latents per intervention category, and
:func:`negative_elbo` assembles the loss of both modules.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable

import torch

from scvi_causal._constants import GRAPH_FIT_MAX_CELLS

from ._masks import geometric_temperature
from ._rotation import alignment_epochs, forget_optimizer_state, sparse_alignment
from ._scm import fit_latent_graph

logger = logging.getLogger(__name__)


def category_latent_sums(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    n_categories: int,
    n_latent: int,
    like: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of latent vectors per intervention category.

    Parameters
    ----------
    batches
        Pairs ``(latent, codes)``: ``(n, K)`` latent vectors (e.g. posterior means) and the
        ``(n,)`` integer category of each sample.
    n_categories, n_latent
        Shape of the result.
    like
        A tensor whose device and dtype the sums take.

    Returns
    -------
    sums, counts
        ``(n_categories, n_latent)`` sums and ``(n_categories,)`` counts; their ratio is each
        category's mean latent (:func:`~scvi_causal.core.sparse_alignment` takes them as they
        are, so sums can be added across processes first).

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    >>> sums, counts = category_latent_sums([(z, torch.tensor([0, 0, 1]))], 2, 2, z)
    >>> (sums / counts[:, None]).tolist()
    [[2.0, 1.0], [5.0, 5.0]]
    """
    sums = like.new_zeros((n_categories, n_latent))
    counts = like.new_zeros(n_categories)
    for latent, codes in batches:
        codes = codes.long().view(-1).to(sums.device)
        sums.index_add_(0, codes, latent.to(sums.device, sums.dtype))
        counts.index_add_(0, codes, torch.ones_like(codes, dtype=counts.dtype))
    return sums, counts


def check_graph_fit_kwargs(graph_fit_kwargs: dict | None) -> dict:
    """The arguments of :func:`~scvi_causal.core.fit_latent_graph` for a plan's graph-alignment
    step, as a new dict (``{}`` for None); unknown names raise ``ValueError``.

    Examples
    --------
    >>> check_graph_fit_kwargs({"method": "moments"})
    {'method': 'moments'}
    """
    allowed = set(inspect.signature(fit_latent_graph).parameters) - {
        "prior",
        "latents",
        "intervention",
    }
    unknown = set(graph_fit_kwargs or {}) - allowed
    if unknown:
        raise ValueError(
            f"Unknown `graph_fit_kwargs` {sorted(unknown)}; allowed: {sorted(allowed)}."
        )
    return dict(graph_fit_kwargs or {})


def check_fraction(value: float, name: str) -> float:
    """A plan's fraction of the epochs (``graph_start``, ``direct_start``,
    ``sparsity_anneal_start``), checked to lie in [0, 1]; ``name`` is the argument's name for the
    error.

    Examples
    --------
    >>> check_fraction(0.75, "graph_start")
    0.75
    """
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value}.")
    return float(value)


def negative_elbo(
    reconstruction: torch.Tensor,
    kl_z: torch.Tensor,
    kl_global: torch.Tensor,
    *,
    beta: float = 1.0,
    sparsity: torch.Tensor | None = None,
    total_correlation: torch.Tensor | None = None,
    tc_weight: float = 0.0,
    kl_weight: float | torch.Tensor = 1.0,
    n_obs: int = 1,
    unweighted: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The minibatch loss of a sparse-shift VAE.

    .. math::

        \frac{1}{n} \sum_i \Big[ r_i + w \big(\beta\, \mathrm{KL}_i + s_i + \gamma\, TC_i\big)
        + u_i \Big] + w \frac{G}{N}

    with reconstruction loss :math:`r`, warm-up weight :math:`w` (``kl_weight``), per-sample
    sparsity cost :math:`s`, total correlation :math:`TC` weighted by :math:`\gamma`
    (``tc_weight``), terms :math:`u` outside warm-up (e.g. the library-size KL) and the global
    term :math:`G` counted once per data set of :math:`N` (``n_obs``) samples.


    Examples
    --------
    >>> import torch
    >>> loss = negative_elbo(torch.tensor([10.0, 20.0]), torch.tensor([1.0, 3.0]),
    ...                      torch.tensor(4.0), n_obs=2)
    >>> float(loss)
    19.0
    """
    local = beta * kl_z
    if sparsity is not None:
        local = local + sparsity
    if total_correlation is not None and tc_weight > 0:
        local = local + tc_weight * total_correlation
    per_sample = reconstruction + kl_weight * local
    if unweighted is not None:
        per_sample = per_sample + unweighted
    return torch.mean(per_sample) + kl_weight * kl_global / n_obs


class InterventionScheduleMixin:
    """Learning-rate groups, mask temperature and alignment steps of a sparse-shift plan.

    Mixed into a Lightning module (a training plan) with the attributes ``module`` (whose
    ``prior`` is a :class:`~scvi_causal.core.LatentPrior` and which has
    ``intervention_parameters()``, ``can_rotate_latent_space()`` and ``rotate_latent_space()``),
    ``trainer``, ``lr``, ``intervention_lr_factor``, ``temperature_start``, ``temperature_end``,
    ``n_epochs_temperature``, ``align_at``, ``align_noise_z`` and ``align_threshold`` (and
    ``graph_fit_kwargs`` for :meth:`fit_latent_graph_on`). The plan provides
    :meth:`latent_sums_by_category` (its data, its categories).
    """

    def intervention_param_groups(self, params: Iterable[torch.nn.Parameter]) -> list[dict]:
        """Optimizer parameter groups: the networks at ``lr``; the module's per-intervention
        parameters at ``lr * intervention_lr_factor`` without weight decay (each sees only its
        own samples, so at the networks' rate it lags behind)."""
        fast_ids = {id(p) for p in self.module.intervention_parameters()}
        params = list(params)
        slow = [p for p in params if id(p) not in fast_ids]
        fast = [p for p in params if id(p) in fast_ids]
        groups = [{"params": slow}]
        if fast:
            groups.append(
                {"params": fast, "lr": self.lr * self.intervention_lr_factor, "weight_decay": 0}
            )
        return [g for g in groups if g["params"]]

    def current_temperature(self, epoch: int) -> float:
        """Mask temperature at ``epoch``: geometric from ``temperature_start`` to
        ``temperature_end`` over ``n_epochs_temperature`` epochs (default all of training)."""
        n = self.n_epochs_temperature or getattr(self.trainer, "max_epochs", None) or 1
        return geometric_temperature(epoch, n, self.temperature_start, self.temperature_end)

    def set_epoch_temperature(self) -> None:
        """Set the prior's mask temperature for the current epoch."""
        self.module.prior.set_temperature(self.current_temperature(self.current_epoch))

    def alignment_epochs(self) -> set[int]:
        """Epochs (0-based) after which the latent space is rotated (see ``align_at``)."""
        return alignment_epochs(self.align_at, getattr(self.trainer, "max_epochs", None))

    def latent_sums_by_category(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Sums and counts of posterior means per intervention category, and the categories'
        ``(n_categories, P)`` intervention matrix; None when the plan has no data to use."""
        raise NotImplementedError

    def align_latent_space(
        self, broadcast: Callable[[torch.Tensor], None] | None = None
    ) -> float | None:
        """Rotate the latent space onto the sparsest frame of the interventions' effects.

        :func:`~scvi_causal.core.sparse_alignment` of the categories' mean latents, applied by
        the module's ``rotate_latent_space`` (masks and shifts reset in the new frame, with
        ``align_threshold``, default the prior's ``edge_threshold()``); the optimizer forgets
        the state of the parameters that changed. ``broadcast`` sends the rotation from the
        first process to the others (data-parallel training).

        Returns the ratio of the effects' l1 norms after / before (None: nothing done).
        """
        module = self.module
        if not module.can_rotate_latent_space():
            return None
        found_sums = self.latent_sums_by_category()
        if found_sums is None:
            return None
        sums, counts, categories = found_sums
        found = sparse_alignment(sums, counts, categories, noise_z=self.align_noise_z)
        if found is None:
            return None
        rotation = found["rotation"]
        if broadcast is not None:
            broadcast(rotation)
        threshold = self.align_threshold
        if threshold is None:
            threshold = module.prior.edge_threshold()
        changed = module.rotate_latent_space(
            rotation,
            effects=found["effects"],
            threshold=threshold,
            min_shift=found["min_shift"],
        )
        forget_optimizer_state(self.trainer.optimizers, changed)
        before, after = found["l1_before"], found["l1_after"]
        ratio = after / before if before > 0 else 1.0
        logger.info("Latent space rotated: l1 norm of the perturbation effects x %.3f.", ratio)
        return ratio

    @torch.no_grad()
    def fit_latent_graph_on(self, latents: torch.Tensor, interventions: torch.Tensor) -> None:
        """The graph-alignment step of a latent graph prior (``module.prior`` a
        :class:`~scvi_causal.core.LinearSCMPrior`, still off) on ``(n, K)`` posterior means and
        their ``(n, P)`` interventions: the graph is switched on and fitted with the plan's
        ``graph_fit_kwargs`` (:func:`~scvi_causal.core.fit_latent_graph`, on at most
        ``GRAPH_FIT_MAX_CELLS`` samples, a fixed random subset), the networks are re-expressed
        in the fitted frame (the module's ``change_latent_frame``) and the optimizer forgets
        the state of every parameter that changed."""
        module = self.module
        if len(latents) > GRAPH_FIT_MAX_CELLS:
            keep = torch.randperm(len(latents), generator=torch.Generator().manual_seed(0))
            keep = keep[:GRAPH_FIT_MAX_CELLS].to(latents.device)
            latents, interventions = latents[keep], interventions[keep]
        prior = module.prior
        prior.activate_graph(True)
        frame = fit_latent_graph(prior, latents, interventions, **self.graph_fit_kwargs)
        changed = module.change_latent_frame(frame)
        forget_optimizer_state(self.trainer.optimizers, changed + list(prior.parameters()))
        logger.info("Latent graph fitted: %d edges.", int(prior.dag().sum()))
