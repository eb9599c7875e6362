"""`python -m raytune_ft.search`: tune an MMDetection fine-tune's schedule with Ray Tune + Optuna.

With no arguments it runs the embedded demo (real tree-crown images, ImageNet MobileNetV2
weights) on a local Ray. Outputs land in <storage-path>/<name>/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from raytune_ft.cli_common import (add_config_args, add_resource_args, check_cluster_fits,
                                   check_resources, default_cpus_per_worker, init_ray)
from raytune_ft.errors import UserError, user_errors_exit_2

SCHEDULERS = ("step-probe", "step-after", "progress-asha", "fifo")  # raytune_ft.scheduler
DEFAULT_GRACE = 1 / 3  # rungs at 1/3 and 2/3 of each schedule (rf 2)
OLD_GRACE = 0.34
# Chosen on the demo's curve replay (bench/replay.py, 300 seeds): with 10-30 trials, TPE that
# starts modelling after 3 trials reached 95% of the best config in about half the trial-epochs
# of Optuna's default 10 (2 and 3 tie; 4, 5 and 10 are slower).
TPE_STARTUP_TRIALS = 3
DEMO_TRIALS = 10  # about 55 trial-epochs on the demo: ~10 min on 2 CPU cores
TRIAL_DRIVER_CPU = 0.01  # the Tune trial only drives a Train run; its workers hold the resources


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raytune_ft.search", description=__doc__)
    add_config_args(p, required=False)
    p.add_argument("--space", default=None,
                   help="search space YAML (default search_spaces/default.yaml; demo: demo.yaml)")
    add_resource_args(p, workers_flag="--workers-per-trial")
    p.add_argument("--num-samples", type=int, default=None,
                   help=f"trials to run (default 8; the demo: {DEMO_TRIALS})")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials running at once")
    p.add_argument("--scheduler", choices=list(SCHEDULERS), default="step-probe",
                   help="early stopping: step-probe (default: ASHA ranking trials before their LR "
                        "step on an LR-step probe), step-after (ASHA judging each trial only "
                        "after its LR step), progress-asha (the old rule: ASHA on raw values at "
                        "a fraction of each schedule, biased against high lr), fifo (none)")
    p.add_argument("--searcher", choices=["tpe", "random", "grid"], default="tpe")
    p.add_argument("--startup-trials", type=int, default=TPE_STARTUP_TRIALS,
                   help="TPE: trials sampled at random (the recipe included) before TPE models "
                        f"the results (default {TPE_STARTUP_TRIALS}; Optuna's own default is 10, "
                        "tuned for cheap objectives)")
    p.add_argument("--grid-points", type=int, default=3,
                   help="values per continuous parameter for --searcher grid")
    p.add_argument("--grace", type=float, default=None,
                   help="first rung, as a fraction of each trial's own schedule (default "
                        f"{DEFAULT_GRACE:.3g}; progress-asha: its old {OLD_GRACE})")
    p.add_argument("--reduction-factor", type=float, default=2.0,
                   help="keep the best 1/rf of the trials at each rung (default 2)")
    p.add_argument("--probe-length", type=float, default=0.5,
                   help="step-probe: length of the LR-step probe as a fraction of an epoch")
    p.add_argument("--metric", default=None, help="metric to optimise (default coco/bbox_mAP, or the val evaluator's first metric when it reports no COCO box mAP)")
    p.add_argument("--mode", choices=["max", "min"], default="max")
    p.add_argument("--storage-path", default="experiments",
                   help="where experiments are written (a folder, or s3://... on a cluster)")
    p.add_argument("--name", default=None, help="experiment name (default search_<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted experiment --name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-failures", type=int, default=2,
                   help="worker-group restarts per trial before it is marked errored")
    p.add_argument("--num-to-keep", type=int, default=2,
                   help="checkpoints kept per trial (the best ones by --metric)")
    p.add_argument("--points", default=None,
                   help="JSON list of extra points (in the space's terms) evaluated right after "
                        "the recipe, e.g. '[{\"lr\": 0.001}]'; unset keys take the recipe's")
    p.add_argument("--smoke", action="store_true",
                   help="preflight also runs one real training iteration and one validation "
                        "batch in this process (seconds) before any trial starts")
    p.add_argument("--check-only", action="store_true",
                   help="run every preflight check and exit without starting trials")
    return p


def prepare(args: argparse.Namespace):
    """Everything that can fail on user input, checked before Ray starts any trial."""
    from raytune_ft.config import config_to_dict, load_config
    from raytune_ft.hparams import read_hparams
    from raytune_ft.preflight import (check_annotations, check_load_from,
                                      check_load_from_fits, check_metric,
                                      check_points_apply, check_storage, default_metric, smoke)
    from raytune_ft.scheduler import probe_spec
    from raytune_ft.space import TrialShape, load_space, recipe_point, to_hparams
    from raytune_ft.trainable import SearchJob
    from raytune_ft.trial import TrialResources

    demo = args.config is None
    if demo:
        from raytune_ft.demo import DEMO_CONFIG, ensure_demo

        ensure_demo()
        args.config = str(DEMO_CONFIG)
        args.space = args.space or str(Path(__file__).resolve().parents[1] /
                                       "search_spaces" / "demo.yaml")
    args.cpus_per_worker = default_cpus_per_worker(args, demo, reserved=TRIAL_DRIVER_CPU)
    args.space = args.space or "search_spaces/default.yaml"
    if args.num_samples is None:
        args.num_samples = DEMO_TRIALS if demo else 8
    check_resources(args.workers, args.cpus_per_worker, args.gpus_per_worker)
    if args.num_samples < 1 or args.max_concurrent < 1:
        raise UserError(f"--num-samples and --max-concurrent must be >= 1, got "
                        f"{args.num_samples} and {args.max_concurrent}.")
    if args.startup_trials < 1:
        raise UserError(f"--startup-trials must be >= 1, got {args.startup_trials}.")
    cfg = load_config(args.config, args.cfg_options)
    args.metric = args.metric or default_metric(cfg)
    space = load_space(args.space)
    data = check_annotations(cfg, "train_dataloader")
    check_annotations(cfg, "val_dataloader")
    check_load_from(cfg)
    check_load_from_fits(cfg)
    check_metric(cfg, args.metric)
    check_storage(args.storage_path)
    args.grace = check_scheduler_args(args, cfg)
    recipe = read_hparams(cfg)
    batch = int(cfg.train_dataloader.get("batch_size", 1))
    shape = TrialShape(total_batch=batch * args.workers,
                       iters_per_epoch=max(1, math.ceil(data["images"] / (batch * args.workers))))
    points = [recipe_point(space, recipe, shape)]
    points += [{**points[0], **extra} for extra in parse_points(args.points, space)]
    check_points_apply(cfg, [to_hparams(p, space, recipe, shape) for p in points])
    if args.smoke:
        print(f"[raytune_ft] smoke test passed in {smoke(cfg):.1f}s", flush=True)
    name = args.name or time.strftime("search_%Y%m%d_%H%M%S")
    storage = args.storage_path if "://" in args.storage_path else \
        str(Path(args.storage_path).resolve())
    job = SearchJob(
        cfg=config_to_dict(cfg), space=space, recipe=recipe, shape=shape,
        resources=TrialResources(args.workers, args.cpus_per_worker, args.gpus_per_worker,
                                 args.placement),
        experiment_dir=os.path.join(storage, name), metric=args.metric, mode=args.mode,
        max_failures=args.max_failures, num_to_keep=args.num_to_keep,
        probe=probe_spec(args.scheduler, args.grace, args.reduction_factor, args.probe_length),
    )
    return job, points, storage, name, data


def check_scheduler_args(args: argparse.Namespace, cfg) -> float:
    """The scheduler flags make a rung ladder the chosen rule can honour; returns the grace."""
    from raytune_ft.hparams import find_scheduler
    from raytune_ft.preflight import ENGINE_METRICS
    from raytune_ft.probe import check_probe_length
    from raytune_ft.scheduler import rung_fractions

    grace = args.grace if args.grace is not None else (
        OLD_GRACE if args.scheduler == "progress-asha" else DEFAULT_GRACE)
    if args.scheduler == "fifo":
        return grace
    if not 0 < grace < 1:
        raise UserError(f"--grace is the first rung as a fraction of each trial's schedule and "
                        f"must be in (0, 1), got {grace:g}.")
    if args.reduction_factor <= 1:
        raise UserError(f"--reduction-factor must be > 1 (keep the best 1/rf at each rung), "
                        f"got {args.reduction_factor:g}.")
    if args.scheduler in ("step-probe", "step-after"):
        if find_scheduler(cfg, "MultiStepLR") is None:
            raise UserError(f"--scheduler {args.scheduler} compares trials around their LR step, "
                            "but the config's param_scheduler has no MultiStepLR (an LR step). "
                            "Use --scheduler progress-asha or fifo for other schedules.")
        if args.scheduler == "step-probe" and args.metric in ENGINE_METRICS:
            raise UserError(f"--scheduler step-probe ranks trials before their LR step on the "
                            f"probe's validation score, but --metric {args.metric} is not a val "
                            "metric the probe can measure. Use a metric of the val evaluator, or "
                            "--scheduler step-after.")
        check_probe_length(args.probe_length)
    rungs = rung_fractions(grace, args.reduction_factor)
    if not rungs:
        raise UserError(f"--grace {grace:g} with --reduction-factor {args.reduction_factor:g} "
                        "places no rung before the end of a schedule, so nothing would ever "
                        "be stopped; lower --grace or use --scheduler fifo.")
    return grace


def parse_points(text: str | None, space) -> list[dict[str, Any]]:
    if not text:
        return []
    try:
        points = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--points is not valid JSON ({err.msg}): {text!r}.") from err
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise UserError("--points must be a JSON list of objects, e.g. '[{\"lr\": 0.001}]'.")
    for point in points:
        unknown = sorted(set(point) - set(space.params))
        if unknown:
            raise UserError(f"--points names {unknown}, which the search space "
                            f"'{space.source}' does not search ({sorted(space.params)}).")
    return points


def build_searcher(args, job, points: list[dict[str, Any]]):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if args.searcher == "tpe":
        import optuna

        from raytune_ft.searcher import StepFairOptunaSearch

        os.makedirs(job.experiment_dir, exist_ok=True)
        storage = optuna.storages.RDBStorage(f"sqlite:///{job.experiment_dir}/optuna.db")
        sampler = optuna.samplers.TPESampler(seed=args.seed,
                                             n_startup_trials=args.startup_trials)
        return StepFairOptunaSearch(metric=job.metric, mode=job.mode, points_to_evaluate=points,
                                    sampler=sampler, storage=storage,
                                    study_name=os.path.basename(job.experiment_dir))
    # A SearchGenerator ignores TuneConfig.max_concurrent_trials: bound it here.
    return BasicVariantGenerator(points_to_evaluate=points, random_state=args.seed,
                                 max_concurrent=args.max_concurrent)


def trial_driver_resources(nodes: list[dict[str, float]]) -> dict[str, float]:
    """What a Tune trial (the driver of one Train run) reserves. On a cluster that offers the
    `trial_driver` resource (cluster.yaml puts it on the CPU head) trials stay off GPU nodes."""
    if any(n.get("trial_driver") for n in nodes):
        return {"cpu": 0, "trial_driver": 1}
    return {"cpu": TRIAL_DRIVER_CPU}


def build_tuner(args, job, points, storage: str, name: str, nodes: list[dict[str, float]]):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from raytune_ft.scheduler import build_scheduler
    from raytune_ft.trainable import tune_trainable

    trainable = tune.with_resources(tune.with_parameters(tune_trainable, job=job),
                                    trial_driver_resources(nodes))
    exp_path = os.path.join(storage, name)
    if args.resume:
        if not tune.Tuner.can_restore(exp_path):
            raise UserError(f"--resume: no experiment to resume at '{exp_path}'. Use the --name "
                            "and --storage-path of the interrupted search.")
        return tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    if os.path.exists(os.path.join(exp_path, "tuner.pkl")):
        raise UserError(f"experiment '{exp_path}' exists already: pass --resume to continue it "
                        "or choose another --name.")
    num_samples = 1 if args.searcher == "grid" else args.num_samples
    return tune.Tuner(
        trainable,
        param_space=job.space.to_tune(args.searcher, args.grid_points),
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(args, job, points),
            scheduler=build_scheduler(args.scheduler, job.metric, job.mode, args.grace,
                                      args.reduction_factor),
            num_samples=num_samples,
            max_concurrent_trials=args.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=1,
            failure_config=tune.FailureConfig(max_failures=0),
            # result.json/progress.csv for restore and analysis; TensorBoard is written per
            # epoch by raytune_ft itself (Tune's would key it by training_iteration).
            callbacks=[JsonLoggerCallback(), CSVLoggerCallback()]),
    )


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # see build_tuner
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    started = time.time()
    job, points, storage, name, data = prepare(args)
    print(f"[raytune_ft] preflight OK in {time.time() - started:.1f}s: config {args.config}, "
          f"space {args.space}, {data['images']} train images, trial 0 = recipe {points[0]}",
          flush=True)
    nodes = init_ray(args.address)
    check_cluster_fits(nodes, args.workers, args.cpus_per_worker, args.gpus_per_worker,
                       args.placement, trial_cpus=trial_driver_resources(nodes)["cpu"]
                       * args.max_concurrent)
    if args.check_only:
        print(f"[raytune_ft] check-only: all checks passed in {time.time() - started:.1f}s "
              f"({len(nodes)} Ray node(s)); no trial was started.")
        return 0
    tuner = build_tuner(args, job, points, storage, name, nodes)
    print(f"[raytune_ft] experiment {job.experiment_dir}: {args.num_samples} trial(s), "
          f"{args.searcher} + {args.scheduler}, metric {job.metric} ({job.mode})", flush=True)
    grid = tuner.fit()  # Tune turns Ctrl-C into a clean stop with its state saved
    statuses = trial_statuses(job.experiment_dir)
    code = finish(grid, job, statuses, started)
    unfinished = [t for t, s in statuses.items() if s not in ("TERMINATED", "ERROR")]
    if unfinished or len(statuses) < (1 if args.searcher == "grid" else args.num_samples):
        print(f"\n[raytune_ft] the search was interrupted ({len(unfinished)} trial(s) unfinished); "
              "its state is saved. Resume it with:\n  python -m raytune_ft.search --resume "
              f"--name {name} --storage-path {args.storage_path} --config {args.config} "
              f"--space {args.space}", file=sys.stderr)
        return 130
    return code


def trial_statuses(experiment_dir: str) -> dict[str, str]:
    """Each trial's status as Tune saved it: what a resume would do with it (TERMINATED, ERROR,
    or PENDING for a trial an interruption cut short: in memory Tune calls those TERMINATED)."""
    from ray.tune import ExperimentAnalysis

    return {t.trial_id: t.status for t in ExperimentAnalysis(experiment_dir).trials}


def finish(grid, job, statuses: dict[str, str], started: float) -> int:
    from raytune_ft.results import collect, format_table, write_results

    rows = collect(grid, job, statuses)
    summary = write_results(rows, job, Path(job.experiment_dir))
    print("\n" + format_table(rows, job.metric))
    print(f"\n[raytune_ft] {len(rows)} trials in {time.time() - started:.0f}s; by status "
          f"{summary['by_status']}")
    if summary["best_trial"]:
        print(f"[raytune_ft] best: trial {summary['best_trial']} {job.metric}="
              f"{summary['best_metric']:.4f} (recipe/trial 0: {summary['trial0_metric']}); "
              f"hyper-parameters {summary['best_hparams']}")
        print(f"[raytune_ft] best config:     {summary['best_config']}")
        print(f"[raytune_ft] best checkpoint: {summary.get('best_checkpoint')}")
    print(f"[raytune_ft] results:         {job.experiment_dir}/results.csv, summary.json")
    print(f"[raytune_ft] TensorBoard:     tensorboard --logdir {job.experiment_dir}")
    if summary["by_status"].get("errored"):
        print("[raytune_ft] some trials errored: see the reason column of results.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
