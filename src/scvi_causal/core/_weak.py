"""Weak supervision from pairs of observations that share all but a few factors.

Ada-GVAE :cite:p:`locatello2020weakly`: the two observations of a pair are encoded separately;
the latent dimensions in which their posteriors are close are taken to be shared and replaced by
the average of the two posteriors, the others are kept. The number of shared dimensions is
estimated per pair, so the number of factors that differ need not be known.
"""

from __future__ import annotations

import torch
from torch.distributions import Normal, kl_divergence


def ada_gvae_average(q1: Normal, q2: Normal) -> tuple[Normal, Normal, torch.Tensor]:
    """Ada-GVAE's adaptive averaging of the posteriors of a pair :cite:p:`locatello2020weakly`.

    Per pair and latent dimension, :math:`\\delta_j = \\mathrm{KL}(q_1(z_j) \\,\\|\\, q_2(z_j))`.
    Dimensions with :math:`\\delta_j` below the midpoint :math:`\\tau = \\frac{1}{2}(\\max_j
    \\delta_j + \\min_j \\delta_j)` are shared: both posteriors are replaced there by their
    average (GVAE: mean of the means, mean of the variances). Dimensions at or above
    :math:`\\tau` are taken to differ and keep their own posterior. This is the two-bin split of
    disentanglement_lib's ``aggregate_argmax``; when all :math:`\\delta_j` are equal (e.g. the
    same image twice) no dimension is averaged, which for equal posteriors changes nothing.

    The split is not differentiated; gradients flow through the posteriors it selects.

    Parameters
    ----------
    q1, q2
        Diagonal Gaussian posteriors of the two observations, batch shape ``(n, n_latent)``.

    Returns
    -------
    q1_avg, q2_avg : torch.distributions.Normal
        The posteriors after averaging the shared dimensions.
    shared : torch.Tensor
        ``(n, n_latent)`` boolean mask of the averaged dimensions.

    Examples
    --------
    >>> q1 = Normal(torch.tensor([[0.0, 0.0, 0.0]]), torch.ones(1, 3))
    >>> q2 = Normal(torch.tensor([[0.2, 4.0, 0.0]]), torch.ones(1, 3))
    >>> q1_avg, q2_avg, shared = ada_gvae_average(q1, q2)
    >>> shared
    tensor([[ True, False,  True]])
    >>> q1_avg.loc, q2_avg.loc
    (tensor([[0.1000, 0.0000, 0.0000]]), tensor([[0.1000, 4.0000, 0.0000]]))
    """
    if not isinstance(q1, Normal) or not isinstance(q2, Normal):
        raise TypeError("`q1` and `q2` must be torch.distributions.Normal posteriors.")
    if q1.batch_shape != q2.batch_shape or len(q1.batch_shape) != 2:
        raise ValueError(
            "`q1` and `q2` must have the same batch shape (n_pairs, n_latent), got "
            f"{tuple(q1.batch_shape)} and {tuple(q2.batch_shape)}."
        )
    with torch.no_grad():
        delta = kl_divergence(q1, q2)
        threshold = 0.5 * (delta.amax(-1, keepdim=True) + delta.amin(-1, keepdim=True))
        shared = delta < threshold
    loc = 0.5 * (q1.loc + q2.loc)
    scale = torch.sqrt(0.5 * (q1.variance + q2.variance))
    q1_avg = Normal(torch.where(shared, loc, q1.loc), torch.where(shared, scale, q1.scale))
    q2_avg = Normal(torch.where(shared, loc, q2.loc), torch.where(shared, scale, q2.scale))
    return q1_avg, q2_avg, shared
