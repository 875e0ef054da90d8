"""scvi-tools models: ``setup_anndata`` and the user API."""

from ._consensus import consensus_target_graph
from ._select import select_n_latent
from ._sparse_shift_vi import SparseShiftVI

__all__ = ["SparseShiftVI", "consensus_target_graph", "select_n_latent"]
