"""SparseShiftVI.load_query_data: new perturbations on a frozen reference model."""

import numpy as np
import pytest
import scvi
import torch

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}
REF = ["p00", "p01", "p02", "p03"]
NEW = ["p04", "p05"]


@pytest.fixture(scope="module")
def screen():
    return simulate_sparse_shift(
        n_perturbations=6,
        n_cells_per_perturbation=50,
        n_control_cells=100,
        n_genes=50,
        n_latent=4,
        seed=1,
    )


def _subset(adata, labels):
    sub = adata[adata.obs["perturbation"].isin(labels).to_numpy()].copy()
    sub.obs["perturbation"] = sub.obs["perturbation"].cat.remove_unused_categories()
    return sub


@pytest.fixture(scope="module")
def reference(screen):
    scvi.settings.seed = 0
    ref = _subset(screen, REF + ["control"])
    SparseShiftVI.setup_anndata(ref, perturbation_key="perturbation", control_category="control")
    model = SparseShiftVI(ref, n_latent=4, n_hidden=32)
    model.train(max_epochs=150, batch_size=128, fit_residual=True, **TRAIN_KWARGS)
    return model


@pytest.fixture
def query_adata(screen):
    return _subset(screen, NEW + ["p00"])


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_query_trains_only_new_perturbations(reference, query_adata):
    before_ref = _snapshot(reference.module)
    query = SparseShiftVI.load_query_data(query_adata, reference)
    assert query.new_perturbations_ == NEW
    assert query.perturbation_names_ == REF + NEW
    trainable = {n for n, p in query.module.named_parameters() if p.requires_grad}
    assert trainable == {"prior.shifts", "prior.mask.logits", "direct.effects"}
    start = _snapshot(query.module)
    # the reference's weights were carried over
    for k, v in before_ref.items():
        if k.startswith("prior.") or k in (
            "intervention_matrix",
            "direct.effects",
            "residual_effects",
        ):
            continue
        torch.testing.assert_close(start[k], v)
    ref_rows = slice(0, len(REF))
    torch.testing.assert_close(start["prior.shifts"][ref_rows], before_ref["prior.shifts"])
    torch.testing.assert_close(start["direct.effects"][ref_rows], before_ref["direct.effects"])
    torch.testing.assert_close(start["residual_effects"][ref_rows], before_ref["residual_effects"])
    assert before_ref["direct.effects"].abs().sum() > 0  # the reference has direct effects
    query.train(max_epochs=30, batch_size=64, fit_residual=True, **TRAIN_KWARGS)
    after = _snapshot(query.module)
    for k, v in start.items():
        if k in (
            "prior.shifts",
            "prior.mask.logits",
            "prior.mask.temperature",
            "direct.effects",
            "residual_effects",
        ):
            continue
        torch.testing.assert_close(after[k], v, msg=f"{k} changed during query training")
    torch.testing.assert_close(after["prior.shifts"][ref_rows], start["prior.shifts"][ref_rows])
    torch.testing.assert_close(
        after["prior.mask.logits"][ref_rows], start["prior.mask.logits"][ref_rows]
    )
    torch.testing.assert_close(after["direct.effects"][ref_rows], start["direct.effects"][ref_rows])
    # residual effects: the reference's kept; the query data hold no control cells, so the
    # new perturbations' residuals have nothing to be measured against and stay zero
    torch.testing.assert_close(
        after["residual_effects"][ref_rows], start["residual_effects"][ref_rows]
    )
    assert before_ref["residual_effects"].abs().sum() > 0
    assert after["residual_effects"][len(REF) :].abs().sum() == 0
    new_rows = slice(len(REF), None)
    assert not torch.allclose(after["prior.shifts"][new_rows], start["prior.shifts"][new_rows])
    assert not torch.allclose(after["direct.effects"][new_rows], start["direct.effects"][new_rows])
    # reference masks are held at their mode
    ref_graph = (reference.get_target_graph() > 0.5).astype(float)
    np.testing.assert_array_equal(query.get_target_graph().loc[REF].to_numpy(), ref_graph)
    # the reference model itself is untouched
    for k, v in before_ref.items():
        torch.testing.assert_close(reference.module.state_dict()[k], v)
    scores = query.get_perturbation_scores(n_mc_samples=5)
    assert set(scores.index) == set(NEW + ["p00"])
    assert np.isfinite(scores[["elbo", "iwelbo"]].to_numpy()).all()


def test_query_learns_an_effect_that_improves_the_fit(reference, query_adata):
    """Fitted masks and shifts explain the new perturbations better than no shift at all."""
    scvi.settings.seed = 0
    query = SparseShiftVI.load_query_data(query_adata, reference)
    untrained = query.get_perturbation_scores(n_mc_samples=20)
    query.train(max_epochs=150, batch_size=64, **TRAIN_KWARGS)
    trained = query.get_perturbation_scores(n_mc_samples=20)
    gain = trained.loc[NEW, "iwelbo"] - untrained.loc[NEW, "iwelbo"]
    assert gain.mean() > 1.0, (trained, untrained)
    # and the query's own cells of a reference perturbation are scored as before
    assert abs(trained.loc["p00", "iwelbo"] - untrained.loc["p00", "iwelbo"]) < 1.0


def test_query_fixed_masks_and_save_load(reference, query_adata, tmp_path):
    query = SparseShiftVI.load_query_data(query_adata, reference, fix_masks=True)
    assert {n for n, p in query.module.named_parameters() if p.requires_grad} == {
        "prior.shifts",
        "direct.effects",
    }
    query.train(max_epochs=2, **TRAIN_KWARGS)
    graph = query.get_target_graph()
    assert (graph.loc[NEW] == 1.0).all().all()
    query.save(tmp_path / "query", save_anndata=True)
    loaded = SparseShiftVI.load(tmp_path / "query")
    np.testing.assert_allclose(loaded.get_target_graph().to_numpy(), graph.to_numpy())
    np.testing.assert_allclose(
        loaded.get_perturbation_shifts().to_numpy(), query.get_perturbation_shifts().to_numpy()
    )
    # a saved reference directory works as the reference too
    reference.save(tmp_path / "ref")
    again = SparseShiftVI.load_query_data(query_adata.copy(), tmp_path / "ref")
    assert again.new_perturbations_ == NEW


def test_query_errors(reference, query_adata):
    with pytest.raises(ValueError, match="genes do not match"):
        SparseShiftVI.load_query_data(query_adata[:, :-1].copy(), reference)
    shuffled = query_adata[:, ::-1].copy()
    with pytest.raises(ValueError, match="genes do not match"):
        SparseShiftVI.load_query_data(shuffled, reference)
    # with the option, a reordered query is brought into the reference order
    query = SparseShiftVI.load_query_data(shuffled, reference, inplace_subset_query_vars=True)
    assert list(query.adata.var_names) == list(reference.adata.var_names)
    bad = query_adata.copy()
    del bad.obs["perturbation"]
    with pytest.raises(KeyError, match="perturbation_key"):
        SparseShiftVI.load_query_data(bad, reference)
    negative = query_adata.copy()
    negative.X[0, 0] = -1
    with pytest.raises(ValueError):
        SparseShiftVI.load_query_data(negative, reference)


def test_reference_rejects_unseen_perturbations_but_query_accepts(reference, query_adata):
    with pytest.raises(ValueError, match="not seen by the model"):
        reference.get_perturbation_scores(query_adata)
    query = SparseShiftVI.load_query_data(query_adata, reference)
    assert query.get_perturbation_scores(n_mc_samples=2).shape[0] == 3


def test_query_of_a_plain_vae_has_nothing_to_train(screen, query_adata):
    ref = _subset(screen, REF + ["control"])
    SparseShiftVI.setup_anndata(ref, perturbation_key="perturbation", control_category="control")
    vae = SparseShiftVI(ref, n_latent=4, n_hidden=16, intervention_prior="none")
    vae.train(max_epochs=1, **TRAIN_KWARGS)
    query = SparseShiftVI.load_query_data(query_adata, vae)
    assert not any(p.requires_grad for p in query.module.parameters())
    query.train()
    assert query.get_perturbation_scores(n_mc_samples=2).shape[0] == 3


def test_query_appends_new_perturbations_after_the_reference(reference, query_adata):
    """A new name that sorts before the reference's goes after them: the reference's rows stay
    first and keep their values, and combinations of new and known members are encoded."""
    adata = query_adata.copy()
    labels = adata.obs["perturbation"].astype(str)
    labels = labels.replace({"p04": "a_new", "p05": "a_new+p01"})
    adata.obs["perturbation"] = labels.astype("category")
    query = SparseShiftVI.load_query_data(adata, reference)
    assert query.perturbation_names_ == REF + ["a_new"]
    assert query.new_perturbations_ == ["a_new"]
    ref_shifts = reference.module.prior.shifts.detach()
    assert torch.equal(query.module.prior.shifts.detach()[: len(REF)], ref_shifts)
    encoded = query.perturbation_encoding.encode(["a_new+p01", "p00", "control"])
    assert encoded.tolist() == [[0, 1, 0, 0, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    # the module's matrix agrees with the encoding, category by category
    categories = query.adata_manager.get_state_registry("perturbation").categorical_mapping
    np.testing.assert_array_equal(
        query.module.intervention_matrix.cpu().numpy(),
        query.perturbation_encoding.encode(categories),
    )
