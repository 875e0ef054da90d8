"""End-to-end tests of the SparseShiftVI user API on a tiny simulated screen."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI
from scvi_causal.model._sparse_shift_vi import default_max_epochs

N_LATENT = 5
PERTURBATIONS = ["p00", "p01", "p02", "p03"]
LATENTS = [f"z{k}" for k in range(N_LATENT)]
TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}
SMALL_NET = {"n_hidden": 32}


def _simulate(**kwargs):
    params = {
        "n_perturbations": 4,
        "n_cells_per_perturbation": 30,
        "n_control_cells": 60,
        "n_genes": 50,
        "seed": 0,
    }
    params.update(kwargs)
    return simulate_sparse_shift(**params)


@pytest.fixture(scope="module")
def base_adata():
    return _simulate()


@pytest.fixture
def adata(base_adata):
    return base_adata.copy()


@pytest.fixture(scope="module")
def trained(base_adata):
    scvi.settings.seed = 0
    adata = base_adata.copy()
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    model = SparseShiftVI(adata, n_latent=N_LATENT)
    model.train(max_epochs=3, **TRAIN_KWARGS)
    return model


def _train(adata, max_epochs=1, **model_kwargs):
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=N_LATENT, **{**SMALL_NET, **model_kwargs})
    model.train(max_epochs=max_epochs, **TRAIN_KWARGS)
    return model


def _assert_masks_learned(graph, init: float = 0.5):
    """Inclusion probabilities that training moved away from their initial value (a mask
    without gradient, or a graph read from the wrong parameter, stays at ``init``)."""
    values = np.asarray(graph, dtype=float)
    assert np.isfinite(values).all()
    assert (np.abs(values - init) > 1e-3).mean() > 0.5, values


def _check_graph_frame(frame, index=PERTURBATIONS):
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == index
    assert list(frame.columns) == LATENTS


# ----------------------------------------------------------------------------- user API
def test_end_to_end_api(trained):
    model = trained
    adata = model.adata
    latent = model.get_latent_representation()
    assert latent.shape == (adata.n_obs, N_LATENT)
    assert np.isfinite(latent).all()

    graph = model.get_target_graph()
    _check_graph_frame(graph)
    _assert_masks_learned(graph)

    shifts = model.get_perturbation_shifts()
    _check_graph_frame(shifts)
    assert np.isfinite(shifts.to_numpy()).all()
    # Masked shifts are zero wherever the mask's mode is off.
    assert (shifts.to_numpy()[graph.to_numpy() <= 0.5] == 0).all()
    unmasked = model.get_perturbation_shifts(masked=False)
    _check_graph_frame(unmasked)

    scores = model.get_perturbation_scores(n_mc_samples=20)
    assert list(scores.columns) == ["n_cells", "elbo", "iwelbo", "is_control"]
    assert sorted(scores.index) == sorted(["control", *PERTURBATIONS])
    assert scores["n_cells"].sum() == adata.n_obs
    assert scores.loc["control", "n_cells"] == 60
    assert scores["is_control"].to_dict() == {name: name == "control" for name in scores.index}
    assert np.isfinite(scores[["elbo", "iwelbo"]].to_numpy()).all()
    assert (scores["iwelbo"] >= scores["elbo"] - 1e-4).all()

    for key in ("mask_density_train", "mask_temperature_train", "elbo_train"):
        assert key in model.history, key
    temperature = model.history["mask_temperature_train"].to_numpy().ravel()
    assert len(temperature) == 3
    assert temperature[0] == pytest.approx(1.0)
    assert temperature[-1] == pytest.approx(0.2)
    assert (np.diff(temperature) < 0).all()
    density = model.history["mask_density_train"].to_numpy().ravel()
    assert ((density >= 0) & (density <= 1)).all()
    assert model._model_summary_string.startswith("SparseShiftVI: 4 perturbations")


def test_scores_and_shifts_on_subsets(trained):
    indices = np.arange(0, trained.adata.n_obs, 3)
    scores = trained.get_perturbation_scores(indices=indices, n_mc_samples=5)
    assert scores["n_cells"].sum() == len(indices)
    with pytest.raises(ValueError, match="n_mc_samples"):
        trained.get_perturbation_scores(n_mc_samples=0)
    with pytest.raises(ValueError, match="source"):
        trained.get_perturbation_shifts(source="cells")
    latent_shifts = trained.get_perturbation_shifts(source="latent")
    _check_graph_frame(latent_shifts)
    z = trained.get_latent_representation()
    labels = trained.adata.obs["perturbation"].to_numpy()
    expected = z[labels == "p02"].mean(0) - z[labels == "control"].mean(0)
    np.testing.assert_allclose(latent_shifts.loc["p02"].to_numpy(), expected, rtol=1e-5)


def test_off_mask_shifts(trained):
    off = trained.get_off_mask_shifts()
    assert list(off.index) == trained.perturbation_names_
    z = trained.get_latent_representation()
    labels = trained.adata.obs["perturbation"].to_numpy()
    on = trained.get_target_graph().to_numpy() >= 0.5
    for i, name in enumerate(trained.perturbation_names_):
        d = z[labels == name].mean(0) - z[labels == "control"].mean(0)
        outside = np.where(on[i], 0.0, d)
        assert off.loc[name, "n_targets"] == on[i].sum()
        assert off.loc[name, "shift_norm"] == pytest.approx(np.linalg.norm(d), rel=1e-5)
        assert off.loc[name, "off_mask_norm"] == pytest.approx(np.linalg.norm(outside), rel=1e-5)
        assert off.loc[name, "off_mask_fraction"] == pytest.approx(
            np.sum(outside**2) / np.sum(d**2), rel=1e-5
        )
        if (~on[i]).any():
            top = int(np.argmax(np.abs(outside)))
            assert off.loc[name, "top_off_mask_unit"] == f"z{top}"
            assert off.loc[name, "top_off_mask_shift"] == pytest.approx(outside[top], rel=1e-5)
    # every unit switched off: the whole displacement is off the mask; all on: none of it
    logits = trained.module.prior.mask.logits
    saved = logits.detach().clone()
    try:
        with torch.no_grad():
            logits.fill_(-20.0)
        none_on = trained.get_off_mask_shifts()
        np.testing.assert_allclose(none_on["off_mask_fraction"], 1.0, rtol=1e-6)
        assert (none_on["n_targets"] == 0).all()
        with torch.no_grad():
            logits.fill_(20.0)
        all_on = trained.get_off_mask_shifts()
        np.testing.assert_allclose(all_on["off_mask_fraction"], 0.0, atol=1e-12)
        assert all_on["top_off_mask_unit"].isna().all()
    finally:
        with torch.no_grad():
            logits.copy_(saved)
    with pytest.raises(ValueError, match="threshold"):
        trained.get_off_mask_shifts(threshold=1.0)


def test_save_load_round_trip(trained, tmp_path):
    model = trained
    path = tmp_path / "model"
    model.save(path, save_anndata=False)
    loaded = SparseShiftVI.load(path, adata=model.adata)
    pd.testing.assert_frame_equal(loaded.get_target_graph(), model.get_target_graph())
    pd.testing.assert_frame_equal(loaded.get_perturbation_shifts(), model.get_perturbation_shifts())
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), rtol=0, atol=1e-6
    )
    assert loaded.perturbation_names_ == model.perturbation_names_
    assert loaded.control_categories_ == model.control_categories_
    assert loaded.module.intervention_prior == model.module.intervention_prior
    assert float(loaded.module.prior.mask.temperature) == pytest.approx(
        float(model.module.prior.mask.temperature)
    )


# ----------------------------------------------------------------------------- priors
@pytest.mark.parametrize("intervention_prior", ["l1", "dense", "none"])
def test_each_intervention_prior_trains(adata, intervention_prior):
    SparseShiftVI.setup_anndata(adata, control_category="control")
    # 3 epochs: the first is all KL warm-up (weight 0), where masks get no gradient
    model = _train(adata, max_epochs=3, intervention_prior=intervention_prior)
    assert model.get_latent_representation().shape == (adata.n_obs, N_LATENT)
    latent_shifts = model.get_perturbation_shifts(source="latent")
    _check_graph_frame(latent_shifts)
    assert np.isfinite(latent_shifts.to_numpy()).all()
    scores = model.get_perturbation_scores(n_mc_samples=5)
    assert np.isfinite(scores[["elbo", "iwelbo"]].to_numpy()).all()
    if intervention_prior == "none":
        with pytest.raises(ValueError, match="not defined for intervention_prior='none'"):
            model.get_target_graph()
        with pytest.raises(ValueError, match="not defined for intervention_prior='none'"):
            model.get_perturbation_shifts()
        return
    graph = model.get_target_graph()
    _check_graph_frame(graph)
    if intervention_prior == "dense":
        assert (graph.to_numpy() == 1).all()
    else:
        _assert_masks_learned(graph)
    _check_graph_frame(model.get_perturbation_shifts())


def test_relative_sparsity_scale_trains(adata):
    SparseShiftVI.setup_anndata(adata, control_category="control")
    model = _train(adata, sparsity_scale="relative")
    assert model.module.prior.sparsity_scale == "relative"
    graph = model.get_target_graph()
    _check_graph_frame(graph)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()


# ----------------------------------------------------------------------------- labels
def test_combination_labels_parse_into_the_union(adata):
    labels = adata.obs["perturbation"].cat.add_categories(["p00+p01"])
    combo_cells = np.flatnonzero(labels == "control")[:10]
    labels.iloc[combo_cells] = "p00+p01"
    adata.obs["perturbation"] = labels
    SparseShiftVI.setup_anndata(adata, control_category="control")
    model = _train(adata)
    assert model.perturbation_names_ == PERTURBATIONS
    _check_graph_frame(model.get_target_graph())
    mapping = list(model.adata_manager.get_state_registry("perturbation").categorical_mapping)
    matrix = model.module.intervention_matrix.cpu().numpy()
    np.testing.assert_array_equal(matrix[mapping.index("p00+p01")], [1, 1, 0, 0])
    np.testing.assert_array_equal(matrix[mapping.index("p02")], [0, 0, 1, 0])
    np.testing.assert_array_equal(matrix[mapping.index("control")], [0, 0, 0, 0])
    # The prior of a combination cell is the sum of its members' masked shifts.
    prior = model.module.prior.eval()
    with torch.no_grad():
        loc = prior(torch.as_tensor(matrix)).loc.numpy()
    np.testing.assert_allclose(
        loc[mapping.index("p00+p01")],
        loc[mapping.index("p00")] + loc[mapping.index("p01")],
        rtol=1e-6,
        atol=1e-6,
    )
    scores = model.get_perturbation_scores(n_mc_samples=5)
    assert scores.loc["p00+p01", "n_cells"] == 10
    assert not scores.loc["p00+p01", "is_control"]


def test_control_category_as_list(adata):
    labels = adata.obs["perturbation"].cat.add_categories(["non-targeting"])
    labels.iloc[np.flatnonzero(labels == "control")[:25]] = "non-targeting"
    adata.obs["perturbation"] = labels
    SparseShiftVI.setup_anndata(adata, control_category=["control", "non-targeting"])
    model = _train(adata)
    assert model.perturbation_names_ == PERTURBATIONS
    assert model.control_categories_ == ["control", "non-targeting"]
    scores = model.get_perturbation_scores(n_mc_samples=5)
    assert scores.loc[["control", "non-targeting"], "is_control"].all()
    assert scores.loc[["control", "non-targeting"], "n_cells"].tolist() == [35, 25]
    assert not scores.loc[PERTURBATIONS, "is_control"].any()


def test_screen_without_controls():
    adata = _simulate(n_control_cells=0)
    assert adata.uns["simulation"]["control_category"] is None
    SparseShiftVI.setup_anndata(adata, control_category=None)
    model = _train(adata)
    assert model.perturbation_names_ == PERTURBATIONS
    assert model.control_categories_ == []
    _check_graph_frame(model.get_target_graph())
    latent_shifts = model.get_perturbation_shifts(source="latent")
    _check_graph_frame(latent_shifts)
    # Without controls the reference is the mean of all cells.
    z = model.get_latent_representation()
    labels = adata.obs["perturbation"].to_numpy()
    np.testing.assert_allclose(
        latent_shifts.loc["p01"].to_numpy(), z[labels == "p01"].mean(0) - z.mean(0), rtol=1e-5
    )
    assert not model.get_perturbation_scores(n_mc_samples=5)["is_control"].any()


def test_batch_and_covariates(adata):
    rng = np.random.default_rng(0)
    adata.obs["batch"] = pd.Categorical(rng.choice(["b0", "b1"], adata.n_obs))
    adata.obs["donor"] = pd.Categorical(rng.choice(["d0", "d1", "d2"], adata.n_obs))
    adata.obs["pct_mito"] = rng.uniform(0, 0.1, adata.n_obs)
    SparseShiftVI.setup_anndata(
        adata,
        control_category="control",
        batch_key="batch",
        categorical_covariate_keys=["donor"],
        continuous_covariate_keys=["pct_mito"],
    )
    model = _train(adata)
    assert model.summary_stats.n_batch == 2
    assert model.module.n_batch == 2
    assert np.isfinite(model.get_latent_representation()).all()
    scores = model.get_perturbation_scores(n_mc_samples=5)
    assert np.isfinite(scores[["elbo", "iwelbo"]].to_numpy()).all()


def test_setup_is_per_dataset(adata, base_adata):
    other = base_adata.copy()
    labels = other.obs["perturbation"].cat.rename_categories({"control": "NT"})
    other.obs["perturbation"] = labels
    SparseShiftVI.setup_anndata(adata, control_category="control")
    SparseShiftVI.setup_anndata(other, control_category="NT")
    first = SparseShiftVI(adata, n_latent=N_LATENT, **SMALL_NET)
    second = SparseShiftVI(other, n_latent=N_LATENT, **SMALL_NET)
    assert first.control_categories_ == ["control"]
    assert second.control_categories_ == ["NT"]


def test_default_max_epochs():
    assert default_max_epochs(16_000, 1024) == 640
    assert default_max_epochs(10, 1024) == 1000
    assert default_max_epochs(10_000_000, 128) == 20


# ----------------------------------------------------------------------------- bad inputs
def test_missing_perturbation_key(adata):
    with pytest.raises(KeyError, match="perturbation_key 'guide' is not a column"):
        SparseShiftVI.setup_anndata(adata, perturbation_key="guide")


def test_control_category_not_present(adata):
    with pytest.raises(ValueError, match=r"control_category \['NT'\] not found"):
        SparseShiftVI.setup_anndata(adata, control_category="NT")
    with pytest.raises(ValueError, match=r"control_category \['NT'\] not found"):
        SparseShiftVI.setup_anndata(adata, control_category=["control", "NT"])


def test_missing_perturbation_labels(adata):
    labels = adata.obs["perturbation"].copy()
    labels.iloc[3] = np.nan
    adata.obs["perturbation"] = labels
    with pytest.raises(ValueError, match="1 missing labels"):
        SparseShiftVI.setup_anndata(adata)


def test_unused_perturbation_category(adata):
    adata.obs["perturbation"] = adata.obs["perturbation"].cat.add_categories(["p99"])
    with pytest.raises(ValueError, match=r"zero cells.*p99"):
        SparseShiftVI.setup_anndata(adata)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize(
    ("value", "match"),
    [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (-1.0, "negative values")],
)
def test_bad_count_values(adata, dense, value, match):
    if dense:
        adata.X = adata.X.toarray()
        adata.X[5, 7] = value
    else:
        adata.X.data[5] = value
    with pytest.raises(ValueError, match=match):
        SparseShiftVI.setup_anndata(adata)


def test_bad_values_in_layer(adata):
    adata.layers["counts"] = adata.X.copy()
    adata.layers["counts"].data[0] = np.nan
    with pytest.raises(ValueError, match=r"adata.layers\['counts'\] contains NaN"):
        SparseShiftVI.setup_anndata(adata, layer="counts")
    with pytest.raises(KeyError, match="Layer 'raw' not found"):
        SparseShiftVI.setup_anndata(adata, layer="raw")


def test_non_integer_counts_warn(adata):
    adata.X.data[0] = 0.5
    with pytest.warns(UserWarning, match="non-integer values"):
        SparseShiftVI.setup_anndata(adata)


def test_covariate_errors(adata):
    with pytest.raises(KeyError, match="'plate' is not a column"):
        SparseShiftVI.setup_anndata(adata, batch_key="plate")
    with pytest.raises(ValueError, match="cannot also be a batch or covariate"):
        SparseShiftVI.setup_anndata(adata, categorical_covariate_keys=["perturbation"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_latent": 0}, "n_latent"),
        ({"n_latent": 2.5}, "n_latent"),
        ({"intervention_prior": "horseshoe"}, "Unknown intervention_prior"),
        ({"gene_likelihood": "gaussian"}, "gene_likelihood must be"),
        ({"sparsity_scale": "log"}, "sparsity_scale"),
    ],
)
def test_bad_model_arguments(adata, kwargs, match):
    SparseShiftVI.setup_anndata(adata)
    with pytest.raises(ValueError, match=match):
        SparseShiftVI(adata, **kwargs)


def test_one_latent_unit_builds(adata):
    SparseShiftVI.setup_anndata(adata)
    model = SparseShiftVI(adata, n_latent=1, **SMALL_NET)
    assert model.get_target_graph().shape == (4, 1)


def test_gene_mismatch_in_new_data(trained):
    query = trained.adata[:20, :10].copy()
    with pytest.raises(ValueError, match="genes but the model was trained on"):
        trained.get_perturbation_scores(query, n_mc_samples=2)


def test_unseen_perturbation_in_new_data(trained):
    query = trained.adata[:20].copy()
    labels = query.obs["perturbation"].astype(str).to_numpy()
    labels[:5] = "pNEW"
    query.obs["perturbation"] = pd.Categorical(labels)
    with pytest.raises(ValueError, match=r"Perturbations not seen by the model: \['pNEW'\]"):
        trained.get_perturbation_scores(query, n_mc_samples=2)


def test_beta_tcvae_baseline_trains_and_round_trips(adata, tmp_path):
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    model = _train(adata, max_epochs=2, intervention_prior="none", tc_weight=5.0)
    assert model.module.tc_weight == 5.0
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    # the TC term changes the loss on the same minibatch
    module = model.module
    module.train()
    tensors = next(iter(model._make_data_loader(adata=adata, batch_size=64)))
    torch.manual_seed(0)
    with_tc = module(tensors, loss_kwargs={"n_obs": adata.n_obs})[2].loss
    module.tc_weight = 0.0
    torch.manual_seed(0)
    without = module(tensors, loss_kwargs={"n_obs": adata.n_obs})[2].loss
    module.tc_weight = 5.0
    assert torch.isfinite(with_tc) and not torch.isclose(with_tc, without)
    model.save(tmp_path / "tc")
    loaded = SparseShiftVI.load(tmp_path / "tc", adata=adata)
    assert loaded.module.tc_weight == 5.0
    assert loaded.module.tc_query_size == 128
    with pytest.raises(ValueError, match="tc_weight"):
        SparseShiftVI(adata, tc_weight=-1.0)


def test_sparsity_penalty_schedule(adata):
    """``sparsity_penalty_end`` holds the penalty, then anneals it; the history shows it."""
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=N_LATENT, sparsity_penalty=0.5, **SMALL_NET)
    model.train(
        max_epochs=5,
        plan_kwargs={"sparsity_penalty_end": 0.1, "sparsity_anneal_start": 0.5},
        **TRAIN_KWARGS,
    )
    penalty = model.history["sparsity_penalty_train"].to_numpy().ravel()
    assert len(penalty) == 5
    assert penalty[:3] == pytest.approx([0.5, 0.5, 0.5])
    assert penalty[-1] == pytest.approx(0.1)
    assert (np.diff(penalty[2:]) < 0).all()
    assert model.module.prior.sparsity_penalty == pytest.approx(0.1)
    # without a schedule the penalty is constant and not logged
    other = _train(adata, max_epochs=1, sparsity_penalty=0.5)
    assert other.module.prior.sparsity_penalty == 0.5
    assert "sparsity_penalty_train" not in other.history
    with pytest.raises(ValueError, match="sparsity_penalty_end"):
        other.train(max_epochs=1, plan_kwargs={"sparsity_penalty_end": -1.0}, **TRAIN_KWARGS)


def test_direct_effects_start_late_and_can_be_off(adata):
    """Direct effects are zero until ``direct_start`` of training, then learned; the history
    shows when; ``direct_penalty=None`` has none."""
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=N_LATENT, **SMALL_NET)
    model.train(max_epochs=8, plan_kwargs={"direct_start": 0.5}, **TRAIN_KWARGS)
    active = model.history["direct_effects_active_train"].to_numpy().ravel()
    assert active.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    size = model.history["direct_effect_size_train"].to_numpy().ravel()
    assert (size[:4] == 0).all() and size[-1] > 0
    effects = model.get_direct_effects()
    assert list(effects.index) == PERTURBATIONS and list(effects.columns) == list(adata.var_names)
    assert np.abs(effects.to_numpy()).max() > 0
    off = _train(adata, max_epochs=2, direct_penalty=None)
    assert off.module.direct is None and (off.get_direct_effects().to_numpy() == 0).all()
    assert "direct_effects_active_train" not in off.history
    with pytest.raises(ValueError, match="direct_start"):
        off.train(max_epochs=1, plan_kwargs={"direct_start": 1.5}, **TRAIN_KWARGS)


def test_latent_alignment_steps(adata):
    """Default training rotates the latent space three times; the history shows each step."""
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=N_LATENT, **SMALL_NET)
    model.train(max_epochs=10, **TRAIN_KWARGS)
    ratio = model.history["alignment_l1_ratio_train"].dropna().to_numpy().ravel()
    assert len(ratio) == 3
    assert ((ratio > 0) & (ratio <= 1)).all()
    # the rotated model is still a model: finite latents, masks reset from the rotated shifts
    assert np.isfinite(model.get_latent_representation()).all()
    _assert_masks_learned(model.get_target_graph())
    # off on request, and for priors that have no sparse masks
    off = SparseShiftVI(adata, n_latent=N_LATENT, **SMALL_NET)
    off.train(max_epochs=2, align_at=(), **TRAIN_KWARGS)
    assert "alignment_l1_ratio_train" not in off.history
    dense = _train(adata, max_epochs=2, intervention_prior="dense")
    assert "alignment_l1_ratio_train" not in dense.history
    with pytest.raises(ValueError, match="align_at"):
        off.train(max_epochs=1, align_at=(1.5,), **TRAIN_KWARGS)


def test_latent_alignment_moves_onto_sparse_effects(adata):
    """One alignment step leaves the perturbations' mean latents sparser than before."""
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=N_LATENT, **SMALL_NET)
    model.train(max_epochs=4, align_at=(), **TRAIN_KWARGS)
    before = model.get_perturbation_shifts(source="latent").to_numpy()
    model.train(max_epochs=1, align_at=(1.0,), lr=1e-12, intervention_lr_factor=1.0, **TRAIN_KWARGS)
    after = model.get_perturbation_shifts(source="latent").to_numpy()
    l1 = lambda x: np.abs(x).sum()  # noqa: E731
    assert l1(after) < l1(before)
    # a rotation: the norms of the effects are kept
    np.testing.assert_allclose(
        np.linalg.norm(after, axis=1), np.linalg.norm(before, axis=1), rtol=0.05
    )


def test_latent_alignment_noise_floor(adata):
    """``align_noise_z`` keeps edges off where the displacement is within the noise floor."""
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=N_LATENT, **SMALL_NET)
    model.train(max_epochs=2, align_at=(1.0,), plan_kwargs={"align_noise_z": 1e6}, **TRAIN_KWARGS)
    assert (model.get_target_graph().to_numpy() < 0.5).all()  # the reset is the last step
    model.train(max_epochs=2, align_at=(1.0,), plan_kwargs={"align_noise_z": 0.0}, **TRAIN_KWARGS)
    assert (model.get_target_graph().to_numpy() >= 0.5).any(axis=1).all()  # largest unit on
    model.train(
        max_epochs=2, align_at=(1.0,), plan_kwargs={"align_noise_z": None}, **TRAIN_KWARGS
    )  # no floor
    assert (model.get_target_graph().to_numpy() >= 0.5).any(axis=1).all()
    with pytest.raises(ValueError, match="align_noise_z"):
        model.train(max_epochs=1, plan_kwargs={"align_noise_z": -1.0}, **TRAIN_KWARGS)
