"""Sparse rotation of a latent space: the orthogonal map that makes intervention effects sparse."""

from __future__ import annotations

import torch


def sparse_rotation(
    effects: torch.Tensor,
    weights: torch.Tensor | None = None,
    n_steps: int = 1500,
    lr: float = 0.02,
    smoothing: float = 0.05,
) -> tuple[torch.Tensor, float, float]:
    r"""Orthogonal matrix :math:`Q` that makes the rows of ``effects @ Q`` sparse.

    Minimises the smoothed :math:`\ell_1` norm
    :math:`\sum_{p,k} w_p \sqrt{(E Q)_{pk}^2 + \epsilon^2}` over rotations
    :math:`Q = \exp(X - X^\top)`, starting from the identity (the current frame), with Adam.
    :math:`\epsilon` is ``smoothing`` times the root mean square of ``effects``.

    A latent model whose interventions only shift the means of unit-variance Gaussian latents
    is identified up to a rotation by the likelihood and the within-intervention prior; the
    sparsity of the intervention effects is what picks the rotation
    :cite:p:`lachapelle2022disentanglement`. Gradient descent through the encoder and decoder
    moves along that rotation slowly; this function takes the step directly on the
    intervention effects (e.g. the mean latent of each perturbation's cells). The
    :math:`\ell_1` criterion is used because it is minimised by the sparse rows of few
    targets; :math:`\ell_4` (and varimax) criteria are not, when most rows have one target.

    Parameters
    ----------
    effects
        ``(P, K)`` effects of ``P`` interventions on ``K`` latent units, in the current frame.
    weights
        ``(P,)`` non-negative weights of the rows (e.g. cell counts); default all ones.
    n_steps
        Adam steps.
    lr
        Adam learning rate.
    smoothing
        Relative smoothing :math:`\epsilon` of the :math:`\ell_1` norm.

    Returns
    -------
    rotation
        ``(K, K)`` orthogonal matrix :math:`Q` (row convention: new = old @ Q).
    l1_before, l1_after
        Weighted :math:`\ell_1` norm of the effects before and after the rotation.

    Examples
    --------
    >>> import torch
    >>> sparse = torch.tensor([[3.0, 0.0], [0.0, -2.0], [4.0, 0.0]])
    >>> c, s = 0.8, 0.6
    >>> mixed = sparse @ torch.tensor([[c, -s], [s, c]])  # a rotated sparse matrix
    >>> q, before, after = sparse_rotation(mixed)
    >>> bool(after < before)
    True
    >>> bool(torch.allclose(q @ q.T, torch.eye(2), atol=1e-5))
    True
    >>> (mixed @ q).abs().min(dim=1).values.max() < 0.05  # every row back to one unit
    tensor(True)
    """
    if effects.ndim != 2:
        raise ValueError(f"`effects` must be 2-d (P, K), got shape {tuple(effects.shape)}.")
    if n_steps < 0:
        raise ValueError(f"`n_steps` must be >= 0, got {n_steps}.")
    e = effects.detach().to(torch.float64)
    k = e.shape[1]
    w = (
        torch.ones(e.shape[0], dtype=e.dtype, device=e.device)
        if weights is None
        else weights.detach().to(e.dtype).reshape(-1)
    )
    if w.shape[0] != e.shape[0] or bool((w < 0).any()):
        raise ValueError("`weights` must be non-negative, one per row of `effects`.")
    if not bool(torch.isfinite(e).all()):
        raise ValueError("`effects` must be finite.")
    rms = e.pow(2).mean().sqrt().clamp_min(1e-12)
    eps2 = (smoothing * rms) ** 2

    def l1(x: torch.Tensor) -> torch.Tensor:
        return (w.unsqueeze(-1) * torch.sqrt(x**2 + eps2)).sum()

    with torch.enable_grad():
        x = torch.zeros(k, k, dtype=e.dtype, device=e.device, requires_grad=True)
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(n_steps):
            opt.zero_grad()
            loss = l1(e @ torch.linalg.matrix_exp(x - x.T))
            loss.backward()
            opt.step()
    with torch.no_grad():
        q = torch.linalg.matrix_exp(x - x.T)
        before, after = float(l1(e)), float(l1(e @ q))
    if after >= before:  # never move away from the current frame for nothing
        q = torch.eye(k, dtype=e.dtype, device=e.device)
        after = before
    return q.to(effects.dtype), before, after


@torch.no_grad()
def rotate_latent_layers(
    rotation: torch.Tensor,
    mean_head: torch.nn.Linear,
    decoder_input: torch.nn.Linear,
    log_scale_head: torch.nn.Linear | None = None,
) -> list[torch.nn.Parameter]:
    r"""Re-express an encoder-decoder pair in the rotated latent frame :math:`z' = z Q`.

    A change of coordinates: the encoder's mean head (``mean_head``, a linear layer with
    ``K`` outputs) is multiplied by :math:`Q`, and the first ``K`` inputs of the decoder's
    first linear layer by :math:`Q^\top`, so every sample decodes as before from its posterior
    mean. A diagonal posterior stays diagonal: the outputs of ``log_scale_head`` (log standard
    deviations or log variances, before an exp) are mixed with weights :math:`Q_{jk}^2`, exact
    when the variances are equal.

    Parameters
    ----------
    rotation
        ``(K, K)`` orthogonal matrix (row convention: new = old @ Q).
    mean_head
        Encoder layer whose outputs are the posterior means.
    decoder_input
        Decoder layer whose first ``K`` inputs are the latents (further inputs, e.g.
        covariates, are left alone).
    log_scale_head
        Encoder layer of the log scales (or log variances); ``None`` to leave them.

    Returns
    -------
    list of torch.nn.Parameter
        The parameters that changed (an optimiser's state for them is stale).

    Examples
    --------
    >>> import torch
    >>> enc, dec = torch.nn.Linear(5, 3), torch.nn.Linear(3, 4)
    >>> h = torch.randn(2, 5)
    >>> before = dec(enc(h))
    >>> q = torch.linalg.qr(torch.randn(3, 3)).Q
    >>> changed = rotate_latent_layers(q, enc, dec)
    >>> torch.allclose(dec(enc(h)), before, atol=1e-5)  # same decoded output
    True
    """
    k = mean_head.out_features
    q = rotation.to(mean_head.weight)
    eye = torch.eye(k, device=q.device, dtype=q.dtype)
    if q.shape != (k, k) or not torch.allclose(q @ q.T, eye, atol=1e-4):
        raise ValueError(f"`rotation` must be an orthogonal ({k}, {k}) matrix.")
    return _change_frame(q, q, q**2, None, mean_head, decoder_input, log_scale_head)


@torch.no_grad()
def change_latent_frame(
    matrix: torch.Tensor,
    mean_head: torch.nn.Linear,
    decoder_input: torch.nn.Linear,
    log_scale_head: torch.nn.Linear | None = None,
    log_scale: str = "variance",
) -> list[torch.nn.Parameter]:
    r"""Re-express an encoder-decoder pair in the linear frame :math:`z' = z M`, any invertible
    :math:`M` (:func:`rotate_latent_layers` for a rotation).

    The encoder's mean head is multiplied by :math:`M`, the decoder's latent inputs by
    :math:`M^{-1}`, so every sample decodes as before from its posterior mean. The posterior
    stays diagonal: each new variance is :math:`\sum_j M_{jk}^2 \sigma_j^2`, taken with the old
    log scales averaged with weights :math:`M_{jk}^2 / \sum_j M_{jk}^2` (exact when the
    variances are equal).

    Parameters
    ----------
    matrix
        ``(K, K)`` invertible :math:`M` (row convention: new = old @ M).
    mean_head, decoder_input, log_scale_head
        As in :func:`rotate_latent_layers`.
    log_scale
        What ``log_scale_head`` outputs before its exp: ``"variance"`` or ``"std"``.

    Returns
    -------
    list of torch.nn.Parameter
        The parameters that changed.

    Examples
    --------
    >>> import torch
    >>> enc, dec = torch.nn.Linear(5, 3), torch.nn.Linear(3, 4)
    >>> h = torch.randn(2, 5)
    >>> before = dec(enc(h))
    >>> m = torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.3, 0.0, 1.0]])
    >>> changed = change_latent_frame(m, enc, dec)
    >>> torch.allclose(dec(enc(h)), before, atol=1e-5)
    True
    """
    if log_scale not in ("variance", "std"):
        raise ValueError(f"`log_scale` must be 'variance' or 'std', got {log_scale!r}.")
    k = mean_head.out_features
    m = matrix.to(mean_head.weight)
    inverse, info = torch.linalg.inv_ex(m) if m.shape == (k, k) else (None, 1)
    if int(info) != 0 or not bool(torch.isfinite(inverse).all()):
        raise ValueError(f"`matrix` must be an invertible ({k}, {k}) matrix.")
    squares = m**2
    norms = squares.sum(0)  # (K,): sum_j M_jk^2
    log_norm = torch.log(norms) * (1.0 if log_scale == "variance" else 0.5)
    return _change_frame(
        m,
        inverse.T,
        squares / norms,
        log_norm,
        mean_head,
        decoder_input,
        log_scale_head,
    )


def _change_frame(
    m: torch.Tensor,
    decoder_map: torch.Tensor,
    mix: torch.Tensor,
    log_norm: torch.Tensor | None,
    mean_head: torch.nn.Linear,
    decoder_input: torch.nn.Linear,
    log_scale_head: torch.nn.Linear | None,
) -> list[torch.nn.Parameter]:
    """The layer updates of a frame change ``z' = z m``: ``decoder_map`` is ``m^{-T}`` (``m``
    itself for a rotation), ``mix`` the weights of the old log scales in the new ones and
    ``log_norm`` what is added to them (None: nothing)."""
    k = mean_head.out_features
    if decoder_input.in_features < k:
        raise ValueError(f"`decoder_input` has {decoder_input.in_features} inputs, < {k}.")
    mean_head.weight.copy_(m.T @ mean_head.weight)
    changed = [mean_head.weight]
    if mean_head.bias is not None:
        mean_head.bias.copy_(mean_head.bias @ m)
        changed.append(mean_head.bias)
    if log_scale_head is not None:
        log_scale_head.weight.copy_(mix.T @ log_scale_head.weight)
        changed.append(log_scale_head.weight)
        if log_scale_head.bias is not None:
            bias = log_scale_head.bias @ mix
            log_scale_head.bias.copy_(bias if log_norm is None else bias + log_norm)
            changed.append(log_scale_head.bias)
    decoder_input.weight[:, :k] = decoder_input.weight[:, :k] @ decoder_map
    changed.append(decoder_input.weight)
    return changed


@torch.no_grad()
def sparse_alignment(
    sums: torch.Tensor,
    counts: torch.Tensor,
    intervention_matrix: torch.Tensor,
    noise_z: float | None = None,
    prior_count: float = 10.0,
) -> dict[str, torch.Tensor | float] | None:
    r"""Rotation onto the sparsest frame of the interventions' mean effects, from group sums.

    Samples are grouped by intervention category (a row of ``intervention_matrix``: no
    intervention, one, or a combination). Each intervened category's effect is its mean latent
    minus the mean latent of the categories without intervention (when there are any; their
    prior mean is 0). :func:`sparse_rotation` of these effects, each weighted by
    :math:`n / (n + n_0)` (``n_0 = prior_count``: groups with few samples have noisy means),
    gives the rotation. The effect of each atomic intervention is the mean of its single-label
    category (NaN where it has none), ready for
    :meth:`~scvi_causal.core.SparseShiftPrior.reset_in_frame`.

    Parameters
    ----------
    sums
        ``(C, K)`` sum of the posterior means of each category's samples.
    counts
        ``(C,)`` number of samples of each category.
    intervention_matrix
        ``(C, P)`` intervention matrix of the categories.
    noise_z
        If set, ``min_shift = noise_z / sqrt(n_p)`` with ``n_p`` the samples of every
        category that contains intervention ``p`` (the standard error of its mean latent at
        unit variance).
    prior_count
        :math:`n_0` of the weights.

    Returns
    -------
    dict or None
        ``rotation`` ``(K, K)``, ``effects`` ``(P, K)`` in the current frame, ``min_shift``
        ``(P,)`` or None, ``l1_before`` and ``l1_after``; None when fewer than two intervened
        categories have samples.

    Examples
    --------
    >>> import torch
    >>> matrix = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # control, p0, p1
    >>> counts = torch.tensor([100.0, 50.0, 50.0])
    >>> means = torch.tensor([[0.0, 0.0], [2.4, 1.8], [-1.2, 1.6]])  # rotated sparse effects
    >>> out = sparse_alignment(means * counts[:, None], counts, matrix)
    >>> (out["effects"] @ out["rotation"]).abs().min(-1).values.max() < 0.1
    tensor(True)
    """
    matrix = intervention_matrix.to(sums)
    counts = counts.to(sums)
    intervened = matrix.abs().sum(-1) > 0
    keep = intervened & (counts > 0)
    if int(keep.sum()) < 2:
        return None
    control = ~intervened & (counts > 0)
    reference = (
        sums[control].sum(0) / counts[control].sum()
        if bool(control.any())
        else sums.new_zeros(sums.shape[1])
    )
    means = sums[keep] / counts[keep].unsqueeze(-1) - reference
    rotation, before, after = sparse_rotation(
        means, weights=counts[keep] / (counts[keep] + prior_count)
    )
    effects = torch.full(
        (matrix.shape[1], sums.shape[1]), float("nan"), device=sums.device, dtype=sums.dtype
    )
    single = (matrix.sum(-1) == 1) & (matrix.max(-1).values == 1) & (counts > 0)
    for cat in torch.nonzero(single).view(-1).tolist():
        effects[int(matrix[cat].argmax())] = sums[cat] / counts[cat] - reference
    min_shift = None
    if noise_z is not None:
        n_cells = (matrix != 0).to(counts.dtype).T @ counts
        min_shift = noise_z / n_cells.clamp_min(1.0).sqrt()
    return {
        "rotation": rotation,
        "effects": effects,
        "min_shift": min_shift,
        "l1_before": before,
        "l1_after": after,
    }


def forget_optimizer_state(optimizers, params) -> None:
    """Drop the optimisers' state (e.g. Adam's moments) of ``params``, whose values were just
    replaced (after a rotation they are in another frame); they restart from scratch.

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = torch.optim.Adam([w])
    >>> w.sum().backward(); opt.step()
    >>> forget_optimizer_state([opt], [w])
    >>> len(opt.state)
    0
    """
    ids = {id(p) for p in params}
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) in ids:
                    optimizer.state.pop(p, None)


def alignment_epochs(align_at, max_epochs: int) -> set[int]:
    """Epochs (0-based) at whose end the latent space is rotated: the fractions ``align_at``
    of ``max_epochs``.

    Examples
    --------
    >>> sorted(alignment_epochs((0.3, 0.5, 0.7), 100))
    [29, 49, 69]
    """
    n = max(int(max_epochs or 1), 1)
    return {max(int(round(f * n)) - 1, 0) for f in align_at}


class LatentRotationMixin:
    r"""Alignment steps for a VAE with a :class:`SparseShiftPrior` (``self.prior``).

    A subclass says where its latents enter and leave the networks
    (:meth:`_latent_layers`) and, if needed, when its networks can be rotated
    (:meth:`_networks_rotatable`); the mixin gives :meth:`can_rotate_latent_space` and
    :meth:`rotate_latent_space`, used by the training plans' alignment steps.

    Examples
    --------
    >>> import torch
    >>> from scvi_causal.core import SparseShiftPrior
    >>> class Tiny(LatentRotationMixin, torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.enc, self.dec = torch.nn.Linear(5, 3), torch.nn.Linear(3, 4)
    ...         self.prior = SparseShiftPrior(n_interventions=2, n_latent=3)
    ...     def _latent_layers(self):
    ...         return self.enc, self.dec, None
    >>> q = torch.linalg.qr(torch.randn(3, 3)).Q
    >>> len(Tiny().rotate_latent_space(q))  # mean head (2), decoder input, shifts, masks
    5
    """

    def _latent_layers(self) -> tuple[torch.nn.Linear, torch.nn.Linear, torch.nn.Linear | None]:
        """Encoder mean head, decoder input layer and encoder log-scale head (or None)."""
        raise NotImplementedError

    def _networks_rotatable(self) -> bool:
        """Model-specific conditions for a rotation (e.g. Gaussian latents)."""
        return True

    def can_rotate_latent_space(self) -> bool:
        """Whether :meth:`rotate_latent_space` applies: a sparse prior with interventions and
        no frozen mask rows, and trainable networks."""
        prior = self.prior
        return (
            prior.can_reset_in_frame()
            and self._latent_layers()[0].weight.requires_grad
            and self._networks_rotatable()
        )

    @torch.no_grad()
    def rotate_latent_space(
        self,
        rotation: torch.Tensor,
        effects: torch.Tensor | None = None,
        threshold: float = 0.5,
        logit: float = 2.0,
        min_shift: torch.Tensor | None = None,
    ) -> list[torch.nn.Parameter]:
        r"""Re-express the model in the rotated latent frame :math:`z' = z Q`.

        A change of coordinates, not of the model (:func:`rotate_latent_layers`): the
        encoder's mean head is multiplied by :math:`Q`, the decoder's first layer by
        :math:`Q^\top` on its latent inputs, so every sample decodes as before from its
        posterior mean; the log scales are mixed with weights :math:`Q_{jk}^2`. The shifts are
        expressed in the new frame and each mask reset from them
        (:meth:`SparseShiftPrior.reset_in_frame`). Training then refines masks and shifts in
        the new frame.

        Parameters
        ----------
        rotation
            ``(K, K)`` orthogonal matrix :math:`Q` (e.g. from :func:`sparse_rotation`).
        effects
            ``(P, K)`` effect of each atomic intervention in the current frame; rows with a
            NaN fall back to the expected masked shift.
        threshold
            Relative size of a shift for its mask to be switched on.
        logit
            Magnitude of the reset mask logits.
        min_shift
            ``(P,)`` smallest shift of each intervention that may be switched on (e.g. a
            multiple of the standard error of its mean latent); default no floor.

        Returns
        -------
        list of torch.nn.Parameter
            The parameters that changed (their optimiser state is stale).
        """
        if not self.can_rotate_latent_space():
            raise ValueError(
                "rotate_latent_space needs a 'spike_slab' or 'l1' prior with interventions, "
                "Gaussian latents, trainable networks and no frozen masks."
            )
        mean_head, decoder_input, log_scale_head = self._latent_layers()
        changed = rotate_latent_layers(
            rotation, mean_head, decoder_input, log_scale_head=log_scale_head
        )
        changed += self.prior.reset_in_frame(
            rotation, effects=effects, threshold=threshold, logit=logit, min_shift=min_shift
        )
        return changed

    @torch.no_grad()
    def change_latent_frame(self, matrix: torch.Tensor) -> list[torch.nn.Parameter]:
        """Re-express the encoder and decoder in the linear frame :math:`z' = z M`
        (:func:`change_latent_frame`; the prior is left alone: its parameters must already
        be those of the new frame, as after :func:`~scvi_causal.core.fit_latent_graph`).
        The encoder's head is taken to output log variances (``_log_scale`` = ``"std"`` for
        log standard deviations)."""
        mean_head, decoder_input, log_scale_head = self._latent_layers()
        return change_latent_frame(
            matrix,
            mean_head,
            decoder_input,
            log_scale_head=log_scale_head,
            log_scale=getattr(self, "_log_scale", "variance"),
        )
