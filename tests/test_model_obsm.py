"""Perturbations given as a cells x perturbations matrix (``perturbation_obsm_key``)."""

import numpy as np
import pandas as pd
import pytest
import scvi
from scipy import sparse

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI
from scvi_causal.model._validation import MATRIX_LABEL_KEY

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}
NAMES = ["p00", "p01", "p02"]


def _screen(seed=0):
    adata = simulate_sparse_shift(
        n_perturbations=3,
        n_cells_per_perturbation=40,
        n_pairs=1,
        n_control_cells=80,
        n_genes=30,
        n_latent=3,
        seed=seed,
    )
    labels = adata.obs["perturbation"].astype(str)
    calls = np.array([[int(n in label.split("+")) for n in NAMES] for label in labels])
    return adata, calls


def test_matrix_reads_as_labels():
    adata, calls = _screen()
    # guide UMI counts, not 0/1: any non-zero entry is a carried perturbation
    umis = calls * np.random.default_rng(0).integers(1, 30, calls.shape)
    adata.obsm["guides"] = pd.DataFrame(umis, index=adata.obs_names, columns=NAMES)
    SparseShiftVI.setup_anndata(adata, perturbation_obsm_key="guides")
    derived = adata.obs[MATRIX_LABEL_KEY].astype(str)
    pd.testing.assert_series_equal(
        derived, adata.obs["perturbation"].astype(str), check_names=False
    )
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=3, n_hidden=16)
    assert model.perturbation_names_ == NAMES
    # the pair "p00+p01" carries both masks: its row of the intervention matrix
    categories = list(model.adata_manager.get_state_registry("perturbation").categorical_mapping)
    row = model.module.intervention_matrix[categories.index("p00+p01")]
    assert row.tolist() == [1.0, 1.0, 0.0]

    # a sparse count matrix with names gives the same labels
    other = adata.copy()
    del other.obsm["guides"]
    other.obsm["m"] = sparse.csr_matrix(umis)
    SparseShiftVI.setup_anndata(other, perturbation_obsm_key="m", perturbation_names=NAMES)
    assert (other.obs[MATRIX_LABEL_KEY].astype(str) == derived).all()


def test_matrix_model_trains_predicts_and_reads_new_data(tmp_path):
    adata, calls = _screen(seed=1)
    adata.obsm["guides"] = pd.DataFrame(calls, index=adata.obs_names, columns=NAMES)
    SparseShiftVI.setup_anndata(adata, perturbation_obsm_key="guides")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=5, batch_size=128, **TRAIN_KWARGS)
    assert model.get_target_graph().index.tolist() == NAMES
    pred = model.predict(perturbations=["p00+p02"])
    assert (pred.obs["perturbation"] == "p00+p02").all()

    # new cells with the matrix only (no derived labels yet): labelled on the fly
    new = adata[:60].copy()
    del new.obs[MATRIX_LABEL_KEY]
    scores = model.get_perturbation_scores(new, n_mc_samples=2)
    assert np.isfinite(scores.to_numpy(dtype=float)).all()
    table = model.evaluate_predictions(
        adata.copy(), perturbations=["p01"], baselines=("control",), energy=False
    )
    assert set(table["method"]) == {"SparseShiftVI", "control"}

    model.save(tmp_path / "m")
    loaded = SparseShiftVI.load(tmp_path / "m", adata=adata)
    assert loaded.perturbation_names_ == NAMES


def test_matrix_query_maps_new_columns():
    adata, calls = _screen(seed=2)
    ref = adata[calls[:, 2] == 0].copy()  # p02 never seen by the reference
    ref.obsm["guides"] = pd.DataFrame(
        calls[calls[:, 2] == 0][:, :2], index=ref.obs_names, columns=NAMES[:2]
    )
    SparseShiftVI.setup_anndata(ref, perturbation_obsm_key="guides")
    scvi.settings.seed = 0
    model = SparseShiftVI(ref, n_latent=3, n_hidden=16)
    model.train(max_epochs=3, batch_size=128, **TRAIN_KWARGS)
    query = adata[calls[:, 2] == 1].copy()
    query.obsm["guides"] = pd.DataFrame(
        calls[calls[:, 2] == 1], index=query.obs_names, columns=NAMES
    )
    mapped = SparseShiftVI.load_query_data(query, model)
    assert mapped.new_perturbations_ == ["p02"]
    assert mapped.perturbation_names_ == NAMES


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, {"perturbation_obsm_key": "absent"}, KeyError, "not a key of adata.obsm"),
        (
            None,
            {"perturbation_obsm_key": "guides", "perturbation_key": "perturbation"},
            ValueError,
            "not both",
        ),
        (None, {"perturbation_names": NAMES}, ValueError, "goes with perturbation_obsm_key"),
        (
            None,
            {"perturbation_obsm_key": "guides", "perturbation_names": ["a", "b", "c"]},
            ValueError,
            "do not match",
        ),
        ("negative", {"perturbation_obsm_key": "guides"}, ValueError, "negative"),
        ("nan", {"perturbation_obsm_key": "guides"}, ValueError, "NaN"),
        ("unused", {"perturbation_obsm_key": "guides"}, ValueError, "carried by no cell"),
        ("delimiter", {"perturbation_obsm_key": "guides"}, ValueError, "delimiter"),
        ("array", {"perturbation_obsm_key": "guides"}, ValueError, "pass perturbation_names"),
        (
            "array",
            {"perturbation_obsm_key": "guides", "perturbation_names": NAMES[:2]},
            ValueError,
            "3 columns but 2",
        ),
        (
            None,
            {"perturbation_obsm_key": "guides", "control_category": None},
            ValueError,
            "rows of zeros",
        ),
    ],
)
def test_matrix_errors(change, kwargs, error, match):
    adata, calls = _screen()
    frame = pd.DataFrame(calls.astype(float), index=adata.obs_names, columns=NAMES)
    if change == "negative":
        frame.iloc[0, 0] = -1
    elif change == "nan":
        frame.iloc[0, 0] = np.nan
    elif change == "unused":
        frame["p09"] = 0.0
    elif change == "delimiter":
        frame = frame.rename(columns={"p00": "p0+0"})
    adata.obsm["guides"] = calls if change == "array" else frame
    with pytest.raises(error, match=match):
        SparseShiftVI.setup_anndata(adata, **kwargs)
