"""Direct effects: sparse per-intervention offsets on the observed features' log-rates.

A perturbation can change an observed feature without going through the latent units: a CRISPRi
or CRISPR knockout guide lowers the mRNA of its own gene (a *cis* effect), and a weak
perturbation may move a handful of genes that no latent unit is worth spending on. In the
language of causal mediation the latent units are the mediators and these are the perturbation's
*direct* effects. Torch only (no AnnData, no scvi), like the priors.
"""

from __future__ import annotations

import torch
from torch import nn

from scvi_causal._constants import SPARSE_FROM


class DirectEffects(nn.Module):
    r"""Sparse direct effects :math:`\delta_p \in \mathbb{R}^G` of each intervention.

    A sample with interventions :math:`a` (multi-hot) gets the offset
    :math:`\sum_p a_p \delta_p` added to the log of its feature rates (for counts: the
    log-proportions of the decoder, renormalised, see :func:`apply_log_offset`). The offsets
    have a Laplace prior :math:`p(\delta_{pg}) \propto \exp(-\lambda |\delta_{pg}|)`, counted once
    per data set (:meth:`kl_global`): a direct effect survives only where the evidence of the
    intervention's samples on that feature outweighs :math:`\lambda` (for counts, roughly the
    score :math:`\sum_i (x_{ig} - \mu_{ig})` of its cells must exceed :math:`\lambda`), so few
    cells or small effects are shrunk towards zero instead of being pruned to nothing.

    The effects are inactive (zero, no penalty) until :meth:`activate` is called; a model first
    explains what it can through the latent units and then adds the direct effects for what is
    left.

    Parameters
    ----------
    n_interventions
        Number of atomic interventions :math:`P`.
    n_features
        Number of observed features :math:`G` (genes).
    penalty
        Laplace rate :math:`\lambda` (nats per unit of log-rate, once per data set).

    Examples
    --------
    >>> import torch
    >>> direct = DirectEffects(n_interventions=2, n_features=3)
    >>> direct(torch.tensor([[1.0, 0.0]])) is None  # inactive until switched on
    True
    >>> direct.activate()
    >>> direct(torch.tensor([[1.0, 0.0]])).shape
    torch.Size([1, 3])
    """

    def __init__(self, n_interventions: int, n_features: int, penalty: float = 10.0):
        super().__init__()
        if n_interventions < 0 or n_features < 1:
            raise ValueError(
                f"Need n_interventions >= 0 and n_features >= 1, got {n_interventions}, "
                f"{n_features}."
            )
        if penalty < 0:
            raise ValueError(f"`penalty` must be >= 0, got {penalty}.")
        self.penalty = float(penalty)
        self.effects = nn.Parameter(torch.zeros(n_interventions, n_features))
        self.register_buffer("active", torch.tensor(False))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a model saved before direct effects existed: load them as zero and inactive
        if prefix + "effects" not in state_dict:
            state_dict[prefix + "effects"] = torch.zeros_like(self.effects)
            state_dict[prefix + "active"] = torch.tensor(False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def activate(self, active: bool = True) -> None:
        """Switch the direct effects on (or off: they then act as zero)."""
        self.active.fill_(bool(active))

    def forward(self, intervention: torch.Tensor | None) -> torch.Tensor | None:
        """Offsets ``(n, G)`` of samples with interventions ``(n, P)``; None when inactive."""
        if intervention is None or not bool(self.active) or self.effects.shape[0] == 0:
            return None
        intervention = intervention.to(self.effects.dtype)
        if self.effects.shape[0] <= SPARSE_FROM:
            return intervention @ self.effects
        # many perturbations, few per cell: sum the rows of the carried ones (a dense product
        # costs n x P x G, e.g. 20 GFLOP per minibatch of a genome-wide screen)
        cells, columns = intervention.nonzero(as_tuple=True)
        weights = intervention[cells, columns].unsqueeze(-1)
        out = self.effects.new_zeros(intervention.shape[0], self.effects.shape[1])
        return out.index_add(0, cells, self.effects[columns] * weights)

    def kl_global(self) -> torch.Tensor:
        r"""Negative log Laplace prior (up to a constant), :math:`\lambda \sum |\delta|`; 0-d."""
        if not bool(self.active):
            return self.effects.new_zeros(())
        return self.penalty * self.effects.abs().sum()


def apply_log_offset(
    scale: torch.Tensor, offset: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift log-proportions by ``offset`` and renormalise.

    Parameters
    ----------
    scale
        ``(..., n, G)`` proportions (rows sum to 1, e.g. a decoder's softmax output).
    offset
        ``(n, G)`` log-rate offsets (broadcast over leading sample dimensions).

    Returns
    -------
    new_scale, factor
        The renormalised proportions and the factor ``new_scale / scale``, by which any rate
        proportional to ``scale`` (the mean counts) must be multiplied.

    Examples
    --------
    >>> import torch
    >>> new, factor = apply_log_offset(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, -1e9]]))
    >>> new.tolist()
    [[1.0, 0.0]]
    """
    log_scale = torch.log(scale.clamp_min(torch.finfo(scale.dtype).tiny)) + offset
    new_scale = torch.softmax(log_scale, dim=-1)
    factor = torch.exp(offset - torch.logsumexp(log_scale, dim=-1, keepdim=True))
    return new_scale, factor
