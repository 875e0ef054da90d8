"""Sparse and on-disk (backed) AnnData: train, get_* and predict minibatch by minibatch."""

import anndata as ad
import numpy as np
import pytest
import scvi
from scipy import sparse

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI


@pytest.fixture(scope="module")
def screen_file(tmp_path_factory):
    adata = simulate_sparse_shift(n_perturbations=4, n_cells_per_perturbation=50, seed=0)
    adata.X = sparse.csr_matrix(adata.X)
    path = tmp_path_factory.mktemp("backed") / "screen.h5ad"
    adata.write_h5ad(path)
    return path, adata.uns["simulation"]["control_category"]


def test_backed_training_and_outputs_match_in_memory(screen_file):
    path, control = screen_file
    backed = ad.read_h5ad(path, backed="r")
    assert backed.isbacked and not isinstance(backed.X, np.ndarray)
    scvi.settings.seed = 0
    SparseShiftVI.setup_anndata(backed, perturbation_key="perturbation", control_category=control)
    model = SparseShiftVI(backed, n_latent=4)
    model.train(max_epochs=2, batch_size=128, enable_progress_bar=False)
    z_backed = model.get_latent_representation()
    # the same cells, in memory as CSR, give the same latents through the same model
    memory = ad.read_h5ad(path)
    assert sparse.issparse(memory.X)
    z_memory = model.get_latent_representation(memory)
    np.testing.assert_allclose(z_backed, z_memory, atol=1e-5)
    scores = model.get_perturbation_scores()
    assert np.isfinite(scores["elbo"]).all()
    target = str(memory.obs["perturbation"].cat.categories[1])
    pred = model.predict(perturbations=[target])
    assert pred.n_obs == (memory.obs["perturbation"] == control).sum()
    assert np.isfinite(np.asarray(pred.X)).all()


def test_backed_setup_rejects_non_counts(tmp_path):
    adata = simulate_sparse_shift(n_perturbations=2, n_cells_per_perturbation=20, seed=1)
    adata.X = sparse.csr_matrix(np.asarray(adata.X) * -1.0)
    adata.write_h5ad(tmp_path / "bad.h5ad")
    backed = ad.read_h5ad(tmp_path / "bad.h5ad", backed="r")
    with pytest.raises(ValueError, match="negative"):
        SparseShiftVI.setup_anndata(
            backed,
            perturbation_key="perturbation",
            control_category=adata.uns["simulation"]["control_category"],
        )
