"""Training plans (only where scvi-tools' own cannot do the job)."""

from ._plan import SparseShiftTrainingPlan

__all__ = ["SparseShiftTrainingPlan"]
