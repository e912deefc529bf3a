"""Running one claimed trial: the piece the embedded master and every worker share."""

from caviar.runner.artifacts import discard_artifacts
from caviar.runner.trial import Heartbeat, run_trial

__all__ = ["Heartbeat", "discard_artifacts", "run_trial"]
