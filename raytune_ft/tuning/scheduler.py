"""Early stopping that is fair to the LR step.

Detection mAP jumps when the learning rate steps down, so before its step a high-lr trial looks
worse than a low-lr one that will finish below it (short-horizon bias: Wu et al., ICLR 2018;
Li et al., "Budgeted Training", ICLR 2020). A scheduler that ranks a trial on a pre-step value
against one that has stepped stops the eventual winner. The rule here:

    A trial's value at a rung is its metric only once it has trained at least one epoch after
    its LR step. Before that it is the LR-step probe's value (`raytune_ft.engine.probe`: half an
    epoch at lr x gamma from the rung's state, then discarded), and without a probe the trial
    is not judged at that rung at all.

`StepFairASHA` is Ray Tune's own `AsyncHyperBandScheduler` (rungs at `grace x rf^k` of each
trial's own schedule, `time_attr="progress"`) fed with that value; `ranked_value` is the one
definition the searcher (`raytune_ft.tuning.searcher`) and the replay benchmark use too. With
`probe=False` it is `--scheduler step-after`: rungs only count after each trial's step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from raytune_ft.engine.probe import ProbeSpec, probe_spec
from raytune_ft.epoch_report import has_stepped, is_diverged, probe_value

PROGRESS_ATTR = "progress"
_EPS = 1e-9  # progress e/max_epochs compared with grace * rf^k: never let rounding skip a rung


def ranked_value(result: Mapping[str, Any], metric: str) -> float | None:
    """The value a trial is compared on at this report, or None if it is not comparable yet.

    Post-step (or diverged, or without step information): the metric itself. Pre-step: the
    LR-step probe's value of the same metric if a probe ran after this epoch, else None.
    """
    if metric not in result:
        return None
    if is_diverged(result) or has_stepped(result):
        return float(result[metric])
    probe = probe_value(result, metric)
    return None if probe is None or not math.isfinite(probe) else probe


def rung_fractions(grace: float, reduction_factor: float, max_t: float = 1.0) -> list[float]:
    """Where Ray's ASHA (one bracket) places its rungs: grace * rf^k < max_t."""
    rungs, k = [], 0
    while grace * reduction_factor ** k < max_t - _EPS:
        rungs.append(grace * reduction_factor ** k)
        k += 1
    return rungs


class StepFairASHA(AsyncHyperBandScheduler):
    """Ray Tune's ASHA on progress (epoch / the trial's own max_epochs), ranking each trial on
    `ranked_value`: never on a value from before its LR step.

    Args:
        metric, mode: as for `AsyncHyperBandScheduler`.
        grace_period: first rung, as a fraction of each trial's schedule (0 < grace < 1).
        reduction_factor: keep the top 1/rf at each rung.
        probe: whether trials run the LR-step probe at rungs before their step (`step-probe`);
            False judges a trial only at its first rung after its step (`step-after`).

    Example:
        >>> sched = StepFairASHA(metric="coco/bbox_mAP", mode="max", grace_period=1 / 3)
        >>> sched.rungs
        [0.3333333333333333, 0.6666666666666666]
    """

    def __init__(self, metric: str, mode: str = "max", grace_period: float = 1 / 3,
                 reduction_factor: float = 2.0, probe: bool = True) -> None:
        super().__init__(time_attr=PROGRESS_ATTR, metric=metric, mode=mode, max_t=1.0,
                         grace_period=grace_period, reduction_factor=reduction_factor,
                         brackets=1)
        self.probe = probe
        self.rungs = rung_fractions(grace_period, reduction_factor)

    def _ranked(self, result: dict[str, Any]) -> dict[str, Any] | None:
        value = ranked_value(result, self._metric)
        if value is None or PROGRESS_ATTR not in result:
            return None
        return {**result, self._metric: value, PROGRESS_ATTR: result[PROGRESS_ATTR] + _EPS}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        ranked = self._ranked(result)
        if ranked is None:  # before its LR step and no probe: not comparable, not judged
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, ranked)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        ranked = self._ranked(result or {})
        if ranked is None:
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, ranked)


@dataclass(frozen=True)
class SchedulerRule:
    """What `--scheduler NAME` is: how its Tune scheduler is built and what it needs."""

    build: Callable[[str, str, float, float], TrialScheduler]  # (metric, mode, grace, rf)
    stops_trials: bool  # has rungs: --grace and --reduction-factor apply
    needs_lr_step: bool  # compares trials around their LR step: the config needs a MultiStepLR
    probes: bool  # ranks a trial before its step on the LR-step probe's val score


def _fifo(metric: str, mode: str, grace: float, reduction_factor: float) -> TrialScheduler:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _progress_asha(metric: str, mode: str, grace: float,
                   reduction_factor: float) -> TrialScheduler:
    # The rule before step-fairness (kept to compare): ASHA on progress = epoch / the trial's
    # own max_epochs, ranking raw metrics, pre-step or not.
    return AsyncHyperBandScheduler(time_attr=PROGRESS_ATTR, metric=metric, mode=mode, max_t=1.0,
                                   grace_period=grace, reduction_factor=reduction_factor)


def _step_fair(probe: bool) -> Callable[[str, str, float, float], TrialScheduler]:
    def build(metric: str, mode: str, grace: float, reduction_factor: float) -> TrialScheduler:
        return StepFairASHA(metric=metric, mode=mode, grace_period=grace,
                            reduction_factor=reduction_factor, probe=probe)
    return build


SCHEDULER_RULES: dict[str, SchedulerRule] = {  # the names are options.SCHEDULERS
    "step-probe": SchedulerRule(_step_fair(probe=True), True, True, True),
    "step-after": SchedulerRule(_step_fair(probe=False), True, True, False),
    "progress-asha": SchedulerRule(_progress_asha, True, False, False),
    "fifo": SchedulerRule(_fifo, False, False, False),
}


def search_probe_spec(scheduler: str, grace: float, reduction_factor: float,
                      probe_length: float) -> ProbeSpec | None:
    """The probe a search's trials run: at the rungs of a probing rule, none for the others."""
    if not SCHEDULER_RULES[scheduler].probes:
        return None
    return probe_spec(probe_length, rungs=rung_fractions(grace, reduction_factor))


def build_scheduler(name: str, metric: str, mode: str, grace: float,
                    reduction_factor: float) -> TrialScheduler:
    """The Tune scheduler for `--scheduler NAME` (`SCHEDULER_RULES`)."""
    return SCHEDULER_RULES[name].build(metric, mode, grace, reduction_factor)
