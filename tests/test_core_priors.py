"""Known-answer tests of the torch-only core: sparsity penalties, intervention masks, priors."""

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from scvi_causal.core import (
    InterventionMask,
    SparseShiftPrior,
    StandardNormalPrior,
    bernoulli_kl,
    l1_penalty,
    l1_penalty_per_sample,
    make_prior,
)

CORE_DIR = Path(__file__).resolve().parents[1] / "src" / "scvi_causal" / "core"


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _closed_form_bernoulli_kl(q: float, pi: float) -> float:
    return q * math.log(q / pi) + (1 - q) * math.log((1 - q) / (1 - pi))


def _prior(kind="spike_slab", n_interventions=3, n_latent=4, **kwargs):
    """A prior with fixed, distinct shifts and mask logits (eval mode: deterministic masks)."""
    prior = SparseShiftPrior(n_interventions, n_latent, intervention_prior=kind, **kwargs)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prior.shifts.copy_(torch.randn(n_interventions, n_latent, generator=gen) * 3)
        if kind != "dense":
            prior.mask.logits.copy_(torch.randn(n_interventions, n_latent, generator=gen) * 2)
    return prior.eval()


# ----------------------------------------------------------------------------- module boundary
def test_core_never_imports_scvi_or_anndata():
    for path in sorted(CORE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert not {"scvi", "anndata", "scanpy"} & set(roots), f"{path.name} imports {roots}"


# ----------------------------------------------------------------------------- bernoulli_kl
@pytest.mark.parametrize(("logit", "pi"), [(0.0, 0.1), (2.0, 0.3), (-1.5, 0.05)])
def test_bernoulli_kl_closed_form(logit, pi):
    q = 1.0 / (1.0 + math.exp(-logit))
    kl = bernoulli_kl(torch.tensor([logit], dtype=torch.float64), pi)
    assert kl.item() == pytest.approx(_closed_form_bernoulli_kl(q, pi), rel=1e-10)


@pytest.mark.parametrize("pi", [0.01, 0.2, 0.5, 0.9])
def test_bernoulli_kl_zero_when_posterior_equals_prior(pi):
    kl = bernoulli_kl(torch.tensor([_logit(pi)]), pi)
    assert kl.abs().item() < 1e-6


def test_bernoulli_kl_positive_elsewhere_shape_and_extremes():
    pi = 0.2
    logits = torch.linspace(-30, 30, 121).reshape(11, 11)
    logits = logits[(logits - _logit(pi)).abs() > 0.1].reshape(-1)
    kl = bernoulli_kl(logits, pi)
    assert kl.shape == logits.shape
    assert torch.isfinite(kl).all()
    assert (kl > 0).all()
    # Switching a unit on costs about -log(pi), keeping it off about -log(1 - pi).
    far = bernoulli_kl(torch.tensor([-50.0, 50.0]), pi)
    assert far[0].item() == pytest.approx(-math.log(1 - pi), rel=1e-5)
    assert far[1].item() == pytest.approx(-math.log(pi), rel=1e-5)


@pytest.mark.parametrize("pi", [0.0, 1.0, -0.1, 1.5])
def test_bernoulli_kl_rejects_invalid_prior_prob(pi):
    with pytest.raises(ValueError, match="prior_prob"):
        bernoulli_kl(torch.zeros(2), pi)


# ----------------------------------------------------------------------------- l1_penalty
def test_l1_penalty_value_and_gradient():
    probs = torch.tensor([[0.5, 0.25], [0.0, 1.0]], requires_grad=True)
    out = l1_penalty(probs, weight=2.0)
    assert out.shape == ()
    assert out.item() == pytest.approx(2.0 * 1.75)
    out.backward()
    assert torch.equal(probs.grad, torch.full_like(probs, 2.0))
    assert l1_penalty(torch.zeros(3, 4), weight=5.0).item() == 0.0


# ----------------------------------------------------------------------------- InterventionMask
@pytest.mark.parametrize("kind", ["spike_slab", "l1", "dense"])
def test_mask_shapes(kind):
    mask = InterventionMask(3, 5, kind=kind)
    for training in (True, False):
        mask.train(training)
        assert mask().shape == (3, 5)
        assert mask(torch.tensor([0, 2, 2, 1])).shape == (4, 5)
    assert mask.inclusion_probs().shape == (3, 5)
    assert mask.logits.shape == (3, 5)


def test_mask_init_prob_sets_inclusion_probs():
    mask = InterventionMask(2, 3, init_prob=0.2)
    assert torch.allclose(mask.inclusion_probs(), torch.full((2, 3), 0.2))


def test_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown mask kind"):
        InterventionMask(2, 3, kind="gumbel")
    with pytest.raises(ValueError, match="init_prob"):
        InterventionMask(2, 3, init_prob=1.0)
    with pytest.raises(ValueError, match="init_prob"):
        InterventionMask(2, 3, init_prob=0.0)


def test_mask_training_samples_are_exactly_binary():
    torch.manual_seed(0)
    mask = InterventionMask(50, 40, kind="spike_slab").train()
    sample = mask()
    assert ((sample == 0) | (sample == 1)).all(), "straight-through sample is not exactly 0/1"


def test_mask_training_samples_are_binary_up_to_rounding_and_random():
    torch.manual_seed(0)
    mask = InterventionMask(50, 40, kind="spike_slab").train()
    a, b = mask(), mask()
    assert torch.allclose(a, a.round(), atol=1e-6)
    assert not torch.equal(a.round(), b.round())  # stochastic while training
    # Both values occur at init_prob = 0.5.
    assert 0.3 < a.round().mean().item() < 0.7


def test_mask_rows_draw_independent_masks_in_training():
    torch.manual_seed(0)
    mask = InterventionMask(2, 8, kind="spike_slab").train()
    rows = torch.zeros(200, dtype=torch.long)
    draws = mask(rows).round()
    assert draws.shape == (200, 8)
    assert len(torch.unique(draws, dim=0)) > 10  # not one shared draw
    assert 0.3 < draws.mean().item() < 0.7
    mask.eval()
    with torch.no_grad():
        mask.logits.copy_(torch.randn(2, 8))
    assert torch.equal(mask(torch.tensor([1, 0, 1])), (mask.logits > 0).float()[[1, 0, 1]])


def test_mask_rows_respect_frozen_rows():
    mask = InterventionMask(3, 4, kind="spike_slab")
    mask.freeze([1], 1.0)
    with torch.no_grad():
        mask.logits.fill_(-20.0)
    rows = torch.tensor([1, 0, 1, 2, 1])
    for training in (True, False):
        mask.train(training)
        out = mask(rows)
        assert torch.equal(out[rows == 1], torch.ones(3, 4))
        assert torch.allclose(out[rows != 1], torch.zeros(2, 4))


def test_mask_straight_through_gradient_reaches_logits():
    torch.manual_seed(0)
    mask = InterventionMask(4, 6, kind="spike_slab").train()
    weights = torch.randn(4, 6)
    (mask() * weights).sum().backward()
    assert mask.logits.grad is not None
    assert torch.isfinite(mask.logits.grad).all()
    assert (mask.logits.grad != 0).any()


def test_mask_eval_gives_posterior_mode_deterministically():
    mask = InterventionMask(3, 4, kind="spike_slab")
    with torch.no_grad():
        mask.logits.copy_(torch.tensor([[2.0, -2.0, 0.5, -0.5]]).repeat(3, 1))
        mask.logits[2] = -mask.logits[2]
    mask.eval()
    expected = (mask.logits > 0).float()
    torch.manual_seed(0)
    first = mask()
    torch.manual_seed(1)
    second = mask()
    assert torch.equal(first, expected)
    assert torch.equal(second, expected)
    assert torch.equal(first, (mask.inclusion_probs() > 0.5).float())


@pytest.mark.parametrize("training", [True, False])
def test_mask_l1_is_sigmoid_of_logits(training):
    mask = InterventionMask(3, 4, kind="l1").train(training)
    with torch.no_grad():
        mask.logits.copy_(torch.randn(3, 4))
    assert torch.allclose(mask(), torch.sigmoid(mask.logits))
    assert torch.allclose(mask.inclusion_probs(), torch.sigmoid(mask.logits))


@pytest.mark.parametrize("training", [True, False])
def test_mask_dense_is_ones_without_trainable_logits(training):
    mask = InterventionMask(3, 4, kind="dense").train(training)
    assert torch.equal(mask(), torch.ones(3, 4))
    assert torch.equal(mask.inclusion_probs(), torch.ones(3, 4))
    assert not any(p.requires_grad for p in mask.parameters())


@pytest.mark.parametrize("kind", ["spike_slab", "l1"])
def test_mask_freeze_float_fixes_rows(kind):
    torch.manual_seed(0)
    mask = InterventionMask(4, 3, kind=kind)
    mask.freeze(torch.tensor([0, 2]), 1.0)
    assert mask.frozen.tolist() == [True, False, True, False]
    for logit in (-10.0, 10.0, 0.3):
        with torch.no_grad():
            mask.logits.fill_(logit)
        for training in (True, False):
            mask.train(training)
            out = mask()
            assert torch.equal(out[[0, 2]], torch.ones(2, 3))
        assert torch.equal(mask.inclusion_probs()[[0, 2]], torch.ones(2, 3))
        free = mask.inclusion_probs()[[1, 3]]
        assert torch.allclose(free, torch.sigmoid(torch.full((2, 3), logit)))
    # Frozen rows are not learned: no gradient reaches their logits.
    mask.train()
    mask.logits.grad = None
    (mask() * torch.randn(4, 3)).sum().backward()
    assert torch.equal(mask.logits.grad[[0, 2]], torch.zeros(2, 3))


def test_mask_freeze_zero_and_explicit_values():
    mask = InterventionMask(3, 2)
    mask.freeze([1], 0.0)
    mask.freeze(torch.tensor([2]), torch.tensor([[1.0, 0.0]]))
    mask.eval()
    with torch.no_grad():
        mask.logits.fill_(5.0)
    assert mask().tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]


def test_mask_freeze_none_keeps_current_mode():
    mask = InterventionMask(3, 4, kind="spike_slab")
    with torch.no_grad():
        mask.logits.copy_(torch.tensor([[3.0, -3.0, 1.0, -1.0]]).repeat(3, 1))
    mode = (mask.logits > 0).float()
    mask.freeze()  # all rows, current mode
    assert mask.frozen.all()
    with torch.no_grad():
        mask.logits.mul_(-1)  # flip every posterior
    for training in (True, False):
        mask.train(training)
        assert torch.equal(mask(), mode)
    assert torch.equal(mask.inclusion_probs(), mode)


def test_mask_frozen_state_round_trips_through_state_dict():
    mask = InterventionMask(3, 2)
    mask.freeze([0], 0.0)
    mask.set_temperature(0.3)
    other = InterventionMask(3, 2)
    other.load_state_dict(mask.state_dict())
    assert torch.equal(other.frozen, mask.frozen)
    assert torch.equal(other.frozen_values, mask.frozen_values)
    assert other.temperature.item() == pytest.approx(0.3)


def test_mask_temperature_setter():
    mask = InterventionMask(2, 2, temperature=1.0)
    mask.set_temperature(0.25)
    assert mask.temperature.item() == pytest.approx(0.25)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="positive"):
            mask.set_temperature(bad)
    assert mask.temperature.item() == pytest.approx(0.25)


# ----------------------------------------------------------------------------- SparseShiftPrior
@pytest.mark.parametrize("kind", ["spike_slab", "l1", "dense"])
@pytest.mark.parametrize("training", [True, False])
def test_prior_control_rows_are_standard_normal(kind, training):
    prior = _prior(kind).train(training)
    dist = prior(torch.zeros(5, 3))
    assert isinstance(dist, Normal)
    assert dist.loc.shape == (5, 4)
    assert torch.equal(dist.loc, torch.zeros(5, 4))
    assert torch.equal(dist.scale, torch.ones(5, 4))


@pytest.mark.parametrize("kind", ["spike_slab", "l1", "dense"])
def test_prior_single_perturbation_loc_is_masked_shift(kind):
    prior = _prior(kind)
    mask = prior.mask()
    loc = prior(torch.eye(3)).loc
    assert torch.allclose(loc, mask * prior.shifts)
    if kind == "spike_slab":
        assert torch.allclose(loc, (prior.mask.logits > 0).float() * prior.shifts)
    # A one-hot row picks out that perturbation alone.
    assert torch.allclose(prior(torch.tensor([[0.0, 1.0, 0.0]])).loc[0], (mask * prior.shifts)[1])


@pytest.mark.parametrize("kind", ["spike_slab", "l1", "dense"])
def test_prior_combination_adds_member_shifts(kind):
    prior = _prior(kind)
    effects = prior.mask() * prior.shifts
    a = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    loc = prior(a).loc
    assert torch.allclose(loc[0], effects[0] + effects[1])
    assert torch.allclose(loc[1], effects[1] + effects[2])
    assert torch.allclose(loc[2], effects.sum(0))


def test_prior_per_sample_masks_in_training():
    torch.manual_seed(0)
    prior = _prior("spike_slab", n_interventions=2, n_latent=6)
    with torch.no_grad():
        prior.mask.logits.fill_(0.0)
        prior.shifts.fill_(2.0)
    prior.train()
    a = torch.zeros(100, 2)
    a[:50, 0] = 1.0
    a[50:, :] = 1.0  # a combination
    loc = prior(a).loc
    # Each (cell, perturbation) pair draws its own 0/1 mask: single-perturbation cells have
    # locs in {0, 2}, combination cells in {0, 2, 4}, and cells differ from each other.
    assert torch.allclose(loc[:50], 2.0 * (loc[:50] / 2.0).round(), atol=1e-5)
    assert torch.allclose(loc[50:], 2.0 * (loc[50:] / 2.0).round(), atol=1e-5)
    assert (loc[50:].round() == 4).any()
    assert len(torch.unique(loc[:50].round(), dim=0)) > 5
    assert torch.equal(prior(torch.zeros(3, 2)).loc, torch.zeros(3, 6))


def test_prior_shared_masks_without_per_sample_masks():
    torch.manual_seed(0)
    prior = SparseShiftPrior(2, 6, per_sample_masks=False)
    with torch.no_grad():
        prior.shifts.fill_(2.0)
    prior.train()
    a = torch.zeros(20, 2)
    a[:, 1] = 1.0
    loc = prior(a).loc
    assert torch.equal(loc, loc[:1].expand_as(loc))


def test_prior_without_intervention_needs_n():
    prior = _prior()
    assert torch.equal(prior(None, n=6).loc, torch.zeros(6, 4))
    with pytest.raises(ValueError, match="number of samples"):
        prior(None)


def test_prior_with_no_interventions():
    prior = SparseShiftPrior(0, 3)
    assert torch.equal(prior(torch.zeros(4, 0)).loc, torch.zeros(4, 3))
    assert prior.kl_global().shape == ()
    assert prior.kl_global().item() == 0.0
    assert set(prior.extra_metrics()) >= {"mask_density", "mask_temperature"}


@pytest.mark.parametrize("kind", ["spike_slab", "l1", "dense"])
def test_prior_kl_matches_torch(kind):
    prior = _prior(kind)
    gen = torch.Generator().manual_seed(1)
    a = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    qz = Normal(torch.randn(4, 4, generator=gen), torch.rand(4, 4, generator=gen) + 0.1)
    kl = prior.kl(qz, a)
    assert kl.shape == (4,)
    expected = kl_divergence(qz, Normal(prior(a).loc, torch.ones(4, 4))).sum(-1)
    assert torch.allclose(kl, expected)
    z = qz.sample((7,))
    log_p = prior.log_prob(z, a)
    assert log_p.shape == (7, 4)
    assert torch.allclose(log_p, Normal(prior(a).loc, 1.0).log_prob(z).sum(-1))


def test_prior_kl_gradients_reach_shifts_and_logits_in_training():
    torch.manual_seed(0)
    prior = _prior("spike_slab").train()
    with torch.no_grad():
        prior.mask.logits.fill_(0.0)
    qz = Normal(torch.randn(6, 4), torch.ones(6, 4))
    a = torch.eye(3).repeat(2, 1)
    (prior.kl(qz, a).sum() + prior.kl_global()).backward()
    assert (prior.shifts.grad != 0).any()
    assert (prior.mask.logits.grad != 0).any()


def _set_logits(prior, value):
    with torch.no_grad():
        prior.mask.logits.fill_(value)


@pytest.mark.parametrize("slab_scale", [None, 10.0])
def test_spike_slab_kl_global_decreases_towards_prior(slab_scale):
    pi = 0.05
    prior = SparseShiftPrior(3, 4, "spike_slab", prior_prob=pi, slab_scale=slab_scale)
    values = []
    for logit in (3.0, 1.0, 0.0, -1.0, -2.0, _logit(pi)):
        _set_logits(prior, logit)
        out = prior.kl_global()
        assert out.shape == ()
        values.append(out.item())
    assert all(a > b for a, b in zip(values[:-1], values[1:])), values
    if slab_scale is None:
        assert values[-1] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("slab_scale", [None, 10.0])
def test_spike_slab_kl_global_prefers_sparse_masks(slab_scale):
    prior = SparseShiftPrior(3, 4, "spike_slab", prior_prob=0.05, slab_scale=slab_scale)
    _set_logits(prior, 20.0)
    all_on = prior.kl_global().item()
    _set_logits(prior, -20.0)
    all_off = prior.kl_global().item()
    assert all_on > all_off
    if slab_scale is None:
        # 12 edges: on costs about -log(pi) each, off about -log(1 - pi).
        assert all_on == pytest.approx(-12 * math.log(0.05), rel=1e-3)
        assert all_off == pytest.approx(-12 * math.log(0.95), rel=1e-3)


def test_spike_slab_kl_global_value():
    prior = _prior("spike_slab", prior_prob=0.1, slab_scale=2.0)
    probs = torch.sigmoid(prior.mask.logits)
    sparsity = bernoulli_kl(prior.mask.logits, 0.1).sum()
    slab = -(probs * Normal(0.0, 2.0).log_prob(prior.shifts)).sum()
    assert torch.allclose(prior.kl_global(), sparsity + slab)


def test_l1_and_dense_kl_global_is_only_the_slab():
    for kind in ("l1", "dense"):
        prior = _prior(kind, slab_scale=None)
        assert prior.kl_global().shape == ()
        assert prior.kl_global().item() == 0.0
        prior = _prior(kind, slab_scale=3.0)
        probs = prior.inclusion_probs()
        expected = -(probs * Normal(0.0, 3.0).log_prob(prior.shifts)).sum()
        assert torch.allclose(prior.kl_global(), expected)


def test_spike_slab_kl_global_ignores_frozen_rows():
    prior = _prior("spike_slab", prior_prob=0.05, slab_scale=None)
    per_edge = bernoulli_kl(prior.mask.logits, 0.05)
    prior.mask.freeze(torch.tensor([0]), 1.0)
    assert torch.allclose(prior.kl_global(), per_edge[1:].sum())
    # Changing a frozen row's logits leaves the term unchanged.
    before = prior.kl_global().clone()
    with torch.no_grad():
        prior.mask.logits[0] = 25.0
    assert torch.allclose(prior.kl_global(), before)
    prior.mask.freeze(None, 1.0)
    assert prior.kl_global().item() == 0.0


_A = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])


@pytest.mark.parametrize("kind", ["spike_slab", "l1"])
def test_local_penalty_is_cost_per_targeted_unit(kind):
    prior = _prior(kind, sparsity_penalty=0.3, sparsity_scale="absolute")
    mass = prior.inclusion_probs().sum(-1)
    penalty = prior.local_penalty(_A)
    assert penalty.shape == (4,)
    assert penalty[0].item() == 0.0  # control cells pay nothing
    assert torch.allclose(penalty, 0.3 * _A @ mass)
    assert torch.allclose(penalty[3], penalty[1] + penalty[2])  # combinations pay for members
    assert l1_penalty_per_sample(_A, mass, 0.3).shape == (4,)


@pytest.mark.parametrize("kind", ["spike_slab", "l1"])
def test_local_penalty_ignores_frozen_rows(kind):
    prior = _prior(kind, sparsity_penalty=0.3, sparsity_scale="absolute")
    mass = prior.inclusion_probs().sum(-1)
    prior.mask.freeze(torch.tensor([0]), 1.0)
    penalty = prior.local_penalty(_A)
    assert penalty[1].item() == 0.0
    assert torch.allclose(penalty, 0.3 * _A[:, 1:] @ mass[1:])


def test_local_penalty_energy_scale():
    prior = _prior("spike_slab", sparsity_penalty=0.3, sparsity_scale="energy").train()
    probs = prior.inclusion_probs()
    gain = 0.5 * (probs * prior.shifts**2).sum(-1)
    penalty = prior.local_penalty(_A)
    assert torch.allclose(penalty, 0.3 * _A @ (probs.sum(-1) * gain.detach()))
    relative = _prior("spike_slab", sparsity_penalty=0.3, sparsity_scale="relative")
    relative.load_state_dict(prior.state_dict())
    # the total gain is at least the largest one, so energy costs at least as much
    assert (penalty >= relative.local_penalty(_A) - 1e-6).all()


def test_local_penalty_relative_scale():
    prior = _prior("spike_slab", sparsity_penalty=0.3, sparsity_scale="relative").train()
    probs = prior.inclusion_probs()
    gain = 0.5 * (probs * prior.shifts**2).amax(-1)
    penalty = prior.local_penalty(_A)
    assert torch.allclose(penalty, 0.3 * _A @ (probs.sum(-1) * gain.detach()))
    penalty.sum().backward()
    assert prior.shifts.grad is None or torch.equal(
        prior.shifts.grad, torch.zeros_like(prior.shifts)
    )  # the gain is held fixed
    assert (prior.mask.logits.grad != 0).any()
    with pytest.raises(ValueError, match="sparsity_scale"):
        SparseShiftPrior(3, 4, sparsity_scale="log")


def test_local_penalty_absent_where_undefined():
    assert _prior("dense").local_penalty(_A) is None
    assert _prior("spike_slab", sparsity_penalty=0.0).local_penalty(_A) is None
    assert _prior("spike_slab").local_penalty(None) is None
    assert StandardNormalPrior(4).local_penalty(_A) is None
    with pytest.raises(ValueError, match="sparsity_penalty"):
        SparseShiftPrior(3, 4, sparsity_penalty=-1.0)


def test_prior_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_latent"):
        SparseShiftPrior(2, 0)
    with pytest.raises(ValueError, match="n_interventions"):
        SparseShiftPrior(-1, 3)
    with pytest.raises(ValueError, match="prior_prob"):
        SparseShiftPrior(2, 3, prior_prob=1.0)


def test_prior_extra_metrics():
    prior = _prior("spike_slab")
    prior.mask.set_temperature(0.5)
    metrics = prior.extra_metrics()
    assert set(metrics) == {"mask_density", "mask_on_fraction", "mask_temperature"}
    assert all(v.shape == () for v in metrics.values())
    probs = torch.sigmoid(prior.mask.logits)
    assert metrics["mask_density"].item() == pytest.approx(probs.mean().item())
    assert metrics["mask_on_fraction"].item() == pytest.approx((probs > 0.5).float().mean().item())
    assert metrics["mask_temperature"].item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- StandardNormal
def test_standard_normal_prior():
    prior = StandardNormalPrior(3)
    dist = prior(torch.eye(2)[[0, 1, 1, 0]])
    assert torch.equal(dist.loc, torch.zeros(4, 3))
    assert torch.equal(dist.scale, torch.ones(4, 3))
    assert prior(n=5).loc.shape == (5, 3)
    with pytest.raises(ValueError, match="number of samples"):
        prior()
    gen = torch.Generator().manual_seed(0)
    mu, sd = torch.randn(4, 3, generator=gen), torch.rand(4, 3, generator=gen) + 0.2
    expected = 0.5 * (mu**2 + sd**2 - 1 - 2 * torch.log(sd)).sum(-1)
    assert torch.allclose(prior.kl(Normal(mu, sd)), expected, atol=1e-6)
    assert torch.allclose(prior.kl(Normal(mu, sd), torch.ones(4, 7)), expected, atol=1e-6)
    z = torch.randn(2, 4, 3, generator=gen)
    assert torch.allclose(prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    assert prior.kl_global().shape == ()
    assert prior.kl_global().item() == 0.0
    assert prior.extra_metrics() == {}
    assert list(prior.parameters()) == []
    with pytest.raises(ValueError, match="n_latent"):
        StandardNormalPrior(0)


# ----------------------------------------------------------------------------- make_prior
def test_make_prior():
    assert isinstance(make_prior("none", 3, 4), StandardNormalPrior)
    for kind in ("spike_slab", "l1", "dense"):
        prior = make_prior(kind, 3, 4, prior_prob=0.2, slab_scale=None)
        assert isinstance(prior, SparseShiftPrior)
        assert prior.intervention_prior == kind
        assert prior.mask.kind == kind
        assert prior.prior_prob == 0.2
        assert prior.slab_scale is None
        assert prior.shifts.shape == (3, 4)
    for bad in ("horseshoe", "Spike_Slab", ""):
        with pytest.raises(ValueError, match="Unknown intervention_prior"):
            make_prior(bad, 3, 4)


# ----------------------------------------------------------------------------- genericity
class _TinyImageVAE(nn.Module):
    """A toy image model: 8x8 images, a linear encoder, any core prior."""

    def __init__(self, prior: nn.Module, n_latent: int = 2):
        super().__init__()
        self.encoder = nn.Linear(64, 2 * n_latent)
        self.decoder = nn.Linear(n_latent, 64)
        self.prior = prior

    def forward(self, images: torch.Tensor, intervention: torch.Tensor, n_obs: int):
        h = self.encoder(images.flatten(1))
        loc, raw_scale = h.chunk(2, dim=-1)
        qz = Normal(loc, nn.functional.softplus(raw_scale) + 1e-4)
        z = qz.rsample()
        recon = ((self.decoder(z) - images.flatten(1)) ** 2).sum(-1)
        kl = self.prior.kl(qz, intervention)
        return (recon + kl).mean() + self.prior.kl_global() / n_obs, kl


@pytest.mark.parametrize("name", ["spike_slab", "l1", "dense", "none"])
def test_priors_work_on_a_toy_image_model(name):
    torch.manual_seed(0)
    model = _TinyImageVAE(make_prior(name, n_interventions=3, n_latent=2))
    images = torch.rand(10, 1, 8, 8)
    intervention = torch.zeros(10, 3)
    intervention[torch.arange(1, 10), torch.arange(1, 10) % 3] = 1.0
    loss, kl = model(images, intervention, n_obs=100)
    assert kl.shape == (10,)
    assert torch.isfinite(loss)
    loss.backward()
    assert (model.encoder.weight.grad != 0).any()
    if name != "none":
        assert (model.prior.shifts.grad != 0).any()
    model.eval()
    with torch.no_grad():
        loss_eval, _ = model(images, intervention, n_obs=100)
    assert torch.isfinite(loss_eval)
