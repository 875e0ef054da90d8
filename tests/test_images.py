"""Image VAE on top of ``scvi_causal.core`` and interventional dSprites from ../shared/data."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, require_data

from scvi_causal.images import (
    FACTOR_NAMES,
    INTERVENTIONS,
    ImageVAE,
    interventional_dsprites,
    load_dsprites,
)
from scvi_causal.images._dsprites import DSPRITES_URL

DSPRITES = DATA / "dsprites_downsampled_46080_fullgrid.npz"


@pytest.fixture(scope="module")
def dsprites():
    require_data(DSPRITES.name)
    return load_dsprites(DSPRITES)


@pytest.fixture(scope="module")
def small_data(dsprites):
    return interventional_dsprites(n_interventions=3, n_per_regime=64, seed=0, path=DSPRITES)


def test_load_dsprites_full_grid(dsprites):
    images, factors = dsprites
    assert images.shape == (46080, 64, 64) and set(np.unique(images)) == {0, 1}
    assert [len(np.unique(factors[:, j])) for j in range(5)] == [3, 6, 10, 16, 16]
    # every grid cell exactly once
    assert len(np.unique(factors, axis=0)) == len(factors)


def test_load_dsprites_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a dSprites archive"):
        load_dsprites(bad)
    with pytest.raises(FileNotFoundError):
        load_dsprites(tmp_path / "missing.npz")


def test_interventional_regimes_follow_their_restrictions():
    require_data(DSPRITES.name)
    data = interventional_dsprites(n_interventions=6, n_per_regime=300, seed=1, path=DSPRITES)
    assert len(data) == 7 * 300 and data.images.shape == (2100, 64, 64)
    assert data.graph.shape == (6, 5) and list(data.graph.columns) == list(FACTOR_NAMES)
    for k, name in enumerate(data.regime_names[1:], start=1):
        rows = data.regimes == k
        for j, factor in enumerate(FACTOR_NAMES):
            values = np.unique(data.factors[rows, j])
            if factor in INTERVENTIONS[name]:
                assert data.graph.loc[name, factor]
                assert set(values) <= set(INTERVENTIONS[name][factor])
            else:
                # untouched factors keep (almost) their whole range
                assert not data.graph.loc[name, factor]
                assert len(values) > 1
    obs = data.factors[data.regimes == 0]
    assert all(len(np.unique(obs[:, j])) == size for j, size in enumerate([3, 6, 10, 16, 16]))
    # the one-hot intervention matrix matches the regimes
    a = data.interventions
    assert a.shape == (2100, 6) and (a.sum(1) == (data.regimes > 0)).all()
    assert (a[data.regimes == 2, 1] == 1).all()


def test_interventional_dsprites_seeds_and_errors():
    require_data(DSPRITES.name)
    a = interventional_dsprites(n_interventions=2, n_per_regime=20, seed=3, path=DSPRITES)
    b = interventional_dsprites(n_interventions=2, n_per_regime=20, seed=3, path=DSPRITES)
    c = interventional_dsprites(n_interventions=2, n_per_regime=20, seed=4, path=DSPRITES)
    assert np.array_equal(a.factors, b.factors) and not np.array_equal(a.factors, c.factors)
    with pytest.raises(ValueError, match="n_interventions"):
        interventional_dsprites(n_interventions=0, path=DSPRITES)
    with pytest.raises(ValueError, match="unknown factor"):
        interventional_dsprites(1, 10, path=DSPRITES, interventions={"x": {"colour": (0,)}})
    with pytest.raises(ValueError, match="classes of 'scale'"):
        interventional_dsprites(1, 10, path=DSPRITES, interventions={"x": {"scale": (9,)}})


def test_image_vae_trains_saves_and_loads(small_data, tmp_path, monkeypatch):
    torch.manual_seed(0)
    vae = ImageVAE(n_latent=4, n_interventions=3, channels=8, hidden=32)
    vae.train(
        small_data.images,
        small_data.regimes,
        max_epochs=4,
        batch_size=64,
        enable_progress_bar=False,
        seed=0,
    )
    hist = vae.history
    assert len(hist) == 4
    assert {"loss_train", "mask_density_train", "mask_temperature_train"} <= set(hist.columns)
    # the loss goes down and the temperature is annealed
    assert hist["reconstruction_loss_train"].iloc[-1] < hist["reconstruction_loss_train"].iloc[0]
    assert hist["mask_temperature_train"].iloc[-1] < hist["mask_temperature_train"].iloc[0]
    z = vae.get_latent_representation(small_data.images)
    assert z.shape == (len(small_data), 4) and np.isfinite(z).all()
    graph = vae.get_target_graph()
    assert graph.shape == (3, 4) and np.isfinite(graph).all()
    assert (np.abs(graph - 0.5) > 1e-3).mean() > 0.5  # masks moved from their initial 0.5
    decoded = vae.decode(z[:5])
    assert decoded.shape == (5, 64, 64) and decoded.min() >= 0 and decoded.max() <= 1
    vae.save(tmp_path / "vae.pt")
    with pytest.raises(FileExistsError):
        vae.save(tmp_path / "vae.pt")
    loaded = ImageVAE.load(tmp_path / "vae.pt")
    np.testing.assert_allclose(loaded.get_latent_representation(small_data.images), z, atol=1e-6)
    np.testing.assert_allclose(loaded.get_target_graph(), graph)
    assert len(loaded.history) == 4 and loaded.is_trained_
    # a save that fails half-way leaves the previous file intact and no temporary file
    before = (tmp_path / "vae.pt").read_bytes()

    def broken(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", broken)
        with pytest.raises(OSError, match="disk full"):
            vae.save(tmp_path / "vae.pt", overwrite=True)
    assert (tmp_path / "vae.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.pt"]


def test_image_vae_rotation_is_a_change_of_coordinates(small_data):
    torch.manual_seed(1)
    vae = ImageVAE(n_latent=4, n_interventions=3, channels=8, hidden=32)
    module = vae.module.eval()
    x = torch.as_tensor(small_data.images[:16], dtype=torch.float32).unsqueeze(1)
    with torch.no_grad():
        before = module.decoder(module.encoder(x).loc)
    q = torch.linalg.qr(torch.randn(4, 4)).Q
    effects = torch.tensor([[2.0, 0.1, 0.0, 0.0], [0.0, 0.0, -3.0, 0.0], [0.5, 0.0, 0.0, 0.2]])
    changed = module.rotate_latent_space(q, effects=effects, threshold=0.5)
    assert len(changed) == 7
    with torch.no_grad():
        after = module.decoder(module.encoder(x).loc)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.as_tensor(vae.get_shifts()), effects @ q)
    on = vae.get_target_graph() > 0.5
    rotated = (effects @ q).abs()
    assert np.array_equal(on, (rotated >= 0.5 * rotated.max(-1, keepdim=True).values).numpy())
    with pytest.raises(ValueError, match="orthogonal"):
        module.rotate_latent_space(2 * q)
    dense = ImageVAE(
        n_latent=4, n_interventions=3, intervention_prior="dense", channels=8, hidden=32
    )
    assert not dense.module.can_rotate_latent_space()
    with pytest.raises(ValueError, match="spike_slab"):
        dense.module.rotate_latent_space(q)


def test_image_vae_alignment_steps(small_data):
    vae = ImageVAE(n_latent=4, n_interventions=3, channels=8, hidden=32)
    vae.train(
        small_data.images, small_data.regimes, max_epochs=4, enable_progress_bar=False, seed=0
    )
    ratios = vae.history["alignment_l1_ratio_train"].dropna()
    assert list(ratios.index) == [0, 1, 2]  # after 30 %, 50 % and 70 % of 4 epochs
    assert ((ratios > 0) & (ratios <= 1)).all()
    off = ImageVAE(n_latent=4, n_interventions=3, channels=8, hidden=32)
    off.train(
        small_data.images, small_data.regimes, max_epochs=1, enable_progress_bar=False, align_at=()
    )
    assert "alignment_l1_ratio_train" not in off.history
    with pytest.raises(ValueError, match="align_at"):
        off.train(small_data.images, small_data.regimes, max_epochs=1, align_at=(1.5,))
    with pytest.raises(ValueError, match="align_noise_z"):
        off.train(small_data.images, small_data.regimes, max_epochs=1, align_noise_z=-1)


def test_image_vae_baselines_share_the_core_priors(small_data):
    from scvi_causal.core import SparseShiftPrior, StandardNormalPrior

    tc = ImageVAE(n_latent=3, intervention_prior="none", tc_weight=5.0, channels=8, hidden=32)
    assert isinstance(tc.module.prior, StandardNormalPrior)
    tc.train(small_data.images, max_epochs=1, enable_progress_bar=False)
    assert tc.history["total_correlation_train"].iloc[-1] != 0
    assert (tc.get_target_graph() == 0).all()
    dense = ImageVAE(
        n_latent=3, n_interventions=3, intervention_prior="dense", channels=8, hidden=32
    )
    assert isinstance(dense.module.prior, SparseShiftPrior)
    dense.train(
        small_data.images, small_data.interventions, max_epochs=1, enable_progress_bar=False
    )
    assert (dense.get_target_graph() == 1).all()
    assert np.abs(dense.get_shifts()).sum() > 0  # the shifts moved


def test_image_vae_bad_input(small_data):
    vae = ImageVAE(n_latent=2, n_interventions=3, channels=8, hidden=32)
    with pytest.raises(ValueError, match="shape"):
        vae.train(np.zeros((4, 32, 32)), max_epochs=1)
    bad = small_data.images[:4].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vae.train(bad, max_epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.train(small_data.images[:4] * 255, max_epochs=1)
    with pytest.raises(ValueError, match="Regime ids"):
        vae.train(small_data.images[:4], np.array([0, 1, 2, 7]), max_epochs=1)
    with pytest.raises(ValueError, match="regimes for"):
        vae.train(small_data.images[:4], np.array([0, 1]), max_epochs=1)
    with pytest.raises(ValueError, match="n_interventions >= 1"):
        ImageVAE(n_latent=2, intervention_prior="spike_slab")
    with pytest.raises(ValueError, match="latents"):
        vae.decode(np.zeros((2, 5)))


def test_latent_traversal_figure(small_data):
    from matplotlib.figure import Figure

    from scvi_causal.pl import latent_traversal

    vae = ImageVAE(n_latent=3, n_interventions=3, channels=8, hidden=32)
    fig = latent_traversal(vae, small_data.images[0], values=[-1, 0, 1])
    assert isinstance(fig, Figure) and len(fig.axes) == 9
    with pytest.raises(ValueError, match="64, 64"):
        latent_traversal(vae, small_data.images[:2])


@pytest.mark.internet
def test_dsprites_original_download(tmp_path, monkeypatch):
    from scvi_causal.data._datasets import download

    path = download(DSPRITES_URL, tmp_path / "dsprites.npz")
    images, factors = load_dsprites(path)
    assert images.shape == (46080, 64, 64) and factors.shape == (46080, 5)
    grid_images, grid_factors = load_dsprites(DSPRITES)
    assert np.array_equal(factors, grid_factors) and np.array_equal(images, grid_images)
