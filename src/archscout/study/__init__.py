"""Studies, trials and storage."""
from .storage import Storage
from .study import PendingTrial, Study
from ..trial import Trial, TrialState

__all__ = ["PendingTrial", "Storage", "Study", "Trial", "TrialState"]
