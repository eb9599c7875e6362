"""Tune an MMDetection fine-tune's schedule with Ray Tune + Optuna: `run_search(SearchConfig)`.

With no config it runs the embedded demo (real tree-crown images, ImageNet MobileNetV2
weights) on a local Ray. Outputs land in <storage_path>/<name>/ (a folder or a URI).
`python -m raytune_ft.search` is the command line over this (raytune_ft.cli.search).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from raytune_ft.budget import format_duration
from raytune_ft.errors import UserError
from raytune_ft.options import (DEFAULT_TRIALS, DEMO_TIME_BUDGET, DEMO_TRIALS, SearchConfig,
                                flag)
from raytune_ft.storage import ExperimentStorage, user_or_shipped

TRIAL_DRIVER_CPU = 0.01  # the Tune trial only drives a Train run; its workers hold the resources
OPTUNA_DB = "optuna.db"


@dataclass(frozen=True)
class SearchPlan:
    """A search after preflight: its options with every default resolved, and what the trials
    share. Nothing expensive has started yet."""

    config: SearchConfig
    job: Any  # raytune_ft.trainable.SearchJob
    points: list[dict[str, Any]]
    train_images: int

    @property
    def experiment(self) -> ExperimentStorage:
        return self.job.experiment


@dataclass(frozen=True)
class SearchResult:
    """What a search produced.

    Attributes:
        status: "finished", "interrupted" (its state is saved: `resume_command` continues it)
            or "checked" (`check_only`: preflight passed, no trial ran).
        experiment: the experiment folder or URI.
        summary: summary.json's content (best trial, metric, hyper-parameters, costs).
        rows: one `TrialRow` per trial, in creation order (row 0 is the config's recipe).
        config: the options the search ran with, every default resolved.
    """

    status: str
    experiment: str
    summary: dict[str, Any]
    rows: list
    config: SearchConfig

    @property
    def best_hparams(self) -> dict[str, Any] | None:
        """The winner's hyper-parameters: the best confirmed mean when the search confirmed
        over seeds, else the best single run's."""
        return self.summary.get("winner_hparams") or self.summary.get("best_hparams")

    @property
    def confirmation(self) -> dict[str, Any] | None:
        """Seeds, every confirmed config's values, mean, std and paired interval to the recipe."""
        return self.summary.get("confirmation")

    @property
    def test_score(self) -> dict[str, Any] | None:
        """Winner and recipe scored on the held-out test set, when the config has one."""
        return self.summary.get("test_score")

    @property
    def best_config(self) -> str | None:
        return self.summary.get("best_config")

    @property
    def best_checkpoint(self) -> str | None:
        return self.summary.get("best_checkpoint")

    @property
    def resume_command(self) -> str:
        c = self.config
        return (f"python -m raytune_ft.search --resume --name {c.name} --storage-path "
                f"{c.storage_path} --config {c.config} --space {c.space}")


def resolve_defaults(config: SearchConfig) -> SearchConfig:
    """Fill what the user left unset: the demo, the space, CPUs per worker, trial count."""
    from raytune_ft.cluster import default_cpus_per_worker

    changes: dict[str, Any] = {}
    demo = config.config is None
    if demo:
        from raytune_ft.demo import DEMO_CONFIG, DEMO_SPACE, ensure_demo

        ensure_demo()
        changes.update(config=str(DEMO_CONFIG), space=config.space or str(DEMO_SPACE))
    changes["space"] = user_or_shipped(changes.get("space") or config.space
                                       or "search_spaces/default.yaml")
    changes["cpus_per_worker"] = default_cpus_per_worker(
        config.cpus_per_worker, config.workers_per_trial, config.address, demo,
        reserved=TRIAL_DRIVER_CPU)
    if config.num_samples is None:
        changes["num_samples"] = DEMO_TRIALS if demo else DEFAULT_TRIALS
    if demo and config.time_budget is None and config.searcher != "grid":
        changes["time_budget"] = DEMO_TIME_BUDGET
    changes["name"] = config.name or time.strftime("search_%Y%m%d_%H%M%S")
    return config.replace(**changes)


def prepare(config: SearchConfig) -> SearchPlan:
    """Everything that can fail on user input, checked before Ray starts any trial."""
    from raytune_ft.config import config_to_dict, load_config
    from raytune_ft.hparams import read_hparams
    from raytune_ft.metrics import default_metric
    from raytune_ft.preflight import (check_annotations, check_load_from, check_load_from_fits,
                                      check_metric, check_points_apply,
                                      check_time_budget_holds_a_trial, smoke)
    from raytune_ft.scheduler import probe_spec
    from raytune_ft.space import TrialShape, load_space, recipe_point, to_hparams
    from raytune_ft.testscore import test_annotation
    from raytune_ft.trackers import check_trackers
    from raytune_ft.trainable import SearchJob
    from raytune_ft.trial import TrialResources

    config = resolve_defaults(config)
    cfg = load_config(config.config, dict(config.cfg_options))
    config = config.replace(metric=config.metric or default_metric(cfg))
    space = load_space(config.space)
    data = check_annotations(cfg, "train_dataloader")
    check_annotations(cfg, "val_dataloader")
    if test_annotation(cfg):  # a held-out test set, scored once at the end
        check_annotations(cfg, "test_dataloader")
    check_load_from(cfg)
    check_load_from_fits(cfg)
    check_metric(cfg, config.metric)
    experiment = ExperimentStorage.create(config.storage_path, config.name)
    experiment.storage.check_writable()
    check_trackers(config)
    check_scheduler_args(config, cfg)
    recipe = read_hparams(cfg)
    batch = int(cfg.train_dataloader.get("batch_size", 1))
    workers = config.workers_per_trial
    if "lr" in recipe and "lr_base_batch" not in recipe:
        print(f"[raytune_ft] note: the config declares no auto_scale_lr.base_batch_size, so its "
              f"lr {recipe['lr']:g} is taken as the lr for a trial's total batch of "
              f"{batch * workers} ({workers} worker(s) x {batch})", flush=True)
    shape = TrialShape(total_batch=batch * workers,
                       iters_per_epoch=max(1, math.ceil(data["images"] / (batch * workers))))
    points = [recipe_point(space, recipe, shape)]
    points += [{**points[0], **extra} for extra in check_points(config.points, space)]
    check_points_apply(cfg, [to_hparams(p, space, recipe, shape) for p in points])
    if config.smoke:
        ran = smoke(cfg)
        print(f"[raytune_ft] smoke test passed in {ran.seconds:.1f}s "
              f"({ran.iteration_seconds:.2f}s per training iteration)", flush=True)
        if config.time_budget is not None:
            epochs = shortest_schedule(space, recipe)
            check_time_budget_holds_a_trial(
                config.time_budget_s, ran.iteration_seconds * shape.iters_per_epoch * epochs,
                f"{shape.iters_per_epoch} iterations per epoch x {epochs} epochs, the shortest "
                f"schedule, at the smoke run's {ran.iteration_seconds:.2f}s per iteration; "
                "validation and start-up not counted")
    job = SearchJob(
        cfg=config_to_dict(cfg), space=space, recipe=recipe, shape=shape,
        resources=TrialResources(workers, config.cpus_per_worker, config.gpus_per_worker,
                                 config.placement),
        experiment=experiment, metric=config.metric, mode=config.mode,
        max_failures=config.max_failures, num_to_keep=config.num_to_keep,
        probe=probe_spec(config.scheduler, config.resolved_grace, config.reduction_factor,
                         config.probe_length),
        verbose=config.verbose,
    )
    return SearchPlan(config, job, points, data["images"])


SEARCH_CONFIG = "search_config.json"  # the resolved SearchConfig, for confirm and report


def save_config(config: SearchConfig, experiment: ExperimentStorage) -> None:
    import dataclasses
    import json

    experiment.local_path(SEARCH_CONFIG).write_text(
        json.dumps(dataclasses.asdict(config), indent=1, default=list))
    experiment.publish(SEARCH_CONFIG)


def load_config_of(experiment: ExperimentStorage) -> SearchConfig:
    """The SearchConfig an experiment was run with; UserError when it is not an experiment."""
    import json

    data = experiment.storage.read_bytes(experiment.name, SEARCH_CONFIG)
    if data is None:
        raise UserError(f"'{experiment.path}' is not a raytune_ft experiment (no "
                        f"{SEARCH_CONFIG}): pass the folder a search wrote, "
                        "<storage-path>/<name>.")
    return SearchConfig(**json.loads(data))


def check_scheduler_args(config: SearchConfig, cfg) -> None:
    """The scheduler's rung ladder is one the chosen rule can honour on this config."""
    from raytune_ft.hparams import find_scheduler
    from raytune_ft.metrics import ENGINE_METRICS
    from raytune_ft.scheduler import rung_fractions

    if config.scheduler == "fifo":
        return
    if config.scheduler in ("step-probe", "step-after"):
        if find_scheduler(cfg, "MultiStepLR") is None:
            raise UserError(f"--scheduler {config.scheduler} compares trials around their LR "
                            "step, but the config's param_scheduler has no MultiStepLR (an LR "
                            "step). Use --scheduler progress-asha or fifo for other schedules.")
        if config.scheduler == "step-probe" and config.metric in ENGINE_METRICS:
            raise UserError(f"--scheduler step-probe ranks trials before their LR step on the "
                            f"probe's validation score, but --metric {config.metric} is not a "
                            "val metric the probe can measure. Use a metric of the val "
                            "evaluator, or --scheduler step-after.")
    grace = config.resolved_grace
    if not rung_fractions(grace, config.reduction_factor):
        raise UserError(f"--grace {grace:g} with --reduction-factor {config.reduction_factor:g} "
                        "places no rung before the end of a schedule, so nothing would ever "
                        "be stopped; lower --grace or use --scheduler fifo.")


def shortest_schedule(space, recipe: dict[str, Any]) -> int:
    """The fewest epochs a trial of this space can train."""
    param = space.params.get("max_epochs")
    if param is None:
        return int(recipe.get("max_epochs", 1))
    return int(min(param.values) if param.type == "choice" else param.low)


def check_points(points, space) -> list[dict[str, Any]]:
    """Extra points name only parameters the space searches."""
    for point in points:
        unknown = sorted(set(point) - set(space.params))
        if unknown:
            raise UserError(f"{flag('points')} names {unknown}, which the search space "
                            f"'{space.source}' does not search ({sorted(space.params)}).")
    return [dict(p) for p in points]


def confirm_runs(config: SearchConfig) -> int:
    """Full-schedule runs the confirmation makes: (K + recipe) x seeds."""
    return (config.confirm + 1) * config.seeds if config.confirm else 0


def build_searcher(plan: SearchPlan, started_at: float | None = None):
    """TPE or random (Optuna samplers in optuna.db, the time budget's gate), or Tune's grid."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    config, job = plan.config, plan.job
    if config.searcher in ("tpe", "random"):
        import optuna

        from raytune_ft.budget import TimeBudget
        from raytune_ft.options import TPE_CONSTANT_LIAR, TPE_MULTIVARIATE
        from raytune_ft.searcher import BUDGET_RECORD, build_optuna_search, build_sampler

        # SQLite needs a local file: for a URI it is staged locally and published by
        # PublishFiles (below); a resume on another machine fetches it back first.
        plan.experiment.fetch(OPTUNA_DB)
        db = plan.experiment.local_path(OPTUNA_DB)
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
        sampler = build_sampler(config.searcher, config.seed, config.startup_trials,
                                multivariate=TPE_MULTIVARIATE, constant_liar=TPE_CONSTANT_LIAR)
        searcher = build_optuna_search(job.metric, job.mode, plan.points, sampler,
                                       storage=storage, study_name=config.name)
        if config.time_budget is not None:
            searcher.set_time_budget(
                TimeBudget(config.time_budget_s, slots=config.max_concurrent,
                           confirm_runs=confirm_runs(config)),
                started_at or time.time(), plan.experiment.local_path(BUDGET_RECORD))
        return searcher
    # A SearchGenerator ignores TuneConfig.max_concurrent_trials: bound it here.
    return BasicVariantGenerator(points_to_evaluate=plan.points, random_state=config.seed,
                                 max_concurrent=config.max_concurrent)


def trial_driver_resources(nodes: list[dict[str, float]]) -> dict[str, float]:
    """What a Tune trial (the driver of one Train run) reserves. On a cluster that offers the
    `trial_driver` resource (cluster.yaml puts it on the CPU head) trials stay off GPU nodes."""
    if any(n.get("trial_driver") for n in nodes):
        return {"cpu": 0, "trial_driver": 1}
    return {"cpu": TRIAL_DRIVER_CPU}


def build_tuner(plan: SearchPlan, nodes: list[dict[str, float]], started_at: float | None = None):
    from ray import tune

    from raytune_ft.scheduler import build_scheduler
    from raytune_ft.trainable import tune_trainable
    from raytune_ft.trackers import tune_callbacks

    config, job, exp = plan.config, plan.job, plan.experiment
    trainable = tune.with_resources(tune.with_parameters(tune_trainable, job=job),
                                    trial_driver_resources(nodes))
    where = exp.restore_kwargs()
    if config.resume:
        if not tune.Tuner.can_restore(**where):
            raise UserError(f"--resume: no experiment to resume at '{exp.path}'. Use the --name "
                            "and --storage-path of the interrupted search.")
        exp.fetch(OPTUNA_DB)
        return tune.Tuner.restore(trainable=trainable, resume_unfinished=True,
                                  resume_errored=True, **where)
    if exp.storage.exists(exp.name, "tuner.pkl"):
        raise UserError(f"experiment '{exp.path}' exists already: pass --resume to continue it "
                        "or choose another --name.")
    save_config(config, exp)
    return tune.Tuner(
        trainable,
        param_space=job.space.to_tune(config.searcher, config.grid_points),
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(plan, started_at),
            scheduler=build_scheduler(config.scheduler, job.metric, job.mode,
                                      config.resolved_grace, config.reduction_factor),
            num_samples=1 if config.searcher == "grid" else config.num_samples,
            max_concurrent_trials=config.max_concurrent,
        ),
        run_config=tune.RunConfig(
            verbose=1, failure_config=tune.FailureConfig(max_failures=0),
            callbacks=tune_callbacks(config, exp, publish=[OPTUNA_DB]),
            **exp.tune_run_kwargs()),
    )


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
    from raytune_ft.cluster import check_cluster_fits, init_ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # see trackers
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    started = time.time()
    plan = prepare(config)
    config = plan.config
    print(f"[raytune_ft] preflight OK in {time.time() - started:.1f}s: config {config.config}, "
          f"space {config.space}, {plan.train_images} train images, trial 0 = recipe "
          f"{plan.points[0]}", flush=True)
    nodes = init_ray(config.address)
    check_cluster_fits(nodes, config.workers_per_trial, config.cpus_per_worker,
                       config.gpus_per_worker, config.placement,
                       trial_cpus=trial_driver_resources(nodes)["cpu"] * config.max_concurrent)
    if config.check_only:
        print(f"[raytune_ft] check-only: all checks passed in {time.time() - started:.1f}s "
              f"({len(nodes)} Ray node(s)); no trial was started.")
        return SearchResult("checked", plan.experiment.path, {}, [], config)
    tuner = build_tuner(plan, nodes, started)
    print(f"[raytune_ft] experiment {plan.experiment.path}: {config.num_samples} trial(s)"
          + (f" or a time budget of {config.time_budget} (confirmation included), whichever "
             "ends first" if config.time_budget else "")
          + f", {config.searcher} + {config.scheduler}, metric {config.metric} ({config.mode})",
          flush=True)
    if not config.verbose:
        print(f"[raytune_ft] full logs per trial: {plan.experiment.join('trials', 'trial_<id>')}"
              "/mmengine/ (mmengine's log, stdout.log with the evaluation tables); --verbose "
              "prints them here", flush=True)
    grid = tuner.fit()  # Tune turns Ctrl-C into a clean stop with its state saved
    statuses = trial_statuses(plan.experiment)
    rows, summary = finish(grid, plan, statuses, started)
    unfinished = [t for t, s in statuses.items() if s not in ("TERMINATED", "ERROR")]
    expected = 1 if config.searcher == "grid" else config.num_samples
    budget = budget_outcome(plan, started, len(statuses))
    stopped_by_budget = bool(budget.get("stopped_because", "").startswith("time budget"))
    status = ("interrupted" if unfinished or (len(statuses) < expected and not stopped_by_budget)
              else "finished")
    if budget:
        print(f"[raytune_ft] search stopped after {len(statuses)} trial(s): "
              f"{budget['stopped_because']}", flush=True)
    confirm = status == "finished" and config.confirm > 0
    if confirm and not confirmation_fits(plan, started):
        print(f"[raytune_ft] the confirmation (about "
              f"{format_duration(budget.get('confirmation_reserve_s') or 0)}) no longer fits in "
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
        say_demo_prediction(config, len(rows))
    report(plan.experiment)
    return SearchResult(status, plan.experiment.path, summary, rows, config)


def say_demo_prediction(config: SearchConfig, trials: int) -> None:
    """On the demo with the default design: what the curve replay predicts for this many
    trials (is the returned config truly better than the recipe?)."""
    from raytune_ft.demo import DEMO_CONFIG, DEMO_SPACE, replay_prediction

    design = ("scheduler", "searcher", "startup_trials", "confirm", "seeds", "grace",
              "reduction_factor", "max_concurrent")
    default = SearchConfig()
    if (config.config, config.space) != (str(DEMO_CONFIG), str(DEMO_SPACE)) or any(
            getattr(config, k) != getattr(default, k) for k in design):
        return
    line = replay_prediction(trials)
    if line:
        print(f"[raytune_ft] {line}", flush=True)


def _budget_state(plan: SearchPlan) -> dict[str, Any]:
    import json

    from raytune_ft.searcher import BUDGET_RECORD

    path = plan.experiment.local_path(BUDGET_RECORD)
    return json.loads(path.read_text()) if path.exists() else {}


def budget_outcome(plan: SearchPlan, started: float, trials: int) -> dict[str, Any]:
    """The time budget's state when the search phase ended, and why it stopped ({} without a
    budget)."""
    config = plan.config
    if config.time_budget is None:
        return {}
    state = _budget_state(plan)
    if not state.get("stopped_because"):
        expected = 1 if config.searcher == "grid" else config.num_samples
        state["stopped_because"] = (f"--num-samples {config.num_samples} reached before the "
                                    f"time budget" if trials >= expected else "interrupted")
    return {"time_budget": config.time_budget, "time_budget_s": config.time_budget_s, **state}


def confirmation_fits(plan: SearchPlan, started: float) -> bool:
    """Without a time budget always; with one, `TimeBudget.confirmation_fits` on its state."""
    from raytune_ft.budget import TimeBudget

    if plan.config.time_budget is None:
        return True
    state = _budget_state(plan)
    budget = TimeBudget(plan.config.time_budget_s, slots=plan.config.max_concurrent,
                        confirm_runs=confirm_runs(plan.config),
                        trial_lengths=list(state.get("trial_lengths_s") or []),
                        full_lengths=list(state.get("full_lengths_s") or []))
    return budget.confirmation_fits(time.time() - (state.get("started_at") or started))


def record_budget(plan: SearchPlan, summary: dict[str, Any], budget: dict[str, Any],
                  started: float) -> dict[str, Any]:
    """summary.json gains the budget: its size, what was used, trials run, why it stopped."""
    import json

    used = time.time() - (budget.get("started_at") or started)
    budget = {**budget, "used_s": used, "trials_run": summary.get("trials")}
    summary = {**summary, "time_budget": budget}
    plan.experiment.local_path("summary.json").write_text(
        json.dumps(summary, indent=2, default=str))
    plan.experiment.publish("summary.json")
    print(f"[raytune_ft] time budget {budget['time_budget']}: used {format_duration(used)} "
          f"({used / budget['time_budget_s']:.0%})", flush=True)
    return summary


def score_and_rewrite(plan: SearchPlan, rows: list, confirmation) -> dict[str, Any]:
    """Score the winner and the recipe on the held-out test set (when the config has one) and
    rewrite the results with it; {} when that fails (the results written so far stay)."""
    from raytune_ft.results import write_results
    from raytune_ft.testscore import test_score

    try:
        test = test_score(plan, rows, confirmation)
    except Exception as err:  # noqa: BLE001 - val results must survive a failing test run
        print(f"[raytune_ft] scoring on the test set failed ({type(err).__name__}: {err}); "
              "the val results are kept.", file=sys.stderr)
        return {}
    summary = write_results(rows, plan.job, confirmation, test)
    if "note" in test:
        print(f"[raytune_ft] test score: {test['note']}")
    else:
        print(f"[raytune_ft] picked on val, scored on test ({test['test_annotation']}): "
              + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} -"
                          for k, v in test.items() if k in ("winner", "recipe")))
    return summary


def report(experiment: ExperimentStorage) -> None:
    """report.html at the end of every search (a failure to draw never fails the search)."""
    from raytune_ft.report import write_report

    try:
        print(f"[raytune_ft] report:          {write_report(experiment)}")
    except Exception as err:  # noqa: BLE001 - the results are written; the report is extra
        print(f"[raytune_ft] report.html could not be written ({type(err).__name__}: {err}); "
              f"python -m raytune_ft.report {experiment.path} retries it.", file=sys.stderr)


def confirm_and_rewrite(plan: SearchPlan, rows: list, k: int, seeds: int) -> dict[str, Any]:
    """Confirm the best k configs and the recipe over `seeds` seeds, rewrite the results with
    it and return the new summary. A confirmation run that fails leaves the search's results
    as they were written (a bad request still raises UserError first)."""
    from raytune_ft.confirm import format_confirmation, pick_candidates, run_confirmation
    from raytune_ft.results import write_results

    pick_candidates(rows, k, plan.job.mode)  # UserError before anything runs
    try:
        confirmation = run_confirmation(plan, rows, k, seeds)
    except Exception as err:  # noqa: BLE001 - the search's results must survive any failure
        print(f"[raytune_ft] the confirmation failed ({type(err).__name__}: {err}); the "
              f"search's results are kept. Retry with: python -m raytune_ft.confirm "
              f"{plan.experiment.path}", file=sys.stderr)
        return {}
    print("\n" + format_confirmation(confirmation, plan.job.metric))
    summary = score_and_rewrite(plan, rows, confirmation)
    if not summary:
        summary = write_results(rows, plan.job, confirmation)
    print(f"[raytune_ft] best config:     {summary.get('best_config')} (the confirmed winner)")
    print(f"[raytune_ft] best checkpoint: {summary.get('best_checkpoint')}")
    return summary


def trial_statuses(experiment: ExperimentStorage) -> dict[str, str]:
    """Each trial's status as Tune saved it: what a resume would do with it (TERMINATED, ERROR,
    or PENDING for a trial an interruption cut short: in memory Tune calls those TERMINATED)."""
    from ray.tune import ExperimentAnalysis

    where = experiment.restore_kwargs()
    analysis = ExperimentAnalysis(where["path"], storage_filesystem=where["storage_filesystem"])
    return {t.trial_id: t.status for t in analysis.trials}


def finish(grid, plan: SearchPlan, statuses: dict[str, str], started: float):
    """Collect the trials into results files and print the final table; (rows, summary)."""
    from raytune_ft.results import collect, format_table, write_hparams, write_results

    job, exp = plan.job, plan.experiment
    rows = collect(grid, job, statuses)
    summary = write_results(rows, job)
    write_hparams(rows, job)
    exp.publish(OPTUNA_DB)
    print("\n" + format_table(rows, job.metric))
    print(f"\n[raytune_ft] {len(rows)} trials in {time.time() - started:.0f}s; by status "
          f"{summary['by_status']}")
    if summary["best_trial"]:
        print(f"[raytune_ft] best: trial {summary['best_trial']} {job.metric}="
              f"{summary['best_metric']:.4f} (recipe/trial 0: {summary['trial0_metric']}); "
              f"hyper-parameters {summary['best_hparams']}")
        print(f"[raytune_ft] best config:     {summary['best_config']}")
        print(f"[raytune_ft] best checkpoint: {summary.get('best_checkpoint')}")
    print(f"[raytune_ft] results:         {exp.join('results.csv')}, summary.json")
    print(f"[raytune_ft] TensorBoard:     tensorboard --logdir {exp.path}")
    if summary["by_status"].get("errored"):
        print("[raytune_ft] some trials errored: see the reason column of results.csv")
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    """`python -m raytune_ft.search` (see raytune_ft.cli.search)."""
    from raytune_ft.cli.search import main as cli_main

    return cli_main(argv)


__all__ = ["SearchPlan", "SearchResult", "prepare", "run_search"]

if __name__ == "__main__":
    sys.exit(main())
