"""Replay measured learning curves through Ray Tune's real schedulers and searchers, with K
trials at once, and score what the pipeline *returns*.

Judging a search design on live training costs hours per repeat; replaying a table of real
per-epoch val curves (`raytune_ft.simulate.table`, several seeds per config) through the
same scheduler, searcher, confirmation and time-budget rule a search uses takes a fraction of a second per search, so a design is judged over hundreds of
seeds (Syne Tune's `simulated_tabular_backend` is the model).

How a replayed search runs (`replay`):
- K trial slots run in simulated wall-clock. Each trial start, epoch and LR-step probe is
  charged its measured cost (in epochs of one slot); results of the K running trials arrive
  interleaved by simulated time.
- Calls follow Tune's `TuneController` with a searcher bounded to K trials: `searcher.suggest`
  whenever a slot is free (while the others are still running), `scheduler.on_trial_add`, per
  result `scheduler.on_trial_result` then (unless STOP) `searcher.on_trial_result`, and at the
  end `scheduler.on_trial_complete` and `searcher.on_trial_complete` with the last result.
- Each trial draws one seed's curve of its config: the value a search sees is one noisy run.
- New trials start under `raytune_ft.tuning.budget.TimeBudget`, the rule `--time-budget` runs: the
  device budget B (slot-epochs) is B / K of wall-clock; no trial starts once the rest cannot
  hold an average trial plus the confirmation's expected length; running trials finish.
- The confirmation is replayed with the pipeline's own code (`confirm.pick_candidates`, the
  winner rule): the top configs and the recipe re-run on table seeds their search trial did not
  use, their cost charged to the same budget (skipped, as live, when it no longer fits).
- The *true quality* of the returned config is its mean over all the table's seeds of the
  value the pipeline keeps (the best epoch's): what a user gets on seeds the search never saw.

Nothing is interpolated: a sampled point is mapped to the table's config with the nearest lr
(log scale) and the exact (max_epochs, LR-step epoch) the space's constraints give it.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any

from raytune_ft.engine.probe import probe_epochs
from raytune_ft.epoch_report import epoch_of, epoch_report, is_diverged, probe_key
from raytune_ft.simulate.design import Design, make_scheduler, make_searcher, probe_rungs
from raytune_ft.simulate.table import ConfigKey, Curve, CurveTable
from raytune_ft.tuning.budget import TimeBudget
from raytune_ft.tuning.space import SearchSpace


@dataclass
class TrialLog:
    key: ConfigKey
    epochs_run: int
    finished: bool
    probes: int
    seed: int = 0
    best: float = -math.inf
    diverged: bool = False
    started: float = 0.0
    ended: float | None = None  # wall-clock when it ended; None while it runs


@dataclass
class ReplayRun:
    """One design, one seed: what the search saw, when, and what the pipeline returned."""

    design: str
    seed: int
    budget: float  # device budget in slot-epochs
    slots: int
    trace: list[tuple[float, float]]  # (device trial-epochs spent, best value seen so far)
    trials: list[TrialLog]
    incumbent: list[tuple[float, ConfigKey]] = field(default_factory=list)  # (wall, best seen)
    returned: ConfigKey | None = None
    confirmed: bool = False
    search_wall: float = 0.0
    wall: float = 0.0  # search + confirmation, in epochs of one slot
    device: float = 0.0  # trial-epochs of all slots, confirmation included
    stopped_because: str | None = None
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (wall, call, trial)
    study: Any = None  # the searcher's Optuna study: what the sampler learned

    @property
    def best(self) -> float:
        return self.trace[-1][1] if self.trace else float("nan")

    def spent_to_reach(self, target: float) -> float:
        return next((spent for spent, best in self.trace if best >= target), math.inf)


class _Trial:
    """What the schedulers read of a Tune trial: its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


@dataclass
class _Running:
    trial: _Trial
    curve: Curve
    log: TrialLog
    results: Any  # iterator of (result, cost)
    last: dict[str, Any] = field(default_factory=dict)


def replay(design: Design, table: CurveTable, space: SearchSpace, budget: float, seed: int,
           points: list[dict[str, Any]] | None = None, slots: int = 1) -> ReplayRun:
    """Run `design` on `table` with `slots` trials at once and a device budget of `budget`
    slot-epochs (`budget / slots` of wall-clock), confirmation included; return what happened
    and what the pipeline returned."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from raytune_ft.experiment.rows import best_row

    metric = table.metric
    rng = random.Random(seed)
    seeds = table.seeds
    if design.confirm:
        table.require_seeds(design.seeds + 1, f"a confirmation over "
                            f"{design.seeds} seed(s) the search trial did not use")
    scheduler = make_scheduler(design, metric)
    searcher = make_searcher(design, metric, seed, points or [])
    searcher.set_search_properties(metric, "max", space.to_tune("tpe"))
    rungs = probe_rungs(scheduler)
    clock = TimeBudget(total=budget / slots, slots=slots, confirm_runs=design.confirm_runs)
    run = ReplayRun(design.name, seed, budget, slots, [], [], study=searcher._ot_study)
    running: dict[str, _Running] = {}
    heap: list[tuple[float, int, str]] = []
    now, best, tick = 0.0, -math.inf, 0
    searching = True

    def push(state: _Running, at: float) -> None:
        nonlocal tick
        step = next(state.results, None)
        if step is None:
            return
        result, cost = step
        state.last = result
        tick += 1
        heapq.heappush(heap, (at + cost, tick, state.trial.trial_id))
        run.device += cost

    def fill() -> None:
        nonlocal searching
        while searching and len(running) < slots:
            if not clock.can_start(now, len(running)):
                run.stopped_because = clock.stopped_because
                searching = False
                return
            trial = _Trial(f"replay_{seed}_{len(run.trials):04d}")
            config = searcher.suggest(trial.trial_id)
            run.events.append((now, "suggest", trial.trial_id))
            if config is None or config == Searcher.FINISHED:
                searching = False
                return
            curve = table.curves[table.key_for(config)][rng.choice(seeds)]
            scheduler.on_trial_add(None, trial)
            log = TrialLog(curve.key, 0, False, 0, seed=curve.seed, started=now)
            run.trials.append(log)
            probe_at = set(probe_epochs(rungs, curve.max_epochs, curve.step))
            state = _Running(trial, curve, log, _charged(table, curve, probe_at))
            running[trial.trial_id] = state
            push(state, now)

    fill()
    while heap:
        now, _, trial_id = heapq.heappop(heap)
        state = running[trial_id]
        result, log = state.last, state.log
        log.epochs_run = epoch_of(result)
        log.probes += int(probe_key(metric) in result)
        log.best = max(log.best, result[metric])
        best = max(best, result[metric])
        run.trace.append((run.device, best))
        run.events.append((now, "result", trial_id))
        result = {**result, "training_iteration": epoch_of(result)}
        decision = scheduler.on_trial_result(None, state.trial, result)
        ended = (decision == TrialScheduler.STOP or is_diverged(result)
                 or epoch_of(result) == state.curve.max_epochs)
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial_id, result)
        if not ended:
            push(state, now)
            continue
        log.diverged = is_diverged(result)
        log.finished = log.epochs_run == state.curve.max_epochs and not log.diverged
        log.ended = now
        scheduler.on_trial_complete(None, state.trial, result)
        searcher.on_trial_complete(trial_id, result=result)
        run.events.append((now, "complete", trial_id))
        del running[trial_id]
        clock.trial_ended(now - log.started, log.finished)
        incumbent = best_row(_rows(run.trials), "max")
        if incumbent is not None:
            run.incumbent.append((now, run.trials[int(incumbent.trial_id)].key))
        fill()
    run.search_wall = run.wall = now
    _return_config(design, table, run, clock, rng)
    return run


def _charged(table: CurveTable, curve: Curve, probe_at: set[int]):
    """Each report of `curve` with its cost in epochs: the start on the first, a probe where
    one runs."""
    for result in curve_results(table, curve, probe_at):
        cost = 1.0 + (table.probe_cost if probe_key(table.metric) in result else 0.0)
        yield result, cost + (table.start_cost if epoch_of(result) == 1 else 0.0)


def _rows(trials: list[TrialLog]):
    """The replayed trials that ended, as the pipeline's own result rows (id = index)."""
    from raytune_ft.experiment.rows import TrialRow

    return [TrialRow(str(i), i, {"key": t.key}, {},
                     "diverged" if t.diverged else "finished" if t.finished else "stopped", "",
                     t.epochs_run, t.key[1], t.best if math.isfinite(t.best) else None, None,
                     None, 0.0)
            for i, t in enumerate(trials) if t.ended is not None]


def _return_config(design: Design, table: CurveTable, run: ReplayRun, clock: TimeBudget,
                   rng: random.Random) -> None:
    """What the pipeline hands the user, by the pipeline's own rule (`returned_config`): the
    confirmation's winner when one ran, else the search's best trial."""
    from raytune_ft.experiment.confirmation import (Confirmation, pick_candidates,
                                                    returned_config)

    rows = _rows(run.trials)
    searched = returned_config(rows, "max")
    run.returned = tuple(searched.point["key"]) if searched else None
    finished = sum(1 for r in rows if r.status == "finished")
    if not design.confirm or not finished or not clock.confirmation_fits(run.search_wall):
        return
    candidates = pick_candidates(rows, min(design.confirm, finished), "max")
    jobs = []
    for c in candidates:  # seeds its search trial did not use
        trial = run.trials[int(c.source_trial)]
        fresh = rng.sample([s for s in table.seeds if s != trial.seed], design.seeds)
        runs = [table.curves[trial.key][s] for s in fresh]
        c.values = {i: r.best for i, r in enumerate(runs)}
        jobs += [table.start_cost + r.max_epochs for r in runs]
    # the runs spread over the slots, longest first (Tune's FIFO over a grid, K at a time)
    ends = [run.search_wall] * run.slots
    for cost in sorted(jobs, reverse=True):
        i = min(range(run.slots), key=ends.__getitem__)
        ends[i] += cost
    run.device += sum(jobs)
    run.wall = max(ends)
    confirmed = returned_config(rows, "max",
                                Confirmation(list(range(design.seeds)), candidates, "max"))
    if confirmed is not None and confirmed.confirmed is not None:
        run.returned = tuple(confirmed.point["key"])
        run.confirmed = True


def curve_results(table: CurveTable, curve: Curve, probe_at: set[int]):
    """The reports a trial of `curve` makes, epoch by epoch, as `RayTrainReportHook` makes
    them: metric, epoch, progress, LR-step epoch, divergence and the probe where one runs."""
    max_epochs = curve.max_epochs
    for epoch, value in enumerate(curve.values, start=1):
        diverged = curve.diverged and epoch == len(curve.values)
        result = epoch_report({table.metric: value}, epoch=epoch, max_epochs=max_epochs,
                              lr_step_epoch=curve.step, diverged=diverged)
        if epoch in probe_at and not diverged:
            result[probe_key(table.metric)] = table.probes[(curve.lr, epoch, curve.seed)]
        yield result


