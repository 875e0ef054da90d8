"""CCVAE on dSprites: labels as characteristics of latent subspaces, and interventions on them."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DATA, require_data

from scvi_causal.images import (
    CCVAE,
    CCVAEModule,
    LabelConditionalPrior,
    discretize_factors,
    load_dsprites,
)
from scvi_causal.metrics import label_intervention_scores

DSPRITES = DATA / "dsprites_downsampled_46080_fullgrid.npz"
LABELS = ("pos_x", "pos_y")


def centroid_labels(images) -> np.ndarray:
    """An independent reader of the two labels: is the sprite's centre of mass right of / below
    the image centre."""
    images = np.asarray(images, dtype=float)
    grid = np.arange(64)
    mass = images.sum((1, 2))
    x = (images.sum(1) * grid).sum(1) / mass
    y = (images.sum(2) * grid).sum(1) / mass
    return np.column_stack([x > 31.5, y > 31.5]).astype(np.int64)


@pytest.fixture(scope="module")
def dsprites():
    require_data(DSPRITES.name)
    return load_dsprites(DSPRITES)


@pytest.fixture(scope="module")
def toy(dsprites):
    """300 dSprites images labelled left / right and top / bottom."""
    images, factors = dsprites
    index = np.random.default_rng(0).choice(len(images), 300, replace=False)
    labels = discretize_factors(factors[index], n_bins=(3, 2, 2, 2, 2))[:, [3, 4]]
    return images[index], labels


@pytest.fixture(scope="module")
def trained(toy):
    # 3 epochs of 38 steps: about 2 s on one CPU thread
    images, labels = toy
    torch.manual_seed(0)
    vae = CCVAE(n_classes=(2, 2), n_context=2, label_names=LABELS, channels=16, hidden=64)
    vae.train(
        images,
        labels,
        max_epochs=3,
        batch_size=8,
        lr=3e-3,
        n_epochs_kl_warmup=0,
        enable_progress_bar=False,
        seed=0,
    )
    return vae


def test_discretize_factors(dsprites):
    _, factors = dsprites
    labels = discretize_factors(factors)
    assert labels.shape == factors.shape and labels.dtype == np.int64
    # shape keeps its 3 classes, the others are halved: equal bins on the full grid
    assert np.array_equal(labels[:, 0], factors[:, 0])
    for j in range(1, 5):
        assert np.array_equal(np.bincount(labels[:, j]), [len(factors) // 2] * 2)
    assert np.array_equal(labels[:, 3], (factors[:, 3] >= 8).astype(int))
    assert discretize_factors(factors[:5], n_bins=1).max() == 0
    with pytest.raises(ValueError, match="n_bins"):
        discretize_factors(factors[:5], n_bins=(3, 7, 2, 2, 2))  # scale has 6 classes
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        discretize_factors(factors[:5, :4])
    with pytest.raises(ValueError, match="integer classes"):
        discretize_factors(factors[:5] + 16)


def test_label_conditional_prior():
    prior = LabelConditionalPrior(n_classes=(3, 2), label_dim=2, n_context=1)
    pz = prior(torch.tensor([[0, 1], [2, 0]]))
    assert pz.loc.shape == (2, 5)
    # class means start spread on each block's first unit; context N(0, 1)
    assert torch.equal(pz.loc.detach()[:, [0, 2]], torch.tensor([[-2.0, 2.0], [2.0, -2.0]]))
    assert torch.equal(pz.loc.detach()[:, [1, 3, 4]], torch.zeros(2, 3))
    assert torch.equal(pz.scale.detach(), torch.ones(2, 5))
    assert prior.class_log_prob(torch.zeros(7, 2), 0).shape == (7, 3)
    assert float(prior.kl_global()) == 0.0
    assert torch.allclose(prior.label_log_prior(0).exp(), torch.full((3,), 1 / 3))
    prior.set_label_prior(torch.tensor([[0, 1], [0, 1], [1, 1]]))
    # add-one smoothed frequencies: (2+1, 1+1, 0+1) / 6 and (0+1, 3+1) / 5
    assert torch.allclose(prior.label_log_prior(0).exp(), torch.tensor([3, 2, 1]) / 6.0)
    assert torch.allclose(prior.label_log_prior(1).exp(), torch.tensor([1, 4]) / 5.0)
    with pytest.raises(ValueError, match="needs the labels"):
        prior(None)
    with pytest.raises(ValueError, match="n_classes"):
        LabelConditionalPrior(n_classes=(3, 1))


def test_module_loss_and_initial_classifier():
    torch.manual_seed(0)
    module = CCVAEModule(n_classes=(3, 2), label_dim=1, n_context=2, channels=8, hidden=16)
    assert module.n_latent == 4 and module.label_units(1) == slice(1, 2)
    # the classifiers start as the Bayes classifiers of the prior: each class mean reads as
    # its class
    for i, c in enumerate(module.n_classes):
        means = module.prior.class_params(i)[0]
        z = torch.zeros(c, module.n_latent)
        z[:, module.label_units(i)] = means
        assert torch.equal(module.label_logits(z)[i].argmax(1), torch.arange(c))
    x = (torch.rand(6, 1, 64, 64) > 0.9).float()
    y = torch.tensor([[0, 1], [1, 0], [2, 1], [0, 0], [1, 1], [2, 0]])
    out = module.loss(x, y)
    assert set(out) == {
        "loss",
        "reconstruction_loss",
        "kl_local",
        "label_log_likelihood",
        "label_accuracy",
    }
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.values())
    assert float(out["label_log_likelihood"]) < 0 and 0 <= float(out["label_accuracy"]) <= 1
    out["loss"].backward()
    # the classifiers and the prior's class means learn from the supervised bound
    assert module.classifiers[0].weight.grad.abs().sum() > 0
    assert module.prior.loc.grad.abs().sum() > 0
    assert module.intervention_parameters() == [module.prior.loc, module.prior.log_scale]
    assert module.supervised_bound(x, y).shape == (6,)
    assert module.unsupervised_bound(x).shape == (6,)


def test_ccvae_learns_the_labels(trained, toy):
    images, labels = toy
    history = trained.history
    assert len(history) == 3
    assert history["loss_train"].iloc[-1] < history["loss_train"].iloc[0]
    # measured 0.60 -> 0.96 over the 3 epochs
    assert history["label_accuracy_train"].iloc[-1] > 0.85
    predicted = trained.predict_labels(images)
    assert predicted.shape == (300, 2) and predicted.dtype == np.int64
    assert np.all((predicted == labels).mean(0) > 0.9)
    probs = trained.predict_labels(images[:10], probabilities=True)
    assert [p.shape for p in probs] == [(10, 2), (10, 2)]
    assert np.allclose(probs[0].sum(1), 1.0, atol=1e-5)
    # each label is read from its own unit: that unit alone correlates with it
    z = trained.get_latent_representation(images)
    for name, j in zip(LABELS, range(2)):
        (unit,) = trained.label_units[name]
        corr = [abs(np.corrcoef(z[:, k], labels[:, j])[0, 1]) for k in range(trained.n_latent)]
        assert corr[unit] > 0.7 and corr[unit] == max(corr[: len(LABELS)])


def test_intervention_sets_the_label_and_keeps_the_other(trained, toy):
    images, _ = toy
    x = images[:200]
    current = trained.predict_labels(x)
    # independent reader (centre of mass) agrees with the labels on the original images
    _, labels = toy
    assert (centroid_labels(x) == labels[:200]).mean() > 0.95
    for j, name in enumerate(LABELS):
        flip = 1 - current[:, j]
        own = trained.score_intervention(x, name, flip)
        independent = trained.score_intervention(x, name, flip, classifier=centroid_labels)
        # measured: own accuracy 0.93-1.0, other labels changed 0.01-0.09
        for scores in (own, independent):
            assert scores["accuracy"] > 0.8
            assert scores["changed"] > 0.7
            assert scores["other_changed"] < 0.2
        assert isinstance(own["changed_per_label"], pd.Series)
        assert list(own["changed_per_label"].index) == list(LABELS)
        # setting the label to the value it has changes (almost) nothing
        same = trained.score_intervention(x, name, current[:, j])
        assert same["changed"] < 0.1 and same["accuracy"] > 0.9
    # the direction is right: pos_x = 1 puts the sprite further right than pos_x = 0
    right = centroid_labels(trained.intervene(x, "pos_x", 1))[:, 0]
    left = centroid_labels(trained.intervene(x, 0, 0))[:, 0]
    assert right.mean() > 0.8 and left.mean() < 0.2


def test_intervene_edits_only_the_label_block(trained, toy):
    images, _ = toy
    z = trained.get_latent_representation(images[:20])
    out, edited = trained.intervene(images[:20], "pos_y", 1, return_latents=True)
    assert out.shape == (20, 64, 64) and 0 <= out.min() and out.max() <= 1
    means = trained.get_class_means("pos_y")
    assert means.shape == (2, 1) and means[0, 0] < means[1, 0]
    (unit,) = trained.label_units["pos_y"]
    assert np.allclose(edited[:, unit], means[1, 0])
    others = np.setdiff1d(np.arange(trained.n_latent), [unit])
    assert np.array_equal(edited[:, others], z[:, others])
    assert np.array_equal(trained.context_units, [2, 3])
    assert np.allclose(out, trained.decode(edited))
    # one value per image
    values = np.arange(20) % 2
    _, edited = trained.intervene(images[:20], "pos_y", values, return_latents=True)
    assert np.allclose(edited[:, unit], means[values, 0])


def test_elbo_save_and_load(trained, toy, tmp_path):
    images, labels = toy
    torch.manual_seed(1)
    untrained = CCVAE(n_classes=(2, 2), n_context=2, label_names=LABELS, channels=16, hidden=64)
    for model in (trained, untrained):
        supervised = model.get_elbo(images[:50], labels[:50])
        unsupervised = model.get_elbo(images[:50])
        assert np.isfinite(supervised) and np.isfinite(unsupervised) and supervised < 0
    # a random decoder scores ~ -4096 log 2 = -2840 nats per image; training raises the bound
    assert trained.get_elbo(images[:50], labels[:50]) > untrained.get_elbo(images[:50]) + 500
    assert "CCVAE(n_classes=(2, 2)" in repr(trained) and "trained=True" in repr(trained)
    assert trained.get_target_graph().shape == (0, trained.n_latent)
    trained.save(tmp_path / "ccvae.pt")
    loaded = CCVAE.load(tmp_path / "ccvae.pt")
    assert isinstance(loaded, CCVAE) and loaded.is_trained_ and loaded.label_names == LABELS
    assert np.array_equal(loaded.predict_labels(images[:50]), trained.predict_labels(images[:50]))
    assert np.allclose(loaded.get_class_means("pos_x"), trained.get_class_means("pos_x"))
    # the fitted label prior is a buffer: it round-trips
    assert torch.equal(loaded.module.prior.log_py, trained.module.prior.log_py)
    assert not torch.allclose(loaded.module.prior.log_py, untrained.module.prior.log_py)
    assert loaded.history.equals(trained.history)


def test_ccvae_bad_input(trained, toy):
    images, labels = toy
    with pytest.raises(ValueError, match="n_classes"):
        CCVAE(n_classes=(2, 1))
    with pytest.raises(ValueError, match="n_classes"):
        CCVAE(n_classes=())
    with pytest.raises(ValueError, match="label_names"):
        CCVAE(n_classes=(2, 2), label_names=("a",))
    with pytest.raises(ValueError, match="label_names"):
        CCVAE(n_classes=(2, 2), label_names=("a", "a"))
    with pytest.raises(ValueError, match="label_dim"):
        CCVAE(n_classes=(2,), label_dim=0)
    with pytest.raises(ValueError, match="n_context"):
        CCVAE(n_classes=(2,), n_context=-1)
    with pytest.raises(ValueError, match="beta"):
        CCVAE(n_classes=(2,), beta=-1.0)
    vae = CCVAE(n_classes=(2, 2), n_context=1, channels=8, hidden=16)
    with pytest.raises(ValueError, match=r"\(n_images, 2\)"):
        vae.train(images[:10], labels[:10, 0], max_epochs=1)
    with pytest.raises(ValueError, match="integer classes"):
        vae.train(images[:10], labels[:10] + 0.5, max_epochs=1)
    with pytest.raises(ValueError, match=r"in \[0, n_classes\)"):
        vae.train(images[:10], labels[:10] + 1, max_epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n, 64, 64\)"):
        vae.train(images[:10, :32], labels[:10], max_epochs=1)
    with pytest.raises(ValueError, match="Unknown label 'scale'"):
        trained.intervene(images[:5], "scale", 1)
    with pytest.raises(ValueError, match="index must be in"):
        trained.intervene(images[:5], 2, 1)
    with pytest.raises(ValueError, match="integer classes of 'pos_x'"):
        trained.intervene(images[:5], "pos_x", 2)
    with pytest.raises(ValueError, match="one class or 5 classes"):
        trained.intervene(images[:5], "pos_x", [0, 1])
    with pytest.raises(ValueError, match=r"must return \(n, 2\) labels"):
        trained.score_intervention(
            images[:5], "pos_x", 1, classifier=lambda im: np.zeros((len(im), 3), int)
        )


def test_label_intervention_scores_known_answers():
    before = np.array([[0, 1, 2], [1, 0, 0], [0, 0, 1], [1, 1, 2]])
    # the ideal edit: label 0 set to 1, nothing else changes
    ideal = before.copy()
    ideal[:, 0] = 1
    scores = label_intervention_scores(before, ideal, label=0, value=1)
    assert scores["accuracy"] == 1.0 and scores["changed"] == 0.5
    assert scores["other_changed"] == 0.0 and scores["n_other_changed"] == 0.0
    assert np.array_equal(scores["changed_per_label"], [0.5, 0.0, 0.0])
    # an edit that also changes every other label
    messy = ideal.copy()
    messy[:, 1] = 1 - messy[:, 1]
    messy[:, 2] = messy[:, 2] + 1
    scores = label_intervention_scores(before, messy, label=0, value=1)
    assert scores["other_changed"] == 1.0 and scores["n_other_changed"] == 2.0
    # an edit that does nothing: accuracy is the share that already had the value
    scores = label_intervention_scores(before, before, label=2, value=[2, 0, 0, 0])
    assert scores["accuracy"] == 0.5 and scores["changed"] == 0.0
    # one label: no other labels
    assert np.isnan(label_intervention_scores([0, 1], [1, 1], 0, 1)["other_changed"])
    with pytest.raises(ValueError, match="same shape"):
        label_intervention_scores(before, before[:, :2], 0, 1)
    with pytest.raises(ValueError, match=r"`label` must be in \[0, 3\)"):
        label_intervention_scores(before, before, 3, 1)
    with pytest.raises(ValueError, match="4 integers"):
        label_intervention_scores(before, before, 0, [1, 0])
    with pytest.raises(ValueError, match="integer class labels"):
        label_intervention_scores(before + 0.5, before, 0, 1)
