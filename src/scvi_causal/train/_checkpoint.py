"""A checkpoint callback from which an interrupted training run can be resumed."""

from __future__ import annotations

import logging
import random
from os import PathLike

import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from scvi.train import SaveCheckpoint

from scvi_causal._constants import RNG_STATE_KEY

logger = logging.getLogger(__name__)


class ResumeCheckpoint(SaveCheckpoint):
    """Write a full training checkpoint, ``dirpath/last.ckpt``, every ``every_n_epochs`` epochs.

    The checkpoint is Lightning's: module weights and buffers, optimizer state (Adam moments,
    learning rates), epoch and step counters, the other callbacks' state and the
    random-number-generator states, so that ``model.train(..., ckpt_path=...)`` of a model built
    with the same arguments goes on where the interrupted run stopped. It is written at the end
    of an epoch, after the training plan's epoch-end steps (latent-space alignment, see
    :class:`~scvi_causal.train.SparseShiftTrainingPlan`), and replaces the previous one
    atomically.

    scvi-tools' own :class:`scvi.train.SaveCheckpoint` keeps only the best model's weights
    (a :meth:`~scvi.model.base.BaseModelClass.save` folder, without optimizer or loop state), from
    which training cannot be resumed; a plain Lightning
    :class:`~lightning.pytorch.callbacks.ModelCheckpoint` needs ``enable_checkpointing=True``,
    with which scvi's :class:`~scvi.train.Trainer` adds a ``SaveCheckpoint`` writing to
    ``scvi.settings.logging_dir``. This class is a ``SaveCheckpoint`` to scvi's trainer (so
    it adds no second one) with Lightning's ``ModelCheckpoint`` behaviour. As with any
    ``SaveCheckpoint``, scvi's trainer then validates every epoch unless
    ``check_val_every_n_epoch`` is given.

    The random-number-generator states (torch, CUDA, numpy, Python) are stored with the
    checkpoint and restored on resumption in a single-process run, so that a resumed run on the
    same hardware repeats the uninterrupted one up to floating-point reordering. Under
    data-parallel training they are not restored (each process has its own).

    Parameters
    ----------
    dirpath
        Folder of the checkpoint (created if needed).
    every_n_epochs
        Epochs between checkpoints.
    **kwargs
        Other arguments of :class:`~lightning.pytorch.callbacks.ModelCheckpoint`
        (e.g. ``save_on_exception=True`` to also write a checkpoint when training fails).

    Examples
    --------
    Pass the callback to ``train``; with ``ckpt_path="last"`` the same call starts a new run
    (no checkpoint yet) or resumes the interrupted one, in a model built with the same
    arguments:

    >>> from scvi_causal.train import ResumeCheckpoint
    >>> checkpoint = ResumeCheckpoint("runs/screen1")
    >>> model.train(max_epochs=400, callbacks=[checkpoint], ckpt_path="last")  # doctest: +SKIP
    """

    def __init__(self, dirpath: str | PathLike, every_n_epochs: int = 1, **kwargs):
        if every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be >= 1, got {every_n_epochs}.")
        # Lightning's constructor, not SaveCheckpoint's (which forces a monitored metric and
        # drops `save_last`); the attributes that SaveCheckpoint's own hooks read are set below.
        ModelCheckpoint.__init__(
            self,
            dirpath=dirpath,
            filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
            **kwargs,
        )
        self.load_best_on_end = False
        self.check_nan_gradients = False
        self.loss_is_nan = False

    # SaveCheckpoint replaces these ModelCheckpoint methods by scvi model folders; restore them.
    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        """Add the random-number-generator states to the checkpoint."""
        # plain types and tensors only: Lightning loads checkpoints with `weights_only=True`;
        # the legacy global numpy generator is the one `scvi.settings.seed` seeds
        _, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
        states = {
            "torch": torch.get_rng_state(),
            "numpy": [
                torch.from_numpy(keys.astype(np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ],
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint[RNG_STATE_KEY] = states

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        """Restore the random-number-generator states of a single-process run."""
        states = checkpoint.get(RNG_STATE_KEY)
        if states is None or trainer.world_size > 1:
            return
        torch.set_rng_state(states["torch"])
        keys, pos, has_gauss, cached = states["numpy"]
        numpy_state = ("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached)
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(states["python"])
        if "cuda" in states and torch.cuda.is_available():
            if len(states["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states["cuda"])
            else:
                logger.info(
                    "Different number of GPUs than at the checkpoint: CUDA random "
                    "states not restored."
                )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Lightning's step-based checkpoints (``every_n_train_steps``)."""
        ModelCheckpoint.on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module) -> None:
        """Lightning's end-of-training checkpoint (``save_last``)."""
        ModelCheckpoint.on_train_end(self, trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception) -> None:
        """Lightning's checkpoint on exception (``save_on_exception``)."""
        ModelCheckpoint.on_exception(self, trainer, pl_module, exception)

    def _remove_checkpoint(self, trainer, filepath: str) -> None:
        ModelCheckpoint._remove_checkpoint(self, trainer, filepath)

    def _update_best_and_save(self, current, trainer, monitor_candidates) -> None:
        ModelCheckpoint._update_best_and_save(self, current, trainer, monitor_candidates)
