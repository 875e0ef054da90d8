"""Total correlation of the aggregate posterior (beta-TCVAE), torch only."""

from __future__ import annotations

import math

import torch


def total_correlation(
    z: torch.Tensor,
    qz_loc: torch.Tensor,
    qz_scale: torch.Tensor,
    n_obs: int,
    n_query: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Per-sample minibatch-weighted-sampling estimate of the total correlation.

    The total correlation of the aggregate posterior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)`
    is :math:`\mathrm{TC} = \mathrm{KL}(q(z) \,\|\, \prod_j q(z_j))`. Following
    :cite:t:`chen2018isolating` (minibatch weighted sampling), for a minibatch of :math:`M`
    cells drawn from a data set of :math:`N` cells,

    .. math::

        \log q(z_i) \approx \log \sum_{m=1}^{M} q(z_i \mid x_m) - \log(M N),

    and the same per dimension; the estimate for sample :math:`i` is
    :math:`\log q(z_i) - \sum_j \log q(z_{ij})`. Its minibatch mean estimates TC; multiplied by
    a weight and added to the loss it gives the beta-TCVAE objective.

    Parameters
    ----------
    z
        ``(M, K)`` samples, one per cell, ``z_i ~ q(z | x_i)``.
    qz_loc, qz_scale
        ``(M, K)`` means and standard deviations of the Gaussian posteriors of the same cells.
    n_obs
        Number of cells :math:`N` in the data set (``>= M``).
    n_query
        Score only this many samples :math:`i`, drawn at random without replacement, each
        against all :math:`M` posteriors of the minibatch. The cost falls from
        :math:`O(M^2 K)` to :math:`O(n_{query} M K)`; the mean of the returned estimates has the
        same expectation as the mean over all :math:`M` samples (more variance). ``None`` (or
        ``>= M``) scores every sample.
    generator
        Random generator for the subsample.

    Returns
    -------
    torch.Tensor
        ``(M,)`` per-sample estimates (nats), or ``(n_query,)`` with ``n_query``;
        differentiable.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> loc = torch.randn(256, 2)
    >>> loc_corr = torch.cat([loc[:, :1], loc[:, :1] + 0.05 * loc[:, 1:]], dim=1)
    >>> scale = torch.full_like(loc, 0.1)
    >>> tc_indep = total_correlation(loc, loc, scale, n_obs=256).mean()
    >>> tc_corr = total_correlation(loc_corr, loc_corr, scale, n_obs=256).mean()
    >>> bool(tc_corr > tc_indep + 0.5)
    True
    >>> total_correlation(loc, loc, scale, n_obs=256, n_query=64).shape
    torch.Size([64])
    """
    if z.ndim != 2 or qz_loc.shape != z.shape or qz_scale.shape != z.shape:
        raise ValueError(
            "`z`, `qz_loc` and `qz_scale` must have the same (n_samples, n_latent) shape, got "
            f"{tuple(z.shape)}, {tuple(qz_loc.shape)}, {tuple(qz_scale.shape)}."
        )
    m = z.shape[0]
    if m < 2:
        raise ValueError("The total-correlation estimate needs at least 2 samples.")
    if n_obs < m:
        raise ValueError(f"`n_obs` ({n_obs}) must be >= the number of samples ({m}).")
    if n_query is not None:
        if n_query < 1:
            raise ValueError(f"`n_query` must be >= 1, got {n_query}.")
        if n_query < m:
            idx = torch.randperm(m, device=z.device, generator=generator)[:n_query]
            z = z[idx]
    # log q(z_i | x_m) per dimension: (Q, M, K), written out (no distribution object per step)
    inv_scale = qz_scale.reciprocal().unsqueeze(0)
    log_qz_dims = (
        -0.5 * ((z.unsqueeze(1) - qz_loc.unsqueeze(0)) * inv_scale).square()
        + torch.log(inv_scale)
        - 0.5 * math.log(2 * math.pi)
    )
    log_norm = math.log(m * n_obs)
    log_qz = torch.logsumexp(log_qz_dims.sum(-1), dim=1) - log_norm
    log_prod_marginals = (torch.logsumexp(log_qz_dims, dim=1) - log_norm).sum(-1)
    return log_qz - log_prod_marginals
