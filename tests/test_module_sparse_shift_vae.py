"""Tests of the SparseShiftVAE module on tiny tensor dicts (no AnnData) and of label parsing."""

import copy

import numpy as np
import pytest
import torch
from scvi.module._constants import MODULE_KEYS

from scvi_causal.module import SparseShiftVAE, parse_interventions

N_GENES = 20
N_LATENT = 3
CATEGORIES = ["ctrl", "A", "B", "A+B"]
CODES = [0, 1, 2, 3, 0, 1, 2, 3, 1, 0]
PRIORS = ["spike_slab", "l1", "dense", "none"]
LIKELIHOODS = ["nb", "zinb", "poisson"]


def _tensors(codes=CODES, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = len(codes)
    return {
        "X": torch.poisson(torch.full((n, N_GENES), 4.0), generator=gen),
        "batch": torch.zeros(n, 1),
        "perturbation": torch.tensor(codes, dtype=torch.float32).view(-1, 1),
    }


def _module(intervention_prior="spike_slab", seed=0, **kwargs):
    torch.manual_seed(seed)
    _, matrix = parse_interventions(CATEGORIES, ["ctrl"])
    kwargs.setdefault("n_hidden", 16)
    module = SparseShiftVAE(
        N_GENES, matrix, intervention_prior=intervention_prior, n_latent=N_LATENT, **kwargs
    )
    if intervention_prior != "none":
        with torch.no_grad():
            module.prior.shifts.copy_(torch.randn(2, N_LATENT) * 2)
            if intervention_prior != "dense":
                module.prior.mask.logits.fill_(3.0)  # every edge on (posterior mode)
    return module


# ----------------------------------------------------------------------------- parse_interventions
def test_parse_interventions_controls_and_combinations():
    names, matrix = parse_interventions(["ctrl", "B", "A+B", "A", "B+C"], ["ctrl"])
    assert names == ["A", "B", "C"]
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(
        matrix,
        [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 1, 1]],
    )


def test_parse_interventions_several_controls_and_whitespace():
    names, matrix = parse_interventions(
        np.array(["NT", "A + B", "safe", "ctrl+A"]), ["NT", "safe", "ctrl"]
    )
    assert names == ["A", "B"]
    np.testing.assert_array_equal(matrix, [[0, 0], [1, 1], [0, 0], [1, 0]])


def test_parse_interventions_without_controls_or_delimiter():
    names, matrix = parse_interventions(["A+B", "A"], [], delimiter=None)
    assert names == ["A", "A+B"]
    np.testing.assert_array_equal(matrix, [[0, 1], [1, 0]])
    names, matrix = parse_interventions(["x_y", "x"], [], delimiter="_")
    assert names == ["x", "y"]
    np.testing.assert_array_equal(matrix, [[1, 1], [1, 0]])


@pytest.mark.parametrize("label", ["ctrl+ctrl", "+", "ctrl+"])
def test_parse_interventions_rejects_labels_without_perturbation(label):
    with pytest.raises(ValueError, match="has no perturbation"):
        parse_interventions(["ctrl", "A", label], ["ctrl"])


def test_parse_interventions_only_controls():
    names, matrix = parse_interventions(["ctrl"], ["ctrl"])
    assert names == []
    assert matrix.shape == (1, 0)


# ----------------------------------------------------------------------------- construction
def test_module_construction_and_bad_arguments():
    module = _module()
    assert module.n_interventions == 2
    assert module.intervention_matrix.shape == (4, 2)
    assert module.prior.inclusion_probs().shape == (2, N_LATENT)
    with pytest.raises(ValueError, match="beta"):
        _module(beta=0.0)
    with pytest.raises(ValueError, match="2-d"):
        SparseShiftVAE(N_GENES, np.ones(3), n_latent=N_LATENT)
    with pytest.raises(ValueError, match="Unknown intervention_prior"):
        _module("horseshoe")


def test_intervention_parameters():
    spike = _module("spike_slab")
    assert {id(p) for p in spike.intervention_parameters()} == {
        id(spike.prior.mask.logits),
        id(spike.prior.shifts),
    }
    dense = _module("dense")
    assert [id(p) for p in dense.intervention_parameters()] == [id(dense.prior.shifts)]
    assert _module("none").intervention_parameters() == []


def test_direct_effects_in_the_module():
    """Direct effects: extra per-perturbation parameters, zero until active, then an offset on
    the decoded proportions of the cells under the perturbation and a Laplace term in the
    global loss."""
    module = _module("spike_slab", direct_penalty=2.0)
    module.eval()
    assert module.direct.effects.shape == (2, N_GENES)
    assert id(module.direct.effects) in {id(p) for p in module.intervention_parameters()}
    tensors = _tensors()

    def forward():
        torch.manual_seed(0)  # the same z draw in every call
        return module(tensors)

    _, gen_off, loss_off = forward()
    assert torch.equal(module.direct_effects(), torch.zeros(2, N_GENES))
    with torch.no_grad():
        module.direct.effects[0, 4] = -2.0
    _, gen_still_off, _ = forward()
    torch.testing.assert_close(gen_still_off["px"].scale, gen_off["px"].scale)  # inactive
    module.direct.activate()
    inf, gen_on, loss_on = forward()
    assert module.direct_effects()[0, 4] == -2.0
    codes = torch.tensor(CODES)
    has_a = (codes == 1) | (codes == 3)  # A and A+B
    base = module.generative(
        **{
            **module._get_generative_input(tensors, inf),
            "direct_intervention": torch.zeros(len(CODES), 2),
        }
    )["px"]
    ratio = gen_on["px"].scale / base.scale
    assert (ratio[has_a, 4] < ratio[has_a, 5]).all()
    torch.testing.assert_close(ratio[~has_a], torch.ones_like(ratio[~has_a]))
    torch.testing.assert_close(
        gen_on["px"].mu / gen_on["px"].scale, base.mu / base.scale
    )  # same library size
    expected = float(loss_off.kl_global_sum) + 2.0 * 2.0  # penalty 2 x |-2|
    assert float(loss_on.kl_global_sum) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="Direct effects need"):
        _module("none", direct_penalty=1.0)


# ----------------------------------------------------------------------------- forward and loss
@pytest.mark.parametrize("gene_likelihood", LIKELIHOODS)
@pytest.mark.parametrize("intervention_prior", PRIORS)
def test_forward_gives_finite_loss(gene_likelihood, intervention_prior):
    module = _module(intervention_prior, gene_likelihood=gene_likelihood)
    tensors = _tensors()
    for training in (True, False):
        module.train(training)
        inference, generative, loss_output = module(tensors, loss_kwargs={"n_obs": 100})
        n = len(CODES)
        assert inference[MODULE_KEYS.Z_KEY].shape == (n, N_LATENT)
        assert generative[MODULE_KEYS.PZ_KEY].loc.shape == (n, N_LATENT)
        assert loss_output.loss.shape == ()
        assert torch.isfinite(loss_output.loss)
        assert loss_output.reconstruction_loss["reconstruction_loss"].shape == (n,)
        assert loss_output.kl_local[MODULE_KEYS.KL_Z_KEY].shape == (n,)
        assert loss_output.kl_global_sum.shape == ()
        assert all(v.shape == () for v in loss_output.extra_metrics.values())
    module.train()
    _, _, loss_output = module(tensors, loss_kwargs={"n_obs": 100})
    loss_output.loss.backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if intervention_prior != "none":
        assert (module.prior.shifts.grad != 0).any()


def test_forward_without_perturbation_key_is_a_plain_vae():
    module = _module().eval()
    tensors = _tensors()
    del tensors["perturbation"]
    _, generative, loss_output = module(tensors)
    assert torch.equal(generative[MODULE_KEYS.PZ_KEY].loc, torch.zeros(len(CODES), N_LATENT))
    assert torch.isfinite(loss_output.loss)


def _outputs(module, tensors, seed=0):
    torch.manual_seed(seed)
    inference, generative = module(tensors, compute_loss=False)
    return inference, generative


@pytest.mark.parametrize("intervention_prior", PRIORS)
def test_global_term_is_divided_by_n_obs(intervention_prior):
    module = _module(intervention_prior).eval()
    tensors = _tensors()
    inference, generative = _outputs(module, tensors)
    small = module.loss(tensors, inference, generative, kl_weight=1.0, n_obs=10)
    large = module.loss(tensors, inference, generative, kl_weight=1.0, n_obs=1_000_000)
    kl_global = small.kl_global_sum
    assert torch.allclose(large.kl_global_sum, kl_global)
    if intervention_prior != "none":
        assert kl_global.abs() > 1e-3  # the check below is not vacuous
    expected = kl_global * (1 / 10 - 1e-6)
    assert torch.allclose(small.loss - large.loss, expected, rtol=1e-4, atol=1e-4)
    # KL warm-up scales the global term too.
    half = module.loss(tensors, inference, generative, kl_weight=0.5, n_obs=10)
    half_large = module.loss(tensors, inference, generative, kl_weight=0.5, n_obs=1_000_000)
    assert torch.allclose(half.loss - half_large.loss, 0.5 * expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("intervention_prior", PRIORS)
def test_loss_decomposes_into_loss_output_fields(intervention_prior):
    module = _module(intervention_prior, beta=2.0).eval()
    tensors = _tensors()
    inference, generative = _outputs(module, tensors)
    out = module.loss(tensors, inference, generative, kl_weight=0.7, n_obs=50)
    recon = out.reconstruction_loss["reconstruction_loss"]
    kl_z = out.kl_local[MODULE_KEYS.KL_Z_KEY]
    kl_l = out.kl_local[MODULE_KEYS.KL_L_KEY]
    sparsity = out.kl_local.get("sparsity", torch.zeros_like(kl_z))
    expected = (recon + 0.7 * (2.0 * kl_z + sparsity) + kl_l).mean()
    expected = expected + 0.7 * out.kl_global_sum / 50
    assert torch.allclose(out.loss, expected, rtol=1e-5)


def test_beta_scales_the_local_kl():
    module = _module().eval()
    tensors = _tensors()
    inference, generative = _outputs(module, tensors)
    base = module.loss(tensors, inference, generative, kl_weight=1.0, n_obs=100)
    module.beta = 3.0
    scaled = module.loss(tensors, inference, generative, kl_weight=1.0, n_obs=100)
    kl_z = base.kl_local[MODULE_KEYS.KL_Z_KEY]
    assert kl_z.mean() > 0
    assert torch.equal(scaled.kl_local[MODULE_KEYS.KL_Z_KEY], kl_z)  # reported unscaled
    assert torch.allclose(scaled.loss - base.loss, 2.0 * kl_z.mean(), rtol=1e-5)


# ----------------------------------------------------------------------------- label isolation
@pytest.mark.parametrize("intervention_prior", ["spike_slab", "dense"])
def test_perturbation_reaches_prior_but_not_decoder(intervention_prior):
    module = _module(intervention_prior).eval()
    _, matrix = parse_interventions(CATEGORIES, ["ctrl"])
    matrix = torch.as_tensor(matrix)
    n = 6
    torch.manual_seed(0)
    z = torch.randn(n, N_LATENT)
    library = torch.full((n, 1), 4.0)
    batch = torch.zeros(n, 1)
    codes_a = torch.tensor([0, 1, 2, 3, 1, 2])
    codes_b = torch.tensor([3, 2, 1, 0, 0, 3])
    out_a = module.generative(z, library, batch, intervention=matrix[codes_a])
    out_b = module.generative(z, library, batch, intervention=matrix[codes_b])
    px_a, px_b = out_a[MODULE_KEYS.PX_KEY], out_b[MODULE_KEYS.PX_KEY]
    assert torch.equal(px_a.mu, px_b.mu)
    assert torch.equal(px_a.theta, px_b.theta)
    assert not torch.allclose(out_a[MODULE_KEYS.PZ_KEY].loc, out_b[MODULE_KEYS.PZ_KEY].loc)
    effects = module.prior.effects()
    assert torch.allclose(out_a[MODULE_KEYS.PZ_KEY].loc, matrix[codes_a] @ effects)


def test_perturbation_codes_do_not_reach_encoder_or_decoder():
    module = _module().eval()
    tensors_a = _tensors(CODES)
    tensors_b = {**tensors_a, "perturbation": torch.zeros(len(CODES), 1)}
    inf_a, gen_a = _outputs(module, tensors_a)
    inf_b, gen_b = _outputs(module, tensors_b)
    assert torch.equal(inf_a[MODULE_KEYS.QZ_KEY].loc, inf_b[MODULE_KEYS.QZ_KEY].loc)
    assert torch.equal(inf_a[MODULE_KEYS.Z_KEY], inf_b[MODULE_KEYS.Z_KEY])
    assert torch.equal(gen_a[MODULE_KEYS.PX_KEY].mu, gen_b[MODULE_KEYS.PX_KEY].mu)
    assert not torch.equal(gen_a[MODULE_KEYS.PZ_KEY].loc, gen_b[MODULE_KEYS.PZ_KEY].loc)
    assert torch.equal(gen_b[MODULE_KEYS.PZ_KEY].loc, torch.zeros(len(CODES), N_LATENT))


def test_none_prior_ignores_perturbations():
    module = _module("none").eval()
    tensors = _tensors()
    _, generative = _outputs(module, tensors)
    assert torch.equal(generative[MODULE_KEYS.PZ_KEY].loc, torch.zeros(len(CODES), N_LATENT))


# ----------------------------------------------------------------------------- importance weights
@pytest.mark.parametrize("intervention_prior", PRIORS)
def test_importance_weights_shape_and_bound(intervention_prior):
    module = _module(intervention_prior).eval()
    tensors = _tensors()
    torch.manual_seed(0)
    log_w = module.importance_weights(tensors, n_samples=16)
    assert log_w.shape == (16, len(CODES))
    assert torch.isfinite(log_w).all()
    iwelbo = torch.logsumexp(log_w, 0) - np.log(16)
    assert (iwelbo >= log_w.mean(0) - 1e-4).all()


def test_marginal_ll_uses_the_perturbation_prior():
    """scvi's VAE.marginal_ll scores every cell under N(0, I); this module's uses each cell's
    shifted prior, so a perturbed cell far from the origin scores differently."""
    from scvi.module import VAE

    module = _module("spike_slab")
    module.eval()
    with torch.no_grad():
        module.prior.shifts.mul_(3.0)
    tensors = _tensors()
    torch.manual_seed(0)
    ours = module.marginal_ll(tensors, n_mc_samples=7, n_mc_samples_per_pass=3)
    torch.manual_seed(0)
    log_w = torch.cat([module.importance_weights(tensors, n_samples=k) for k in (3, 3, 1)])
    expected = torch.logsumexp(log_w, 0) - np.log(7)
    torch.testing.assert_close(ours, expected)
    torch.manual_seed(0)
    plain = VAE.marginal_ll(module, tensors, n_mc_samples=7, n_mc_samples_per_pass=3)
    codes = torch.tensor(CODES)
    assert not torch.allclose(ours[codes != 0], plain[codes != 0], atol=1e-2)
    assert module.marginal_ll(tensors, 4, return_mean=True) == pytest.approx(
        float(ours.mean()), abs=5.0
    )


def test_importance_weights_use_each_cells_prior():
    module = _module().eval()
    tensors = _tensors()
    torch.manual_seed(0)
    before = module.importance_weights(tensors, n_samples=8)
    with torch.no_grad():
        module.prior.shifts[0] += 5.0  # move perturbation "A" only
    torch.manual_seed(0)
    after = module.importance_weights(tensors, n_samples=8)
    has_a = torch.tensor([c in (1, 3) for c in CODES])
    assert torch.allclose(before[:, ~has_a], after[:, ~has_a])
    assert not torch.allclose(before[:, has_a], after[:, has_a])


def test_importance_weights_include_the_library_terms():
    # With a learned library size, log p(l) - log q(l) belongs in the importance weights (as in
    # scvi's VAE.marginal_ll); moving the library prior far away must lower every weight.
    _, matrix = parse_interventions(CATEGORIES, ["ctrl"])
    torch.manual_seed(0)
    module = SparseShiftVAE(
        N_GENES,
        matrix,
        n_latent=N_LATENT,
        n_hidden=16,
        use_observed_lib_size=False,
        library_log_means=np.array([[4.0]]),
        library_log_vars=np.array([[1.0]]),
    ).eval()
    tensors = {**_tensors(), "batch": torch.zeros(len(CODES), 1, dtype=torch.long)}
    torch.manual_seed(0)
    before = module.importance_weights(tensors, n_samples=8)
    with torch.no_grad():
        module.library_log_means.fill_(-20.0)
    torch.manual_seed(0)
    after = module.importance_weights(tensors, n_samples=8)
    assert torch.isfinite(after).all()
    assert (after < before - 10).all()


# ----------------------------------------------------------------------------- beta-TCVAE
@pytest.mark.parametrize("intervention_prior", ["none", "spike_slab"])
def test_total_correlation_term_in_the_loss(intervention_prior):
    module = _module(intervention_prior, tc_weight=4.0).eval()
    tensors = _tensors()
    inference, generative = _outputs(module, tensors)
    with_tc = module.loss(tensors, inference, generative, kl_weight=0.5, n_obs=100)
    tc = with_tc.kl_local["total_correlation"]
    assert tc.shape == (len(CODES),) and torch.isfinite(tc).all()
    assert torch.isfinite(with_tc.loss)
    module.tc_weight = 0.0
    without = module.loss(tensors, inference, generative, kl_weight=0.5, n_obs=100)
    assert "total_correlation" not in without.kl_local
    assert not torch.isclose(with_tc.loss, without.loss)
    # the extra term is kl_weight * tc_weight * TC, averaged over cells
    torch.testing.assert_close(with_tc.loss - without.loss, 0.5 * 4.0 * tc.mean())


def test_total_correlation_term_backward_and_edge_cases():
    module = _module("none", tc_weight=2.0).train()
    _, _, out = module(_tensors(), loss_kwargs={"n_obs": 100})
    out.loss.backward()
    grads = [p.grad for p in module.z_encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # a single-cell minibatch has no TC estimate: zero, not an error
    module.eval()  # batch norm cannot train on one cell
    _, _, single = module(_tensors(CODES[:1]), loss_kwargs={"n_obs": 100})
    assert torch.equal(single.kl_local["total_correlation"], torch.zeros(1))
    # several posterior samples per cell (as in scvi's marginal_ll): averaged over samples
    _, _, multi = module(_tensors(), inference_kwargs={"n_samples": 3}, loss_kwargs={"n_obs": 100})
    assert multi.kl_local["total_correlation"].shape == (len(CODES),)
    assert torch.isfinite(multi.loss)
    with pytest.raises(ValueError, match="tc_weight"):
        _module(tc_weight=-1.0)


def test_total_correlation_query_subsample_in_the_loss():
    module = _module("none", tc_weight=2.0, tc_query_size=4).eval()
    tensors = _tensors()
    inference, generative = _outputs(module, tensors)
    out = module.loss(tensors, inference, generative, kl_weight=1.0, n_obs=100)
    tc = out.kl_local["total_correlation"]
    # one mean estimate from 4 query cells, shared by all cells of the minibatch
    assert tc.shape == (len(CODES),) and torch.unique(tc).numel() == 1
    module.tc_weight = 0.0
    without = module.loss(tensors, inference, generative, kl_weight=1.0, n_obs=100)
    torch.testing.assert_close(out.loss - without.loss, 2.0 * tc.mean())
    module.tc_query_size = None  # exact: per-cell estimates differ
    module.tc_weight = 2.0
    exact = module.loss(tensors, inference, generative, kl_weight=1.0, n_obs=100)
    assert torch.unique(exact.kl_local["total_correlation"]).numel() > 1
    with pytest.raises(ValueError, match="tc_query_size"):
        _module(tc_query_size=0)


# ----------------------------------------------------------------------------- latent rotation
def test_rotate_latent_space_is_a_change_of_coordinates():
    module = _module(n_layers=2).eval()
    tensors = _tensors()
    inf_old, _ = _outputs(module, tensors)
    before = copy.deepcopy(module)
    q = torch.linalg.qr(
        torch.randn(N_LATENT, N_LATENT, generator=torch.Generator().manual_seed(3))
    ).Q
    effects = torch.tensor([[4.0, 0.1, -0.2], [float("nan")] * 3])
    expected_b = (module.prior.inclusion_probs() * module.prior.shifts)[1] @ q
    changed = module.rotate_latent_space(q, effects=effects, threshold=0.5)
    assert len(changed) == 7
    inf_new, _ = _outputs(module, tensors)
    qz_old, qz_new = inf_old[MODULE_KEYS.QZ_KEY], inf_new[MODULE_KEYS.QZ_KEY]
    assert torch.allclose(qz_new.loc, qz_old.loc @ q, atol=1e-5)
    # decoding the new posterior mean gives the old expression
    library = inf_old[MODULE_KEYS.LIBRARY_KEY]
    px_old = before.generative(qz_old.loc, library, tensors["batch"])[MODULE_KEYS.PX_KEY]
    px_new = module.generative(qz_new.loc, library, tensors["batch"])[MODULE_KEYS.PX_KEY]
    assert torch.allclose(px_new.mu, px_old.mu, rtol=1e-4)
    assert not torch.allclose(qz_new.loc, qz_old.loc, atol=1e-2)
    # shifts in the new frame; masks reset from their relative size
    assert torch.allclose(module.prior.shifts[0], effects[0] @ q, atol=1e-6)
    assert torch.allclose(module.prior.shifts[1], expected_b, atol=1e-6)
    shift = module.prior.shifts.detach()
    on = shift.abs() >= 0.5 * shift.abs().amax(-1, keepdim=True)
    assert torch.equal(module.prior.mask.logits > 0, on)
    # posterior log-variances mixed by q**2 (the diagonal of the rotated covariance when the
    # variances are equal)
    eps = module.z_encoder.var_eps
    log_var_old = (qz_old.scale**2 - eps).log()
    log_var_new = (qz_new.scale**2 - eps).log()
    assert torch.allclose(log_var_new, log_var_old @ q**2, atol=1e-3)


@pytest.mark.parametrize("intervention_prior", ["dense", "none"])
def test_rotate_latent_space_needs_a_sparse_prior(intervention_prior):
    module = _module(intervention_prior)
    assert not module.can_rotate_latent_space()
    with pytest.raises(ValueError, match="spike_slab"):
        module.rotate_latent_space(torch.eye(N_LATENT))


def test_rotate_latent_space_bad_rotation_and_frozen_masks():
    module = _module()
    assert module.can_rotate_latent_space()
    with pytest.raises(ValueError, match="orthogonal"):
        module.rotate_latent_space(torch.ones(N_LATENT, N_LATENT))
    module.prior.mask.freeze(torch.tensor([0]), 1.0)
    assert not module.can_rotate_latent_space()


def test_rotate_latent_space_noise_floor():
    module = _module()
    effects = torch.tensor([[4.0, 3.0, 0.1], [0.3, 0.2, 0.0]])
    module.rotate_latent_space(
        torch.eye(N_LATENT), effects=effects, threshold=0.5, min_shift=torch.tensor([1.0, 1.0])
    )
    on = module.prior.mask.logits > 0
    assert on[0].tolist() == [True, True, False]  # both large shifts pass the floor
    assert not on[1].any()  # a displacement below the floor gets no edge
    module.rotate_latent_space(torch.eye(N_LATENT), effects=effects, threshold=0.5)
    assert (module.prior.mask.logits[1] > 0).tolist() == [True, True, False]
