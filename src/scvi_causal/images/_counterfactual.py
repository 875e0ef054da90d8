"""Counterfactual explanations of an image classifier by small moves in a VAE's latent space.

DiVE-style (Rodriguez et al., 2021, "Beyond trivial counterfactual explanations with diverse
valuable explanations"): an image is encoded, and a displacement :math:`\\delta` of its latent
is sought that makes the classifier, applied to the decoded image, change its decision, while
:math:`\\|\\delta\\|_1` (or :math:`\\|\\delta\\|_2^2`) stays small. With a disentangled model and
a classifier that reads one factor, a good explanation moves only that factor's units;
:meth:`CounterfactualExplanations.factor_scores` counts how often that happens, given which
factor each unit stands for (:func:`~scvi_causal.metrics.unit_factor_assignment`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from scvi_causal.metrics import counterfactual_factor_scores, moved_units

from ._classifier import ImageClassifier
from ._vae import _image_tensor

logger = logging.getLogger(__name__)


@dataclass
class CounterfactualExplanations:
    """Latent counterfactual explanations, one per image.

    Attributes
    ----------
    latents
        ``(n, n_latent)`` posterior means of the explained images.
    displacement
        ``(n, n_latent)`` the smallest displacement found that changes the decision (for an
        image whose decision never changed: the last one tried).
    images
        ``(n, 64, 64)`` pixel probabilities decoded from ``latents + displacement``.
    original_class
        ``(n,)`` the classifier's decision on the reconstructions (decoded ``latents``): the
        decision the search starts from and changes.
    image_class
        ``(n,)`` its decision on the explained images themselves (equal to
        ``original_class`` where the model reconstructs what the classifier reads).
    counterfactual_class
        ``(n,)`` its decision on the counterfactual images.
    target_class
        ``(n,)`` the class asked for, ``-1`` where any other class would do.
    norm
        ``"l1"`` or ``"l2"``: the size of a displacement.
    """

    latents: np.ndarray
    displacement: np.ndarray
    images: np.ndarray
    original_class: np.ndarray
    image_class: np.ndarray
    counterfactual_class: np.ndarray
    target_class: np.ndarray
    norm: str

    def __len__(self) -> int:
        return len(self.latents)

    @property
    def flipped(self) -> np.ndarray:
        """``(n,)`` boolean: the decision changed (to the target class where one was asked)."""
        untargeted = self.target_class < 0
        return np.where(
            untargeted,
            self.counterfactual_class != self.original_class,
            self.counterfactual_class == self.target_class,
        )

    @property
    def distance(self) -> np.ndarray:
        """``(n,)`` size of each displacement (L1 or L2 norm, as searched)."""
        order = 1 if self.norm == "l1" else 2
        return np.linalg.norm(self.displacement, ord=order, axis=1)

    def moved_units(self, threshold: float = 0.1) -> np.ndarray:
        """``(n, n_latent)`` boolean: units moved by at least ``threshold`` times the
        explanation's largest move (:func:`~scvi_causal.metrics.moved_units`)."""
        return moved_units(self.displacement, threshold)

    def factor_scores(
        self,
        unit_factors,
        causal_factor: int,
        threshold: float = 0.1,
        n_factors: int | None = None,
        only_flipped: bool = True,
    ) -> dict:
        """Which factors the explanations move, and how often only the causal one.

        :func:`~scvi_causal.metrics.counterfactual_factor_scores` on the displacements (by
        default only of the explanations that changed the decision).

        Parameters
        ----------
        unit_factors
            ``(n_latent,)`` factor of each unit, ``-1`` for none, e.g. from
            :func:`~scvi_causal.metrics.unit_factor_assignment`.
        causal_factor
            The factor the classifier reads (0 for the dSprites shape).
        threshold, n_factors
            As in :func:`~scvi_causal.metrics.counterfactual_factor_scores`.
        only_flipped
            Score only the explanations that changed the decision.
        """
        rows = self.flipped if only_flipped else np.ones(len(self), dtype=bool)
        if not rows.any():
            raise ValueError("No explanation changed the classifier's decision.")
        return counterfactual_factor_scores(
            self.displacement[rows], unit_factors, causal_factor, threshold, n_factors
        )


def _logit_function(classifier) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(classifier, ImageClassifier):
        return classifier.module
    if callable(classifier):  # e.g. an nn.Module
        return classifier
    raise TypeError(
        "`classifier` must be an ImageClassifier or a callable (e.g. an nn.Module) mapping "
        "(n, 1, 64, 64) images to (n, n_classes) logits."
    )


def _margin(logits: torch.Tensor, original: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image: how far the decision is from the wanted one (<= 0: reached). Untargeted
    (``target < 0``): the original class's logit minus the best other logit; targeted: the
    best non-target logit minus the target's."""
    n = torch.arange(len(logits))
    untargeted = target < 0
    keep = torch.where(untargeted, original, target)
    kept = logits[n, keep]
    others = logits.clone()
    others[n, keep] = -torch.inf
    best_other = others.amax(1)
    return torch.where(untargeted, kept - best_other, best_other - kept)


def latent_counterfactuals(
    model,
    images,
    classifier,
    target=None,
    norm: Literal["l1", "l2"] = "l1",
    penalty: float = 0.1,
    margin: float = 0.5,
    n_steps: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
) -> CounterfactualExplanations:
    """Smallest latent moves that change an image classifier's decision (DiVE-style).

    Each image is encoded to its posterior mean :math:`z`, and the classifier's decision on its
    reconstruction :math:`g(z)` is the one to change (so that a reconstruction error is never
    taken for an explanation). A displacement :math:`\\delta` is sought that minimises

    .. math::

        \\max\\big(0,\\; m(f(g(z + \\delta))) + \\kappa\\big) + \\lambda \\|\\delta\\|

    where :math:`g` is the decoder (pixel probabilities), :math:`f` the classifier's logits,
    :math:`m` the margin of the unwanted decision (original logit minus the best other one; for
    a target class, the best non-target logit minus the target's), :math:`\\kappa` =
    ``margin`` and :math:`\\|\\cdot\\|` the L1 norm or the squared L2 norm (``penalty`` =
    :math:`\\lambda`), by proximal gradient descent: each step moves :math:`\\delta` a length
    :math:`\\eta_t` along the hinge's negative gradient, then applies the norm's proximal map
    (soft-thresholding by :math:`\\eta_t \\lambda` for L1, which sets units the classifier does
    not need back to exactly 0; shrinking by :math:`1 / (1 + 2 \\eta_t \\lambda)` for L2). The
    step length :math:`\\eta_t` decays linearly from ``lr`` to 0. Past the margin only the
    proximal map acts, which pulls :math:`\\delta` back towards the decision boundary; the
    smallest displacement seen that changes the decision is kept. Rodriguez et al. (2021) add a
    reconstruction and a diversity term; here one explanation per image is sought and the
    decoded image is the counterfactual.

    Parameters
    ----------
    model
        A trained image model with an encoder to a Gaussian posterior and a decoder to pixel
        logits (``model.module.encoder``, ``model.module.decoder``): :class:`ImageVAE` (also
        beta-VAE and beta-TCVAE), :class:`AdaGVAE`, :class:`CCVAE`.
    images
        ``(n, 64, 64)`` images in ``[0, 1]`` to explain.
    classifier
        :class:`ImageClassifier`, or a callable (e.g. a torch module) from ``(n, 1, 64, 64)``
        float images in ``[0, 1]`` to ``(n, n_classes)`` logits, differentiable in the pixels.
    target
        Class to reach: one integer or ``(n,)`` integers (``-1``: any other class); ``None``:
        any class other than the original decision.
    norm
        ``"l1"`` (sparse moves) or ``"l2"`` (squared L2 penalty).
    penalty
        Weight :math:`\\lambda` of the norm.
    margin
        Logit margin :math:`\\kappa` beyond the decision boundary that the hinge asks for.
    n_steps, lr
        Number of steps, and the initial step length in latent units (decayed linearly to 0,
        so that the displacement settles at the boundary instead of oscillating around it);
        ``n_steps * lr / 2`` bounds how far a displacement can reach.
    batch_size
        Images searched together (each has its own displacement).

    Returns
    -------
    CounterfactualExplanations
        Latents, displacements, counterfactual images and decisions.

    Examples
    --------
    >>> import numpy as np
    >>> from scvi_causal.images import ImageClassifier, ImageVAE
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((32, 64, 64)) > 0.9).astype(np.float32)
    >>> vae = ImageVAE(n_latent=3, intervention_prior="none", channels=8, hidden=16)
    >>> clf = ImageClassifier(n_classes=2, channels=8, hidden=16)
    >>> explanations = latent_counterfactuals(vae, images[:4], clf, n_steps=5)
    >>> explanations.displacement.shape, explanations.flipped.shape
    ((4, 3), (4,))
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"`norm` must be 'l1' or 'l2', got {norm!r}.")
    if penalty < 0 or margin < 0:
        raise ValueError(f"`penalty` and `margin` must be >= 0, got {penalty} and {margin}.")
    if n_steps < 1 or lr <= 0:
        raise ValueError(f"`n_steps` must be >= 1 and `lr` > 0, got {n_steps} and {lr}.")
    module = getattr(model, "module", None)
    if not (hasattr(module, "encoder") and hasattr(module, "decoder")):
        raise TypeError(
            "`model` must be an image model with `module.encoder` and `module.decoder` "
            "(ImageVAE, AdaGVAE, CCVAE)."
        )
    logits_fn = _logit_function(classifier)
    x = _image_tensor(images)
    n = len(x)
    if n == 0:
        raise ValueError("`images` holds no images.")
    if target is None:
        target = np.full(n, -1)
    target = np.asarray(target)
    if target.ndim == 0:
        target = np.full(n, target)
    if target.shape != (n,) or not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"`target` must be one integer class or {n} integers, got {target!r}.")
    if (target < -1).any():
        raise ValueError("`target` classes must be >= 0 (or -1: any other class).")

    if (target >= 0).any():
        with torch.no_grad():
            n_classes = logits_fn(x[:1].float().unsqueeze(1)).shape[1]
        if target.max() >= n_classes:
            raise ValueError(f"`target` classes must be below the classifier's {n_classes}.")

    modules = [module] + ([logits_fn] if isinstance(logits_fn, nn.Module) else [])
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    out = {k: [] for k in ("z", "delta", "images", "original", "image", "final")}
    try:
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].float().unsqueeze(1)
            tb = torch.as_tensor(target[start : start + batch_size], dtype=torch.long)
            result = _search(module, logits_fn, xb, tb, norm, penalty, margin, n_steps, lr)
            for key, value in result.items():
                out[key].append(value)
    finally:
        for m, mode in zip(modules, was_training):
            m.train(mode)
    original = np.concatenate(out["original"])
    explanations = CounterfactualExplanations(
        latents=np.concatenate(out["z"]),
        displacement=np.concatenate(out["delta"]),
        images=np.concatenate(out["images"]),
        original_class=original,
        image_class=np.concatenate(out["image"]),
        counterfactual_class=np.concatenate(out["final"]),
        target_class=target.astype(np.int64),
        norm=norm,
    )
    n_failed = int((~explanations.flipped).sum())
    if n_failed:
        logger.info("%d of %d decisions did not change; raise `n_steps` or `lr`.", n_failed, n)
    return explanations


def _search(module, logits_fn, x, target, norm, penalty, margin, n_steps, lr) -> dict:
    """Optimise one minibatch of displacements; keep each image's smallest successful one."""
    with torch.no_grad():
        z = module.encoder(x).loc
        image_class = logits_fn(x).argmax(1)
        original = logits_fn(torch.sigmoid(module.decoder(z))).argmax(1)
    delta = torch.zeros_like(z)
    best = torch.zeros_like(z)
    best_size = torch.full((len(z),), torch.inf)
    found = torch.zeros(len(z), dtype=torch.bool)

    def size(d: torch.Tensor) -> torch.Tensor:
        return d.abs().sum(1) if norm == "l1" else d.pow(2).sum(1)

    for step in range(n_steps + 1):
        delta.requires_grad_(True)
        gap = _margin(logits_fn(torch.sigmoid(module.decoder(z + delta))), original, target)
        (grad,) = torch.autograd.grad(torch.clamp(gap + margin, min=0.0).sum(), delta)
        delta = delta.detach()
        with torch.no_grad():
            reached = gap.detach() <= 0
            current = size(delta)
            better = reached & (current < best_size)
            best[better] = delta[better]
            best_size[better] = current[better]
            found |= reached
            if step == n_steps:
                break
            eta = lr * (1.0 - step / n_steps)  # linear decay: the last steps settle
            # a step of length eta along the hinge's gradient, then the norm's proximal step
            delta = delta - eta * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            if norm == "l1":
                delta = delta.sign() * (delta.abs() - eta * penalty).clamp_min(0.0)
            else:
                delta = delta / (1.0 + 2.0 * eta * penalty)
    with torch.no_grad():
        final_delta = torch.where(found[:, None], best, delta)
        counterfactual = torch.sigmoid(module.decoder(z + final_delta))
        final = logits_fn(counterfactual).argmax(1)
    return {
        "z": z.numpy(),
        "delta": final_delta.numpy(),
        "images": counterfactual[:, 0].numpy(),
        "original": original.numpy(),
        "image": image_class.numpy(),
        "final": final.numpy(),
    }
