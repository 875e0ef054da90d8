"""scvi-tools models: ``setup_anndata`` and the user API."""

from ._sparse_shift_vi import SparseShiftVI

__all__ = ["SparseShiftVI"]
