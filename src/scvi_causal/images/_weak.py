"""Weakly supervised image VAE: Ada-GVAE on pairs of images that share all but a few factors."""

from __future__ import annotations

import torch

from ._vae import ImageVAE, _ImageTrainingPlan, _training_loader


class _PairTrainingPlan(_ImageTrainingPlan):
    """The image plan (Adam, KL warm-up, epoch history) on minibatches of pairs."""

    def batch_loss(self, batch, kl_weight: float) -> dict[str, torch.Tensor]:
        """Ada-GVAE's loss on one minibatch of ``(images1, images2)``."""
        x1, x2 = (x.to(torch.float32).unsqueeze(1) for x in batch)
        return self.module.pair_loss(x1, x2, kl_weight=kl_weight)


class AdaGVAE(ImageVAE):
    """Ada-GVAE :cite:p:`locatello2020weakly`: a beta-VAE trained on pairs of images that share
    all but a few factors, without being told how many or which.

    Each image of a pair is encoded; the latent dimensions whose posteriors are close within
    the pair are averaged (:func:`~scvi_causal.core.ada_gvae_average`), and both images are
    reconstructed from their averaged posteriors, with ``beta`` times the KL to
    :math:`\\mathcal{N}(0, I)`. Encoder, decoder and prior are those of :class:`ImageVAE`
    (``intervention_prior="none"``), so :meth:`get_latent_representation`, :meth:`decode`,
    :meth:`get_elbo` (a single image's ELBO under the standard normal prior), :meth:`save` and
    :meth:`load` work unchanged.

    Parameters
    ----------
    n_latent
        Number of latent units.
    beta
        Weight of the KL term (the paper searches 1 to 16).
    channels, hidden
        Width of the convolutional and dense layers.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images1 = (rng.random((32, 64, 64)) > 0.9).astype(np.float32)
    >>> images2 = (rng.random((32, 64, 64)) > 0.9).astype(np.float32)
    >>> vae = AdaGVAE(n_latent=4)
    >>> vae.train(images1, images2, max_epochs=1, enable_progress_bar=False)
    >>> vae.get_latent_representation(images1).shape
    (32, 4)
    """

    def __init__(
        self, n_latent: int = 10, beta: float = 1.0, channels: int = 32, hidden: int = 256
    ):
        super().__init__(
            n_latent=n_latent,
            n_interventions=0,
            intervention_prior="none",
            beta=beta,
            channels=channels,
            hidden=hidden,
        )
        # what load() passes back to __init__
        self.init_params_ = {
            "n_latent": n_latent,
            "beta": beta,
            "channels": channels,
            "hidden": hidden,
        }

    def __repr__(self) -> str:
        p = self.init_params_
        return f"AdaGVAE(n_latent={p['n_latent']}, beta={p['beta']}, trained={self.is_trained_})"

    def train(
        self,
        images1,
        images2,
        max_epochs: int = 30,
        batch_size: int = 64,
        lr: float = 5e-4,
        n_epochs_kl_warmup: int | None = None,
        accelerator: str = "cpu",
        devices: int | str = 1,
        enable_progress_bar: bool = True,
        seed: int | None = None,
        num_workers: int = 0,
    ) -> None:
        """Fit on pairs with Lightning (Adam; a progress bar unless disabled).

        Parameters
        ----------
        images1, images2
            ``(n, 64, 64)`` arrays in ``[0, 1]``; row ``i`` of each is one pair, e.g.
            :func:`~scvi_causal.images.dsprites_pairs`'s ``images1`` and ``images2``.
        max_epochs, batch_size, lr
            Optimisation settings (``batch_size`` pairs per step), as in :meth:`ImageVAE.train`.
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

        The per-epoch :attr:`history` has ``n_shared_train``, the mean number of latent
        dimensions averaged per pair.
        """
        x1, x2 = self._images(images1), self._images(images2)
        if len(x1) != len(x2):
            raise ValueError(
                f"`images1` and `images2` must hold the same number of images (one pair per "
                f"row), got {len(x1)} and {len(x2)}."
            )
        if len(x1) < 2:
            raise ValueError("Need at least 2 pairs to train.")
        loader, n_epochs_kl_warmup = _training_loader(
            (x1, x2), batch_size, num_workers, seed, max_epochs, n_epochs_kl_warmup
        )
        plan = _PairTrainingPlan(
            self.module,
            n_obs=len(x1),
            lr=lr,
            intervention_lr_factor=1.0,  # no per-intervention parameters
            n_epochs_kl_warmup=n_epochs_kl_warmup,
            temperature_start=1.0,  # no masks
            temperature_end=1.0,
        )
        self._fit(plan, loader, max_epochs, accelerator, devices, enable_progress_bar)
