"""Running one claimed trial: the piece the embedded master and every worker share."""

from caviar.runner.trial import Heartbeat, discard_artifacts, run_trial

__all__ = ["Heartbeat", "discard_artifacts", "run_trial"]
