"""scvi-tools modules: pure :class:`torch.nn.Module` subclasses that never see AnnData."""

from ._sparse_shift_vae import SparseShiftVAE, parse_interventions

__all__ = ["SparseShiftVAE", "parse_interventions"]
