"""Training plans and callbacks (only where scvi-tools' own cannot do the job)."""

from ._checkpoint import ResumeCheckpoint
from ._plan import NonFiniteLossError, SparseShiftTrainingPlan

__all__ = ["NonFiniteLossError", "ResumeCheckpoint", "SparseShiftTrainingPlan"]
