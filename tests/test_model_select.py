"""select_n_latent: a grid of n_latent values scored by held-out ELBO and graph stability."""

import numpy as np
import pytest

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI, select_n_latent
from scvi_causal.model._select import _split

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}


def test_select_n_latent_table_and_rule():
    adata = simulate_sparse_shift(
        n_perturbations=4,
        n_latent=3,
        n_genes=40,
        n_cells_per_perturbation=40,
        n_control_cells=80,
        seed=0,
    )
    SparseShiftVI.setup_anndata(adata)
    table = select_n_latent(
        adata, n_latents=(1, 3), seeds=(0, 1), max_epochs=15, train_kwargs=TRAIN, n_hidden=16
    )
    assert list(table.index) == [1, 3]
    assert {"heldout_elbo", "heldout_elbo_sd", "se_to_best", "graph_stability", "chosen"} <= set(
        table.columns
    )
    assert np.isfinite(table[["heldout_elbo", "se_to_best"]].to_numpy()).all()
    assert ((table["graph_stability"] >= 0) & (table["graph_stability"] <= 1)).all()
    # the one-standard-error rule: the smallest value within one SE of the best
    best = table["heldout_elbo"].max()
    within = table.index[table["heldout_elbo"] >= best - table["se_to_best"]]
    assert table.attrs["n_latent"] == min(within)
    assert table["chosen"].sum() == 1 and table.loc[table.attrs["n_latent"], "chosen"]
    # the user's adata is still set up for models of its own
    SparseShiftVI(adata, n_latent=2, n_hidden=16)


def test_split_keeps_every_label_in_training():
    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"])
    held = _split(labels, 0.2, seed=0)
    assert held[:10].sum() == 2 and held[10:13].sum() == 1 and not held[13]


def test_select_n_latent_errors():
    adata = simulate_sparse_shift(n_perturbations=2, n_cells_per_perturbation=10, seed=0)
    with pytest.raises(ValueError, match="setup_anndata"):
        select_n_latent(adata.copy())
    SparseShiftVI.setup_anndata(adata)
    with pytest.raises(ValueError, match="positive integers"):
        select_n_latent(adata, n_latents=(0, 2))
    with pytest.raises(ValueError, match="validation_size"):
        select_n_latent(adata, validation_size=1.5)
    with pytest.raises(ValueError, match="seeds"):
        select_n_latent(adata, seeds=())
