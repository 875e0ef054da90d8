"""Training plan for sparse-shift models: fast per-perturbation parameters, mask temperature."""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from scvi import REGISTRY_KEYS, settings
from scvi.module._constants import MODULE_KEYS
from scvi.train import TrainingPlan

from scvi_causal._constants import (
    DEFAULT_ALIGN_NOISE_Z,
    DEFAULT_DIRECT_START,
    DEFAULT_GRAPH_START,
    DEFAULT_INTERVENTION_LR_FACTOR,
    DEFAULT_TEMPERATURE_END,
    DEFAULT_TEMPERATURE_START,
    PERTURBATION_KEY,
    PLAN_STATE_KEY,
)
from scvi_causal.core import geometric_temperature
from scvi_causal.core._training import (
    InterventionScheduleMixin,
    category_latent_sums,
    check_fraction,
    check_graph_fit_kwargs,
)

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to try.

    Raised by :class:`SparseShiftTrainingPlan` before the optimizer step of the minibatch, so
    the model keeps the parameters of the last step with a finite loss (unless they are
    already non-finite, which the message reports).

    Examples
    --------
    >>> try:  # doctest: +SKIP
    ...     model.train(max_epochs=100, lr=1.0)
    ... except NonFiniteLossError as err:
    ...     print(err)
    """


class SparseShiftTrainingPlan(InterventionScheduleMixin, TrainingPlan):
    """:class:`scvi.train.TrainingPlan` with two additions for sparse mechanism shifts.

    * Per-perturbation parameters (mask logits, shifts; the module's
      ``intervention_parameters()``) are optimised with a learning rate
      ``intervention_lr_factor`` times the networks' one and without weight decay: each of them
      sees only the cells of its perturbation, so at the networks' rate they lag behind.
    * The relaxed-Bernoulli temperature of the masks is annealed geometrically from
      ``temperature_start`` to ``temperature_end`` over ``n_epochs_temperature`` epochs
      (default: all of training). The temperature and the mask density are logged each epoch
      and end up in ``model.history`` (``mask_temperature_train``, ``mask_density_train``,
      ``mask_on_fraction_train``).

    Training stops with a :class:`NonFiniteLossError` at the first minibatch whose loss is NaN or
    infinite, with the likely causes and remedies. A run interrupted after a
    :class:`~scvi_causal.train.ResumeCheckpoint` (or any Lightning checkpoint) resumes with its
    schedules where they were: temperature, KL warm-up, alignment steps and the switch-on of
    direct effects follow Lightning's restored epoch counter, and the penalty annealing's
    starting value is restored from the checkpoint. A resumed run with another ``max_epochs``,
    other schedule arguments or other training cells (``scvi.settings.seed`` decides the
    train/validation split) warns, since its schedules differ from the interrupted run's.

    Parameters
    ----------
    module
        A :class:`~scvi_causal.module.SparseShiftVAE` (or any module with
        ``intervention_parameters()`` and a ``prior`` with a ``mask``).
    intervention_lr_factor
        Learning-rate multiplier for per-perturbation parameters.
    temperature_start, temperature_end
        Temperature schedule of the relaxed Bernoulli masks.
    n_epochs_temperature
        Epochs over which the temperature is annealed (``None``: ``max_epochs``).
    sparsity_penalty_end
        If set, the prior's per-cell sparsity penalty is held at its value until the fraction
        ``sparsity_anneal_start`` of ``max_epochs`` and then annealed geometrically to this value
        at the last epoch (logged as ``sparsity_penalty_train``); the prior keeps the final
        value. ``None`` (default): constant penalty.
    sparsity_anneal_start
        Fraction of training after which the penalty is annealed.
    align_at
        Fractions of ``max_epochs`` after which the latent space is rotated onto the units
        that make the perturbations' effects sparsest (:func:`~scvi_causal.core.sparse_rotation`
        of the mean latent of each perturbation's training cells, applied by
        :meth:`~scvi_causal.core.LatentRotationMixin.rotate_latent_space`; masks and shifts are
        reset in the new frame and training goes on). Only for modules that can rotate
        (sparse priors with trainable networks); ``()`` turns it off. The relative decrease of
        the effects' l1 norm is logged as ``alignment_l1_ratio_train``.
    align_threshold
        Relative shift (of the perturbation's largest) above which a mask is switched on when
        the latent space is rotated; default :math:`\\sqrt{c}` for the relative sparsity cost
        :math:`c` (the size at which an edge pays for itself), 0.5 otherwise.
    align_noise_z
        A mask is switched on at a rotation only where the shift also reaches
        ``align_noise_z / sqrt(n)``, ``n`` the perturbation's training cells (the standard
        error of its mean latent at unit variance), so that perturbations whose displacement
        is mostly noise do not get several weak edges. Default 3; ``None``: no floor (only the
        relative ``align_threshold``); see the model guide for the measurement behind it.
    direct_start
        Fraction of ``max_epochs`` from which the module's direct gene-level effects
        (:class:`~scvi_causal.core.DirectEffects`, if it has them) are switched on; before,
        they are zero. Default 0.75, after the last default alignment step: the latent units
        and their target graph are learned first, the direct effects then take up what they
        leave (a guide's own gene, small effects of weak perturbations). ``0`` trains them from
        the start. Logged per epoch as ``direct_effects_active_train`` and
        ``direct_effect_size_train`` (mean absolute effect).
    graph_start
        With a latent graph prior (``latent_graph="dag"``) that is still off: fraction of
        ``max_epochs`` at which the graph-alignment step runs
        (:func:`~scvi_causal.core.fit_latent_graph` on the training cells' posterior means,
        then the encoder and decoder re-expressed in the fitted frame,
        :meth:`~scvi_causal.core.LatentRotationMixin.change_latent_frame`) and the graph is
        switched on. Before, the units are independent and the alignment steps run as for the
        default prior. Default 0.75.
    graph_fit_kwargs
        Arguments of :func:`~scvi_causal.core.fit_latent_graph` for the graph-alignment step
        (``method``, ``n_steps``, ``n_restarts``, ``n_bootstrap``, ...); None: its defaults
        (likelihood, 4 restarts of 3,000 full-batch steps). Smaller fits are faster and find
        fewer true edges (see the model guide).
    learn_graph
        Whether the graph's gates and weights keep learning with the ELBO (and their per-cell
        costs) after the graph-alignment step (default True). False keeps the fitted graph and
        lets only the networks, masks and shifts adapt to it (used with
        ``graph_fit_kwargs={"method": "moments"}``, whose edges the ELBO would otherwise
        re-learn).
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (``lr``, ``n_epochs_kl_warmup``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from scvi_causal.module import SparseShiftVAE
    >>> plan = SparseShiftTrainingPlan(SparseShiftVAE(10, np.eye(2)), intervention_lr_factor=5)
    >>> plan.intervention_lr_factor
    5.0
    """

    def __init__(
        self,
        module,
        *,
        intervention_lr_factor: float = DEFAULT_INTERVENTION_LR_FACTOR,
        temperature_start: float = DEFAULT_TEMPERATURE_START,
        temperature_end: float = DEFAULT_TEMPERATURE_END,
        n_epochs_temperature: int | None = None,
        sparsity_penalty_end: float | None = None,
        sparsity_anneal_start: float = 0.5,
        align_at: Sequence[float] = (),
        align_threshold: float | None = None,
        align_noise_z: float | None = DEFAULT_ALIGN_NOISE_Z,
        direct_start: float = DEFAULT_DIRECT_START,
        graph_start: float = DEFAULT_GRAPH_START,
        graph_fit_kwargs: dict | None = None,
        learn_graph: bool = True,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self.learn_graph = bool(learn_graph)
        self.graph_fit_kwargs = check_graph_fit_kwargs(graph_fit_kwargs)
        self.graph_start = check_fraction(graph_start, "graph_start")
        self.direct_start = check_fraction(direct_start, "direct_start")
        if intervention_lr_factor <= 0:
            raise ValueError("`intervention_lr_factor` must be positive.")
        if temperature_start <= 0 or temperature_end <= 0:
            raise ValueError("Temperatures must be positive.")
        self.intervention_lr_factor = float(intervention_lr_factor)
        self.temperature_start = float(temperature_start)
        self.temperature_end = float(temperature_end)
        self.n_epochs_temperature = n_epochs_temperature
        if sparsity_penalty_end is not None and sparsity_penalty_end < 0:
            raise ValueError("`sparsity_penalty_end` must be >= 0.")
        self.sparsity_penalty_end = sparsity_penalty_end
        self.sparsity_anneal_start = check_fraction(sparsity_anneal_start, "sparsity_anneal_start")
        align_at = tuple(float(f) for f in align_at)
        if any(not 0.0 < f <= 1.0 for f in align_at):
            raise ValueError(f"`align_at` fractions must be in (0, 1], got {align_at}.")
        self.align_at = align_at
        if align_threshold is not None and not 0.0 < align_threshold < 1.0:
            raise ValueError(f"`align_threshold` must be in (0, 1), got {align_threshold}.")
        self.align_threshold = align_threshold
        if align_noise_z is not None and align_noise_z < 0:
            raise ValueError(f"`align_noise_z` must be >= 0, got {align_noise_z}.")
        self.align_noise_z = align_noise_z
        self.sparsity_penalty_start = module.prior.sparsity_penalty

    def get_optimizer_creator(self):
        """Optimizer over two parameter groups (networks; per-perturbation parameters)."""
        base_creator = super().get_optimizer_creator()

        def creator(params):
            return base_creator(self.intervention_param_groups(params))

        return creator

    def current_sparsity_penalty(self, epoch: int) -> float | None:
        """Per-cell sparsity penalty at ``epoch`` (None: the prior has none)."""
        start = self.sparsity_penalty_start
        if start is None or self.sparsity_penalty_end is None:
            return start
        n = getattr(self.trainer, "max_epochs", None) or 1
        first = int(round(self.sparsity_anneal_start * (n - 1)))
        if epoch <= first:
            return start
        if start == 0 or self.sparsity_penalty_end == 0:
            frac = (epoch - first) / max(n - 1 - first, 1)
            return start + (self.sparsity_penalty_end - start) * min(frac, 1.0)
        return geometric_temperature(epoch - first, n - first, start, self.sparsity_penalty_end)

    def training_step(self, batch, batch_idx):
        """scvi's training step; raises :class:`NonFiniteLossError` if the loss is not finite.

        Non-finite values usually surface first in torch's argument check of a distribution
        (``ValueError: Expected parameter loc ... but found invalid values``); that error is
        turned into a ``NonFiniteLossError`` too.
        """
        error = None
        try:
            loss = super().training_step(batch, batch_idx)
        except ValueError as err:
            if "found invalid values" not in str(err):
                raise
            loss, error = None, err
        if error is not None:
            match = re.search(r"Expected parameter (\w+).*? of distribution (\w+)", str(error))
            what = f"the {match[1]} of a {match[2]} distribution" if match else "a distribution"
            problem = f"Non-finite values reached {what} of the model"
        elif not bool(torch.isfinite(loss.detach()).all()):
            problem = f"The training loss is {float(loss.detach().float().mean())}"
        else:
            problem = None
        if self.trainer.world_size > 1:  # stop every process together: a lone one hangs DDP
            flag = torch.tensor(float(problem is not None), device=self.device)
            if bool(self.trainer.strategy.reduce(flag, reduce_op="sum") > 0) and problem is None:
                problem = "The training loss is not finite on another process"
        if problem is not None:
            raise NonFiniteLossError(self._non_finite_message(problem, batch, batch_idx)) from error
        return loss

    @torch.no_grad()
    def _non_finite_message(self, problem: str, batch, batch_idx: int) -> str:
        """Where the loss became non-finite, what this minibatch and the model show, and what
        to try."""
        where = f"epoch {self.current_epoch}, step {self.global_step} (minibatch {batch_idx})"
        head = f"{problem} at {where}."
        found = []
        bad_params = [
            name for name, p in self.module.named_parameters() if not bool(torch.isfinite(p).all())
        ]
        if bad_params:
            found.append(
                "non-finite parameters ("
                + ", ".join(bad_params[:5])
                + (", ..." if len(bad_params) > 5 else "")
                + "), likely from an earlier update that overflowed"
            )
        x = batch.get(REGISTRY_KEYS.X_KEY) if isinstance(batch, dict) else None
        if x is not None:
            x = x.detach().float()
            if not bool(torch.isfinite(x).all()):
                found.append("non-finite input values in this minibatch")
            elif bool((x < 0).any()):
                found.append("negative input values in this minibatch")
            else:
                if not torch.equal(x, x.round()):
                    found.append("non-integer input values (not raw counts?)")
                library = x.sum(-1)
                found.append(
                    f"library sizes {float(library.min()):.0f} to "
                    f"{float(library.max()):.0f} in this minibatch"
                )
        prior = getattr(self.module, "prior", None)
        mask = getattr(prior, "mask", None)
        if mask is not None:
            found.append(f"mask temperature {float(mask.temperature):.3g}")
        shifts = getattr(prior, "shifts", None)
        if isinstance(shifts, torch.Tensor) and shifts.numel():
            found.append(f"largest |shift| {float(shifts.abs().max()):.3g}")
        precision = str(self.trainer.precision)
        found.append(f"precision {precision!r}")
        half = "16" in precision
        return (
            f"{head} Training stopped before this step's update. Found: {'; '.join(found)}.\n"
            "Likely causes: a learning rate too high for these data "
            f"(lr={self.lr}, per-perturbation parameters x{self.intervention_lr_factor}); "
            "input that is not raw counts, or cells with extreme library sizes; a perturbation "
            "with an extreme shift, or a mask temperature too low "
            f"(temperature_end={self.temperature_end})"
            + ("; half precision" if half else "")
            + ".\nWhat to try: a lower learning rate (`model.train(lr=1e-3)`) or "
            "`intervention_lr_factor`; raw integer counts in adata.X or the `layer` given to "
            "`setup_anndata` (it warns on non-integer values), without extreme cells; gradient "
            "clipping (`model.train(..., gradient_clip_val=10.0)`); a higher end temperature "
            "(`plan_kwargs={'temperature_end': 0.5}`)"
            + ("; 32-bit precision (`precision=32`)" if half else "")
            + "."
        )

    def _schedule(self) -> dict:
        """The arguments that fix the schedules over epochs (compared on resumption)."""
        return {
            "max_epochs": getattr(self.trainer, "max_epochs", None),
            "n_epochs_kl_warmup": self.n_epochs_kl_warmup,
            "n_steps_kl_warmup": self.n_steps_kl_warmup,
            "temperature": [
                self.temperature_start,
                self.temperature_end,
                self.n_epochs_temperature,
            ],
            "sparsity_penalty": [self.sparsity_penalty_end, self.sparsity_anneal_start],
            "align_at": list(self.align_at),
            "direct_start": self.direct_start,
            "graph_start": self.graph_start,
            "graph_fit_kwargs": self.graph_fit_kwargs,
            "learn_graph": self.learn_graph,
        }

    def _train_cells_digest(self) -> str | None:
        """Digest of the training cells' indices (None: the data module does not say)."""
        indices = getattr(getattr(self.trainer, "datamodule", None), "train_idx", None)
        if indices is None:
            return None
        indices = np.ascontiguousarray(np.asarray(indices, dtype=np.int64))
        return hashlib.sha1(indices.tobytes()).hexdigest()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the plan's own state: the annealing start, schedules and training cells."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[PLAN_STATE_KEY] = {
            "sparsity_penalty_start": self.sparsity_penalty_start,
            "schedule": self._schedule(),
            "train_cells": self._train_cells_digest(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the plan's own state; warn if the resumed run's schedules or cells differ."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get(PLAN_STATE_KEY)
        if state is None:
            return
        self.sparsity_penalty_start = state["sparsity_penalty_start"]
        schedule = self._schedule()
        changed = [
            f"{key}: {value} -> {schedule.get(key)}"
            for key, value in state["schedule"].items()
            if schedule.get(key) != value
        ]
        if changed:
            warnings.warn(
                "Resuming with other schedule arguments than the checkpoint's ("
                + "; ".join(changed)
                + "): temperature, KL warm-up, alignment and direct-effect "
                "schedules follow the new values. Pass the interrupted run's `max_epochs` and "
                "training arguments to continue it unchanged.",
                UserWarning,
                stacklevel=settings.warnings_stacklevel,
            )
        digest = self._train_cells_digest()
        if None not in (digest, state["train_cells"]) and digest != state["train_cells"]:
            warnings.warn(
                "Resuming on other training cells than the checkpoint's: set "
                "`scvi.settings.seed` (and `train_size`) as in the interrupted run, which "
                "decide the train/validation split.",
                UserWarning,
                stacklevel=settings.warnings_stacklevel,
            )

    def on_train_start(self):
        """Put the module in training mode (Lightning keeps the modes it finds).

        A model whose ``get_*`` methods ran is in eval mode; masks must be sampled while
        training, so the module is switched to training mode here. When every network weight
        is frozen (a query model of ``load_query_data``) the networks stay in eval mode:
        dropout off and batch-norm with the reference's statistics, only the prior and the
        direct effects train.
        """
        super().on_train_start()
        self.module.train()
        direct = getattr(self.module, "direct", None)
        if direct is not None:  # switched on at direct_start_epoch (on_train_epoch_start)
            direct.activate(False)
        per_perturbation = ("prior", "direct")
        frozen_networks = not any(
            p.requires_grad
            for name, p in self.module.named_parameters()
            if name.split(".")[0] not in per_perturbation
        )
        if frozen_networks:
            for name, child in self.module.named_children():
                if name not in per_perturbation:
                    child.eval()

    def on_train_epoch_start(self):
        """Set the mask temperature for this epoch."""
        super().on_train_epoch_start()
        self.set_epoch_temperature()
        penalty = self.current_sparsity_penalty(self.current_epoch)
        if penalty is not None and self.sparsity_penalty_end is not None:
            self.module.prior.sparsity_penalty = penalty
        direct = getattr(self.module, "direct", None)
        if direct is not None and self.current_epoch >= self.direct_start_epoch():
            direct.activate()
        prior = self.module.prior
        if (
            hasattr(prior, "activate_graph")
            and not bool(prior.graph_active)
            and self.current_epoch >= self._start_epoch(self.graph_start)
        ):
            self.fit_latent_graph()
        self._fix_graph()

    def _fix_graph(self) -> None:
        """Without ``learn_graph``, a graph that is on stops learning (its gates and weights
        leave the optimisation; they are never switched back on here, so a query model's
        frozen graph stays frozen)."""
        prior = self.module.prior
        if not self.learn_graph and bool(getattr(prior, "graph_active", False)):
            prior.edges.logits.requires_grad_(False)
            prior.edge_weights.requires_grad_(False)

    def direct_start_epoch(self) -> int:
        """First epoch (0-based) with direct effects switched on (see ``direct_start``)."""
        return self._start_epoch(self.direct_start)

    def _start_epoch(self, fraction: float) -> int:
        n = max(int(getattr(self.trainer, "max_epochs", None) or 1), 1)
        return min(int(round(fraction * n)), n - 1)

    @torch.no_grad()
    def fit_latent_graph(self) -> None:
        """The graph-alignment step (see ``graph_start``): fit the latent graph and its frame
        on the posterior means of (at most ``GRAPH_FIT_MAX_CELLS``) training cells, re-express
        the networks in that frame and switch the graph on. Under DDP every process fits on its
        own cells, with the same seed."""
        module = self.module
        if getattr(self.trainer, "datamodule", None) is None:
            logger.warning("No data module to fit the latent graph on; it stays off.")
            return
        latents, interventions = [], []
        for loc, codes in self._posterior_means():
            latents.append(loc)
            interventions.append(module.intervention_matrix[codes.long().view(-1)])
        self.fit_latent_graph_on(torch.cat(latents), torch.cat(interventions))

    def _posterior_means(self):
        """Posterior means and perturbation codes of the training cells, batch by batch, with
        the module in evaluation mode while they are computed."""
        module = self.module
        was_training = module.training
        module.eval()
        try:
            for tensors in self.trainer.datamodule.train_dataloader():
                qz = module.inference(**module._get_inference_input(tensors))[MODULE_KEYS.QZ_KEY]
                yield qz.loc, tensors[PERTURBATION_KEY]
        finally:
            module.train(was_training)

    @torch.no_grad()
    def latent_sums_by_category(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Sum and count of posterior means per perturbation category over the training cells
        (summed over processes under DDP), and the categories' intervention matrix."""
        module = self.module
        if getattr(self.trainer, "datamodule", None) is None:
            logger.warning(
                "No data module to compute the perturbations' mean latents; the "
                "latent space is not rotated."
            )
            return None
        sums, counts = category_latent_sums(
            self._posterior_means(),
            module.intervention_matrix.shape[0],
            module.n_latent,
            module.intervention_matrix,
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        return sums, counts, module.intervention_matrix

    def align_latent_space(self, broadcast=None) -> float | None:
        """Rotate the latent space onto the sparsest frame of the perturbations' effects
        (:meth:`~scvi_causal.core.InterventionScheduleMixin.align_latent_space`; under DDP the
        first process's rotation is used by all).

        Returns the ratio of the effects' l1 norms after / before (None: nothing done).
        """
        if broadcast is None and dist.is_available() and dist.is_initialized():

            def broadcast(rotation):
                dist.broadcast(rotation, src=0)

        return super().align_latent_space(broadcast=broadcast)

    def on_train_epoch_end(self):
        """Log mask diagnostics once per epoch (they are global, not per minibatch); rotate the
        latent space at the ``align_at`` epochs."""
        super().on_train_epoch_end()
        if self.align_at and self.current_epoch in self.alignment_epochs():
            ratio = self.align_latent_space()
            if ratio is not None:
                self.log(
                    "alignment_l1_ratio_train",
                    ratio,
                    on_step=False,
                    on_epoch=True,
                    sync_dist=self.use_sync_dist,
                )
        prior = self.module.prior
        for key, value in prior.extra_metrics().items():
            self.log(
                f"{key}_train", value, on_step=False, on_epoch=True, sync_dist=self.use_sync_dist
            )
        direct = getattr(self.module, "direct", None)
        if direct is not None:
            with torch.no_grad():
                size = direct.effects.abs().mean() if bool(direct.active) else 0.0
            self.log(
                "direct_effects_active_train",
                float(bool(direct.active)),
                on_step=False,
                on_epoch=True,
                sync_dist=self.use_sync_dist,
            )
            self.log(
                "direct_effect_size_train",
                float(size),
                on_step=False,
                on_epoch=True,
                sync_dist=self.use_sync_dist,
            )
        if self.sparsity_penalty_end is not None and prior.sparsity_penalty is not None:
            self.log(
                "sparsity_penalty_train",
                float(prior.sparsity_penalty),
                on_step=False,
                on_epoch=True,
                sync_dist=self.use_sync_dist,
            )
