"""Linear-Gaussian latent SCM prior: density, KL, interventions, acyclicity, and learning a DAG."""

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from scvi_causal.core._scm import (
    LinearSCMNormal,
    LinearSCMPrior,
    _grouped_objective,
    _InterventionGroups,
    _on_cycle,
    fit_latent_graph,
    latent_graph_from_moments,
    notears_acyclicity,
)

CHAIN = torch.tensor([[0.0, 1.5, 0.0], [0.0, 0.0, -2.0], [0.0, 0.0, 0.0]])  # 0 -> 1 -> 2


def _mvn(loc, weights):
    inv = torch.linalg.inv(torch.eye(weights.shape[0]) - weights)  # z = e @ inv
    return MultivariateNormal(loc @ inv, covariance_matrix=inv.T @ inv)


@pytest.mark.parametrize("weights", [CHAIN, 0.3 * torch.ones(3, 3) - 0.3 * torch.eye(3)])
def test_log_prob_and_kl_match_the_multivariate_normal(weights):
    torch.manual_seed(0)
    loc = torch.randn(4, 3)
    p = LinearSCMNormal(loc, weights)
    z = torch.randn(4, 3)
    torch.testing.assert_close(p.log_prob(z).sum(-1), _mvn(loc, weights).log_prob(z))
    q = Normal(torch.randn(4, 3), torch.rand(4, 3) + 0.5)
    q_mvn = MultivariateNormal(q.loc, covariance_matrix=torch.diag_embed(q.scale**2))
    torch.testing.assert_close(
        kl_divergence(q, p).sum(-1),
        kl_divergence(q_mvn, _mvn(loc, weights)),
        rtol=1e-4,
        atol=1e-4,
    )


def test_samples_and_interventions_propagate_to_descendants():
    torch.manual_seed(0)
    loc = torch.tensor([[2.0, 0.0, 0.0]]).expand(20000, 3)  # shift of the root's noise
    z = LinearSCMNormal(loc, CHAIN).rsample()
    np.testing.assert_allclose(z.mean(0).numpy(), [2.0, 3.0, -6.0], atol=0.1)
    prior = LinearSCMPrior(1, 3)
    with torch.no_grad():
        prior.edges.logits.fill_(-10.0)
        prior.edges.logits[0, 1] = prior.edges.logits[1, 2] = 10.0
        prior.edge_weights.copy_(CHAIN)
    prior.eval()
    # hard intervention on the middle unit: the root is untouched, the leaf follows the value
    z = prior.do({1: 3.0}, n=5000)
    assert torch.allclose(z[:, 1], torch.tensor(3.0))
    np.testing.assert_allclose([z[:, 0].mean(), z[:, 2].mean()], [0.0, -6.0], atol=0.1)
    # counterfactual: abduction keeps each cell's noise; the new shift propagates down the chain
    with torch.no_grad():
        prior.mask.logits.fill_(10.0)
        prior.mask.logits[0, 1:] = -10.0
        prior.shifts.fill_(1.0)
    with torch.no_grad():
        z0 = prior(torch.zeros(5, 1)).rsample()
    z1 = prior.counterfactual(z0, torch.zeros(5, 1), torch.ones(5, 1))
    np.testing.assert_allclose((z1 - z0).numpy(), np.tile([1.0, 1.5, -3.0], (5, 1)), atol=1e-5)


def test_acyclicity_is_zero_exactly_for_dags():
    assert float(notears_acyclicity(CHAIN)) == pytest.approx(0.0, abs=1e-6)
    cyclic = CHAIN.clone()
    cyclic[2, 0] = 0.5
    assert float(notears_acyclicity(cyclic)) > 1e-3
    on = cyclic != 0
    assert _on_cycle(on).sum() == 3 and not _on_cycle(CHAIN != 0).any()


def test_dag_breaks_cycles_at_the_weakest_edge():
    prior = LinearSCMPrior(0, 3)
    with torch.no_grad():
        prior.edges.logits.fill_(-10.0)
        for i, j, w in [(0, 1, 2.0), (1, 2, 2.0), (2, 0, 0.3)]:
            prior.edges.logits[i, j] = 10.0
            prior.edge_weights[i, j] = w
    dag = prior.dag()
    assert dag.tolist() == [[False, True, False], [False, False, True], [False, False, False]]


def test_learns_a_chain_from_interventional_samples():
    """Maximum likelihood with the prior's penalties on samples of a 4-unit chain with one
    soft intervention per unit recovers the chain's edges, their direction and the targets."""
    torch.manual_seed(0)
    k, n = 4, 250
    true_w = torch.zeros(k, k)
    for i in range(k - 1):
        true_w[i, i + 1] = 1.2
    shifts = 3.0 * torch.eye(k)
    a = torch.cat([torch.zeros(n, k)] + [torch.eye(k)[p].expand(n, k) for p in range(k)])
    z = LinearSCMNormal(a @ shifts, true_w).rsample()
    prior = LinearSCMPrior(k, k, sparsity_penalty=0.25, intervention_type="shift")
    opt = torch.optim.Adam(prior.parameters(), lr=0.05)
    for step in range(1000):
        prior.set_temperature(max(0.993**step, 0.2))
        opt.zero_grad()
        loss = (-prior(a).log_prob(z).sum(-1) + prior.local_penalty(a)).mean()
        loss = loss + prior.kl_global() / len(z)
        loss.backward()
        opt.step()
    prior.eval()
    dag = prior.dag()
    assert dag.tolist() == (true_w != 0).tolist()
    targets = prior.inclusion_probs() > 0.5
    assert targets.tolist() == torch.eye(k, dtype=torch.bool).tolist()
    assert float(prior.acyclicity()) < 1e-2


def test_cut_edges_match_the_multivariate_normal_of_each_sample():
    """With ``keep`` (hard interventions), each sample's law is the MVN of its own graph: the
    edges into the units it cuts removed."""
    torch.manual_seed(0)
    loc = torch.randn(3, 3)
    keep = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.3, 0.0]])
    p = LinearSCMNormal(loc, CHAIN, keep=keep)
    z = torch.randn(3, 3)
    q = Normal(torch.randn(3, 3), torch.rand(3, 3) + 0.5)
    for i in range(3):
        mvn = _mvn(loc[i], CHAIN * keep[i])
        torch.testing.assert_close(p.log_prob(z)[i].sum(), mvn.log_prob(z[i]))
        q_mvn = MultivariateNormal(q.loc[i], covariance_matrix=torch.diag(q.scale[i] ** 2))
        torch.testing.assert_close(
            kl_divergence(q, p)[i].sum(), kl_divergence(q_mvn, mvn), rtol=1e-4, atol=1e-4
        )
    torch.testing.assert_close(p.abduct(p.propagate(z)), z)
    # the cut unit keeps its own noise mean; the leaf follows it
    torch.testing.assert_close(
        p.mean[1], torch.stack([loc[1, 0], loc[1, 1], loc[1, 2] - 2 * loc[1, 1]])
    )


def test_hard_interventions_cut_the_targets_parents():
    prior = LinearSCMPrior(1, 3, intervention_type="do")
    with torch.no_grad():
        prior.edges.logits.fill_(-10.0)
        prior.edges.logits[0, 1] = prior.edges.logits[1, 2] = 10.0
        prior.edge_weights.copy_(CHAIN)
        prior.mask.logits.fill_(-10.0)
        prior.mask.logits[0, 1] = 10.0  # the perturbation hits the middle unit
        prior.shifts.fill_(2.0)
    prior.eval()
    torch.manual_seed(0)
    z = prior(torch.ones(20000, 1)).rsample()
    # the middle unit no longer follows the root: variance 1 and no correlation
    assert abs(float(torch.corrcoef(z[:, :2].T)[0, 1])) < 0.03
    np.testing.assert_allclose(float(z[:, 1].var()), 1.0, atol=0.05)
    np.testing.assert_allclose(
        prior.expected_effects()[0].detach().numpy(), [0.0, 2.0, -4.0], atol=1e-3
    )
    soft = LinearSCMPrior(1, 3, intervention_type="shift")
    soft.load_state_dict(prior.state_dict())
    soft.eval()
    z = soft(torch.ones(20000, 1)).rsample()
    assert float(torch.corrcoef(z[:, :2].T)[0, 1]) > 0.7  # the soft shift keeps the edge
    with pytest.raises(ValueError, match="intervention_type"):
        LinearSCMPrior(1, 3, intervention_type="hard")


def test_fit_latent_graph_finds_the_frame_and_the_chain_of_hard_interventions():
    """Latents seen in the frame of the exogenous noise (where a VAE with independent units puts
    them): the graph-alignment fit moves them back to the causal variables and finds the
    chain, its direction and the direct targets."""
    torch.manual_seed(0)
    k, n = 4, 250
    true_w = torch.zeros(k, k)
    for i in range(k - 1):
        true_w[i, i + 1] = 1.2
    a = torch.cat([torch.zeros(2 * n, k)] + [torch.eye(k)[p].expand(n, k) for p in range(k)])
    z = LinearSCMNormal(3.0 * a, true_w, keep=1.0 - a).rsample()
    noise_frame = z @ (torch.eye(k) - true_w) + 0.2 * torch.randn(z.shape)
    prior = LinearSCMPrior(k, k, intervention_type="do", sparsity_penalty=0.25, edge_penalty=0.2)
    prior.activate_graph(True)
    frame = fit_latent_graph(prior, noise_frame, a, n_steps=1200, n_restarts=2)
    prior.eval()
    fitted = (noise_frame @ frame).numpy()
    corr = np.abs(np.corrcoef(z.numpy().T, fitted.T)[:k, k:])
    assert corr.diagonal().min() > 0.9  # back in the frame of the causal variables
    assert prior.dag().tolist() == (true_w != 0).tolist()
    assert (prior.inclusion_probs() > 0.5).tolist() == torch.eye(k, dtype=torch.bool).tolist()
    # the same fit with the graph switched off finds no edge (independent units)
    off = LinearSCMPrior(k, k, intervention_type="do")
    off.activate_graph(False)
    assert float(off.latent_graph().sum()) == 0.0 and off.can_reset_in_frame()
    with pytest.raises(ValueError, match="free_fraction"):
        fit_latent_graph(prior, noise_frame, a, free_fraction=2.0)
    with pytest.raises(ValueError, match="n_mask_draws"):
        fit_latent_graph(prior, noise_frame, a, n_mask_draws=0)


@pytest.mark.parametrize("intervention_type", ["do", "shift"])
def test_graph_fit_objective_from_group_statistics_equals_scoring_every_sample(
    intervention_type,
):
    """The graph-alignment fit scores the cells of a perturbation from their count, mean and
    covariance: the same penalised negative log-likelihood as scoring every cell, with the
    graph on or off, a frame change, controls and cells with two perturbations."""
    torch.manual_seed(0)
    p, k, n = 5, 4, 300
    a = torch.zeros(n, p)
    a[torch.arange(n), torch.arange(n) % p] = 1.0
    a[:40] = 0.0  # controls
    a[40:60, 1] = 1.0  # pairs with p1
    z = 2.0 * torch.randn(n, k) + 1.0
    frame = torch.randn(k, k)
    prior = LinearSCMPrior(p, k, intervention_type=intervention_type)
    with torch.no_grad():
        for param in (prior.edge_weights, prior.edges.logits, prior.shifts, prior.mask.logits):
            param.normal_()
    prior.eval()
    groups = _InterventionGroups(z, a, n_draws=1)
    assert len(groups.rows) == 10  # control, 5 singles, 4 pairs with p1
    for active in (False, True):
        prior.activate_graph(active)
        per_cell = -prior(a).log_prob(z @ frame).sum(-1) + prior.local_penalty(a)
        grouped = _grouped_objective(prior, frame, groups)
        assert float(grouped) == pytest.approx(float(per_cell.mean()), rel=1e-5)
    # with several mask draws per row every cell is scored once, spread over the draws
    drawn = _InterventionGroups(z, a, n_draws=4)
    assert float(drawn.weights.sum()) == pytest.approx(1.0)
    assert len(drawn.rows) == 4 * len(groups.rows)
    assert float(_grouped_objective(prior, frame, drawn)) == pytest.approx(float(grouped), 1e-5)


def _dag_screen(intervention_type, seed=0, k=5, n=500):
    """Random 5-unit DAG (a chain plus a skip edge, weights +-0.8-1.5), one intervention per
    unit (3 sd), 2n controls, seen through a random linear mixture."""
    g = torch.Generator().manual_seed(seed)
    true_w = torch.zeros(k, k)
    for i, j in [(0, 1), (1, 2), (2, 3), (0, 4)]:
        sign = 1.0 if torch.rand(1, generator=g) > 0.5 else -1.0
        true_w[i, j] = sign * (0.8 + 0.7 * torch.rand(1, generator=g))
    a = torch.cat([torch.zeros(2 * n, k)] + [torch.eye(k)[p].expand(n, k) for p in range(k)])
    keep = 1.0 - a if intervention_type == "do" else None
    torch.manual_seed(seed)
    z = LinearSCMNormal(3.0 * a, true_w, keep=keep).rsample()
    mixing = torch.randn(k, k, generator=g) + 2 * torch.eye(k)
    return z, z @ mixing, a, true_w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_latent_graph_from_moments_recovers_a_dag_through_a_linear_mixture(seed):
    """Hard interventions seen through an unknown linear mixture: the moments give back the
    causal variables and the DAG (every true edge above every false one), without knowing
    which perturbation targets which unit."""
    z, x, a, true_w = _dag_screen("do", seed)
    frame, weights = latent_graph_from_moments(x, a)
    fitted = (x @ frame).numpy()
    corr = np.abs(np.corrcoef(z.numpy().T, fitted.T)[:5, 5:])
    match = corr.argmax(1)
    assert sorted(match.tolist()) == list(range(5)) and corr.max(1).min() > 0.95
    w = weights.abs().numpy()[np.ix_(match, match)]  # in the true units' order
    true = (true_w != 0).numpy()
    off = ~np.eye(5, dtype=bool)
    assert w[true].min() > 0.5 > w[~true & off].max()
    assert float(notears_acyclicity(weights**2)) < 1e-6  # a DAG


def test_latent_graph_from_moments_finds_no_edge_under_noise_shifts_and_says_when_it_cannot():
    """Soft interventions (noise shifts) do not identify the graph: the estimate is empty. Too
    few controls, or groups whose shifts do not span the space, give None."""
    _, x, a, _ = _dag_screen("shift", 0)
    _, weights = latent_graph_from_moments(x, a)
    assert float(weights.abs().max()) < 0.3
    controls = a.sum(1) == 0
    assert latent_graph_from_moments(x[~controls][:-5], a[~controls][:-5]) is None
    one = a[:, 0] != 0
    assert latent_graph_from_moments(x, a, targets=torch.zeros(5, dtype=torch.long)) is not None
    assert latent_graph_from_moments(x[controls | one], a[controls | one][:, :1]) is not None
    assert latent_graph_from_moments(x[controls], a[controls]) is None  # no group at all
    with pytest.raises(ValueError, match="targets"):
        latent_graph_from_moments(x, a, targets=torch.zeros(3, dtype=torch.long))


def test_fit_latent_graph_by_moments_gives_bootstrap_edge_probabilities():
    """The default graph-alignment fit: frame and graph from the moments, edge probabilities
    from bootstrap resamples (stable edges near 1, absent ones near 0), masks and shifts fitted
    in the new frame; the likelihood method stays available."""
    z, x, a, true_w = _dag_screen("do", 1)
    prior = LinearSCMPrior(5, 5, intervention_type="do")
    prior.activate_graph(True)
    frame = fit_latent_graph(prior, x, a, n_steps=300, n_bootstrap=10, method="moments")
    fitted = (x @ frame).numpy()
    corr = np.abs(np.corrcoef(z.numpy().T, fitted.T)[:5, 5:])
    match = corr.argmax(1)
    probs = prior.latent_graph().detach().numpy()[np.ix_(match, match)]
    true = (true_w != 0).numpy()
    assert probs[true].min() > 0.9 and probs[~true].max() < 0.5
    assert prior.dag().numpy()[np.ix_(match, match)].tolist() == true.tolist()
    inclusion = prior.inclusion_probs().detach().numpy()[:, match]
    assert (inclusion > 0.5).tolist() == np.eye(5, dtype=bool).tolist()  # direct targets
    with pytest.raises(ValueError, match="method"):
        fit_latent_graph(prior, x, a, method="em")
    controls = a.sum(1) == 0
    with pytest.warns(UserWarning, match="likelihood instead"):
        fit_latent_graph(
            prior, x[~controls], a[~controls], n_steps=5, n_restarts=1, method="moments"
        )
