"""A convolutional VAE for 64x64 binary images whose latent prior comes from ``scvi_causal.core``.

Plain torch + Lightning (no scvi, no AnnData): the proof that the causal priors are generic.
The same :class:`~scvi_causal.core.SparseShiftPrior` (sVAE+), ``"l1"``, ``"dense"`` (iVAE),
:class:`~scvi_causal.core.StandardNormalPrior` (VAE, beta-VAE, beta-TCVAE with
:func:`~scvi_causal.core.total_correlation`) and :class:`~scvi_causal.core.LinearSCMPrior` (a
latent causal graph) that the single-cell model uses drive the latent space; training uses the
same two learning rates, the same mask temperature schedule, the same alignment steps and the
same graph-alignment step.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.utils.data import DataLoader, TensorDataset

from scvi_causal._constants import (
    DEFAULT_ALIGN_AT,
    DEFAULT_ALIGN_NOISE_Z,
    DEFAULT_GRAPH_START,
    DEFAULT_INTERVENTION_LR_FACTOR,
    DEFAULT_TEMPERATURE_END,
    DEFAULT_TEMPERATURE_START,
)
from scvi_causal.core import (
    LatentRotationMixin,
    LinearSCMPrior,
    SparseShiftPrior,
    ada_gvae_average,
    total_correlation,
)
from scvi_causal.core._priors import check_intervention_prior
from scvi_causal.core._scm import check_latent_graph, make_latent_prior
from scvi_causal.core._training import (
    InterventionScheduleMixin,
    category_latent_sums,
    check_fraction,
    check_graph_fit_kwargs,
    negative_elbo,
)

from ._dsprites import regimes_to_interventions

logger = logging.getLogger(__name__)

IMAGE_SIZE = 64


class ConvEncoder(nn.Module):
    """Four stride-2 convolutions and two dense layers to a Gaussian posterior.

    The architecture of :cite:t:`burgess2018understanding` (32 channels, 4x4 kernels), as in
    disentanglement_lib.
    """

    def __init__(self, n_latent: int, channels: int = 32, hidden: int = 256):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, channels, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
        )
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.loc = nn.Linear(hidden, n_latent)
        self.log_scale = nn.Linear(hidden, n_latent)

    def forward(self, x: torch.Tensor) -> Normal:
        """``x``: ``(n, 1, 64, 64)`` images; returns ``q(z | x)``."""
        h = self.dense(self.convs(x))
        return Normal(self.loc(h), self.log_scale(h).clamp(-10, 5).exp() + 1e-4)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: latents to Bernoulli logits of the pixels."""

    def __init__(self, n_latent: int, channels: int = 32, hidden: int = 256):
        super().__init__()
        self.channels = channels
        self.dense = nn.Sequential(
            nn.Linear(n_latent, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels * 16),
            nn.ReLU(),
        )
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: ``(n, K)``; returns ``(n, 1, 64, 64)`` logits."""
        return self.deconvs(self.dense(z).view(-1, self.channels, 4, 4))


class ImageVAEModule(LatentRotationMixin, nn.Module):
    """Encoder, decoder and a ``core`` prior; :meth:`loss` is the negative ELBO.

    The loss has the same terms as :class:`~scvi_causal.module.SparseShiftVAE`: Bernoulli
    reconstruction, ``beta`` times the KL to the (intervened) prior, the prior's per-sample
    sparsity cost, ``tc_weight`` times the total correlation, and the prior's global term
    divided by the number of training images.

    With ``latent_graph="dag"`` the prior is a :class:`~scvi_causal.core.LinearSCMPrior`
    (``prior_kwargs`` and ``graph_kwargs`` passed to it), created with its graph off: the units
    are independent until the training plan's graph-alignment step switches it on.
    """

    #: the encoder's ``log_scale`` head outputs log standard deviations (for
    #: :meth:`~scvi_causal.core.LatentRotationMixin.change_latent_frame`)
    _log_scale = "std"

    def __init__(
        self,
        n_latent: int,
        n_interventions: int,
        intervention_prior: str = "spike_slab",
        beta: float = 1.0,
        tc_weight: float = 0.0,
        channels: int = 32,
        hidden: int = 256,
        latent_graph: str = "none",
        graph_kwargs: dict | None = None,
        **prior_kwargs,
    ):
        super().__init__()
        check_latent_graph(latent_graph, intervention_prior, "intervention regimes")
        if latent_graph == "none" and graph_kwargs:
            raise ValueError("`graph_kwargs` need latent_graph='dag'.")
        self.encoder = ConvEncoder(n_latent, channels, hidden)
        self.decoder = ConvDecoder(n_latent, channels, hidden)
        self.latent_graph = latent_graph
        # with a graph: independent units until the training plan fits it (graph_start)
        self.prior = make_latent_prior(
            latent_graph, intervention_prior, n_interventions, n_latent, prior_kwargs, graph_kwargs
        )
        self.intervention_prior = intervention_prior
        self.beta = float(beta)
        self.tc_weight = float(tc_weight)

    def intervention_parameters(self) -> list[nn.Parameter]:
        """Per-intervention parameters (mask logits, shifts): trained with a larger step."""
        return self.prior.intervention_parameters()

    def _latent_layers(self):
        """Encoder mean and log-scale heads and the decoder's first layer, for
        :meth:`rotate_latent_space`."""
        return self.encoder.loc, self.decoder.dense[0], self.encoder.log_scale

    def loss(
        self,
        x: torch.Tensor,
        intervention: torch.Tensor | None,
        kl_weight: float = 1.0,
        n_obs: int = 1,
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO (mean over the minibatch) and its per-term means."""
        qz = self.encoder(x)
        z = qz.rsample()
        logits = self.decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)
        use_a = intervention if self.intervention_prior != "none" else None
        pz = self.prior(use_a, n=x.shape[0])
        kl_z = kl_divergence(qz, pz).sum(-1)
        tc = torch.zeros_like(kl_z)
        if self.tc_weight > 0 and x.shape[0] > 1:
            tc = total_correlation(z, qz.loc, qz.scale, max(int(n_obs), x.shape[0]))
        kl_global = self.prior.kl_global()
        loss = negative_elbo(
            recon,
            kl_z,
            kl_global,
            beta=self.beta,
            sparsity=self.prior.local_penalty(use_a),
            total_correlation=tc,
            tc_weight=self.tc_weight,
            kl_weight=kl_weight,
            n_obs=n_obs,
        )
        return {
            "loss": loss,
            "reconstruction_loss": recon.mean().detach(),
            "kl_local": kl_z.mean().detach(),
            "total_correlation": tc.mean().detach(),
            "kl_global": kl_global.detach(),
        }

    def pair_loss(
        self, x1: torch.Tensor, x2: torch.Tensor, kl_weight: float = 1.0
    ) -> dict[str, torch.Tensor]:
        """Ada-GVAE's loss on pairs that share all but a few factors :cite:p:`locatello2020weakly`.

        Both images are encoded, the posterior dimensions that look shared are averaged
        (:func:`~scvi_causal.core.ada_gvae_average`), and each image is reconstructed from a
        sample of its averaged posterior; the loss is the mean over the pair of the
        reconstruction loss plus ``beta`` times the KL of the averaged posterior to
        :math:`\\mathcal{N}(0, I)` (beta-VAE). Only for ``intervention_prior="none"``.
        """
        if self.intervention_prior != "none":
            raise ValueError(
                "The pair loss needs the standard normal prior (intervention_prior='none'), got "
                f"{self.intervention_prior!r}."
            )
        q1, q2, shared = ada_gvae_average(self.encoder(x1), self.encoder(x2))
        pz = self.prior(None, n=x1.shape[0])
        recon, kl_z = 0.0, 0.0
        for x, qz in ((x1, q1), (x2, q2)):
            logits = self.decoder(qz.rsample())
            bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            recon = recon + 0.5 * bce.flatten(1).sum(-1)
            kl_z = kl_z + 0.5 * kl_divergence(qz, pz).sum(-1)
        loss = negative_elbo(
            recon, kl_z, self.prior.kl_global(), beta=self.beta, kl_weight=kl_weight
        )
        return {
            "loss": loss,
            "reconstruction_loss": recon.mean().detach(),
            "kl_local": kl_z.mean().detach(),
            "n_shared": shared.sum(-1).float().mean(),
        }


class _ImageTrainingPlan(InterventionScheduleMixin, pl.LightningModule):
    """Lightning wrapper: KL warm-up and epoch history; two learning rates, mask temperature,
    alignment steps and the graph-alignment step from
    :class:`~scvi_causal.core.InterventionScheduleMixin`, as in
    :class:`~scvi_causal.train.SparseShiftTrainingPlan`."""

    def __init__(
        self,
        module: ImageVAEModule,
        n_obs: int,
        lr: float,
        intervention_lr_factor: float,
        n_epochs_kl_warmup: int,
        temperature_start: float,
        temperature_end: float,
        align_at: tuple[float, ...] = (),
        align_noise_z: float | None = 3.0,
        data: tuple[torch.Tensor, torch.Tensor] | None = None,
        graph_start: float = DEFAULT_GRAPH_START,
        graph_fit_kwargs: dict | None = None,
    ):
        super().__init__()
        self.module = module
        self.graph_start = check_fraction(graph_start, "graph_start")
        self.graph_fit_kwargs = check_graph_fit_kwargs(graph_fit_kwargs)
        self.align_at = tuple(align_at)
        self.align_noise_z = align_noise_z
        self.align_threshold = None  # the prior's edge_threshold()
        self.n_epochs_temperature = None  # all of training
        self.data = data
        self.n_obs = n_obs
        self.lr = lr
        self.intervention_lr_factor = intervention_lr_factor
        self.n_epochs_kl_warmup = n_epochs_kl_warmup
        self.temperature_start = temperature_start
        self.temperature_end = temperature_end
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    def configure_optimizers(self):
        params = [p for p in self.module.parameters() if p.requires_grad]
        return torch.optim.Adam(self.intervention_param_groups(params), lr=self.lr)

    def _kl_weight(self, batch_idx: int) -> float:
        if self.n_epochs_kl_warmup <= 0:
            return 1.0
        n_batches = max(int(self.trainer.num_training_batches), 1)
        return min(1.0, (self.current_epoch + batch_idx / n_batches) / self.n_epochs_kl_warmup)

    def graph_start_epoch(self) -> int:
        """First epoch (0-based) with the latent graph on: ``graph_start`` of ``max_epochs``,
        at least 1 (after one epoch of training) when there are several epochs."""
        n = max(int(getattr(self.trainer, "max_epochs", None) or 1), 1)
        return max(min(int(round(self.graph_start * n)), n - 1), min(1, n - 1))

    def on_train_epoch_start(self):
        self.set_epoch_temperature()
        self._sums, self._count = {}, 0
        prior = self.module.prior
        if (
            isinstance(prior, LinearSCMPrior)
            and not bool(prior.graph_active)
            and self.data is not None
            and self.current_epoch >= self.graph_start_epoch()
        ):
            self.fit_latent_graph_on(*self.posterior_means())

    def batch_loss(self, batch, kl_weight: float) -> dict[str, torch.Tensor]:
        """The module's loss on one minibatch of ``(images, interventions)``."""
        x, a = batch
        x = x.to(torch.float32).unsqueeze(1)
        return self.module.loss(x, a, kl_weight=kl_weight, n_obs=self.n_obs)

    def training_step(self, batch, batch_idx):
        out = self.batch_loss(batch, self._kl_weight(batch_idx))
        n = len(batch[0])
        for key, value in out.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value.detach()) * n
        self._count += n
        self.log("loss", out["loss"], prog_bar=True, on_step=True, on_epoch=False)
        return out["loss"]

    @torch.no_grad()
    def posterior_means(self, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means ``(n, K)`` of the training images and their ``(n, P)``
        interventions, with the module in evaluation mode while they are computed."""
        module = self.module
        x, a = self.data
        device = module.encoder.loc.weight.device
        was_training = module.training
        module.eval()
        try:
            loc = torch.cat(
                [
                    module.encoder(
                        x[start : start + batch_size].to(device, torch.float32).unsqueeze(1)
                    ).loc
                    for start in range(0, len(x), batch_size)
                ]
            )
        finally:
            module.train(was_training)
        return loc, a.to(loc)

    @torch.no_grad()
    def latent_sums_by_category(
        self, batch_size: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Sums and counts of posterior means per intervention regime, and the regimes'
        intervention matrix (None without training data)."""
        module = self.module
        if self.data is None:
            return None
        categories, codes = torch.unique(self.data[1], dim=0, return_inverse=True)
        loc, _ = self.posterior_means(batch_size)
        sums, counts = category_latent_sums(
            [(loc, codes.to(loc.device))],
            len(categories),
            module.encoder.loc.out_features,
            module.encoder.loc.weight,
        )
        return sums, counts, categories.to(sums)

    def on_train_epoch_end(self):
        row = {f"{k}_train": v / max(self._count, 1) for k, v in self._sums.items()}
        if self.align_at and self.current_epoch in self.alignment_epochs():
            ratio = self.align_latent_space()
            if ratio is not None:
                row["alignment_l1_ratio_train"] = float(ratio)
        prior = self.module.prior
        for key, value in prior.extra_metrics().items():
            row[f"{key}_train"] = float(value)
        if isinstance(prior, LinearSCMPrior):
            row["graph_active_train"] = float(bool(prior.graph_active))
        row["epoch"] = self.current_epoch
        self.history.append(row)


class ImageVAE:
    """Convolutional VAE on 64x64 binary images with a causal latent prior.

    With ``intervention_prior="spike_slab"`` it is the sparse-mechanism-shift VAE (sVAE+
    :cite:p:`lopez2023learning`) on images: images of intervention regime ``p`` have the prior
    :math:`\\mathcal{N}(m_p \\odot \\mu_p, I)`, observational images :math:`\\mathcal{N}(0, I)`.
    ``"l1"`` (sVAE), ``"dense"`` (iVAE) and ``"none"`` (VAE; ``beta`` for beta-VAE,
    ``tc_weight`` for beta-TCVAE) are the baselines, exactly as in
    :class:`~scvi_causal.model.SparseShiftVI`.

    With ``latent_graph="dag"`` the units follow a learned linear-Gaussian SCM
    (:class:`~scvi_causal.core.LinearSCMPrior`) whose exogenous noise the regimes shift; by
    default a regime is a hard intervention on its direct targets (their incoming edges are
    cut), so the masks of :meth:`get_target_graph` select *direct* targets and
    :meth:`get_latent_graph` returns the graph among the units. As in
    :class:`~scvi_causal.model.SparseShiftVI`, the units are independent (and the alignment
    steps run) until ``graph_start`` of :meth:`train`, where the graph-alignment step fits the
    graph and its frame on the training images' posterior means
    (:func:`~scvi_causal.core.fit_latent_graph`) and switches it on.

    Parameters
    ----------
    n_latent
        Number of latent units.
    n_interventions
        Number of intervention regimes (columns of the intervention matrix); 0 for
        ``"none"``.
    intervention_prior
        ``"spike_slab"``, ``"l1"``, ``"dense"`` or ``"none"``.
    beta
        Weight of the KL term (beta-VAE :cite:p:`higgins2017beta`).
    tc_weight
        Weight of the total-correlation penalty (beta-TCVAE :cite:p:`chen2018isolating`).
    channels, hidden
        Width of the convolutional and dense layers.
    latent_graph
        ``"none"`` (default): independent latent units under the prior. ``"dag"``: a learned
        causal graph among the units (needs an intervention prior other than ``"none"``).
    graph_kwargs
        Passed to :class:`~scvi_causal.core.LinearSCMPrior` (``edge_penalty``,
        ``acyclicity_weight``, ``intervention_type``, ...) with ``latent_graph="dag"``.
    **prior_kwargs
        Passed to :class:`~scvi_causal.core.SparseShiftPrior` (``sparsity_penalty``,
        ``prior_prob``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((64, 64, 64)) > 0.9).astype(np.float32)
    >>> regimes = np.repeat([0, 1], 32)
    >>> vae = ImageVAE(n_latent=4, n_interventions=1)
    >>> vae.train(images, regimes, max_epochs=1, enable_progress_bar=False)
    >>> vae.get_latent_representation(images).shape
    (64, 4)
    >>> vae.get_target_graph().shape
    (1, 4)

    A latent causal graph, switched on after the first of two epochs (a short fit here):

    >>> dag = ImageVAE(n_latent=3, n_interventions=1, latent_graph="dag", channels=8, hidden=32)
    >>> dag.train(images, regimes, max_epochs=2, enable_progress_bar=False, graph_start=0.5,
    ...           graph_fit_kwargs={"n_steps": 20, "n_restarts": 1})
    >>> dag.get_latent_graph().shape
    (3, 3)
    """

    def __init__(
        self,
        n_latent: int = 10,
        n_interventions: int = 0,
        intervention_prior: str = "spike_slab",
        beta: float = 1.0,
        tc_weight: float = 0.0,
        channels: int = 32,
        hidden: int = 256,
        latent_graph: str = "none",
        graph_kwargs: dict | None = None,
        **prior_kwargs,
    ):
        if check_intervention_prior(intervention_prior) != "none" and n_interventions < 1:
            raise ValueError(
                f"intervention_prior={intervention_prior!r} needs `n_interventions >= 1`; use "
                "'none' for a model without interventions."
            )
        if beta < 0 or tc_weight < 0:
            raise ValueError("`beta` and `tc_weight` must be >= 0.")
        self.init_params_ = {
            "n_latent": n_latent,
            "n_interventions": n_interventions,
            "intervention_prior": intervention_prior,
            "beta": beta,
            "tc_weight": tc_weight,
            "channels": channels,
            "hidden": hidden,
            "latent_graph": latent_graph,
            "graph_kwargs": dict(graph_kwargs) if graph_kwargs else None,
            **prior_kwargs,
        }
        self.module = ImageVAEModule(**self.init_params_)
        self.n_latent = n_latent
        self.n_interventions = n_interventions
        self.is_trained_ = False
        self.history_ = pd.DataFrame()

    def __repr__(self) -> str:
        p = self.init_params_
        return (
            f"ImageVAE(n_latent={p['n_latent']}, n_interventions={p['n_interventions']}, "
            f"intervention_prior={p['intervention_prior']!r}, beta={p['beta']}, "
            f"tc_weight={p['tc_weight']}"
            + (
                f", latent_graph={p['latent_graph']!r}"
                if p.get("latent_graph", "none") != "none"
                else ""
            )
            + f", trained={self.is_trained_})"
        )

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch training losses and mask diagnostics (density, temperature)."""
        return self.history_

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _images(images) -> torch.Tensor:
        return _image_tensor(images)

    def _interventions(self, interventions, n: int) -> torch.Tensor:
        k = self.n_interventions
        if interventions is None:
            return torch.zeros((n, k))
        arr = np.asarray(interventions)
        if arr.ndim == 1:  # regime ids, 0 = observational
            if len(arr) != n:
                raise ValueError(f"{len(arr)} regimes for {n} images.")
            return torch.from_numpy(regimes_to_interventions(arr, k))
        if arr.shape != (n, k):
            raise ValueError(
                f"`interventions` must be (n_images, {k}) or regime ids, got {arr.shape}."
            )
        if not np.isfinite(arr).all():
            raise ValueError("`interventions` contains NaN or inf.")
        return torch.from_numpy(arr.astype(np.float32))

    # ------------------------------------------------------------------ training
    def train(
        self,
        images,
        interventions=None,
        max_epochs: int = 30,
        batch_size: int = 64,
        lr: float = 5e-4,
        intervention_lr_factor: float = DEFAULT_INTERVENTION_LR_FACTOR,
        n_epochs_kl_warmup: int | None = None,
        temperature_start: float = DEFAULT_TEMPERATURE_START,
        temperature_end: float = DEFAULT_TEMPERATURE_END,
        accelerator: str = "cpu",
        devices: int | str = 1,
        enable_progress_bar: bool = True,
        seed: int | None = None,
        num_workers: int = 0,
        align_at: tuple[float, ...] | None = None,
        align_noise_z: float | None = DEFAULT_ALIGN_NOISE_Z,
        graph_start: float = DEFAULT_GRAPH_START,
        graph_fit_kwargs: dict | None = None,
    ) -> None:
        """Fit the VAE with Lightning (Adam; a progress bar unless disabled).

        Parameters
        ----------
        images
            ``(n, 64, 64)`` array in ``[0, 1]``.
        interventions
            Regime ids ``(n,)`` (0: observational) or an ``(n, n_interventions)`` multi-hot
            matrix; ``None`` for observational data only.
        max_epochs, batch_size, lr
            Optimisation settings. Measured on interventional dSprites (16 channels, 10,500
            images): batch 64 with lr 5e-4 leaves the mean-image plateau in 2-3 epochs;
            batch 128 or lr 1e-3 stayed there (posterior collapse) for 18 epochs.
        intervention_lr_factor
            Learning-rate multiplier for the per-intervention parameters (mask logits, shifts).
        n_epochs_kl_warmup
            Linear KL warm-up (default: a fifth of ``max_epochs``).
        temperature_start, temperature_end
            Geometric schedule of the relaxed-Bernoulli mask temperature over training.
        accelerator, devices
            Passed to :class:`lightning.pytorch.Trainer`.
        enable_progress_bar
            Show Lightning's progress bar.
        seed
            Seed for initialisation-independent randomness (minibatch order, mask draws).
        num_workers
            Data-loader workers.
        align_at
            Fractions of ``max_epochs`` after which the latent space is rotated onto the units
            that make the regimes' effects sparsest (their mean latents;
            :func:`~scvi_causal.core.sparse_alignment`), with masks and shifts reset in the
            new frame, as :meth:`scvi_causal.model.SparseShiftVI.train` does. Default
            ``(0.3, 0.5, 0.7)`` for ``"spike_slab"``, ``()`` (off) otherwise. The l1 ratio of
            each step is in :attr:`history` (``alignment_l1_ratio_train``).
        align_noise_z
            At a rotation, a mask is switched on only where the shift reaches
            ``align_noise_z / sqrt(n)`` (``n`` images of the regime); ``None``: no floor.
        graph_start
            With ``latent_graph="dag"`` (graph still off): fraction of ``max_epochs`` at whose
            epoch start the graph-alignment step runs (at least the second epoch when there are
            several): :func:`~scvi_causal.core.fit_latent_graph` on the posterior means of all
            training images with their interventions, the encoder and decoder re-expressed in
            the fitted frame, the optimizer state of the changed parameters reset and the graph
            switched on (``graph_active_train`` in :attr:`history`). From then on the alignment
            steps no longer rotate the latent space. Default 0.75, as for
            :class:`~scvi_causal.model.SparseShiftVI`. Ignored without a graph, or when the
            graph is already on (a second call of ``train``).
        graph_fit_kwargs
            Arguments of :func:`~scvi_causal.core.fit_latent_graph` (``method``, ``n_steps``,
            ``n_restarts``, ...); None: its defaults.
        """
        x = self._images(images)
        a = self._interventions(interventions, len(x))
        if len(x) < 2:
            raise ValueError("Need at least 2 images to train.")
        loader, n_epochs_kl_warmup = _training_loader(
            (x, a), batch_size, num_workers, seed, max_epochs, n_epochs_kl_warmup
        )
        if align_at is None:
            sparse = self.init_params_["intervention_prior"] == "spike_slab"
            align_at = DEFAULT_ALIGN_AT if sparse and self.module.can_rotate_latent_space() else ()
        align_at = tuple(float(f) for f in align_at)
        if any(not 0.0 < f <= 1.0 for f in align_at):
            raise ValueError(f"`align_at` fractions must be in (0, 1], got {align_at}.")
        if align_at and not self.module.can_rotate_latent_space():
            logger.warning(
                "`align_at` is ignored: only sparse priors with interventions and "
                "trainable networks rotate their latent space."
            )
            align_at = ()
        if align_noise_z is not None and align_noise_z < 0:
            raise ValueError(f"`align_noise_z` must be >= 0, got {align_noise_z}.")
        plan = _ImageTrainingPlan(
            self.module,
            n_obs=len(x),
            lr=lr,
            intervention_lr_factor=intervention_lr_factor,
            n_epochs_kl_warmup=n_epochs_kl_warmup,
            temperature_start=temperature_start,
            temperature_end=temperature_end,
            align_at=align_at,
            align_noise_z=align_noise_z,
            data=(x, a),
            graph_start=graph_start,
            graph_fit_kwargs=graph_fit_kwargs,
        )
        self._fit(plan, loader, max_epochs, accelerator, devices, enable_progress_bar)

    def _fit(
        self,
        plan: _ImageTrainingPlan,
        loader: DataLoader,
        max_epochs: int,
        accelerator: str,
        devices: int | str,
        enable_progress_bar: bool,
    ) -> None:
        """Run Lightning on ``plan`` and append its epoch history."""
        trainer = pl.Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=enable_progress_bar,
            enable_model_summary=False,
        )
        self.module.train()
        trainer.fit(plan, loader)
        self.module.eval()
        self.module.cpu()
        history = pd.DataFrame(plan.history).set_index("epoch") if plan.history else pd.DataFrame()
        self.history_ = pd.concat([self.history_, history]) if len(self.history_) else history
        self.is_trained_ = True

    # ------------------------------------------------------------------ outputs
    @torch.inference_mode()
    def get_latent_representation(
        self, images, batch_size: int = 1024, give_mean: bool = True
    ) -> np.ndarray:
        """Posterior means (or one sample) of the latents, ``(n, n_latent)``."""
        x = self._images(images)
        self.module.eval()
        out = []
        for start in range(0, len(x), batch_size):
            qz = self.module.encoder(x[start : start + batch_size].float().unsqueeze(1))
            out.append((qz.loc if give_mean else qz.sample()).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_latent), dtype=np.float32)

    @torch.inference_mode()
    def decode(self, latents, batch_size: int = 1024) -> np.ndarray:
        """Pixel probabilities ``(n, 64, 64)`` decoded from ``(n, n_latent)`` latents."""
        z = torch.as_tensor(np.asarray(latents, dtype=np.float32))
        if z.ndim != 2 or z.shape[1] != self.n_latent:
            raise ValueError(f"`latents` must be (n, {self.n_latent}), got {tuple(z.shape)}.")
        self.module.eval()
        out = [
            torch.sigmoid(self.module.decoder(z[s : s + batch_size]))[:, 0].numpy()
            for s in range(0, len(z), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)

    @torch.inference_mode()
    def get_elbo(self, images, interventions=None, batch_size: int = 1024) -> float:
        """Mean ELBO per image (nats; one posterior sample, masks at their mode)."""
        x = self._images(images)
        a = self._interventions(interventions, len(x))
        self.module.eval()
        total = 0.0
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size].float().unsqueeze(1)
            out = self.module.loss(xb, a[s : s + batch_size], n_obs=len(x))
            local = out["reconstruction_loss"] + self.module.beta * out["kl_local"]
            total += float(local) * len(xb)
        return -total / len(x)

    def get_target_graph(self) -> np.ndarray:
        """Inclusion probabilities ``(n_interventions, n_latent)`` (``"none"``: zeros); with
        ``latent_graph="dag"`` the regimes' *direct* targets (their effects on the targets'
        descendants go through :meth:`get_latent_graph`)."""
        prior = self.module.prior
        if not isinstance(prior, SparseShiftPrior):
            return np.zeros((self.n_interventions, self.n_latent))
        with torch.no_grad():
            return prior.inclusion_probs().cpu().numpy()

    def get_latent_graph(self, dag: bool = False) -> np.ndarray:
        """Learned causal graph among the latent units (``latent_graph="dag"``).

        Parameters
        ----------
        dag
            Return the edges as booleans (inclusion probability >= 0.5), made acyclic by
            removing the weakest edge of any remaining cycle (the prior's
            :meth:`~scvi_causal.core.LinearSCMPrior.dag`); default the inclusion probabilities.

        Returns
        -------
        numpy.ndarray
            ``(n_latent, n_latent)``, rows = parent, columns = child: edge inclusion
            probabilities in [0, 1] (booleans with ``dag=True``); zero diagonal. All zero
            while the graph is off (before ``graph_start``).

        Examples
        --------
        >>> graph = vae.get_latent_graph()  # doctest: +SKIP
        >>> np.argwhere(vae.get_latent_graph(dag=True))  # parent, child pairs  # doctest: +SKIP
        """
        prior = self.module.prior
        if not isinstance(prior, LinearSCMPrior):
            raise ValueError("This model has no latent graph; create it with latent_graph='dag'.")
        with torch.no_grad():
            values = prior.dag() if dag else prior.latent_graph()
        return values.cpu().numpy().copy()

    def get_shifts(self) -> np.ndarray:
        """Learned shifts ``(n_interventions, n_latent)`` (``"none"``: zeros)."""
        prior = self.module.prior
        if not isinstance(prior, SparseShiftPrior):
            return np.zeros((self.n_interventions, self.n_latent))
        return prior.shifts.detach().cpu().numpy().copy()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Save parameters, settings and history to one file (``torch.save``).

        Written to a temporary file beside ``path``, then renamed onto it: an interrupted
        save never leaves a half-written file, and an existing one stays intact.

        Examples
        --------
        >>> vae.save("dsprites_vae.pt", overwrite=True)  # doctest: +SKIP
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True.")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.saving")
        try:
            torch.save(
                {
                    "model_class": type(self).__name__,
                    "init_params": self.init_params_,
                    "state_dict": self.module.state_dict(),
                    "history": self.history_,
                    "is_trained": self.is_trained_,
                },
                tmp,
            )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> ImageVAE:
        """Load a model written by :meth:`save` of the same class (``ImageVAE``, ``AdaGVAE``
        and ``CCVAE`` files each load with their own class; another one raises ``TypeError``).

        Examples
        --------
        >>> vae = ImageVAE.load("dsprites_vae.pt")  # doctest: +SKIP
        """
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
        saved = state.get("model_class")  # absent in files saved before it was recorded
        if saved is not None and saved != cls.__name__:
            raise TypeError(f"{path} was saved by {saved}; load it with {saved}.load.")
        model = cls(**state["init_params"])
        model.module.load_state_dict(state["state_dict"])
        model.module.eval()
        model.history_ = state["history"]
        model.is_trained_ = state["is_trained"]
        return model


def _image_tensor(images) -> torch.Tensor:
    """Validated ``(n, 64, 64)`` images in ``[0, 1]`` as a tensor (uint8 when binary, else
    float32), shared by the image models and classifiers."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"`images` must have shape (n, 64, 64), got {np.shape(images)}.")
    if not np.isfinite(arr).all():
        raise ValueError("`images` contains NaN or inf.")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError("`images` must be binary / in [0, 1] (Bernoulli likelihood).")
    if np.array_equal(arr, arr.astype(np.uint8)):
        return torch.from_numpy(arr.astype(np.uint8))
    return torch.from_numpy(arr.astype(np.float32))


def _training_loader(
    tensors: tuple[torch.Tensor, ...],
    batch_size: int,
    num_workers: int,
    seed: int | None,
    max_epochs: int,
    n_epochs_kl_warmup: int | None,
) -> tuple[DataLoader, int]:
    """Seed, shuffled training loader over ``tensors`` (one row per sample) and the KL
    warm-up length (default a fifth of ``max_epochs``), shared by the image models' ``train``."""
    if seed is not None:
        pl.seed_everything(seed, workers=True, verbose=False)
    if n_epochs_kl_warmup is None:
        n_epochs_kl_warmup = max(max_epochs // 5, 0)
    n = len(tensors[0])
    loader = DataLoader(
        TensorDataset(*tensors),
        batch_size=min(batch_size, n),
        shuffle=True,
        drop_last=n > batch_size,
        num_workers=num_workers,
    )
    return loader, n_epochs_kl_warmup
