"""Reliability: atomic saves, a clear stop on a non-finite loss, resuming interrupted training."""

import os
import shutil

import numpy as np
import pytest
import scvi
import torch
from lightning.pytorch.callbacks import Callback

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI
from scvi_causal.train import NonFiniteLossError, ResumeCheckpoint

N_EPOCHS = 10  # alignment after epochs 2, 4, 6 (default align_at), direct effects from 8
TRAIN_KWARGS = {
    "accelerator": "cpu",
    "enable_progress_bar": False,
    "batch_size": 64,
}
# schedules that run across the interruption at epoch N_EPOCHS // 2: KL warm-up over 8 epochs,
# sparsity penalty annealed from epoch 2 (a python attribute of the prior, not a buffer)
RESUME_KWARGS = {
    **TRAIN_KWARGS,
    "max_epochs": N_EPOCHS,
    "n_epochs_kl_warmup": 8,
    "plan_kwargs": {"sparsity_penalty_end": 0.1, "sparsity_anneal_start": 0.2},
}
# per-epoch values that must continue where the interrupted run stopped
SCHEDULED = [
    "elbo_train",
    "mask_temperature_train",
    "sparsity_penalty_train",
    "direct_effects_active_train",
    "alignment_l1_ratio_train",
]
# Tolerance of resumed vs uninterrupted runs. On one machine both runs do the same float
# operations in the same order, so they agree exactly (measured difference 0.0); the
# tolerance only leaves room for reordered reductions. For scale: the final training ELBO
# (about 220) of this setup over seeds 0-7 has a standard deviation of 3.1 (1.4 %, range 8.2),
# and resuming without the random-number states moves it by 0.3 to 2.3 (5 draws).
RTOL = 1e-5


def _simulate():
    adata = simulate_sparse_shift(
        n_perturbations=4,
        n_cells_per_perturbation=30,
        n_control_cells=60,
        n_genes=50,
        seed=0,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    return adata


@pytest.fixture(scope="module")
def adata():
    return _simulate()


@pytest.fixture
def own_adata():
    """Data of one test (loading a model saved with its AnnData re-registers that AnnData)."""
    return _simulate()


def _model(adata, seed=0):
    scvi.settings.seed = seed
    return SparseShiftVI(adata, n_latent=5, n_hidden=32)


def _state(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _assert_same_state(left, right):
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], msg=key)


def _hidden_leftovers(folder):
    return [name for name in os.listdir(folder) if name.startswith(".")]


# ------------------------------------------------------------------------------ atomic save
def test_save_load_round_trip(own_adata, tmp_path):
    model = _model(own_adata)
    model.train(max_epochs=1, **TRAIN_KWARGS)
    model.save(tmp_path / "model", save_anndata=True)
    assert sorted(os.listdir(tmp_path / "model")) == ["adata.h5ad", "model.pt"]
    assert _hidden_leftovers(tmp_path) == []
    loaded = SparseShiftVI.load(tmp_path / "model")
    _assert_same_state(_state(model), _state(loaded))
    assert loaded.perturbation_names_ == model.perturbation_names_
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-6
    )


def test_save_existing_folder_without_overwrite_raises(own_adata, tmp_path):
    model = _model(own_adata)
    model.save(tmp_path / "model")
    before = (tmp_path / "model" / "model.pt").read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        model.save(tmp_path / "model")
    assert (tmp_path / "model" / "model.pt").read_bytes() == before
    assert _hidden_leftovers(tmp_path) == []


def _broken_torch_save(obj, f, *args, **kwargs):
    """Write part of the file, then fail (a full disk, a killed job)."""
    with open(f, "wb") as handle:
        handle.write(b"half a model")
    raise OSError("No space left on device")


def test_failed_overwrite_keeps_previous_model(own_adata, tmp_path, monkeypatch):
    model = _model(own_adata)
    model.save(tmp_path / "model", save_anndata=True)
    saved = _state(model)
    with torch.no_grad():
        for p in model.module.parameters():
            p.add_(1.0)
    monkeypatch.setattr(torch, "save", _broken_torch_save)
    with pytest.raises(OSError, match="No space left"):
        model.save(tmp_path / "model", overwrite=True, save_anndata=True)
    monkeypatch.undo()
    assert _hidden_leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path / "model")) == ["adata.h5ad", "model.pt"]
    _assert_same_state(saved, _state(SparseShiftVI.load(tmp_path / "model")))


def test_failed_first_save_leaves_nothing(own_adata, tmp_path, monkeypatch):
    model = _model(own_adata)
    monkeypatch.setattr(torch, "save", _broken_torch_save)
    with pytest.raises(OSError):
        model.save(tmp_path / "model")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("error", [OSError("rename failed"), KeyboardInterrupt()])
def test_failure_while_swapping_files_rolls_back(own_adata, tmp_path, monkeypatch, error):
    model = _model(own_adata)
    model.save(tmp_path / "model", save_anndata=True)
    saved = _state(model)
    with torch.no_grad():
        for p in model.module.parameters():
            p.add_(1.0)
    rename = os.rename
    target = str(tmp_path / "model" / "model.pt")

    def failing_rename(src, dst):
        # fail when the new model.pt is moved in (the old files are already moved aside)
        if os.fspath(dst) == target and ".saving" in os.fspath(src):
            if os.path.basename(os.path.dirname(os.fspath(src))) == "new":
                raise error
        return rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(type(error)):
        model.save(tmp_path / "model", overwrite=True, save_anndata=True)
    monkeypatch.undo()
    assert _hidden_leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path / "model")) == ["adata.h5ad", "model.pt"]
    _assert_same_state(saved, _state(SparseShiftVI.load(tmp_path / "model")))


def test_overwrite_keeps_other_files_and_removes_stale_adata(own_adata, tmp_path):
    model = _model(own_adata)
    model.save(tmp_path / "model", save_anndata=True)
    (tmp_path / "model" / "notes.txt").write_text("keep me")
    model.save(tmp_path / "model", prefix="other_", overwrite=True)
    with torch.no_grad():
        for p in model.module.parameters():
            p.add_(1.0)
    model.save(tmp_path / "model", overwrite=True)  # no adata this time
    assert sorted(os.listdir(tmp_path / "model")) == ["model.pt", "notes.txt", "other_model.pt"]
    assert (tmp_path / "model" / "notes.txt").read_text() == "keep me"
    _assert_same_state(
        _state(model), _state(SparseShiftVI.load(tmp_path / "model", adata=own_adata))
    )
    assert _hidden_leftovers(tmp_path) == []


# --------------------------------------------------------------------------- non-finite loss
def test_nan_parameter_stops_training_with_advice(adata):
    model = _model(adata)
    with torch.no_grad():
        next(model.module.z_encoder.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError) as info:
        model.train(max_epochs=2, **TRAIN_KWARGS)
    message = str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert "epoch 0, step 0" in message
    assert "non-finite parameters (z_encoder." in message
    for advice in ["lr=", "raw counts", "extreme shift", "temperature_end", "gradient_clip_val"]:
        assert advice in message


def test_nan_loss_stops_training(adata, monkeypatch):
    model = _model(adata)
    loss = model.module.loss

    def nan_loss(*args, **kwargs):
        output = loss(*args, **kwargs)
        output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(model.module, "loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match="The training loss is nan at epoch 0, step 0"):
        model.train(max_epochs=1, **TRAIN_KWARGS)


class _PoisonAtEpoch(Callback):
    """Set a network weight to NaN at the start of an epoch (an overflow mid-training)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.module.decoder.parameters()).fill_(float("inf"))


def test_non_finite_loss_mid_training_names_the_epoch(adata):
    model = _model(adata)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 3 \(minibatch 0\)"):
        model.train(max_epochs=3, callbacks=[_PoisonAtEpoch(1)], **TRAIN_KWARGS)


def test_suggested_gradient_clipping_is_accepted(adata):
    model = _model(adata)
    model.train(max_epochs=1, gradient_clip_val=10.0, **TRAIN_KWARGS)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()


# ---------------------------------------------------------------------------------- resume
class _Interrupt(Callback):
    """Stop training at the start of an epoch, as a killed job would."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise _Interrupted


class _Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted(adata, tmp_path_factory):
    """A run of N_EPOCHS epochs, checkpointed every epoch; ``ckpt_path="last"`` in an empty
    folder starts a new run."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    model = _model(adata)
    model.train(callbacks=[ResumeCheckpoint(folder)], ckpt_path="last", **RESUME_KWARGS)
    return model


@pytest.fixture(scope="module")
def interrupted(adata, tmp_path_factory):
    """The same run stopped at the start of epoch N_EPOCHS // 2: the model and its folder with
    the checkpoint of the end of epoch N_EPOCHS // 2 - 1 (just after an alignment step)."""
    folder = tmp_path_factory.mktemp("interrupted")
    model = _model(adata)
    with pytest.raises(_Interrupted):
        model.train(
            callbacks=[ResumeCheckpoint(folder), _Interrupt(N_EPOCHS // 2)], **RESUME_KWARGS
        )
    assert os.listdir(folder) == ["last.ckpt"]
    return model, folder


def _copy_checkpoint(folder, tmp_path):
    copy = tmp_path / "checkpoint"
    shutil.copytree(folder, copy)
    return copy


def _assert_same_run(resumed, uninterrupted):
    """Same epochs after the interruption, same schedules, same final weights."""
    resumed_epochs = resumed.history["elbo_train"].index
    assert list(resumed_epochs) == list(range(N_EPOCHS // 2, N_EPOCHS))
    for key in SCHEDULED:
        expected = uninterrupted.history[key].loc[lambda f: f.index >= N_EPOCHS // 2]
        np.testing.assert_allclose(
            resumed.history[key].to_numpy(dtype=float),
            expected.to_numpy(dtype=float),
            rtol=RTOL,
            err_msg=key,
        )
    final = resumed.history["elbo_train"].iloc[-1, 0]
    assert final == pytest.approx(uninterrupted.history["elbo_train"].iloc[-1, 0], rel=RTOL)
    for key, value in _state(uninterrupted).items():
        torch.testing.assert_close(_state(resumed)[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert resumed.module.prior.sparsity_penalty == pytest.approx(
        uninterrupted.module.prior.sparsity_penalty, rel=RTOL
    )


def test_resume_in_a_new_model_repeats_the_uninterrupted_run(
    adata, uninterrupted, interrupted, tmp_path
):
    folder = _copy_checkpoint(interrupted[1], tmp_path)
    resumed = _model(adata, seed=0)
    resumed.train(callbacks=[ResumeCheckpoint(folder)], ckpt_path="last", **RESUME_KWARGS)
    _assert_same_run(resumed, uninterrupted)


def test_resume_the_interrupted_model_itself(uninterrupted, interrupted, tmp_path):
    # the interrupted model's prior holds an annealed sparsity penalty: the plan must take the
    # annealing's starting value from the checkpoint, not from the prior
    model, folder = interrupted
    folder = _copy_checkpoint(folder, tmp_path)
    model.train(
        callbacks=[ResumeCheckpoint(folder)], ckpt_path=folder / "last.ckpt", **RESUME_KWARGS
    )
    _assert_same_run(model, uninterrupted)


class _Reseed(Callback):
    def __init__(self, epoch, seed):
        self.epoch, self.seed = epoch, seed

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            torch.manual_seed(self.seed)


def test_resume_without_the_callback_restores_all_but_random_states(adata, interrupted, tmp_path):
    # a plain `ckpt_path` (no ResumeCheckpoint at resumption) restores weights, optimizer and
    # schedules but not the random states: the run equals an uninterrupted one whose torch
    # generator is reseeded at the interruption
    kwargs = {**RESUME_KWARGS, "check_val_every_n_epoch": 1}  # as with the callback
    reference = _model(adata)
    reference.train(callbacks=[_Reseed(N_EPOCHS // 2, 123)], **kwargs)
    folder = _copy_checkpoint(interrupted[1], tmp_path)
    resumed = _model(adata)
    torch.manual_seed(123)
    resumed.train(ckpt_path=folder / "last.ckpt", **kwargs)
    final = resumed.history["elbo_train"].iloc[-1, 0]
    assert final == pytest.approx(reference.history["elbo_train"].iloc[-1, 0], rel=RTOL)


def test_resume_with_other_schedule_or_cells_warns(adata, interrupted, tmp_path):
    folder = _copy_checkpoint(interrupted[1], tmp_path)
    model = _model(adata, seed=1)  # another train/validation split
    kwargs = {**RESUME_KWARGS, "max_epochs": N_EPOCHS // 2 + 1}
    with pytest.warns(UserWarning, match="other schedule arguments") as record:
        model.train(ckpt_path=folder / "last.ckpt", **kwargs)
    assert "max_epochs: 10 -> 6" in str(record[0].message)
    assert any("other training cells" in str(w.message) for w in record)
