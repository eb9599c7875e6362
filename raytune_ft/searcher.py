"""Ray Tune's `OptunaSearch`, told only values it can compare.

Ray's `OptunaSearch.on_trial_complete` tells Optuna the *last* reported value of every trial as
COMPLETE, including a trial the scheduler stopped at epoch 2 of 6, before its LR step: TPE then
learns that the high-lr trials (low before their step) are bad and samples away from the
winner. Here:

- intermediate values are the scheduler's ranked values (`raytune_ft.scheduler.ranked_value`:
  post-step metrics or LR-step probe values), reported at step = epoch, never raw pre-step ones;
- a trial stopped before its last epoch is told as PRUNED (TPE ranks pruned trials by how far
  they got and their last intermediate value, apart from complete ones);
- a finished trial is COMPLETE with its final metric; a diverged one COMPLETE with the finite
  worst value it reported; an errored one FAIL (as in Ray).

`optuna.db` therefore shows stopped trials as PRUNED with their probe/post-step values.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from raytune_ft.scheduler import ranked_value


def stopped_early(result: dict[str, Any] | None) -> bool:
    """A result that ends a trial before its schedule's last epoch (not by diverging)."""
    if not result or result.get("diverged"):
        return False
    epoch, max_epochs = result.get("epoch"), result.get("max_epochs")
    return epoch is not None and max_epochs is not None and int(epoch) < int(max_epochs)


class StepFairOptunaSearch(OptunaSearch):
    """`OptunaSearch` that learns ranked values only and marks early-stopped trials PRUNED.

    Takes the same arguments as `ray.tune.search.optuna.OptunaSearch`.

    Example:
        >>> import optuna
        >>> searcher = StepFairOptunaSearch(metric="coco/bbox_mAP", mode="max",
        ...                                 sampler=optuna.samplers.TPESampler(seed=0))
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reported_steps: dict[str, set[int]] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        value = ranked_value(result, self.metric)
        if value is None:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        seen = self._reported_steps.setdefault(trial_id, set())
        if step in seen:  # an epoch redone after a restore: Optuna keeps the first report
            return
        seen.add(step)
        self._ot_trials[trial_id].report(value, step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if error or not stopped_early(result) or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        from optuna.trial import TrialState

        # Tune does not pass the result that made the scheduler stop a trial to
        # on_trial_result, only here: record its ranked value (the one it was judged on) first.
        self.on_trial_result(trial_id, result)
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
