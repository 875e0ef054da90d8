"""Training plan for sparse-shift models: fast per-perturbation parameters, mask temperature."""

from __future__ import annotations

import logging

from scvi.train import TrainingPlan

from scvi_causal.core import geometric_temperature

logger = logging.getLogger(__name__)


class SparseShiftTrainingPlan(TrainingPlan):
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
        intervention_lr_factor: float = 10.0,
        temperature_start: float = 1.0,
        temperature_end: float = 0.2,
        n_epochs_temperature: int | None = None,
        sparsity_penalty_end: float | None = None,
        sparsity_anneal_start: float = 0.5,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
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
        if not 0.0 <= sparsity_anneal_start <= 1.0:
            raise ValueError("`sparsity_anneal_start` must be in [0, 1].")
        self.sparsity_penalty_end = sparsity_penalty_end
        self.sparsity_anneal_start = float(sparsity_anneal_start)
        prior = getattr(module, "prior", None)
        self.sparsity_penalty_start = getattr(prior, "sparsity_penalty", None)

    def get_optimizer_creator(self):
        """Optimizer over two parameter groups (networks; per-perturbation parameters)."""
        base_creator = super().get_optimizer_creator()
        fast_ids = {id(p) for p in getattr(self.module, "intervention_parameters", list)()}

        def creator(params):
            params = list(params)
            slow = [p for p in params if id(p) not in fast_ids]
            fast = [p for p in params if id(p) in fast_ids]
            groups = [{"params": slow}]
            if fast:
                groups.append(
                    {"params": fast, "lr": self.lr * self.intervention_lr_factor, "weight_decay": 0}
                )
            return base_creator([g for g in groups if g["params"]])

        return creator

    def current_temperature(self, epoch: int) -> float:
        """Temperature at ``epoch`` of the geometric schedule."""
        n = self.n_epochs_temperature or getattr(self.trainer, "max_epochs", None) or 1
        return geometric_temperature(epoch, n, self.temperature_start, self.temperature_end)

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

    def on_train_start(self):
        """Put the module in training mode (Lightning keeps the modes it finds).

        A model whose ``get_*`` methods ran is in eval mode; masks must be sampled while
        training, so the module is switched to training mode here. When every network weight
        is frozen (a query model of ``load_query_data``) the networks stay in eval mode:
        dropout off and batch-norm with the reference's statistics, only the prior trains.
        """
        super().on_train_start()
        self.module.train()
        frozen_networks = not any(
            p.requires_grad
            for name, p in self.module.named_parameters()
            if not name.startswith("prior.")
        )
        if frozen_networks:
            for name, child in self.module.named_children():
                if name != "prior":
                    child.eval()

    def on_train_epoch_start(self):
        """Set the mask temperature for this epoch."""
        super().on_train_epoch_start()
        mask = getattr(getattr(self.module, "prior", None), "mask", None)
        if mask is not None:
            mask.set_temperature(self.current_temperature(self.current_epoch))
        penalty = self.current_sparsity_penalty(self.current_epoch)
        if penalty is not None and self.sparsity_penalty_end is not None:
            self.module.prior.sparsity_penalty = penalty

    def on_train_epoch_end(self):
        """Log mask diagnostics once per epoch (they are global, not per minibatch)."""
        super().on_train_epoch_end()
        prior = getattr(self.module, "prior", None)
        for key, value in getattr(prior, "extra_metrics", dict)().items():
            self.log(f"{key}_train", value, on_step=False, on_epoch=True,
                     sync_dist=self.use_sync_dist)
        if self.sparsity_penalty_end is not None and prior is not None:
            self.log("sparsity_penalty_train", float(prior.sparsity_penalty), on_step=False,
                     on_epoch=True, sync_dist=self.use_sync_dist)
