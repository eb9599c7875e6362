"""Replay measured learning curves through Ray Tune's real schedulers and searchers, with K
trials at once, and score what the pipeline *returns*.

Judging a search design on live training costs hours per repeat; replaying a table of real
per-epoch val curves (`bench/curves/demo.json`, made by `bench/measure_curves.py`, several
seeds per config) through the same scheduler, searcher, confirmation and time-budget rule a
search uses takes a fraction of a second per search, so a design is judged over hundreds of
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
- New trials start under `raytune_ft.budget.TimeBudget`, the rule `--time-budget` runs: the
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
import json
import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytune_ft.budget import TimeBudget, confirmation_runs
from raytune_ft.errors import UserError
from raytune_ft.engine.probe import PROBE_PREFIX, probe_epochs
from raytune_ft.options import TPE_CONSTANT_LIAR, TPE_MULTIVARIATE, SearchConfig
from raytune_ft.tuning.space import SearchSpace, step_epoch

_SEARCH = SearchConfig()  # `python -m raytune_ft.search`'s defaults: Design("default") is it

ConfigKey = tuple[float, int, int]  # (lr, max_epochs, LR-step epoch)


@dataclass(frozen=True)
class Curve:
    """One measured run: its schedule, seed and per-epoch metric. A run that diverged ends at
    the epoch it diverged in, with the finite worst value the trial reported."""

    lr: float
    max_epochs: int
    step: int
    values: tuple[float, ...]
    diverged: bool = False
    seed: int = 0

    @property
    def key(self) -> ConfigKey:
        return (self.lr, self.max_epochs, self.step)

    @property
    def best(self) -> float:
        """What the pipeline keeps of a run: its best epoch (checkpoints are kept by it)."""
        return max(self.values)


@dataclass
class CurveTable:
    """Measured curves by config and seed, probe values by (lr, epoch, seed), and the measured
    costs (in epochs) of a trial start and of one probe."""

    curves: dict[ConfigKey, dict[int, Curve]]
    probes: dict[tuple[float, int, int], float] = field(default_factory=dict)
    start_cost: float = 0.5
    probe_cost: float = 0.5
    metric: str = "coco/bbox_mAP"
    source: str = "the curve table"
    epoch_seconds: float = 1.0  # the measured seconds of one epoch (the unit of the costs)

    @classmethod
    def of(cls, curves: list[Curve], probes: dict[tuple, float] | None = None,
           **kwargs: Any) -> "CurveTable":
        """A table from a list of curves; probe keys (lr, epoch) mean seed 0."""
        by_key: dict[ConfigKey, dict[int, Curve]] = {}
        for c in curves:
            by_key.setdefault(c.key, {})[c.seed] = c
        norm = {(k[0], k[1], k[2] if len(k) > 2 else 0): v for k, v in (probes or {}).items()}
        return cls(by_key, norm, **kwargs)

    @property
    def lrs(self) -> list[float]:
        return sorted({k[0] for k in self.curves})

    @property
    def seeds(self) -> list[int]:
        """The seeds every config was measured with."""
        common = set.intersection(*(set(runs) for runs in self.curves.values()))
        return sorted(common)

    def true_mean(self, key: ConfigKey) -> float:
        """A config's true quality: the mean over its seeds of the value the pipeline keeps."""
        return statistics.fmean(c.best for c in self.curves[key].values())

    def true_best(self) -> tuple[float, ConfigKey]:
        key = max(self.curves, key=self.true_mean)
        return self.true_mean(key), key

    def seen_best(self) -> tuple[float, Curve]:
        """The best single run of the table (any config, any seed)."""
        curve = max((c for runs in self.curves.values() for c in runs.values()),
                    key=lambda c: c.best)
        return curve.best, curve

    def key_for(self, config: dict[str, Any]) -> ConfigKey:
        """The measured config of a sampled point: nearest lr, the exact LR step the space's
        `step_frac` constraint gives for its `max_epochs`."""
        max_epochs = int(config["max_epochs"])
        step = step_epoch(float(config["step_frac"]), max_epochs)
        lr = float(config["lr"])
        nearest = min(self.lrs, key=lambda v: abs(math.log(v) - math.log(lr)))
        key = (nearest, max_epochs, int(step))
        if key not in self.curves:
            raise KeyError(f"no measured curve for lr={nearest:g}, max_epochs={max_epochs}, "
                           f"LR step at epoch {step}")
        return key

    def curve_for(self, config: dict[str, Any], seed: int | None = None) -> Curve:
        runs = self.curves[self.key_for(config)]
        return runs[self.seeds[0] if seed is None else seed]

    def require_seeds(self, n: int, why: str) -> None:
        if len(self.seeds) < n:
            raise UserError(
                f"{self.source} has {len(self.seeds)} seed(s) per config ({self.seeds}); {why} "
                f"needs at least {n}. Measure more with: bench/measure_curves.py --seeds 1,2")

    @classmethod
    def from_json(cls, *paths: str | Path, metric: str = "coco/bbox_mAP") -> "CurveTable":
        """Read bench/curves/demo.json (and more tables of the same set-up to merge with it):
        every seed's curves and probe values, and the costs of seed 0's runs (measured with
        nothing else on the machine; later seeds may have shared it)."""
        curves: dict[ConfigKey, dict[int, Curve]] = {}
        probes: dict[tuple[float, int, int], float] = {}
        epoch_s, start_s, probe_s = [], [], []
        for path in paths:
            for config in json.loads(Path(path).read_text())["configs"].values():
                key = (float(config["lr"]), int(config["max_epochs"]), int(config["step"]))
                runs = {0: config, **{int(s): r for s, r in config.get("seed_runs", {}).items()}}
                for seed, run in runs.items():
                    curve = _curve(key, seed, run["epochs"], metric)
                    if curve is None:
                        continue  # an unfinished measurement is not a curve
                    curves.setdefault(key, {})[seed] = curve
                    for e in run["epochs"]:
                        if PROBE_PREFIX + metric in e:
                            probes[(key[0], int(e["epoch"]), seed)] = float(e[PROBE_PREFIX + metric])
                            if seed == 0:
                                probe_s.append(float(e["probe_seconds"]))
                epochs = config["epochs"]
                times = [float(e["reported_at"]) for e in epochs if not e.get("diverged")]
                if not config.get("probed"):
                    epoch_s += [b - a for a, b in zip(times, times[1:])]
                start_s.append(float(epochs[0]["train_started_at"]) - float(config["started_at"]))
        # an lr measured for only some schedules (a measurement still running) is left out, so
        # every sampled point of a kept lr has its curve; likewise a seed not yet measured for
        # every kept config
        schedules = {(m, s) for _, m, s in curves}
        complete = {lr for lr, _, _ in curves if all((lr, m, s) in curves for m, s in schedules)}
        curves = {k: v for k, v in curves.items() if k[0] in complete and 0 in v}
        seeds = set.intersection(*(set(v) for v in curves.values())) if curves else set()
        curves = {k: {s: c for s, c in v.items() if s in seeds} for k, v in curves.items()}
        epoch = statistics.median(epoch_s) if epoch_s else 1.0
        return cls(curves, probes,
                   start_cost=statistics.median(start_s) / epoch if start_s else 0.5,
                   probe_cost=statistics.median(probe_s) / epoch if probe_s else 0.5,
                   metric=metric, source=", ".join(str(p) for p in paths), epoch_seconds=epoch)


def _curve(key: ConfigKey, seed: int, epochs: list[dict], metric: str) -> Curve | None:
    values = tuple(float(e[metric]) for e in epochs)
    diverged = bool(epochs and epochs[-1].get("diverged"))
    if not values or (len(values) != key[1] and not diverged):
        return None
    return Curve(*key, values=values, diverged=diverged, seed=seed)


@dataclass(frozen=True)
class Design:
    """A search design to replay: scheduler, searcher and sampler settings, confirmation.

    The defaults are `python -m raytune_ft.search`'s (`SearchConfig()` and the searcher's
    constants), so `Design("default")` is what a user runs.
    """

    name: str
    scheduler: str = _SEARCH.scheduler  # step-after | step-probe | progress-asha | fifo
    searcher: str = _SEARCH.searcher  # tpe | random | gp (Optuna samplers)
    grace: float = _SEARCH.resolved_grace
    reduction_factor: float = _SEARCH.reduction_factor
    stock_optuna: bool = False  # Ray's own OptunaSearch (the old searcher) instead of ours
    n_startup_trials: int = _SEARCH.startup_trials
    multivariate: bool = TPE_MULTIVARIATE
    constant_liar: bool = TPE_CONSTANT_LIAR
    startup_counts_running: bool = False  # TPE's start-up counts running trials (a variant)
    confirm: int = _SEARCH.confirm  # best configs re-run with fresh seeds (0: none)
    confirm_seeds: int = _SEARCH.seeds

    @property
    def confirm_runs(self) -> int:
        return confirmation_runs(self.confirm, self.confirm_seeds)


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


def make_scheduler(design: Design, metric: str):
    from raytune_ft.tuning.scheduler import build_scheduler

    return build_scheduler(design.scheduler, metric, "max", design.grace, design.reduction_factor)


def probe_rungs(scheduler) -> list[float]:
    """The rungs at which trials probe under `scheduler` (none unless it is step-probe)."""
    return scheduler.rungs if getattr(scheduler, "probe", False) else []


def make_searcher(design: Design, metric: str, seed: int, points: list[dict[str, Any]]):
    """The searcher a search with this design builds, in memory instead of optuna.db."""
    from raytune_ft.tuning.searcher import build_optuna_searcher

    return build_optuna_searcher(design.searcher, seed, design.n_startup_trials, metric, "max",
                                 points, multivariate=design.multivariate,
                                 constant_liar=design.constant_liar,
                                 startup_counts_running=design.startup_counts_running,
                                 stock=design.stock_optuna)


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

    from raytune_ft.experiment.results import best_row

    metric = table.metric
    rng = random.Random(seed)
    seeds = table.seeds
    if design.confirm:
        table.require_seeds(design.confirm_seeds + 1, f"a confirmation over "
                            f"{design.confirm_seeds} seed(s) the search trial did not use")
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
        log.epochs_run = result["epoch"]
        log.probes += int(PROBE_PREFIX + metric in result)
        log.best = max(log.best, result[metric])
        best = max(best, result[metric])
        run.trace.append((run.device, best))
        run.events.append((now, "result", trial_id))
        result = {**result, "training_iteration": result["epoch"]}
        decision = scheduler.on_trial_result(None, state.trial, result)
        ended = (decision == TrialScheduler.STOP or bool(result["diverged"])
                 or result["epoch"] == state.curve.max_epochs)
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial_id, result)
        if not ended:
            push(state, now)
            continue
        log.diverged = bool(result["diverged"])
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
        cost = 1.0 + (table.probe_cost if PROBE_PREFIX + table.metric in result else 0.0)
        yield result, cost + (table.start_cost if result["epoch"] == 1 else 0.0)


def _rows(trials: list[TrialLog]):
    """The replayed trials that ended, as the pipeline's own result rows (id = index)."""
    from raytune_ft.experiment.results import TrialRow

    return [TrialRow(str(i), i, {"key": t.key}, {},
                     "diverged" if t.diverged else "finished" if t.finished else "stopped", "",
                     t.epochs_run, t.key[1], t.best if math.isfinite(t.best) else None, None,
                     None, 0.0)
            for i, t in enumerate(trials) if t.ended is not None]


def _return_config(design: Design, table: CurveTable, run: ReplayRun, clock: TimeBudget,
                   rng: random.Random) -> None:
    """What the pipeline hands the user: the confirmation's winner when one ran, else the
    search's best trial (`results.best_row`), as `run_search` decides."""
    from raytune_ft.pipeline.confirm import Confirmation, pick_candidates
    from raytune_ft.experiment.results import best_row

    rows = _rows(run.trials)
    searched = best_row(rows, "max")
    run.returned = run.trials[int(searched.trial_id)].key if searched else None
    finished = sum(1 for r in rows if r.status == "finished")
    if not design.confirm or not finished or not clock.confirmation_fits(run.search_wall):
        return
    candidates = pick_candidates(rows, min(design.confirm, finished), "max")
    jobs = []
    for c in candidates:  # seeds its search trial did not use
        trial = run.trials[int(c.source_trial)]
        fresh = rng.sample([s for s in table.seeds if s != trial.seed], design.confirm_seeds)
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
    winner = Confirmation(list(range(design.confirm_seeds)), candidates, "max").winner
    if winner is not None:
        run.returned = tuple(winner.point["key"])
        run.confirmed = True


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
            result[PROBE_PREFIX + table.metric] = table.probes[(curve.lr, epoch, curve.seed)]
        yield result


def summarize(runs: list[ReplayRun], table: CurveTable, recipe: ConfigKey | None = None
              ) -> dict[str, Any]:
    """What a design does over many seeds.

    Seen (as the first replay reported them): median and IQR of the best value seen, slot-epochs
    spent until one run reached 95% of the table's best single run, how often the best config
    (by true mean), once sampled, ran to its end. Returned (what a user gets): the true mean of
    the returned config (median, ratio to the best config's true mean), the share of searches
    whose returned config is truly better than the recipe, and wall-clock (epochs of one slot):
    until the incumbent is a config within 95% of the best true mean, and until the pipeline
    ends."""
    seen_best, _ = table.seen_best()
    best_true, best_key = table.true_best()
    target = 0.95 * seen_best
    bests = sorted(r.best for r in runs)
    to95 = sorted(r.spent_to_reach(target) for r in runs)
    sampled = [r for r in runs if any(t.key == best_key for t in r.trials)]
    survived = [r for r in sampled if any(t.key == best_key and t.finished for t in r.trials)]
    median95 = _quantile(to95, 0.5)
    true = sorted(table.true_mean(r.returned) if r.returned else -math.inf for r in runs)
    recipe_true = table.true_mean(recipe) if recipe in table.curves else None
    wall95 = sorted(next((w for w, k in r.incumbent if table.true_mean(k) >= 0.95 * best_true),
                         math.inf) for r in runs)
    median_wall95 = _quantile(wall95, 0.5)
    return {
        "median_best": _quantile(bests, 0.5),
        "iqr_best": [_quantile(bests, 0.25), _quantile(bests, 0.75)],
        "median_epochs_to_95": None if math.isinf(median95) else median95,
        "p_best_survives": (len(survived) / len(sampled)) if sampled else None,
        "mean_trials": statistics.mean(len(r.trials) for r in runs),
        "share_reaching_95": sum(1 for v in to95 if not math.isinf(v)) / len(runs),
        "true_quality": {
            "median": _quantile(true, 0.5),
            "ratio_to_best": _quantile(true, 0.5) / best_true,
            "p_beats_recipe": (sum(1 for v in true if v > recipe_true) / len(runs)
                               if recipe_true is not None else None),
            "iqr": [_quantile(true, 0.25), _quantile(true, 0.75)],
        },
        "median_wall_clock": _quantile(sorted(r.wall for r in runs), 0.5),
        "median_wall_to_95_true": None if math.isinf(median_wall95) else median_wall95,
        "median_device": _quantile(sorted(r.device for r in runs), 0.5),
        "share_confirmed": sum(1 for r in runs if r.confirmed) / len(runs),
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
