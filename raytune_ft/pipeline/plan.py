"""A search's plan: every option resolved and every input checked, before Ray starts.

`prepare(SearchConfig)` is the preflight of `search` and `confirm`: it fills the defaults (the
demo, the space, CPUs per worker), loads and checks the config, the data, the checkpoint, the
space and the scheduler's arguments, and returns a `SearchPlan`: what every trial shares. A bad
input raises `UserError` here, before anything expensive runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raytune_ft.errors import UserError
from raytune_ft.options import DEFAULT_TRIALS, DEMO_TIME_BUDGET, DEMO_TRIALS, SearchConfig, flag
from raytune_ft.storage import ExperimentStorage, user_or_shipped

if TYPE_CHECKING:  # imported where used: `prepare` is the first thing that needs mmengine
    from raytune_ft.tuning.space import SearchSpace
    from raytune_ft.tuning.trainable import SearchJob


@dataclass(frozen=True)
class SearchPlan:
    """A search after preflight: its options with every default resolved, and what the trials
    share. Nothing expensive has started yet."""

    config: SearchConfig
    job: SearchJob
    points: list[dict[str, Any]]
    train_images: int
    saved_num_samples: int = 0  # with --resume: the trials the search was last run with

    @property
    def experiment(self) -> ExperimentStorage:
        return self.job.experiment

    @property
    def is_demo(self) -> bool:
        """The embedded demo's config (given, or the default when no --config was)."""
        from raytune_ft.data.demo import is_demo_config

        return is_demo_config(self.config.config)


def start_ray(plan: SearchPlan) -> list[dict[str, float]]:
    """Ray for a search or a confirmation (embedded, or the cluster at --address); return the
    alive nodes' resources. Without --verbose Ray's and Optuna's lines go to the experiment's
    driver.log; a --check-only run has no experiment and keeps none of them (an error still
    reaches the console; --verbose shows all): it used to leave a scratch folder per check."""
    import os

    from raytune_ft.engine.cluster import init_ray
    from raytune_ft.storage import DRIVER_LOG

    config = plan.config
    if config.verbose:
        log_file = None
    elif config.check_only:
        log_file = os.devnull
    else:
        log_file = plan.experiment.local_path(DRIVER_LOG)
    return init_ray(config.address, log_file=log_file)


def resolve_defaults(config: SearchConfig, saved: SearchConfig | None = None) -> SearchConfig:
    """Fill what the user left unset: the demo, the space, CPUs per worker, trial count (with
    --resume, `saved`'s: the options the search was last run with)."""
    from raytune_ft.engine.cluster import default_cpus_per_worker
    from raytune_ft.tuning.tuner import TRIAL_DRIVER_CPU

    changes: dict[str, Any] = {}
    demo = config.config is None  # no --config: the demo, with the demo's defaults
    if demo:
        from raytune_ft.data.demo import DEMO_CONFIG, DEMO_SPACE, ensure_demo

        ensure_demo()
        changes.update(config=str(DEMO_CONFIG), space=config.space or str(DEMO_SPACE))
    changes["space"] = user_or_shipped(changes.get("space") or config.space
                                       or "search_spaces/default.yaml")
    changes["cpus_per_worker"] = default_cpus_per_worker(
        config.cpus_per_worker, config.workers_per_trial, config.address, demo,
        reserved=TRIAL_DRIVER_CPU)
    if config.num_samples is None:  # a resume runs to the count the search was run with
        changes["num_samples"] = (saved.num_samples if saved is not None
                                  else DEMO_TRIALS if demo else DEFAULT_TRIALS)
    if demo and config.time_budget is None and config.searcher != "grid":
        changes["time_budget"] = DEMO_TIME_BUDGET
    changes["name"] = config.name or time.strftime("search_%Y%m%d_%H%M%S")
    return config.replace(**changes)


def saved_config(config: SearchConfig) -> SearchConfig | None:
    """With --resume, the options the experiment was last run with (None for a new search or
    an experiment without search_config.json)."""
    from raytune_ft.experiment.record import load_config_of

    if not config.resume or not config.name:
        return None
    try:
        return load_config_of(ExperimentStorage.create(config.storage_path, config.name))
    except UserError:
        return None


def check_extension(config: SearchConfig, saved: SearchConfig | None) -> None:
    """`--resume --num-samples N` continues to N trials in all; N below what the search was
    run with would silently drop nothing and run nothing: refused."""
    if config.resume and saved is None:
        where = ExperimentStorage.create(config.storage_path, config.name)
        raise UserError(f"--resume: '{where.path}' holds no search to resume or extend (no "
                        "search_config.json). Use the --name and --storage-path of a search "
                        "that was started.")
    if saved is not None and config.num_samples < saved.num_samples:
        raise UserError(f"{flag('num_samples')} {config.num_samples} with --resume: the search "
                        f"'{config.name}' was run with {saved.num_samples} trial(s). --resume "
                        f"finishes those; to extend it pass --num-samples above "
                        f"{saved.num_samples} (the total, new trials = N - trials run).")


def prepare(config: SearchConfig) -> SearchPlan:
    """Everything that can fail on user input, checked before Ray starts any trial."""
    from raytune_ft.engine.trial import TrialResources
    from raytune_ft.mmconfig.config import config_to_dict, load_config, test_annotation
    from raytune_ft.mmconfig.hparams import read_hparams
    from raytune_ft.mmconfig.metrics import default_metric
    from raytune_ft.mmconfig.preflight import (check_annotations, check_load_from,
                                               check_load_from_fits, check_metric,
                                               check_points_apply)
    from raytune_ft.tuning.scheduler import search_probe_spec
    from raytune_ft.tuning.space import TrialShape, load_space, recipe_point, to_hparams
    from raytune_ft.tuning.trackers import check_trackers
    from raytune_ft.tuning.trainable import SearchJob

    saved = saved_config(config)
    config = resolve_defaults(config, saved)
    check_extension(config, saved)
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
    check_points_in_space(points, space, config.searcher)
    check_points_apply(cfg, [to_hparams(p, space, recipe, shape) for p in points])
    if config.smoke:
        run_smoke(config, cfg, shape, space, recipe)
    job = SearchJob(
        cfg=config_to_dict(cfg), space=space, recipe=recipe, shape=shape,
        resources=TrialResources(workers, config.cpus_per_worker, config.gpus_per_worker,
                                 config.placement),
        experiment=experiment, metric=config.metric, mode=config.mode,
        max_failures=config.max_failures, num_to_keep=config.num_to_keep,
        max_preemptions=config.max_preemptions,
        resource_wait_s=config.resource_wait_s,
        probe=search_probe_spec(config.scheduler, config.resolved_grace,
                                config.reduction_factor, config.probe_length),
        verbose=config.verbose,
    )
    return SearchPlan(config, job, points, data["images"],
                      saved.num_samples if saved is not None else 0)


def run_smoke(config: SearchConfig, cfg, shape, space: SearchSpace,
              recipe: dict[str, Any]) -> None:
    """--smoke: one training iteration and one validation batch in this process. Trials that
    train on GPUs this driver lacks (a CPU head) get the same check on the CPU, said so, and
    no time-budget estimate from it (a CPU iteration says nothing of a GPU trial's length)."""
    import torch

    from raytune_ft.mmconfig.preflight import check_time_budget_holds_a_trial, smoke

    stand_in = config.gpus_per_worker > 0 and not torch.cuda.is_available()
    ran = smoke(cfg, cpu_stand_in=stand_in)
    if stand_in:
        print(f"[raytune_ft] smoke test passed in {ran.seconds:.1f}s on this driver's CPU (the "
              "trials train on GPUs, which this machine does not have): the config builds, "
              "its data and weights load and one step trains"
              + ("; mixed precision ran as a plain OptimWrapper here"
                 if cfg.get("optim_wrapper", {}).get("type") == "AmpOptimWrapper" else "")
              + (". A CPU iteration says nothing of a GPU trial's length: --time-budget is not "
                 "checked against it" if config.time_budget is not None else ""), flush=True)
        return
    print(f"[raytune_ft] smoke test passed in {ran.seconds:.1f}s "
          f"({ran.iteration_seconds:.2f}s per training iteration)", flush=True)
    if config.time_budget is not None:
        epochs = shortest_schedule(space, recipe)
        check_time_budget_holds_a_trial(
            config.time_budget_s, ran.iteration_seconds * shape.iters_per_epoch * epochs,
            f"{shape.iters_per_epoch} iterations per epoch x {epochs} epochs, the shortest "
            f"schedule, at the smoke run's {ran.iteration_seconds:.2f}s per iteration; "
            "validation and start-up not counted")


def check_scheduler_args(config: SearchConfig, cfg) -> None:
    """The scheduler's rung ladder is one the chosen rule can honour on this config."""
    from raytune_ft.mmconfig.hparams import find_scheduler
    from raytune_ft.mmconfig.metrics import ENGINE_METRICS
    from raytune_ft.tuning.scheduler import SCHEDULER_RULES, rung_fractions

    rule = SCHEDULER_RULES[config.scheduler]
    if not rule.stops_trials:
        return
    if rule.needs_lr_step and find_scheduler(cfg, "MultiStepLR") is None:
        raise UserError(f"--scheduler {config.scheduler} compares trials around their LR step, "
                        "but the config's param_scheduler has no MultiStepLR (an LR step). Use "
                        "--scheduler progress-asha or fifo for other schedules.")
    if rule.probes and config.metric in ENGINE_METRICS:
        raise UserError(f"--scheduler {config.scheduler} ranks trials before their LR step on "
                        f"the probe's validation score, but --metric {config.metric} is not a "
                        "val metric the probe can measure. Use a metric of the val evaluator, "
                        "or --scheduler step-after.")
    grace = config.resolved_grace
    if not rung_fractions(grace, config.reduction_factor):
        raise UserError(f"--grace {grace:g} with --reduction-factor {config.reduction_factor:g} "
                        "places no rung before the end of a schedule, so nothing would ever "
                        "be stopped; lower --grace or use --scheduler fifo.")


def shortest_schedule(space: SearchSpace, recipe: dict[str, Any]) -> int:
    """The fewest epochs a trial of this space can train."""
    param = space.params.get("max_epochs")
    if param is None:
        return int(recipe.get("max_epochs", 1))
    return int(min(param.values) if param.type == "choice" else param.low)


def check_points(points, space: SearchSpace) -> list[dict[str, Any]]:
    """Extra points name only parameters the space searches."""
    for point in points:
        unknown = sorted(set(point) - set(space.params))
        if unknown:
            raise UserError(f"{flag('points')} names {unknown}, which the search space "
                            f"'{space.source}' does not search ({sorted(space.params)}).")
    return [dict(p) for p in points]


def check_points_in_space(points: list[dict[str, Any]], space: SearchSpace,
                          searcher: str) -> None:
    """Trial 0 (the recipe) and the --points run as given even where they lie outside the
    space's ranges (one line says so, in place of Optuna's warning); a categorical value the
    space does not list cannot be told to Optuna and is refused."""
    from raytune_ft.tuning.space import values_outside

    for order, point in enumerate(points):
        outside = values_outside(space, point)
        if not outside:
            continue
        what = "the config's recipe" if order == 0 else f"--points entry {order}"
        choices = [why for name, why in outside.items() if space.params[name].type == "choice"]
        if choices and searcher != "grid":
            raise UserError(
                f"trial {order} ({what}) cannot run: {'; '.join(choices)} of the search "
                f"space '{space.source}', and the searcher only runs values the space lists. "
                "Add the value to the space's `values`, or change the config (the recipe) or "
                "--points.")
        print(f"[raytune_ft] note: trial {order} ({what}) runs as given although "
              f"{'; '.join(outside.values())} of the search space; the other trials sample "
              "inside it", flush=True)


__all__ = ["SearchPlan", "check_points", "check_points_in_space", "check_scheduler_args",
           "prepare", "resolve_defaults"]
