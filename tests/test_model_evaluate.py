"""SparseShiftVI.evaluate_predictions: the model against baselines on held-out cells."""

import numpy as np
import pytest
import scvi

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.metrics import compare_methods
from scvi_causal.model import SparseShiftVI

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture(scope="module")
def split():
    adata = simulate_sparse_shift(
        protocol="hard",
        n_perturbations=5,
        n_pairs=3,
        n_genes=60,
        n_latent=4,
        n_control_cells=300,
        n_cells_per_perturbation=(60, 80),
        seed=1,
    )
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    pairs = sorted(p for p in set(labels) if "+" in p)
    held = pairs[:2]
    rng = np.random.default_rng(0)
    test = np.isin(labels, held)
    for label in set(labels) - set(held):  # half of every other label's cells held out too
        cells = np.flatnonzero(labels == label)
        test[rng.choice(cells, len(cells) // 2, replace=False)] = True
    train, heldout = adata[~test].copy(), adata[test].copy()
    for a in (train, heldout):
        a.obs["perturbation"] = a.obs["perturbation"].cat.remove_unused_categories()
    SparseShiftVI.setup_anndata(train, control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(train, n_latent=4, n_hidden=32)
    model.train(max_epochs=60, batch_size=256, fit_residual=True, **TRAIN_KWARGS)
    return model, heldout, held


def test_table_holds_every_method_and_perturbation(split):
    model, heldout, held = split
    table = model.evaluate_predictions(
        heldout,
        energy=False,
        extra_shifts=("model",),
        residual_ablation=True,
        baselines=("control", "additive", "linear", "latent_additive"),
    )
    labels = sorted(set(heldout.obs["perturbation"].astype(str)) - {"control"})
    assert set(table["method"]) == {
        "SparseShiftVI",
        "SparseShiftVI-model",
        "SparseShiftVI-no-residual",
        "control",
        "additive",
        "linear",
        "latent_additive",
    }
    # every member has cells of its own: the default reading is latent arithmetic, plus the
    # residual effects
    default = table[table["method"] == "SparseShiftVI-no-residual"].set_index("perturbation")
    latent = table[table["method"] == "latent_additive"].set_index("perturbation")
    np.testing.assert_allclose(default["pearson_delta_all"], latent["pearson_delta_all"])
    with_residual = table[table["method"] == "SparseShiftVI"].set_index("perturbation")
    assert not np.allclose(with_residual["pearson_delta_all"], latent["pearson_delta_all"])
    for method, sub in table.groupby("method"):
        assert sorted(sub["perturbation"]) == labels, method
    # the control baseline predicts no change: Pearson 0, recall 0
    ctrl = table[table["method"] == "control"]
    assert (ctrl["pearson_delta_all"] == 0).all() and (ctrl["top_k_recall"] == 0).all()
    assert (ctrl["predicted_delta_norm"] == 0).all()
    # no perturbation comes out of the model as an exact copy of control
    assert (table.loc[table["method"] == "SparseShiftVI", "predicted_delta_norm"] > 0.01).all()
    assert (table["observed_delta_norm"] > 0).all()
    # seen singles: the model's change tracks the observed one far better than no change
    singles = table[
        (table["method"] == "SparseShiftVI") & ~table["perturbation"].str.contains("+", regex=False)
    ]
    assert singles["pearson_delta_all"].mean() > 0.5
    assert (table["n_test_cells"] > 0).all()
    summary = compare_methods(table, reference="SparseShiftVI", metrics=("pearson_delta_all",))
    row = summary[summary["baseline"] == "control"].iloc[0]
    assert row["mean_difference"] > 0.5


def test_unseen_pairs_extra_predictions_source_and_energy(split):
    model, heldout, held = split
    zero = np.zeros(heldout.n_vars)
    source = model.adata[(model.adata.obs["perturbation"] == "control").to_numpy()][:50]
    table = model.evaluate_predictions(
        heldout,
        perturbations=held,
        baselines=("additive",),
        extra_predictions={"mine": {held[0]: zero}},
        source=source,
        max_source_cells=50,
    )
    assert set(table["method"]) == {"SparseShiftVI", "additive", "mine"}
    assert set(table.loc[table["method"] == "mine", "perturbation"]) == {held[0]}
    model_rows = table[table["method"] == "SparseShiftVI"]
    assert np.isfinite(model_rows["energy_distance"]).all()
    assert table.loc[table["method"] == "additive", "energy_distance"].isna().all()


def test_errors(split):
    model, heldout, held = split
    with pytest.raises(ValueError, match="Unknown baselines"):
        model.evaluate_predictions(heldout, baselines=("oracle",))
    with pytest.raises(ValueError, match="No test cells"):
        model.evaluate_predictions(heldout, perturbations=["p00+p04"], energy=False)
    with pytest.raises(ValueError, match="genes"):
        model.evaluate_predictions(heldout[:, :10].copy(), energy=False)
    bad = heldout.copy()
    del bad.obs["perturbation"]
    with pytest.raises(KeyError, match="perturbation"):
        model.evaluate_predictions(bad, energy=False)
    not_controls = model.adata[(model.adata.obs["perturbation"] != "control").to_numpy()]
    with pytest.raises(ValueError, match="control cells only"):
        model.evaluate_predictions(heldout, source=not_controls, energy=False)
