"""Per-intervention target masks over latent units (torch only)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

MaskKind = Literal["spike_slab", "l1", "dense"]


def geometric_temperature(epoch: int, n_epochs: int, start: float, end: float) -> float:
    """Temperature at ``epoch`` of a geometric schedule from ``start`` to ``end``.

    ``start`` at epoch 0, ``end`` at epoch ``n_epochs - 1`` and after; used by the training
    plans of the single-cell and the image models alike.

    Examples
    --------
    >>> geometric_temperature(0, 3, 1.0, 0.25), geometric_temperature(1, 3, 1.0, 0.25)
    (1.0, 0.5)
    >>> geometric_temperature(9, 3, 1.0, 0.25)
    0.25
    """
    frac = min(max(epoch / max(n_epochs - 1, 1), 0.0), 1.0)
    return start * (end / start) ** frac


class InterventionMask(nn.Module):
    r"""Masks :math:`m_p \in \{0, 1\}^K` saying which latent units intervention :math:`p` targets.

    Three kinds, all sharing one interface:

    * ``"spike_slab"``: a Bernoulli variable per entry with learned logits. While training,
      a hard (0/1) sample is drawn with the straight-through relaxed-Bernoulli (Gumbel-sigmoid)
      estimator :cite:p:`maddison2017concrete,jang2017categorical` at temperature
      ``temperature``; in evaluation mode the posterior mode (probability > 0.5) is used.
    * ``"l1"``: a continuous mask :math:`\sigma(\ell)`, as in the sVAE
      :cite:p:`lachapelle2022disentanglement`.
    * ``"dense"``: all ones (every intervention may move every unit, the iVAE
      :cite:p:`khemakhem2020ivae`).

    Rows can be frozen to hard values (e.g. all-ones masks for new perturbations, as the
    published transfer protocol does), after which they are neither sampled nor learned.

    Parameters
    ----------
    n_interventions
        Number of (atomic) interventions :math:`P`.
    n_latent
        Number of latent units :math:`K`.
    kind
        ``"spike_slab"``, ``"l1"`` or ``"dense"``.
    init_prob
        Initial inclusion probability of every entry.
    temperature
        Temperature of the relaxed Bernoulli (``"spike_slab"`` only).

    Examples
    --------
    >>> import torch
    >>> mask = InterventionMask(3, 5, kind="spike_slab")
    >>> mask().shape
    torch.Size([3, 5])
    >>> mask(torch.tensor([0, 2, 2, 1])).shape  # one mask per entry of ``rows``
    torch.Size([4, 5])
    >>> mask.inclusion_probs().shape
    torch.Size([3, 5])
    """

    def __init__(
        self,
        n_interventions: int,
        n_latent: int,
        kind: MaskKind = "spike_slab",
        init_prob: float = 0.5,
        temperature: float = 1.0,
    ):
        super().__init__()
        if kind not in ("spike_slab", "l1", "dense"):
            raise ValueError(f"Unknown mask kind {kind!r}; use 'spike_slab', 'l1' or 'dense'.")
        if not 0.0 < init_prob < 1.0:
            raise ValueError(f"`init_prob` must be in (0, 1), got {init_prob}.")
        self.kind = kind
        self.n_interventions = n_interventions
        self.n_latent = n_latent
        init_logit = math.log(init_prob) - math.log1p(-init_prob)
        self.logits = nn.Parameter(
            torch.full((n_interventions, n_latent), init_logit),
            requires_grad=kind != "dense",
        )
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("frozen", torch.zeros(n_interventions, dtype=torch.bool))
        self.register_buffer("frozen_values", torch.ones(n_interventions, n_latent))

    def set_temperature(self, temperature: float) -> None:
        """Set the relaxed-Bernoulli temperature (used by training schedules)."""
        if temperature <= 0:
            raise ValueError(f"`temperature` must be positive, got {temperature}.")
        self.temperature.fill_(float(temperature))

    def inclusion_probs(self) -> torch.Tensor:
        """Posterior inclusion probabilities, shape ``(P, K)`` (frozen rows: their values)."""
        if self.kind == "dense":
            probs = torch.ones_like(self.logits)
        else:
            probs = torch.sigmoid(self.logits)
        return torch.where(self.frozen.unsqueeze(-1), self.frozen_values, probs)

    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Draw masks: one per intervention ``(P, K)``, or one per entry of ``rows`` ``(n, K)``.

        ``rows`` (integer indices, repeats allowed) draws an independent mask for each entry,
        e.g. one per (cell, perturbation) pair.
        """
        logits = self.logits if rows is None else self.logits[rows]
        frozen = self.frozen if rows is None else self.frozen[rows]
        frozen_values = self.frozen_values if rows is None else self.frozen_values[rows]
        if self.kind == "dense":
            mask = torch.ones_like(logits)
        elif self.kind == "l1":
            mask = torch.sigmoid(logits)
        elif self.training:
            # relaxed Bernoulli by its reparameterisation, sigmoid((logits + logistic noise) / t):
            # the same draw as torch.distributions.RelaxedBernoulli(t, logits).rsample() without
            # building (and validating) a distribution object at every step
            eps = torch.finfo(logits.dtype).eps
            u = torch.rand_like(logits).clamp_(eps, 1.0 - eps)
            soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.temperature)
            hard = (soft > 0.5).to(soft.dtype)
            mask = hard - soft.detach() + soft  # straight-through, exactly 0/1 forward
        else:
            mask = (logits > 0).to(logits.dtype)
        return torch.where(frozen.unsqueeze(-1), frozen_values, mask)

    @torch.no_grad()
    def freeze(self, rows: torch.Tensor | None = None, values: torch.Tensor | float | None = None):
        """Fix the masks of ``rows`` (default: all) to hard ``values``.

        ``values`` defaults to the current posterior mode (inclusion probability > 0.5); a
        float such as ``1.0`` fixes every entry of those rows to that value.
        """
        if rows is None:
            rows = torch.arange(self.n_interventions, device=self.logits.device)
        rows = torch.as_tensor(rows, device=self.logits.device)
        if values is None:
            vals = (self.inclusion_probs()[rows] > 0.5).float()
        elif isinstance(values, float | int):
            vals = torch.full((len(rows), self.n_latent), float(values), device=self.logits.device)
        else:
            vals = torch.as_tensor(values, dtype=torch.float32, device=self.logits.device)
        self.frozen_values[rows] = vals
        self.frozen[rows] = True
