"""Paired dSprites (weak supervision) and Ada-GVAE on top of the image VAE."""

import numpy as np
import pytest
import torch
from conftest import DATA, require_data

from scvi_causal.images import (
    AdaGVAE,
    ImagePairs,
    ImageVAE,
    ImageVAEModule,
    dsprites_pairs,
    load_dsprites,
)

DSPRITES = DATA / "dsprites_downsampled_46080_fullgrid.npz"


@pytest.fixture(scope="module")
def dsprites():
    require_data(DSPRITES.name)
    return load_dsprites(DSPRITES)


@pytest.fixture(scope="module")
def pairs(dsprites):
    return dsprites_pairs(n_pairs=320, seed=0, path=DSPRITES)


def test_pairs_share_all_but_k_factors(dsprites, pairs):
    images, factors = dsprites
    n_differ = pairs.differs.sum(axis=1)
    # k unknown: 1 to 4 of the 5 factors differ, each count about equally often
    assert n_differ.min() == 1 and n_differ.max() == 4
    assert np.all(np.bincount(n_differ)[1:] > 40)
    assert pairs.differs.any(axis=0).all()  # every factor changes in some pair
    # the images are the grid's images of the pairs' factors
    index = {tuple(f): i for i, f in enumerate(factors)}
    for i in range(0, len(pairs), 37):
        assert np.array_equal(pairs.images1[i], images[index[tuple(pairs.factors1[i])]])
        assert np.array_equal(pairs.images2[i], images[index[tuple(pairs.factors2[i])]])
    assert pairs.images1.shape == (320, 64, 64) and pairs.images1.dtype == np.uint8
    assert pairs.factor_names[0] == "shape"


def test_pairs_fixed_k_seeds_and_subset(pairs):
    fixed = dsprites_pairs(n_pairs=200, k=2, seed=3, path=DSPRITES)
    assert np.all(fixed.differs.sum(axis=1) == 2)
    again = dsprites_pairs(n_pairs=320, seed=0, path=DSPRITES)
    assert np.array_equal(again.factors2, pairs.factors2)
    other = dsprites_pairs(n_pairs=320, seed=1, path=DSPRITES)
    assert not np.array_equal(other.factors1, pairs.factors1)
    part = pairs.subset(slice(0, 10))
    assert isinstance(part, ImagePairs) and len(part) == 10
    assert np.array_equal(part.differs, pairs.differs[:10])


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 5}, {"k": 1.5}, {"n_pairs": 0}])
def test_pairs_bad_arguments(dsprites, kwargs):
    with pytest.raises(ValueError, match="`k`|`n_pairs`"):
        dsprites_pairs(**{"path": DSPRITES, **kwargs})


def test_ada_gvae_trains_and_loss_decreases(pairs, tmp_path):
    # 320 pairs, 2 epochs of 10 steps: a few seconds on 2 CPU threads
    vae = AdaGVAE(n_latent=6, beta=1.0, channels=16, hidden=64)
    held_out = dsprites_pairs(n_pairs=100, seed=9, path=DSPRITES).images1
    elbo_before = vae.get_elbo(held_out)
    vae.train(
        pairs.images1,
        pairs.images2,
        max_epochs=2,
        batch_size=32,
        lr=1e-3,
        n_epochs_kl_warmup=0,
        enable_progress_bar=False,
        seed=0,
    )
    history = vae.history
    assert len(history) == 2
    assert history["loss_train"].iloc[1] < history["loss_train"].iloc[0]
    # from ~4096 log 2 nats (random decoder) towards the sprites: measured -2700 -> -2200
    assert vae.get_elbo(held_out) > elbo_before + 200
    # the averaging is active: some but not all dimensions are shared per pair
    assert 0 < history["n_shared_train"].iloc[-1] < 6
    z = vae.get_latent_representation(pairs.images1[:50])
    assert z.shape == (50, 6) and np.isfinite(z).all()
    assert np.isfinite(vae.get_elbo(pairs.images1[:50]))
    assert "AdaGVAE(n_latent=6" in repr(vae)
    vae.save(tmp_path / "ada.pt")
    loaded = AdaGVAE.load(tmp_path / "ada.pt")
    assert isinstance(loaded, AdaGVAE) and loaded.is_trained_
    # the parent class does not silently build a different model from the file
    with pytest.raises(TypeError, match="saved by AdaGVAE; load it with AdaGVAE.load"):
        ImageVAE.load(tmp_path / "ada.pt")
    assert np.allclose(loaded.get_latent_representation(pairs.images1[:50]), z)
    assert loaded.history.equals(history)


def test_ada_gvae_bad_input(pairs):
    vae = AdaGVAE(n_latent=3, channels=8, hidden=16)
    with pytest.raises(ValueError, match="same number of images"):
        vae.train(pairs.images1[:10], pairs.images2[:9], max_epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n, 64, 64\)"):
        vae.train(pairs.images1[:10, :32], pairs.images2[:10, :32], max_epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.train(pairs.images1[:10] * 255.0, pairs.images2[:10], max_epochs=1)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        vae.train(pairs.images1[:1], pairs.images2[:1], max_epochs=1)
    with pytest.raises(TypeError):
        AdaGVAE(n_interventions=2)
    with pytest.raises(ValueError, match="beta"):
        AdaGVAE(beta=-1.0)


def test_pair_loss_needs_the_standard_normal_prior():
    module = ImageVAEModule(n_latent=3, n_interventions=1, intervention_prior="spike_slab")
    x = torch.zeros(2, 1, 64, 64)
    with pytest.raises(ValueError, match="standard normal prior"):
        module.pair_loss(x, x)
