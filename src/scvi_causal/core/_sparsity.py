"""Sparsity penalties on intervention masks (torch only)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bernoulli_kl(logits: torch.Tensor, prior_prob: float) -> torch.Tensor:
    r"""Element-wise :math:`\mathrm{KL}(\mathrm{Bern}(\sigma(\ell)) \,\|\, \mathrm{Bern}(\pi))`.

    This is the spike-and-slab sparsity term on the inclusion variables of the sparse
    mechanism shift model :cite:p:`lopez2023learning`: switching a unit on costs about
    :math:`-\log \pi` nats, keeping it off costs about :math:`\pi`.

    Parameters
    ----------
    logits
        Logits :math:`\ell` of the posterior inclusion probabilities, any shape.
    prior_prob
        Prior inclusion probability :math:`\pi \in (0, 1)`.

    Returns
    -------
    torch.Tensor
        KL divergences, of the same shape as ``logits`` (nats).

    Examples
    --------
    >>> import torch
    >>> kl = bernoulli_kl(torch.tensor([-10.0, 10.0]), prior_prob=0.01)
    >>> bool(kl[1] > kl[0])
    True
    """
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"`prior_prob` must be in (0, 1), got {prior_prob}.")
    q = torch.sigmoid(logits)
    log_q = F.logsigmoid(logits)
    log_1mq = F.logsigmoid(-logits)
    return q * (log_q - math.log(prior_prob)) + (1 - q) * (log_1mq - math.log1p(-prior_prob))


def l1_penalty_per_sample(
    intervention: torch.Tensor, mask_mass: torch.Tensor, weight: float
) -> torch.Tensor:
    """Per-sample cost ``weight * intervention @ mask_mass`` of the units each sample's
    interventions target.

    Parameters
    ----------
    intervention
        ``(n, P)`` multi-hot interventions.
    mask_mass
        ``(P,)`` expected number of targeted units of each intervention.
    weight
        Cost per targeted unit and sample (nats).

    Returns
    -------
    torch.Tensor
        Per-sample penalties, shape ``(n,)`` (nats).

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    >>> l1_penalty_per_sample(a, torch.tensor([2.0, 1.0]), weight=0.5).tolist()
    [1.0, 1.5, 0.0]
    """
    return weight * (intervention @ mask_mass)


def l1_penalty(probs: torch.Tensor, weight: float) -> torch.Tensor:
    """Continuous sparsity penalty ``weight * sum(probs)``.

    The penalty of the sVAE :cite:p:`lachapelle2022disentanglement`.

    Parameters
    ----------
    probs
        Mask values in [0, 1].
    weight
        Penalty per unit of mask mass (nats).

    Returns
    -------
    torch.Tensor
        The penalty, a 0-d tensor (nats).

    Examples
    --------
    >>> import torch
    >>> float(l1_penalty(torch.tensor([0.5, 0.25]), weight=2.0))
    1.5
    """
    return weight * probs.sum()
