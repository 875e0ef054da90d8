"""CCVAE: labels as characteristics of their own latent subspaces (Joy et al., 2021).

"Capturing label characteristics in VAEs" (ICLR 2021): the latent is split into one small
block per label and a free context block. A classifier :math:`q(y_l \\mid z_l)` reads each
label from its own block only, and a conditional prior :math:`p(z_l \\mid y_l)` places each
class of the label in its block; the context block has the prior :math:`\\mathcal{N}(0, I)`.
Changing a label is then a move within its block: set the block to the conditional prior mean
of the new class and decode (:meth:`CCVAE.intervene`). Encoder, decoder, training loop and
persistence are those of :class:`~scvi_causal.images.ImageVAE`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from scvi_causal._constants import DEFAULT_INTERVENTION_LR_FACTOR
from scvi_causal.core import LatentPrior
from scvi_causal.metrics import label_intervention_scores

from ._vae import ConvDecoder, ConvEncoder, ImageVAE, _ImageTrainingPlan, _training_loader


def _check_n_classes(n_classes) -> tuple[int, ...]:
    if isinstance(n_classes, int | np.integer):
        n_classes = (n_classes,)
    n_classes = tuple(n_classes)
    if not n_classes or any(
        isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 2 for c in n_classes
    ):
        raise ValueError(
            f"`n_classes` must be a non-empty sequence of integers >= 2 (classes per label), "
            f"got {n_classes!r}."
        )
    return tuple(int(c) for c in n_classes)


class LabelConditionalPrior(LatentPrior):
    """CCVAE's prior: :math:`p(z_l \\mid y_l)` per label block, :math:`\\mathcal{N}(0, I)` on
    the context block.

    Each class ``c`` of label ``l`` has a learned mean and scale in the label's ``label_dim``
    units. Means start spread along the block's first unit (``-2`` to ``2``), scales at 1. The
    label prior :math:`p(y_l)` is a buffer (uniform until :meth:`set_label_prior`).

    Parameters
    ----------
    n_classes
        Number of classes of each label.
    label_dim
        Units per label block.
    n_context
        Units of the context block (after the label blocks).

    Examples
    --------
    >>> prior = LabelConditionalPrior(n_classes=(3, 2), label_dim=1, n_context=2)
    >>> pz = prior(torch.tensor([[0, 1], [2, 0]]))
    >>> pz.loc.detach()
    tensor([[-2.,  2.,  0.,  0.],
            [ 2., -2.,  0.,  0.]])
    """

    def __init__(self, n_classes: Sequence[int], label_dim: int = 1, n_context: int = 0):
        super().__init__()
        self.n_classes = _check_n_classes(n_classes)
        self.label_dim = int(label_dim)
        self.n_context = int(n_context)
        offsets = np.concatenate([[0], np.cumsum(self.n_classes)[:-1]])
        loc = torch.zeros(sum(self.n_classes), self.label_dim)
        for offset, c in zip(offsets, self.n_classes):
            loc[offset : offset + c, 0] = torch.linspace(-2.0, 2.0, c)
        self.loc = nn.Parameter(loc)
        self.log_scale = nn.Parameter(torch.zeros(sum(self.n_classes), self.label_dim))
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long))
        log_py = torch.cat([torch.full((c,), -math.log(c)) for c in self.n_classes])
        self.register_buffer("log_py", log_py)

    @property
    def n_labels(self) -> int:
        """Number of labels."""
        return len(self.n_classes)

    def class_params(self, label: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales ``(n_classes[label], label_dim)`` of the classes of ``label``."""
        rows = slice(int(self.offsets[label]), int(self.offsets[label]) + self.n_classes[label])
        return self.loc[rows], self.log_scale[rows].exp()

    def forward(self, intervention: torch.Tensor | None = None, n: int | None = None) -> Normal:
        """Prior over ``(n, n_labels * label_dim + n_context)`` given ``(n, n_labels)`` labels
        (passed as ``intervention``: here the conditioning variable is the label)."""
        if intervention is None:
            raise ValueError("The label-conditional prior needs the labels of the samples.")
        rows = intervention.long() + self.offsets
        loc = self.loc[rows].flatten(-2)
        scale = self.log_scale[rows].exp().flatten(-2)
        context = loc.new_zeros(*loc.shape[:-1], self.n_context)
        return Normal(torch.cat([loc, context], -1), torch.cat([scale, context + 1.0], -1))

    def class_log_prob(self, z_label: torch.Tensor, label: int) -> torch.Tensor:
        """``log p(z_l | y_l = c)`` of a label's block ``(..., label_dim)`` for every class ``c``,
        shape ``(..., n_classes[label])``."""
        loc, scale = self.class_params(label)
        return Normal(loc, scale).log_prob(z_label.unsqueeze(-2)).sum(-1)

    def label_log_prior(self, label: int) -> torch.Tensor:
        """``log p(y_l)``, shape ``(n_classes[label],)``."""
        start = int(self.offsets[label])
        return self.log_py[start : start + self.n_classes[label]]

    @torch.no_grad()
    def set_label_prior(self, labels: torch.Tensor) -> None:
        """Set :math:`p(y_l)` to the class frequencies of ``(n, n_labels)`` labels (add-one
        smoothed, so that no class has probability 0)."""
        for label, c in enumerate(self.n_classes):
            counts = torch.bincount(labels[:, label].long(), minlength=c).to(self.log_py)
            start = int(self.offsets[label])
            self.log_py[start : start + c] = torch.log((counts + 1.0) / (counts.sum() + c))

    def kl_global(self) -> torch.Tensor:
        """No global variables: 0."""
        return self.loc.new_zeros(())


class CCVAEModule(nn.Module):
    """Encoder, decoder, per-label classifiers and the label-conditional prior of a CCVAE.

    The latent is ``[z_1, ..., z_L, z_context]``: ``L`` blocks of ``label_dim`` units, then
    ``n_context`` units. Classifier ``l`` is a linear map from block ``l`` to the logits of
    label ``l`` (the diagonal classifier of the paper, for one unit and two classes). It starts
    as the Bayes classifier of the initial prior, so that encoder, classifier and prior agree on
    where each class lies (a classifier that starts at random can settle on the opposite
    arrangement, which the prior's means then cross over to meet, slowly).

    :meth:`loss` is the negative of the supervised bound of Joy et al. (2021, eq. 4):

    .. math::

        \\log p(x, y) \\ge \\mathbb{E}_{q(z|x)}\\Big[\\frac{q(y|z_c)}{q(y|x)}
        \\log\\frac{p(x|z)\\, p(z|y)}{q(y|z_c)\\, q(z|x)}\\Big] + \\log q(y|x) + \\log p(y)

    with :math:`q(y|x) = \\mathbb{E}_{q(z|x)}[q(y|z_c)]` estimated from ``n_samples_qyx`` draws.
    As in the authors' code, the importance weight's numerator sees ``z`` through a stopped
    gradient (only the classifier learns from it).
    """

    def __init__(
        self,
        n_classes: Sequence[int],
        label_dim: int = 1,
        n_context: int = 6,
        beta: float = 1.0,
        n_samples_qyx: int = 10,
        channels: int = 32,
        hidden: int = 256,
    ):
        super().__init__()
        self.n_classes = _check_n_classes(n_classes)
        self.label_dim = int(label_dim)
        self.n_context = int(n_context)
        self.n_labels = len(self.n_classes)
        self.n_latent = self.n_labels * self.label_dim + self.n_context
        self.beta = float(beta)
        self.n_samples_qyx = int(n_samples_qyx)
        self.encoder = ConvEncoder(self.n_latent, channels, hidden)
        self.decoder = ConvDecoder(self.n_latent, channels, hidden)
        self.prior = LabelConditionalPrior(self.n_classes, self.label_dim, self.n_context)
        self.classifiers = nn.ModuleList(nn.Linear(self.label_dim, c) for c in self.n_classes)
        with torch.no_grad():  # start as the Bayes classifier of the initial prior (unit scales)
            for i, clf in enumerate(self.classifiers):
                loc = self.prior.class_params(i)[0]
                clf.weight.copy_(loc)
                clf.bias.copy_(-0.5 * (loc**2).sum(-1))

    def intervention_parameters(self) -> list[nn.Parameter]:
        """The per-class means and scales of the conditional prior: each sees only the images
        of its class, so the training plan gives them the larger learning rate that
        per-intervention parameters get."""
        return [self.prior.loc, self.prior.log_scale]

    def label_units(self, label: int) -> slice:
        """Latent units of ``label``'s block."""
        return slice(label * self.label_dim, (label + 1) * self.label_dim)

    def label_logits(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Logits of :math:`q(y_l \\mid z_l)` for every label, each ``(..., n_classes[l])``."""
        return [clf(z[..., self.label_units(i)]) for i, clf in enumerate(self.classifiers)]

    def log_q_labels(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\log q(y \\mid z_c) = \\sum_l \\log q(y_l \\mid z_l)`, shape ``z.shape[:-1]``."""
        total = 0.0
        for i, logits in enumerate(self.label_logits(z)):
            log_q = F.log_softmax(logits, -1)
            index = y[..., i].long().expand(logits.shape[:-1]).unsqueeze(-1)
            total = total + log_q.gather(-1, index).squeeze(-1)
        return total

    def _label_log_prior(self, y: torch.Tensor) -> torch.Tensor:
        return sum(self.prior.label_log_prior(i)[y[:, i].long()] for i in range(self.n_labels))

    def loss(
        self, x: torch.Tensor, y: torch.Tensor, kl_weight: float = 1.0, n_obs: int = 1
    ) -> dict[str, torch.Tensor]:
        """Negative supervised bound (mean over the minibatch; ``beta`` and ``kl_weight`` weight
        the KL) and its per-term means. ``n_obs`` is unused (no global terms)."""
        qz = self.encoder(x)
        z = qz.rsample()
        recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none")
        recon = recon.flatten(1).sum(-1)
        kl_z = kl_divergence(qz, self.prior(y)).sum(-1)
        log_qyz = self.log_q_labels(z, y)
        log_qyz_detached = self.log_q_labels(z.detach(), y)
        k = max(self.n_samples_qyx, 1)
        log_qyx = torch.logsumexp(self.log_q_labels(qz.rsample((k,)), y), 0) - math.log(k)
        weight = torch.exp(log_qyz_detached - log_qyx)
        local = -recon - kl_weight * self.beta * kl_z - log_qyz
        bound = weight * local + log_qyx + self._label_log_prior(y)
        with torch.no_grad():
            hits = [
                (logits.argmax(-1) == y[:, i]).float()
                for i, logits in enumerate(self.label_logits(qz.loc))
            ]
        return {
            "loss": -bound.mean(),
            "reconstruction_loss": recon.mean().detach(),
            "kl_local": kl_z.mean().detach(),
            "label_log_likelihood": log_qyx.mean().detach(),
            "label_accuracy": torch.stack(hits).mean(),
        }

    def supervised_bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The lower bound on :math:`\\log p(x, y)` per image (``beta = 1``), shape ``(n,)``."""
        qz = self.encoder(x)
        z = qz.rsample()
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none")
        kl_z = kl_divergence(qz, self.prior(y)).sum(-1)
        log_qyz = self.log_q_labels(z, y)
        k = max(self.n_samples_qyx, 1)
        log_qyx = torch.logsumexp(self.log_q_labels(qz.rsample((k,)), y), 0) - math.log(k)
        local = log_px.flatten(1).sum(-1) - kl_z - log_qyz
        return torch.exp(log_qyz - log_qyx) * local + log_qyx + self._label_log_prior(y)

    def unsupervised_bound(self, x: torch.Tensor) -> torch.Tensor:
        """The ELBO of :math:`\\log p(x)` per image, labels summed out under
        :math:`q(y \\mid z_c)` (exactly: prior and classifier factorise over labels)."""
        qz = self.encoder(x)
        z = qz.rsample()
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none")
        context = z[..., self.n_labels * self.label_dim :]
        total = log_px.flatten(1).sum(-1) - qz.log_prob(z).sum(-1)
        total = total + Normal(0.0, 1.0).log_prob(context).sum(-1)
        for i, logits in enumerate(self.label_logits(z)):
            log_q = F.log_softmax(logits, -1)
            log_p = self.prior.class_log_prob(z[..., self.label_units(i)], i)
            log_p = log_p + self.prior.label_log_prior(i)
            total = total + (log_q.exp() * (log_p - log_q)).sum(-1)
        return total


class _LabelTrainingPlan(_ImageTrainingPlan):
    """The image plan (Adam, KL warm-up, epoch history) on minibatches of labelled images."""

    def batch_loss(self, batch, kl_weight: float) -> dict[str, torch.Tensor]:
        """The CCVAE loss on one minibatch of ``(images, labels)``."""
        x, y = batch
        return self.module.loss(x.to(torch.float32).unsqueeze(1), y, kl_weight=kl_weight)


class CCVAE(ImageVAE):
    """Characteristic-capturing VAE (CCVAE; Joy et al., 2021, "Capturing label
    characteristics in VAEs") on 64x64 binary images.

    Labels (e.g. dSprites factors cut into bins with
    :func:`~scvi_causal.images.discretize_factors`) are characteristics of the image: each
    label owns a block of ``label_dim`` latent units, read by its own classifier
    :math:`q(y_l \\mid z_l)` and placed by a conditional prior :math:`p(z_l \\mid y_l)`; a free
    context block of ``n_context`` units holds the rest. Trained on fully labelled images.
    :meth:`intervene` changes one label of an image by moving its block to the new class's
    prior mean; :meth:`score_intervention` measures whether the change took and what else
    changed.

    Encoder, decoder, training (seeding, KL warm-up, Lightning), :meth:`decode`,
    :meth:`get_latent_representation`, :meth:`save` and :meth:`load` are those of
    :class:`ImageVAE`.

    Parameters
    ----------
    n_classes
        Number of classes of each label, e.g. ``(3, 2, 2, 2, 2)``.
    n_context
        Units of the free context block.
    label_dim
        Units per label block (the paper uses one per binary label).
    beta
        Weight of the KL term.
    n_samples_qyx
        Posterior draws that estimate :math:`q(y \\mid x)` in the loss.
    label_names
        Names of the labels (default ``label_0``, ``label_1``, ...).
    channels, hidden
        Width of the convolutional and dense layers.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((64, 64, 64)) > 0.9).astype(np.float32)
    >>> labels = rng.integers(0, 2, (64, 2))
    >>> vae = CCVAE(n_classes=(2, 2), n_context=2, label_names=("size", "side"))
    >>> vae.train(images, labels, max_epochs=1, enable_progress_bar=False, seed=0)
    >>> vae.get_latent_representation(images).shape
    (64, 4)
    >>> vae.label_units
    {'size': array([0]), 'side': array([1])}
    >>> vae.intervene(images[:5], label="side", value=1).shape
    (5, 64, 64)
    >>> vae.predict_labels(images[:3]).shape
    (3, 2)
    """

    def __init__(
        self,
        n_classes: Sequence[int],
        n_context: int = 6,
        label_dim: int = 1,
        beta: float = 1.0,
        n_samples_qyx: int = 10,
        label_names: Sequence[str] | None = None,
        channels: int = 32,
        hidden: int = 256,
    ):
        n_classes = _check_n_classes(n_classes)
        if isinstance(label_dim, bool) or not isinstance(label_dim, int) or label_dim < 1:
            raise ValueError(f"`label_dim` must be an integer >= 1, got {label_dim!r}.")
        if isinstance(n_context, bool) or not isinstance(n_context, int) or n_context < 0:
            raise ValueError(f"`n_context` must be an integer >= 0, got {n_context!r}.")
        if beta < 0:
            raise ValueError("`beta` must be >= 0.")
        if n_samples_qyx < 1:
            raise ValueError(f"`n_samples_qyx` must be >= 1, got {n_samples_qyx}.")
        if label_names is None:
            label_names = [f"label_{i}" for i in range(len(n_classes))]
        label_names = [str(name) for name in label_names]
        if len(label_names) != len(n_classes) or len(set(label_names)) != len(label_names):
            raise ValueError(
                f"`label_names` must be {len(n_classes)} distinct names (one per label), got "
                f"{label_names}."
            )
        # ImageVAE.__init__ builds an ImageVAEModule; the attributes its methods use are set here
        self.init_params_ = {
            "n_classes": list(n_classes),
            "n_context": n_context,
            "label_dim": label_dim,
            "beta": beta,
            "n_samples_qyx": n_samples_qyx,
            "label_names": label_names,
            "channels": channels,
            "hidden": hidden,
        }
        self.module = CCVAEModule(
            n_classes, label_dim, n_context, beta, n_samples_qyx, channels, hidden
        )
        self.n_classes = n_classes
        self.label_names = tuple(label_names)
        self.n_latent = self.module.n_latent
        self.n_interventions = 0
        self.is_trained_ = False
        self.history_ = pd.DataFrame()

    def __repr__(self) -> str:
        p = self.init_params_
        return (
            f"CCVAE(n_classes={tuple(p['n_classes'])}, n_context={p['n_context']}, "
            f"label_dim={p['label_dim']}, beta={p['beta']}, trained={self.is_trained_})"
        )

    @property
    def label_units(self) -> dict[str, np.ndarray]:
        """Latent units of each label's block, by label name."""
        return {
            name: np.arange(self.n_latent)[self.module.label_units(i)]
            for i, name in enumerate(self.label_names)
        }

    @property
    def context_units(self) -> np.ndarray:
        """Latent units of the context block."""
        return np.arange(len(self.label_names) * self.module.label_dim, self.n_latent)

    # ------------------------------------------------------------------ inputs
    def _labels(self, labels, n: int) -> torch.Tensor:
        arr = np.asarray(labels)
        if arr.ndim == 1 and len(self.n_classes) == 1:
            arr = arr[:, None]
        if arr.shape != (n, len(self.n_classes)):
            raise ValueError(
                f"`labels` must be (n_images, {len(self.n_classes)}) = ({n}, "
                f"{len(self.n_classes)}), got {arr.shape}."
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"`labels` must hold integer classes, got dtype {arr.dtype}.")
        if (arr < 0).any() or (arr >= np.array(self.n_classes)).any():
            raise ValueError(f"`labels` must be in [0, n_classes) per label {self.n_classes}.")
        return torch.from_numpy(arr.astype(np.int64))

    def _label_index(self, label) -> int:
        if isinstance(label, str):
            if label not in self.label_names:
                raise ValueError(f"Unknown label {label!r}; the labels are {self.label_names}.")
            return self.label_names.index(label)
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise ValueError(f"`label` must be a label name or index, got {label!r}.")
        if not 0 <= label < len(self.label_names):
            raise ValueError(f"`label` index must be in [0, {len(self.label_names)}), got {label}.")
        return int(label)

    # ------------------------------------------------------------------ training
    def train(
        self,
        images,
        labels,
        max_epochs: int = 30,
        batch_size: int = 64,
        lr: float = 5e-4,
        prior_lr_factor: float = DEFAULT_INTERVENTION_LR_FACTOR,
        n_epochs_kl_warmup: int | None = None,
        accelerator: str = "cpu",
        devices: int | str = 1,
        enable_progress_bar: bool = True,
        seed: int | None = None,
        num_workers: int = 0,
    ) -> None:
        """Fit on labelled images with Lightning (Adam; a progress bar unless disabled).

        Parameters
        ----------
        images
            ``(n, 64, 64)`` array in ``[0, 1]``.
        labels
            ``(n, n_labels)`` integer classes (``(n,)`` for one label). Their frequencies become
            the label prior :math:`p(y)`.
        max_epochs, batch_size, lr
            Optimisation settings, as in :meth:`ImageVAE.train`.
        prior_lr_factor
            Learning-rate multiplier of the conditional prior's class means and scales (as
            ``intervention_lr_factor`` for per-intervention parameters): at the networks' rate
            they lag behind the encoder, whose label units then overshoot the class means that
            :meth:`intervene` uses.
        n_epochs_kl_warmup
            Linear KL warm-up (default: a fifth of ``max_epochs``).
        accelerator, devices
            Passed to :class:`lightning.pytorch.Trainer`.
        enable_progress_bar
            Show Lightning's progress bar.
        seed
            Seed for minibatch order and posterior samples.
        num_workers
            Data-loader workers.

        The per-epoch :attr:`history` has ``label_accuracy_train`` (accuracy of the label
        classifiers at the posterior means) and ``label_log_likelihood_train``
        (:math:`\\log q(y \\mid x)`).
        """
        x = self._images(images)
        y = self._labels(labels, len(x))
        if len(x) < 2:
            raise ValueError("Need at least 2 images to train.")
        self.module.prior.set_label_prior(y)
        loader, n_epochs_kl_warmup = _training_loader(
            (x, y), batch_size, num_workers, seed, max_epochs, n_epochs_kl_warmup
        )
        plan = _LabelTrainingPlan(
            self.module,
            n_obs=len(x),
            lr=lr,
            intervention_lr_factor=prior_lr_factor,
            n_epochs_kl_warmup=n_epochs_kl_warmup,
            temperature_start=1.0,  # no masks
            temperature_end=1.0,
        )
        self._fit(plan, loader, max_epochs, accelerator, devices, enable_progress_bar)

    # ------------------------------------------------------------------ outputs
    @torch.inference_mode()
    def predict_labels(self, images, batch_size: int = 1024, probabilities: bool = False):
        """Labels read by the model's classifiers :math:`q(y_l \\mid z_l)` at the posterior
        means.

        Returns
        -------
        numpy.ndarray or list of numpy.ndarray
            ``(n, n_labels)`` integer classes, or with ``probabilities=True`` one
            ``(n, n_classes[l])`` array of class probabilities per label.
        """
        x = self._images(images)
        self.module.eval()
        probs = [[] for _ in self.n_classes]
        for start in range(0, len(x), batch_size):
            z = self.module.encoder(x[start : start + batch_size].float().unsqueeze(1)).loc
            for i, logits in enumerate(self.module.label_logits(z)):
                probs[i].append(torch.softmax(logits, -1).numpy())
        probs = [
            np.concatenate(p) if p else np.zeros((0, c), np.float32)
            for p, c in zip(probs, self.n_classes)
        ]
        if probabilities:
            return probs
        return np.stack([p.argmax(1) for p in probs], axis=1).astype(np.int64)

    def get_class_means(self, label) -> np.ndarray:
        """Conditional prior means ``(n_classes, label_dim)`` of the classes of ``label`` (name
        or index): where :meth:`intervene` puts the label's block."""
        i = self._label_index(label)
        with torch.no_grad():
            return self.module.prior.class_params(i)[0].cpu().numpy().copy()

    def intervene(self, images, label, value, batch_size: int = 1024, return_latents: bool = False):
        """Change one label of each image: its block set to the new class's prior mean.

        The images are encoded (posterior means), the units of ``label`` are replaced by the
        mean of :math:`p(z_l \\mid y_l = \\text{value})`, and the latents are decoded; the other
        label blocks and the context stay as encoded.

        Parameters
        ----------
        images
            ``(n, 64, 64)`` array in ``[0, 1]``.
        label
            Label name or index.
        value
            New class: one integer or ``(n,)`` integers.
        batch_size
            Minibatch size of encoding and decoding.
        return_latents
            Also return the edited latents.

        Returns
        -------
        numpy.ndarray
            ``(n, 64, 64)`` pixel probabilities; with ``return_latents`` a tuple with the
            ``(n, n_latent)`` edited latents.
        """
        i = self._label_index(label)
        z = self.get_latent_representation(images, batch_size=batch_size)
        value = np.asarray(value)
        if value.ndim not in (0, 1) or (value.ndim == 1 and len(value) != len(z)):
            raise ValueError(
                f"`value` must be one class or {len(z)} classes, got shape {value.shape}."
            )
        if not np.issubdtype(value.dtype, np.integer) or not (
            (value >= 0).all() and (value < self.n_classes[i]).all()
        ):
            raise ValueError(
                f"`value` must be integer classes of {self.label_names[i]!r} in "
                f"[0, {self.n_classes[i]}), got {value!r}."
            )
        z[:, self.module.label_units(i)] = self.get_class_means(i)[value]
        out = self.decode(z, batch_size=batch_size)
        return (out, z) if return_latents else out

    def score_intervention(
        self,
        images,
        label,
        value,
        classifier: Callable[[np.ndarray], np.ndarray] | None = None,
        batch_size: int = 1024,
    ) -> dict:
        """Whether :meth:`intervene` sets the label and leaves the other labels alone.

        The labels of the reconstructed images (decoded posterior means) and of the intervened
        images are read by ``classifier`` (or, by default, by this model's classifiers on the
        re-encoded images) and scored with
        :func:`~scvi_causal.metrics.label_intervention_scores`. Reading the reconstructions
        rather than the originals keeps reconstruction errors (e.g. a blurred small sprite read
        as another scale) out of the count of labels the edit changed.

        Parameters
        ----------
        images, label, value, batch_size
            As in :meth:`intervene`.
        classifier
            A function from ``(n, 64, 64)`` images in ``[0, 1]`` to ``(n, n_labels)`` integer
            labels, e.g. one independent :class:`~scvi_causal.images.ImageClassifier` per
            label: ``lambda im: np.column_stack([c.predict(im) for c in classifiers])``.

        Returns
        -------
        dict
            ``accuracy`` (the intervened label reads ``value``), ``changed``, ``other_changed``
            (mean change rate of the other labels), ``n_other_changed`` and
            ``changed_per_label`` (a Series by label name).
        """
        i = self._label_index(label)
        predict = classifier if classifier is not None else self.predict_labels
        z = self.get_latent_representation(images, batch_size=batch_size)
        before = np.asarray(predict(self.decode(z, batch_size=batch_size)))
        after = np.asarray(predict(self.intervene(images, i, value, batch_size=batch_size)))
        if before.ndim == 1:
            before, after = before[:, None], after[:, None]
        if before.shape[1] != len(self.label_names):
            raise ValueError(
                f"`classifier` must return (n, {len(self.label_names)}) labels, got {before.shape}."
            )
        scores = label_intervention_scores(before, after, i, value)
        scores["changed_per_label"] = pd.Series(
            scores["changed_per_label"], index=list(self.label_names)
        )
        return scores

    @torch.inference_mode()
    def get_elbo(self, images, labels=None, batch_size: int = 1024) -> float:
        """Mean lower bound per image (nats; ``beta = 1``; one posterior sample).

        With ``labels``: the supervised bound on :math:`\\log p(x, y)`; without: the ELBO of
        :math:`\\log p(x)` with the labels summed out under the classifiers.
        """
        x = self._images(images)
        y = None if labels is None else self._labels(labels, len(x))
        self.module.eval()
        total = 0.0
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size].float().unsqueeze(1)
            if y is None:
                total += float(self.module.unsupervised_bound(xb).sum())
            else:
                total += float(self.module.supervised_bound(xb, y[s : s + batch_size]).sum())
        return total / len(x)
