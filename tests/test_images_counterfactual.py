"""Latent counterfactual explanations of an image classifier, and the scores of their moves."""

import numpy as np
import pytest
import torch
from conftest import DATA, require_data
from torch import nn

from scvi_causal.images import (
    CCVAE,
    CounterfactualExplanations,
    ImageClassifier,
    ImageVAE,
    discretize_factors,
    latent_counterfactuals,
    load_dsprites,
)
from scvi_causal.metrics import counterfactual_factor_scores, moved_units, unit_factor_assignment

DSPRITES = DATA / "dsprites_downsampled_46080_fullgrid.npz"
POS_X = 3  # the factor the classifier reads (dSprites factor order)


@pytest.fixture(scope="module")
def toy():
    """300 dSprites images, their factors and left / right, top / bottom labels."""
    require_data(DSPRITES.name)
    images, factors = load_dsprites(DSPRITES)
    index = np.random.default_rng(0).choice(len(images), 300, replace=False)
    labels = discretize_factors(factors[index], n_bins=(3, 2, 2, 2, 2))[:, [3, 4]]
    return images[index], factors[index], labels


@pytest.fixture(scope="module")
def setting(toy):
    """A CCVAE whose units 0 and 1 carry pos_x and pos_y, and a CNN that reads left / right
    (about 2.5 s on one CPU thread)."""
    images, _, labels = toy
    torch.manual_seed(0)
    vae = CCVAE(
        n_classes=(2, 2), n_context=2, label_names=("pos_x", "pos_y"), channels=16, hidden=64
    )
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
    torch.manual_seed(0)
    clf = ImageClassifier(n_classes=2, channels=16, hidden=64)
    clf.train(images, labels[:, 0], max_epochs=3, batch_size=16, lr=2e-3, seed=0)
    return vae, clf


@pytest.fixture(scope="module")
def explanations(toy, setting):
    images, _, _ = toy
    vae, clf = setting
    return {norm: latent_counterfactuals(vae, images[:20], clf, norm=norm) for norm in ("l1", "l2")}


def test_image_classifier(toy, setting):
    images, _, labels = toy
    _, clf = setting
    assert len(clf.history) == 3 and clf.is_trained_
    # measured 0.58 -> 0.97 training accuracy
    assert clf.history["accuracy_train"].iloc[-1] > 0.9
    assert (clf.predict(images) == labels[:, 0]).mean() > 0.9
    probs = clf.predict_proba(images[:7])
    assert probs.shape == (7, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert repr(clf) == "ImageClassifier(n_classes=2, trained=True)"
    # a second fit continues the epoch count
    more = ImageClassifier(n_classes=2, channels=4, hidden=8)
    more.train(images[:20], labels[:20, 0], max_epochs=1, seed=0)
    more.train(images[:20], labels[:20, 0], max_epochs=1, seed=0)
    assert list(more.history.index) == [0, 1]
    with pytest.raises(ValueError, match="integer >= 2"):
        ImageClassifier(n_classes=1)
    with pytest.raises(ValueError, match=r"\(20,\)"):
        more.train(images[:20], labels[:20], max_epochs=1)
    with pytest.raises(ValueError, match=r"integer classes in \[0, 2\)"):
        more.train(images[:20], labels[:20, 0] + 1, max_epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n, 64, 64\)"):
        more.predict(images[:3, :10])


def test_counterfactuals_flip_the_decision(setting, explanations):
    vae, clf = setting
    for norm, cf in explanations.items():
        assert isinstance(cf, CounterfactualExplanations) and cf.norm == norm and len(cf) == 20
        assert cf.displacement.shape == cf.latents.shape == (20, vae.n_latent)
        assert cf.images.shape == (20, 64, 64)
        assert 0 <= cf.images.min() and cf.images.max() <= 1
        assert np.all(cf.target_class == -1)
        # measured 0.85 for both norms (100 steps)
        assert cf.flipped.mean() >= 0.7
        assert np.all(cf.counterfactual_class[cf.flipped] != cf.original_class[cf.flipped])
        # the returned images are what the classifier decided on
        assert np.array_equal(clf.predict(cf.images), cf.counterfactual_class)
        assert np.allclose(cf.images, vae.decode(cf.latents + cf.displacement), atol=1e-5)
        # the model reconstructs what the classifier reads for most images
        assert (cf.image_class == cf.original_class).mean() >= 0.8
        assert np.allclose(cf.distance, np.linalg.norm(cf.displacement, ord=int(norm[1]), axis=1))


def test_counterfactuals_are_smaller_than_the_nearest_other_class(toy, setting, explanations):
    # naive baseline: move to the latent of the nearest training image whose reconstruction the
    # classifier puts in another class (a valid counterfactual, so the search should beat it)
    images, _, _ = toy
    vae, clf = setting
    z = vae.get_latent_representation(images)
    decided = clf.predict(vae.decode(z))
    for norm, cf in explanations.items():
        order = 1 if norm == "l1" else 2
        nearest = np.array(
            [
                np.linalg.norm(z[decided != c] - zi, ord=order, axis=1).min()
                for zi, c in zip(cf.latents, cf.original_class)
            ]
        )
        ok = cf.flipped
        # measured: l1 1.74 vs 2.11 (88% of explanations smaller), l2 1.17 vs 1.44 (100%)
        assert cf.distance[ok].mean() < nearest[ok].mean()
        assert (cf.distance[ok] < nearest[ok]).mean() >= 0.7


def test_explanations_move_the_causal_unit(setting, explanations):
    vae, _ = setting
    (pos_x_unit,) = vae.label_units["pos_x"]
    (pos_y_unit,) = vae.label_units["pos_y"]
    for cf in explanations.values():
        moves = np.abs(cf.displacement[cf.flipped]).mean(0)
        assert moves.argmax() == pos_x_unit
    # L1 moves fewer units than L2 (measured 2.55 vs 3.45 per explanation)
    l1, l2 = explanations["l1"], explanations["l2"]
    assert l1.moved_units().sum(1).mean() < l2.moved_units().sum(1).mean()
    # the CCVAE's layout: unit 0 is pos_x, unit 1 pos_y, the context units no factor
    unit_factors = np.full(vae.n_latent, -1)
    unit_factors[[pos_x_unit, pos_y_unit]] = [POS_X, 4]
    s1 = l1.factor_scores(unit_factors, POS_X, n_factors=5)
    s2 = l2.factor_scores(unit_factors, POS_X, n_factors=5)
    assert s1["fraction_causal_moved"] == 1.0 and s2["fraction_causal_moved"] == 1.0
    # measured 0.65 (l1) and 0.24 (l2)
    assert s1["fraction_only_causal"] >= 0.5
    assert s1["fraction_only_causal"] > s2["fraction_only_causal"]
    assert s1["factor_move_rate"][:3].sum() == 0  # no unit stands for shape, scale, orientation
    assert s1["moved_factors"].shape == (l1.flipped.sum(), 5)
    everything = l1.factor_scores(unit_factors, POS_X, n_factors=5, only_flipped=False)
    assert everything["moved_factors"].shape == (20, 5)


def test_unit_factors_from_correlations(toy, setting):
    images, factors, _ = toy
    vae, _ = setting
    z = vae.get_latent_representation(images)
    assignment = unit_factor_assignment(factors, z)
    # the label units are found by correlation alone
    assert assignment[vae.label_units["pos_x"][0]] == 3
    assert assignment[vae.label_units["pos_y"][0]] == 4
    assert len(set(assignment[assignment >= 0])) == (assignment >= 0).sum()  # one-to-one


def test_targeted_counterfactuals(toy, setting):
    images, _, _ = toy
    vae, clf = setting
    cf = latent_counterfactuals(vae, images[:20], clf, target=1, n_steps=60)
    assert np.all(cf.target_class == 1)
    already = cf.original_class == 1
    assert already.any() and (~already).any()
    # asking for the class it already has: no move at all
    assert np.all(cf.distance[already] == 0) and np.all(cf.flipped[already])
    assert np.all(cf.counterfactual_class[cf.flipped] == 1)
    assert cf.flipped[~already].mean() >= 0.7
    mixed = latent_counterfactuals(vae, images[:4], clf, target=[-1, 0, 1, -1], n_steps=2)
    assert np.array_equal(mixed.target_class, [-1, 0, 1, -1])


def test_counterfactuals_with_any_image_model(toy):
    images, _, _ = toy
    torch.manual_seed(0)
    tcvae = ImageVAE(n_latent=3, intervention_prior="none", tc_weight=4.0, channels=8, hidden=16)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 3))
    classifier.train()
    tcvae.module.eval()
    cf = latent_counterfactuals(tcvae, images[:6], classifier, norm="l2", n_steps=3)
    assert cf.displacement.shape == (6, 3) and cf.original_class.shape == (6,)
    assert set(cf.original_class) <= {0, 1, 2}
    # no gradients left on the networks, and their modes are restored
    assert all(p.grad is None for p in tcvae.module.parameters())
    assert all(p.grad is None for p in classifier.parameters())
    assert classifier.training and not tcvae.module.training


def test_counterfactual_bad_input(toy, setting):
    images, _, _ = toy
    vae, clf = setting
    x = images[:3]
    with pytest.raises(ValueError, match="`norm`"):
        latent_counterfactuals(vae, x, clf, norm="l3")
    with pytest.raises(ValueError, match="`penalty` and `margin`"):
        latent_counterfactuals(vae, x, clf, penalty=-1.0)
    with pytest.raises(ValueError, match="`n_steps`"):
        latent_counterfactuals(vae, x, clf, n_steps=0)
    with pytest.raises(TypeError, match="module.encoder"):
        latent_counterfactuals(object(), x, clf)
    with pytest.raises(TypeError, match="callable"):
        latent_counterfactuals(vae, x, classifier=3)
    with pytest.raises(ValueError, match="3 integers"):
        latent_counterfactuals(vae, x, clf, target=[0, 1])
    with pytest.raises(ValueError, match="below the classifier's 2"):
        latent_counterfactuals(vae, x, clf, target=2)
    with pytest.raises(ValueError, match=">= 0"):
        latent_counterfactuals(vae, x, clf, target=-2)
    with pytest.raises(ValueError, match=r"shape \(n, 64, 64\)"):
        latent_counterfactuals(vae, x[:, :10], clf)
    with pytest.raises(ValueError, match="no images"):
        latent_counterfactuals(vae, x[:0], clf)
    unchanged = latent_counterfactuals(vae, x, clf, n_steps=1, lr=1e-6)
    assert not unchanged.flipped.any()
    with pytest.raises(ValueError, match="No explanation changed"):
        unchanged.factor_scores([3, 4, -1, -1], POS_X)


def test_moved_units_known_answers():
    delta = np.array([[2.0, 0.1, -1.0], [0.0, 0.0, 0.0], [0.0, -3.0, 0.0]])
    assert np.array_equal(
        moved_units(delta, threshold=0.25),
        [[True, False, True], [False, False, False], [False, True, False]],
    )
    assert moved_units(delta, threshold=1.0).sum() == 2  # only each row's largest move
    assert moved_units(delta, threshold=0.01)[0].all()
    with pytest.raises(ValueError, match="threshold"):
        moved_units(delta, threshold=0.0)
    with pytest.raises(ValueError, match="NaN"):
        moved_units([[np.nan, 1.0]])


def test_counterfactual_factor_scores_known_answers():
    unit_factors = np.array([0, 1, 1, -1])
    # every explanation moves only the causal factor's unit: a perfect score
    only = np.array([[1.0, 0, 0, 0], [-2.0, 0, 0, 0.01]])
    scores = counterfactual_factor_scores(only, unit_factors, causal_factor=0)
    assert scores["fraction_only_causal"] == 1.0 and scores["mean_factors_moved"] == 1.0
    assert np.array_equal(scores["factor_move_rate"], [1.0, 0.0])
    assert np.array_equal(scores["unit_move_rate"], [1.0, 0.0, 0.0, 0.0])
    # moves of other factors' units, or none of the causal factor's
    mixed = np.array([[1.0, 0.5, 0, 0], [0, 1.0, 1.0, 0], [0, 0, 0, 1.0], [0.0, 0, 0, 0]])
    scores = counterfactual_factor_scores(mixed, unit_factors, causal_factor=0)
    assert scores["fraction_only_causal"] == 0.0
    assert scores["fraction_causal_moved"] == 0.25
    assert scores["mean_factors_moved"] == 0.75  # (2 + 1 + 0 + 0) / 4
    assert scores["fraction_unassigned_moved"] == 0.25
    assert np.array_equal(scores["moved_factors"], [[1, 1], [0, 1], [0, 0], [0, 0]])
    # the same explanations for a classifier of factor 1
    assert counterfactual_factor_scores(mixed, unit_factors, 1)["fraction_only_causal"] == 0.25
    # permuting units together with their factors changes nothing
    perm = [3, 1, 0, 2]
    again = counterfactual_factor_scores(mixed[:, perm], unit_factors[perm], causal_factor=0)
    assert np.array_equal(again["moved_factors"], scores["moved_factors"])
    # n_factors pads factors no unit stands for
    padded = counterfactual_factor_scores(only, unit_factors, 0, n_factors=5)
    assert np.array_equal(padded["factor_move_rate"], [1.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="n_factors"):
        counterfactual_factor_scores(only, unit_factors, 0, n_factors=1)
    with pytest.raises(ValueError, match="one per latent unit"):
        counterfactual_factor_scores(only, unit_factors[:3], 0)
    with pytest.raises(ValueError, match="-1 for no factor"):
        counterfactual_factor_scores(only, [0, 1, 1, -2], 0)
    with pytest.raises(ValueError, match="causal_factor"):
        counterfactual_factor_scores(only, unit_factors, -1)
    with pytest.raises(ValueError, match="no explanations"):
        counterfactual_factor_scores(only[:0], unit_factors, 0)


def test_unit_factor_assignment_known_answers():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(500, 3))
    # permuted, rescaled and sign-flipped factors plus a noise unit
    latents = np.column_stack(
        [-2 * factors[:, 2], rng.normal(size=500), 5 * factors[:, 0] + 1, factors[:, 1]]
    )
    assert np.array_equal(unit_factor_assignment(factors, latents), [2, -1, 0, 1])
    # argmax gives every unit a factor; min_corr leaves the noise unit out
    assert unit_factor_assignment(factors, latents, method="argmax")[1] >= 0
    assert np.array_equal(
        unit_factor_assignment(factors, latents, method="argmax", min_corr=0.5), [2, -1, 0, 1]
    )
    # two units for one factor: matching keeps one, argmax both
    twice = np.column_stack([factors[:, 0], factors[:, 0] + 0.1 * rng.normal(size=500)])
    assert sorted(unit_factor_assignment(factors[:, :1], twice)) == [-1, 0]
    assert np.array_equal(unit_factor_assignment(factors[:, :1], twice, method="argmax"), [0, 0])
    with pytest.raises(ValueError, match="method"):
        unit_factor_assignment(factors, latents, method="lasso")
    with pytest.raises(ValueError, match="min_corr"):
        unit_factor_assignment(factors, latents, min_corr=2.0)
    with pytest.raises(ValueError, match="same number of samples"):
        unit_factor_assignment(factors, latents[:10])
