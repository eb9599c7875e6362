"""Tune an MMDetection fine-tune's schedule with Ray Tune + Optuna: `run_search(SearchConfig)`.

THE owner of a search, end to end: plan and preflight (raytune_ft.pipeline.plan) -> the Tune
run -> results -> confirmation (raytune_ft.pipeline.confirm) -> test score -> report. With no
config it runs the embedded demo (real tree-crown images, ImageNet MobileNetV2 weights) on a
local Ray. Outputs land in <storage_path>/<name>/ (a folder or a URI). `python -m
raytune_ft.search` is the command line over this (raytune_ft.cli.search).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raytune_ft.durations import format_duration
from raytune_ft.experiment.record import save_config
from raytune_ft.experiment.report import write_report_or_say
from raytune_ft.experiment.summary import BudgetOutcome, Summary, write_summary
from raytune_ft.options import SearchConfig
from raytune_ft.pipeline.confirm import confirm_and_rewrite
from raytune_ft.pipeline.plan import SearchPlan, prepare, start_ray
from raytune_ft.pipeline.testscore import score_and_rewrite
from raytune_ft.storage import BUDGET_RECORD, DRIVER_LOG, OPTUNA_DB, ExperimentStorage

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from raytune_ft.experiment.results import TrialRow
    from raytune_ft.tuning.budget import BudgetState


@dataclass(frozen=True)
class SearchResult:
    """What a search produced.

    Attributes:
        status: "finished", "interrupted" (its state is saved: `resume_command` continues it)
            or "checked" (`check_only`: preflight passed, no trial ran).
        experiment: the experiment folder or URI.
        summary: summary.json as a record (best trial, metric, hyper-parameters, costs; None
            for "checked"). `summary["best_metric"]` reads summary.json's key as before.
        rows: one `TrialRow` per trial, in creation order (row 0 is the config's recipe).
        config: the options the search ran with, every default resolved.
    """

    status: str
    experiment: str
    summary: Summary | None
    rows: list[TrialRow]
    config: SearchConfig

    @property
    def best_hparams(self) -> dict[str, Any] | None:
        """The winner's hyper-parameters: the best confirmed mean when the search confirmed
        over seeds, else the best single run's."""
        return self.summary.returned_hparams if self.summary else None

    @property
    def confirmation(self) -> dict[str, Any] | None:
        """Seeds, every confirmed config's values, mean, std and paired interval to the recipe
        (summary.json's "confirmation")."""
        conf = self.summary.confirmation if self.summary else None
        return conf.to_json() if conf else None

    @property
    def test_score(self) -> dict[str, Any] | None:
        """Winner and recipe scored on the held-out test set, when the config has one."""
        test = self.summary.test_score if self.summary else None
        return test.to_json() if test else None

    @property
    def best_config(self) -> str | None:
        return self.summary.best_config if self.summary else None

    @property
    def best_checkpoint(self) -> str | None:
        return self.summary.best_checkpoint if self.summary else None

    @property
    def resume_command(self) -> str:
        c = self.config
        return (f"python -m raytune_ft.search --resume --name {c.name} --storage-path "
                f"{c.storage_path} --config {c.config} --space {c.space}")


@dataclass
class TuneRun:
    """One Tune run of a search - the first, or an extension - after `fit()`."""

    where: ExperimentStorage  # where its Tune state lives
    grid: ResultGrid
    statuses: dict[str, str]  # trial id -> Tune's saved status

    @property
    def unfinished(self) -> list[str]:
        return [t for t, s in self.statuses.items() if s not in ("TERMINATED", "ERROR")]


def planned_trials(plan: SearchPlan) -> int:
    """The trials the search phase runs: --num-samples, or for --searcher grid the fixed
    points (the recipe, --points) and every point of the grid."""
    config = plan.config
    if config.is_grid:
        return len(plan.points) + plan.job.space.grid_size(config.grid_points)
    return config.num_samples


def build_tuner(plan: SearchPlan, nodes: list[dict[str, float]], started_at: float | None = None,
                where: ExperimentStorage | None = None, num_samples: int | None = None,
                points: list[dict[str, Any]] | None = None, resume: bool | None = None):
    """A Tune run of the search: the first (`where` the experiment; with --resume its saved
    state) or an extension (`where` its extend_<k> folder, `num_samples` new trials, no
    points: the recipe ran in the first). Every run's trials keep their records in the
    experiment's trials/ and tell the one Optuna study in optuna.db."""
    from ray import tune

    from raytune_ft.tuning.progress import ConsoleProgress
    from raytune_ft.tuning.scheduler import build_scheduler
    from raytune_ft.tuning.searcher import build_search_algorithm
    from raytune_ft.tuning.trackers import tune_callbacks
    from raytune_ft.tuning.trainable import tune_trainable
    from raytune_ft.tuning.tuner import driven_trainable, new_tuner, restore_or_create

    config, job, exp = plan.config, plan.job, plan.experiment
    where = where or exp
    trainable = driven_trainable(tune_trainable, job, nodes)

    points = plan.points if points is None else points
    total = planned_trials(plan) if num_samples is None else num_samples
    progress = ConsoleProgress(job.metric, job.mode, total, started_at=started_at, experiment=exp,
                               demand=job.resources.describe(),
                               resource_wait=config.resource_wait)

    def create():
        save_config(config, exp)
        search_alg = build_search_algorithm(config, points, job.metric, job.mode, exp,
                                            started_at)
        return new_tuner(
            trainable, job.space.to_tune(config.searcher, config.grid_points),
            tune.TuneConfig(
                search_alg=search_alg,
                scheduler=build_scheduler(config.scheduler, job.metric, job.mode,
                                          config.resolved_grace, config.reduction_factor),
                num_samples=config.tune_num_samples(len(points), total),
                # a grid's generator bounds its concurrency itself
                max_concurrent_trials=config.max_concurrent if config.uses_optuna else None),
            config, where, [*tune_callbacks(config, exp, publish=[OPTUNA_DB]), progress])

    if config.resume:
        exp.fetch(OPTUNA_DB)  # the study a remote experiment keeps next to its Tune state
    return restore_or_create(trainable, where, create,
                             resume=config.resume if resume is None else resume)


def fit(where: ExperimentStorage, tuner, verbose: bool) -> TuneRun:
    """Run a Tune run to its end (Tune turns Ctrl-C into a clean stop with its state saved)."""
    from raytune_ft.tuning.tuner import fit_quietly, trial_statuses

    grid = fit_quietly(tuner, verbose)
    return TuneRun(where, grid, trial_statuses(where))


def run_tune(plan: SearchPlan, nodes: list[dict[str, float]], started: float) -> list[TuneRun]:
    """The search's Tune runs: the first; with --resume also every extension already made,
    each restored; and, when --num-samples asks for more trials than the search was run with
    and every earlier run has finished, one new extension with the difference."""
    from raytune_ft.experiment.record import extension_run, extension_runs

    config, exp = plan.config, plan.experiment
    runs = [fit(exp, build_tuner(plan, nodes, started), config.verbose)]
    if not config.resume:
        return runs
    for where in extension_runs(exp):
        runs.append(fit(where, build_tuner(plan, nodes, started, where=where, resume=True),
                        config.verbose))
    ran = sum(len(r.statuses) for r in runs)
    more = config.num_samples - ran if config.num_samples > plan.saved_num_samples else 0
    if more <= 0 or any(r.unfinished for r in runs) or config.is_grid:
        return runs
    where = extension_run(exp, len(runs))
    print(f"[raytune_ft] extending the search: {more} more trial(s) to {config.num_samples} in "
          f"all, told to the same Optuna study ({ran} trial(s) in it); Tune run in "
          f"{where.path}", flush=True)
    tuner = build_tuner(plan, nodes, time.time(), where=where, num_samples=more, points=[],
                        resume=False)
    runs.append(fit(where, tuner, config.verbose))
    return runs


def run_search(config: SearchConfig) -> SearchResult:
    """Run (or resume) a search and write its results.

    Preflight checks every input first (a bad one raises `UserError` before Ray starts), then
    one Tune trial per sampled schedule runs the fine-tune as a Ray Train job; early stopping
    and Optuna's TPE pick what runs next. Results land in the experiment: results.csv,
    summary.json, best_config.py, best_checkpoint.pth, optuna.db, per-trial TensorBoard.

    Args:
        config: the search's options (`SearchConfig()` alone runs the embedded demo).

    Returns:
        A `SearchResult`; `status` is "interrupted" when Ctrl-C (or a lost driver) cut the
        search short - `result.resume_command` continues it.

    Example:
        >>> from raytune_ft import SearchConfig, run_search
        >>> result = run_search(SearchConfig(
        ...     config="configs/kitti/faster_rcnn_r50_fpn_finetune.py",
        ...     space="search_spaces/kitti.yaml", num_samples=16, workers_per_trial=2,
        ...     gpus_per_worker=1, address="auto"))  # doctest: +SKIP
        >>> print(result.best_hparams, result.best_config)  # doctest: +SKIP
    """
    from raytune_ft.engine.capacity import check_capacity, read_capacity
    from raytune_ft.engine.cluster import ray_logs_dir
    from raytune_ft.tuning.tuner import trial_driver_resources

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # see trackers
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    started = time.time()
    plan = prepare(config)
    config = plan.config
    print(f"[raytune_ft] preflight OK in {time.time() - started:.1f}s: config {config.config}, "
          f"space {config.space}, {plan.train_images} train images, trial 0 = recipe "
          f"{plan.points[0]}", flush=True)
    nodes = start_ray(plan)
    waits_for_nodes = check_capacity(
        read_capacity(nodes), plan.job.resources,
        trial_cpus=trial_driver_resources(nodes)["cpu"] * config.max_concurrent,
        resource_wait=config.resource_wait)
    if waits_for_nodes:
        print(f"[raytune_ft] {waits_for_nodes}", flush=True)
    if config.check_only:
        print(f"[raytune_ft] check-only: all checks passed in {time.time() - started:.1f}s "
              f"({len(nodes)} Ray node(s)); no trial was started.")
        return SearchResult("checked", plan.experiment.path, None, [], config)
    print(f"[raytune_ft] experiment {plan.experiment.path}: {planned_trials(plan)} trial(s)"
          + (f" or a time budget of {config.time_budget} (confirmation included), whichever "
             "ends first" if config.time_budget else "")
          + f", {config.searcher} + {config.scheduler}, metric {config.metric} ({config.mode})",
          flush=True)
    if not config.verbose:
        print(f"[raytune_ft] full logs: per trial {plan.experiment.trial_path('<id>')}"
              f"/mmengine/ (mmengine's log, stdout.log with the evaluation tables); Ray's and "
              f"Optuna's {plan.experiment.join(DRIVER_LOG)}; every Ray process's (Train "
              f"controllers, workers) in {ray_logs_dir()} on its node; --verbose prints them "
              "here", flush=True)
    runs = run_tune(plan, nodes, started)
    statuses = {t: s for run in runs for t, s in run.statuses.items()}
    rows, summary = finish(runs, plan, started)
    unfinished = [t for run in runs for t in run.unfinished]
    expected = planned_trials(plan)
    budget = budget_outcome(plan, len(statuses))
    stopped_by_budget = budget is not None and budget.stopped_by_budget
    status = ("interrupted" if unfinished or (len(statuses) < expected and not stopped_by_budget)
              else "finished")
    if budget:
        print(f"[raytune_ft] search stopped after {len(statuses)} trial(s): "
              f"{budget.stopped_because}", flush=True)
    confirm = status == "finished" and config.confirm > 0
    if confirm and not confirmation_fits(plan, budget, started):
        print(f"[raytune_ft] the confirmation (about "
              f"{format_duration(budget.confirmation_reserve_s)}) no longer fits in "
              f"--time-budget {config.time_budget}: skipped; run it later with python -m "
              f"raytune_ft.confirm {plan.experiment.path}", flush=True)
        confirm = False
    if confirm:
        finished = sum(1 for r in rows if r.status == "finished")
        if finished < config.confirm:
            print(f"[raytune_ft] --confirm {config.confirm}: only {finished} trial(s) ran their "
                  f"full schedule; confirming {finished}.")
        if finished:
            summary = confirm_and_rewrite(plan, rows, min(config.confirm, finished),
                                          config.seeds) or summary
    elif status == "finished":
        summary = score_and_rewrite(plan, rows, None) or summary
    if budget:
        summary = record_budget(plan, summary, budget, started)
    if status == "finished":
        say_demo_prediction(plan, len(rows))
    write_report_or_say(plan.experiment)
    return SearchResult(status, plan.experiment.path, summary, rows, config)


def say_demo_prediction(plan: SearchPlan, trials: int) -> None:
    """On the demo with the default design: what the curve replay predicts for this many
    trials (is the returned config truly better than the recipe?)."""
    from raytune_ft.data.demo import DEMO_SPACE, replay_prediction

    design = ("scheduler", "searcher", "startup_trials", "confirm", "seeds", "grace",
              "reduction_factor", "max_concurrent")
    config, default = plan.config, SearchConfig()
    if not plan.is_demo or config.space != str(DEMO_SPACE) or any(
            getattr(config, k) != getattr(default, k) for k in design):
        return
    line = replay_prediction(trials)
    if line:
        print(f"[raytune_ft] {line}", flush=True)


def _budget_state(plan: SearchPlan) -> BudgetState:
    """budget.json as the searcher last wrote it ({} when it wrote none)."""
    import json

    path = plan.experiment.local_path(BUDGET_RECORD)
    return json.loads(path.read_text()) if path.exists() else {}


def budget_outcome(plan: SearchPlan, trials: int) -> BudgetOutcome | None:
    """The time budget's state when the search phase ended, and why it stopped (None without
    a budget)."""
    config = plan.config
    if config.time_budget is None:
        return None
    state = _budget_state(plan)
    because = state.get("stopped_because") or (
        f"--num-samples {config.num_samples} reached before the time budget"
        if trials >= planned_trials(plan) else "interrupted")
    return BudgetOutcome.of(config.time_budget, config.time_budget_s, because, state)


def confirmation_fits(plan: SearchPlan, budget: BudgetOutcome | None, started: float) -> bool:
    """Without a time budget always; with one, `TimeBudget.confirmation_fits` on the state
    the search phase ended with (`budget_outcome`)."""
    from raytune_ft.tuning.budget import TimeBudget

    if budget is None:
        return True
    clock = TimeBudget.from_state(budget.state, budget.time_budget_s,
                                  slots=plan.config.max_concurrent,
                                  confirm_runs=plan.config.confirm_runs)
    return clock.confirmation_fits(time.time() - (budget.started_at or started))


def record_budget(plan: SearchPlan, summary: Summary, budget: BudgetOutcome,
                  started: float) -> Summary:
    """summary.json gains the budget: its size, what was used, trials run, why it stopped."""
    used = time.time() - (budget.started_at or started)
    budget = dataclasses.replace(budget, used_s=used, trials_run=summary.trials)
    summary = write_summary(plan.experiment, dataclasses.replace(summary, time_budget=budget))
    print(f"[raytune_ft] time budget {budget.time_budget}: used {format_duration(used)} "
          f"({used / budget.time_budget_s:.0%})", flush=True)
    return summary


def finish(runs: list[TuneRun], plan: SearchPlan,
           started: float) -> tuple[list[TrialRow], Summary]:
    """Collect the trials of every Tune run into results files (trial numbers run on through
    the extensions) and print the final table; (rows, summary)."""
    from raytune_ft.experiment.results import (collect, format_table, read_rows, write_hparams,
                                               write_results)

    job, exp = plan.job, plan.experiment
    written = {r.trial_id for r in read_rows(exp) if r.phase == "search"
               and r.status != "unfinished"}  # HParams already in their TensorBoard runs
    rows = []
    for run in runs:
        offset = len(rows)
        for row in collect(run.grid, job, run.statuses):
            row.order += offset
            rows.append(row)
    rows.sort(key=lambda r: r.order)
    summary = write_results(rows, job)
    write_hparams([r for r in rows if r.trial_id not in written], job)
    exp.publish(OPTUNA_DB)
    exp.publish(DRIVER_LOG)
    print("\n" + format_table(rows, job.metric))
    print(f"\n[raytune_ft] {len(rows)} trials in {time.time() - started:.0f}s; by status "
          f"{summary.by_status}")
    if summary.best_trial:
        print(f"[raytune_ft] best: trial {summary.best_trial} {job.metric}="
              f"{summary.best_metric:.4f} (recipe/trial 0: {summary.trial0_metric}); "
              f"hyper-parameters {summary.best_hparams}")
        print(f"[raytune_ft] best config:     {summary.best_config}")
        print(f"[raytune_ft] best checkpoint: {summary.best_checkpoint}")
    print(f"[raytune_ft] results:         {exp.join('results.csv')}, summary.json")
    print(f"[raytune_ft] TensorBoard:     tensorboard --logdir {exp.path}")
    if summary.by_status.get("errored"):
        print("[raytune_ft] some trials errored: see the reason column of results.csv")
    return rows, summary


__all__ = ["SearchResult", "run_search"]
