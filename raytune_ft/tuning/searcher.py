"""Ray Tune's `OptunaSearch`, told only values it can compare.

Ray's `OptunaSearch.on_trial_complete` tells Optuna the *last* reported value of every trial as
COMPLETE, including a trial the scheduler stopped at epoch 2 of 6, before its LR step: TPE then
learns that the high-lr trials (low before their step) are bad and samples away from the
winner. Here:

- intermediate values are the scheduler's ranked values (`raytune_ft.tuning.scheduler.ranked_value`:
  post-step metrics or LR-step probe values), reported at step = epoch, never raw pre-step ones;
- a trial stopped before its last epoch is told as PRUNED (TPE ranks pruned trials by how far
  they got and their last intermediate value, apart from complete ones);
- a finished trial is COMPLETE with its final metric; a diverged one COMPLETE with the finite
  worst value it reported; an errored one FAIL (as in Ray).

`optuna.db` therefore shows stopped trials as PRUNED with their probe/post-step values.

With a time budget (`set_time_budget`, `--time-budget`) the searcher is also where a search
stops starting trials: `suggest` answers `Searcher.FINISHED` once `raytune_ft.tuning.budget.TimeBudget`
says the rest of the budget cannot hold another trial and the confirmation; Tune lets the
running trials finish. Its state (started_at, trial lengths) is pickled with the searcher, so
a resumed search keeps the deadline of its first start.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from raytune_ft.epoch_report import is_diverged, stopped_early
from raytune_ft.options import TPE_CONSTANT_LIAR, TPE_MULTIVARIATE, SearchConfig
from raytune_ft.storage import BUDGET_RECORD, OPTUNA_DB, ExperimentStorage
from raytune_ft.tuning.budget import BudgetState, TimeBudget
from raytune_ft.tuning.scheduler import ranked_value


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
        self.time_budget: TimeBudget | None = None
        self._budget_started_at = 0.0
        self._budget_record: str | None = None
        self._trial_started: dict[str, float] = {}

    def set_time_budget(self, budget: TimeBudget, started_at: float,
                        record: str | Path | None = None) -> None:
        """Stop suggesting once `budget` (seconds, counted from `started_at`) says so; keep
        its state in the JSON file `record`."""
        self.time_budget, self._budget_started_at = budget, started_at
        self._budget_record = str(record) if record else None

    def suggest(self, trial_id: str) -> dict | None:
        budget = self.time_budget
        if budget is not None and trial_id not in self._trial_started:
            running = len(self._trial_started) - len(budget.trial_lengths)
            if not budget.can_start(time.time() - self._budget_started_at, running):
                self._write_budget()
                return Searcher.FINISHED
        suggestion = super().suggest(trial_id)
        if budget is not None and suggestion not in (None, Searcher.FINISHED):
            self._trial_started.setdefault(trial_id, time.time())
        return suggestion

    def budget_state(self) -> BudgetState:
        """The budget's state as budget.json keeps it ({} without a budget)."""
        b = self.time_budget
        return {} if b is None else b.to_state(self._budget_started_at, len(self._trial_started))

    def _write_budget(self) -> None:
        if self._budget_record:
            Path(self._budget_record).write_text(json.dumps(self.budget_state(), indent=1))

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
        started = self._trial_started.get(trial_id)
        if self.time_budget is not None and started is not None \
                and trial_id not in self._completed_trials:
            full = bool(result) and not error and not is_diverged(result) \
                and not stopped_early(result)
            self.time_budget.trial_ended(time.time() - started, full)
            self._write_budget()
        self._complete(trial_id, result, error)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        if error or not stopped_early(result) or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        from optuna.trial import TrialState

        # Tune does not pass the result that made the scheduler stop a trial to
        # on_trial_result, only here: record its ranked value (the one it was judged on) first.
        self.on_trial_result(trial_id, result)
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


SAMPLERS = ("tpe", "random", "gp")


def build_sampler(kind: str, seed: int, startup_trials: int, multivariate: bool = False,
                  constant_liar: bool = False, startup_counts_running: bool = False):
    """The Optuna sampler of a search (and of its replay): one place that sets TPE's switches,
    whose defaults differ between Optuna 4 and 5."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if kind == "tpe":
        cls = _startup_counting_running_tpe() if startup_counts_running \
            else optuna.samplers.TPESampler
        return cls(seed=seed, n_startup_trials=startup_trials, multivariate=multivariate,
                   constant_liar=constant_liar)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {kind!r}; one of {SAMPLERS}")


def build_optuna_searcher(kind: str, seed: int, startup_trials: int, metric: str, mode: str,
                          points: list[dict[str, Any]], *, multivariate: bool = TPE_MULTIVARIATE,
                          constant_liar: bool = TPE_CONSTANT_LIAR,
                          startup_counts_running: bool = False, stock: bool = False,
                          **storage: Any) -> OptunaSearch:
    """The Tune searcher of a search and of its replay: `StepFairOptunaSearch` over the
    `kind` sampler, or Ray's own `OptunaSearch` (`stock`, the searcher before step-fairness,
    kept to compare). `storage` is `storage=..., study_name=...` for a study in optuna.db."""
    sampler = build_sampler(kind, seed, startup_trials, multivariate=multivariate,
                            constant_liar=constant_liar,
                            startup_counts_running=startup_counts_running)
    cls = OptunaSearch if stock else StepFairOptunaSearch
    return cls(metric=metric, mode=mode, points_to_evaluate=[dict(p) for p in points],
               sampler=sampler, **storage)


def build_search_algorithm(config: SearchConfig, points: list[dict[str, Any]], metric: str,
                           mode: str, experiment: ExperimentStorage,
                           started_at: float | None = None):
    """`--searcher`: TPE or random (Optuna samplers with their study in optuna.db, the time
    budget's gate), or Tune's grid."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if config.searcher not in ("tpe", "random"):
        # A SearchGenerator ignores TuneConfig.max_concurrent_trials: bound it here.
        return BasicVariantGenerator(points_to_evaluate=points, random_state=config.seed,
                                     max_concurrent=config.max_concurrent)
    import optuna

    # SQLite needs a local file: for a URI it is staged locally and published by PublishFiles
    # (raytune_ft.tuning.trackers); a resume on another machine fetches it back first.
    experiment.fetch(OPTUNA_DB)
    storage = optuna.storages.RDBStorage(f"sqlite:///{experiment.local_path(OPTUNA_DB)}")
    searcher = build_optuna_searcher(config.searcher, config.seed, config.startup_trials, metric,
                                     mode, points, storage=storage, study_name=config.name)
    if config.time_budget is not None:
        searcher.set_time_budget(
            TimeBudget(config.time_budget_s, slots=config.max_concurrent,
                       confirm_runs=config.confirm_runs),
            started_at or time.time(), experiment.local_path(BUDGET_RECORD))
    return searcher


def _startup_counting_running_tpe():
    """TPE whose random start-up phase counts running trials too (a benchmark variant).

    Optuna's TPE counts only finished (COMPLETE/PRUNED) trials towards `n_startup_trials`, so
    with K trials at once the first ~K + n trials are all random (ray issue #52535). This
    variant ends the start-up once finished + running trials reach n (at least one finished):
    `bench/replay.py --designs default_startup_running` measures whether that helps.
    """
    import optuna
    from optuna.trial import TrialState

    class StartupCountingRunningTPESampler(optuna.samplers.TPESampler):
        def _effective_startup(self, study, trial) -> int:
            running = [t for t in study._get_trials(deepcopy=False, states=(TrialState.RUNNING,),
                                                    use_cache=False) if t.number != trial.number]
            return max(1, self._n_startup_trials - len(running))

        def _sample_relative(self, study, trial, search_space):
            return self._with_startup(study, trial, super()._sample_relative,
                                      study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._with_startup(study, trial, super().sample_independent,
                                      study, trial, param_name, param_distribution)

        def _with_startup(self, study, trial, method, *args):
            declared = self._n_startup_trials
            self._n_startup_trials = self._effective_startup(study, trial)
            try:
                return method(*args)
            finally:
                self._n_startup_trials = declared

    return StartupCountingRunningTPESampler
