"""Replay measured learning curves through Ray Tune's real schedulers and searchers.

Judging an early-stopping rule on live training costs hours per repeat; replaying a table of
real per-epoch val curves (`bench/curves/demo.json`, made by `bench/measure_curves.py`) through
the same scheduler and searcher objects a search uses takes milliseconds per trial, so a design
can be judged over many seeds (Syne Tune's `simulated_tabular_backend` is the model).

The replay calls the scheduler and searcher exactly as Tune's `TuneController` does for one
trial at a time (`--max-concurrent 1`, the demo's setting): `searcher.suggest`,
`scheduler.on_trial_add`, per epoch `scheduler.on_trial_result` then (unless STOP)
`searcher.on_trial_result`, and at the end `scheduler.on_trial_complete` and
`searcher.on_trial_complete` with the last result. Time is simulated and counted in
trial-epochs: each trial start, epoch and LR-step probe is charged its measured cost, and a
design runs as many trials as fit in the budget.

Nothing is interpolated: a sampled point is mapped to the table's config with the nearest lr
(log scale) and the exact (max_epochs, LR-step epoch) the space's constraints give it.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytune_ft.probe import PROBE_PREFIX, probe_epochs
from raytune_ft.space import SearchSpace, step_epoch


@dataclass(frozen=True)
class Curve:
    """One measured run: its schedule and its per-epoch metric. A run that diverged ends at the
    epoch it diverged in, with the finite worst value the trial reported."""

    lr: float
    max_epochs: int
    step: int
    values: tuple[float, ...]
    diverged: bool = False


@dataclass
class CurveTable:
    """Measured curves keyed by (lr, max_epochs, step), probe values keyed by (lr, epoch), and
    the measured costs (in epochs) of a trial start and of one probe."""

    curves: dict[tuple[float, int, int], Curve]
    probes: dict[tuple[float, int], float] = field(default_factory=dict)
    start_cost: float = 0.5
    probe_cost: float = 0.5
    metric: str = "coco/bbox_mAP"

    @property
    def lrs(self) -> list[float]:
        return sorted({c.lr for c in self.curves.values()})

    def best(self) -> tuple[float, Curve]:
        curve = max(self.curves.values(), key=lambda c: max(c.values))
        return max(curve.values), curve

    def curve_for(self, config: dict[str, Any]) -> Curve:
        """The measured curve of a sampled point: nearest lr, the exact LR step the space's
        `step_frac` constraint gives for its `max_epochs`."""
        max_epochs = int(config["max_epochs"])
        return self.lookup(float(config["lr"]), max_epochs,
                           step_epoch(float(config["step_frac"]), max_epochs))

    def lookup(self, lr: float, max_epochs: int, step: int) -> Curve:
        nearest = min(self.lrs, key=lambda v: abs(math.log(v) - math.log(lr)))
        key = (nearest, int(max_epochs), int(step))
        if key not in self.curves:
            raise KeyError(f"no measured curve for lr={nearest:g}, max_epochs={max_epochs}, "
                           f"LR step at epoch {step}")
        return self.curves[key]

    @classmethod
    def from_json(cls, *paths: str | Path, metric: str = "coco/bbox_mAP") -> "CurveTable":
        """Read bench/curves/demo.json (and more tables of the same set-up to merge with it):
        curves, probe values and costs, all measured."""
        runs = [run for path in paths
                for run in json.loads(Path(path).read_text())["configs"].values()]
        curves, probes = {}, {}
        epoch_s, start_s, probe_s = [], [], []
        for run in runs:
            epochs = run["epochs"]
            values = tuple(float(e[metric]) for e in epochs)
            diverged = bool(epochs and epochs[-1].get("diverged"))
            if len(values) != run["max_epochs"] and not diverged:
                continue  # an unfinished measurement is not a curve
            key = (float(run["lr"]), int(run["max_epochs"]), int(run["step"]))
            curves[key] = Curve(*key, values=values, diverged=diverged)
            for e in epochs:
                if PROBE_PREFIX + metric in e:
                    probes[(key[0], int(e["epoch"]))] = float(e[PROBE_PREFIX + metric])
                    probe_s.append(float(e["probe_seconds"]))
            times = [float(e["reported_at"]) for e in epochs if not e.get("diverged")]
            if not run.get("probed"):
                epoch_s += [b - a for a, b in zip(times, times[1:])]
            start_s.append(float(epochs[0]["train_started_at"]) - float(run["started_at"]))
        # an lr measured for only some schedules (a measurement still running) is left out, so
        # every sampled point of a kept lr has its curve
        schedules = {(m, s) for _, m, s in curves}
        complete = {lr for lr, _, _ in curves
                    if all((lr, m, s) in curves for m, s in schedules)}
        curves = {k: v for k, v in curves.items() if k[0] in complete}
        epoch = statistics.median(epoch_s) if epoch_s else 1.0
        return cls(curves, probes,
                   start_cost=statistics.median(start_s) / epoch if start_s else 0.5,
                   probe_cost=statistics.median(probe_s) / epoch if probe_s else 0.5,
                   metric=metric)


@dataclass(frozen=True)
class Design:
    """A scheduler + searcher pairing to replay (see `make_scheduler` / `make_searcher`)."""

    name: str
    scheduler: str  # step-probe | step-after | progress-asha | fifo
    searcher: str  # tpe | random
    grace: float = 1 / 3
    reduction_factor: float = 2.0
    stock_optuna: bool = False  # Ray's own OptunaSearch (the old searcher) instead of ours
    n_startup_trials: int = 3  # TPE's random start-up trials (raytune_ft's --startup-trials)
    multivariate: bool = False  # TPE modelling the parameters jointly


@dataclass
class TrialLog:
    key: tuple[float, int, int]
    epochs_run: int
    finished: bool
    probes: int


@dataclass
class ReplayRun:
    """One design, one seed: the best-so-far after each charged step and each trial's fate."""

    design: str
    seed: int
    budget: float
    trace: list[tuple[float, float]]  # (trial-epochs spent, best value so far)
    trials: list[TrialLog]

    @property
    def best(self) -> float:
        return self.trace[-1][1] if self.trace else float("nan")

    def spent_to_reach(self, target: float) -> float:
        return next((spent for spent, best in self.trace if best >= target), math.inf)


def make_scheduler(design: Design, metric: str):
    from raytune_ft.scheduler import build_scheduler

    return build_scheduler(design.scheduler, metric, "max", design.grace, design.reduction_factor)


def probe_rungs(scheduler) -> list[float]:
    """The rungs at which trials probe under `scheduler` (none unless it is step-probe)."""
    return scheduler.rungs if getattr(scheduler, "probe", False) else []


def make_searcher(design: Design, metric: str, seed: int, points: list[dict[str, Any]]):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from raytune_ft.searcher import StepFairOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=design.n_startup_trials,
                                             multivariate=design.multivariate)
               if design.searcher == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    cls = OptunaSearch if design.stock_optuna else StepFairOptunaSearch
    return cls(metric=metric, mode="max", points_to_evaluate=[dict(p) for p in points],
               sampler=sampler)


class _Trial:
    """What the schedulers read of a Tune trial: its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def replay(design: Design, table: CurveTable, space: SearchSpace, budget: float, seed: int,
           points: list[dict[str, Any]] | None = None) -> ReplayRun:
    """Run `design` on `table` until `budget` trial-epochs are spent; return the trace."""
    from ray.tune.schedulers import TrialScheduler

    metric = table.metric
    scheduler = make_scheduler(design, metric)
    searcher = make_searcher(design, metric, seed, points or [])
    searcher.set_search_properties(metric, "max", space.to_tune("tpe"))
    rungs = probe_rungs(scheduler)
    spent, best = 0.0, -math.inf
    trace: list[tuple[float, float]] = []
    trials: list[TrialLog] = []
    n = 0
    while spent + table.start_cost < budget:
        trial = _Trial(f"replay_{seed}_{n:04d}")
        n += 1
        curve = table.curve_for(searcher.suggest(trial.trial_id))
        max_epochs = curve.max_epochs
        probe_at = set(probe_epochs(rungs, max_epochs, curve.step))
        scheduler.on_trial_add(None, trial)
        spent += table.start_cost
        log = TrialLog((curve.lr, max_epochs, curve.step), 0, False, 0)
        trials.append(log)
        result: dict[str, Any] = {}
        for result in curve_results(table, curve, probe_at):
            epoch, diverged = result["epoch"], bool(result["diverged"])
            probed = PROBE_PREFIX + metric in result
            cost = 1.0 + (table.probe_cost if probed else 0.0)
            if spent + cost > budget:
                return ReplayRun(design.name, seed, budget, trace, trials)
            spent += cost
            result["training_iteration"] = epoch
            log.probes += int(probed)
            log.epochs_run = epoch
            best = max(best, result[metric])
            trace.append((spent, best))
            decision = scheduler.on_trial_result(None, trial, result)
            if decision == TrialScheduler.STOP or diverged:  # a diverged trial ends itself
                break
            searcher.on_trial_result(trial.trial_id, result)
        log.finished = log.epochs_run == max_epochs
        scheduler.on_trial_complete(None, trial, result)
        searcher.on_trial_complete(trial.trial_id, result=result)
    return ReplayRun(design.name, seed, budget, trace, trials)


def table_trainable(config: dict[str, Any], table: CurveTable, rungs: list[float]) -> None:
    """A Tune function trainable that reports a measured curve instead of training (for a real
    `tune.Tuner` over the table: `tune.with_parameters(table_trainable, table=..., rungs=...)`;
    `rungs` as `probe_rungs` gives them)."""
    from ray import tune

    curve = table.curve_for(config)
    for result in curve_results(table, curve,
                                set(probe_epochs(rungs, curve.max_epochs, curve.step))):
        tune.report(result)


def curve_results(table: CurveTable, curve: Curve, probe_at: set[int]):
    """The reports a trial of `curve` makes, epoch by epoch, as `RayTrainReportHook` makes
    them: metric, epoch, progress, LR-step epoch, divergence and the probe where one runs."""
    max_epochs = curve.max_epochs
    for epoch, value in enumerate(curve.values, start=1):
        diverged = curve.diverged and epoch == len(curve.values)
        result = {table.metric: value, "epoch": epoch, "max_epochs": max_epochs,
                  "progress": epoch / max_epochs, "lr_step_epoch": curve.step,
                  "diverged": float(diverged)}
        if epoch in probe_at and not diverged:
            result[PROBE_PREFIX + table.metric] = table.probes[(curve.lr, epoch)]
        yield result


def summarize(runs: list[ReplayRun], table: CurveTable) -> dict[str, Any]:
    """Median and IQR of the final best, trial-epochs to reach 95% of the table's best, and how
    often the table's best config, once sampled, ran to its end."""
    table_best, best_curve = table.best()
    target = 0.95 * table_best
    bests = sorted(r.best for r in runs)
    to95 = sorted(r.spent_to_reach(target) for r in runs)
    best_key = (best_curve.lr, best_curve.max_epochs, best_curve.step)
    sampled = [r for r in runs if any(t.key == best_key for t in r.trials)]
    survived = [r for r in sampled if any(t.key == best_key and t.finished for t in r.trials)]
    median95 = _quantile(to95, 0.5)
    return {
        "median_best": _quantile(bests, 0.5),
        "iqr_best": [_quantile(bests, 0.25), _quantile(bests, 0.75)],
        "median_epochs_to_95": None if math.isinf(median95) else median95,
        "p_best_survives": (len(survived) / len(sampled)) if sampled else None,
        "mean_trials": statistics.mean(len(r.trials) for r in runs),
        "share_reaching_95": sum(1 for v in to95 if not math.isinf(v)) / len(runs),
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile that keeps infinities (a seed that never got there)."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    a, b = sorted_values[lo], sorted_values[hi]
    if math.isinf(a) or math.isinf(b):
        return b if pos - lo > 0 else a
    return a + (b - a) * (pos - lo)
