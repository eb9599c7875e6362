"""The confirmation run: re-run the search's top K configs *and the recipe* at their full
schedules with S fresh seeds each (a second Ray Tune run, FIFO over configs x seeds, seeds
through mmengine's `randomness.seed`), then rewrite the experiment's results around the
confirmed winner. The statistics are raytune_ft.experiment.confirmation's.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from raytune_ft.errors import UserError
from raytune_ft.experiment.confirmation import (FIRST_SEED, Confirmation, format_confirmation,
                                                pick_candidates, score)
from raytune_ft.experiment.record import confirm_experiment, experiment_at, load_config_of
from raytune_ft.pipeline.plan import SearchPlan

if TYPE_CHECKING:
    from raytune_ft.experiment.results import TrialRow


def run_confirmation(plan: SearchPlan, rows: list[TrialRow], k: int,
                     n_seeds: int) -> Confirmation:
    """Run (or resume) the confirmation of `rows`' top k configs and the recipe."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from raytune_ft.engine.cluster import init_ray
    from raytune_ft.experiment.results import collect
    from raytune_ft.storage import DRIVER_LOG
    from raytune_ft.tuning.progress import ConsoleProgress
    from raytune_ft.tuning.trackers import result_loggers
    from raytune_ft.tuning.trainable import confirm_trainable
    from raytune_ft.tuning.tuner import (driven_trainable, fit_quietly, restore_or_create,
                                         trial_statuses)

    config = plan.config
    seeds = list(range(FIRST_SEED, FIRST_SEED + n_seeds))
    candidates = pick_candidates(rows, k, plan.job.mode)
    exp = confirm_experiment(plan.experiment)
    job = dataclasses.replace(plan.job, experiment=exp, probe=None)
    nodes = init_ray(config.address, log_file=None if config.verbose
                     else plan.experiment.local_path(DRIVER_LOG))
    trainable = driven_trainable(confirm_trainable, job, nodes)
    print(f"\n[raytune_ft] confirmation: {len(candidates)} config(s) "
          f"({', '.join(c.role for c in candidates)}) x seeds {seeds} at their full schedules; "
          f"runs in {exp.path}", flush=True)

    def create():
        space = {"candidate": tune.grid_search([{"source": c.source_trial, "point": c.point}
                                                for c in candidates]),
                 "seed": tune.grid_search(seeds)}
        # the generator bounds concurrency itself (Tune ignores max_concurrent_trials then)
        return tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=BasicVariantGenerator(max_concurrent=config.max_concurrent)),
            run_config=tune.RunConfig(
                verbose=1 if config.verbose else 0,
                failure_config=tune.FailureConfig(max_failures=0),
                callbacks=[*result_loggers(),
                           ConsoleProgress(job.metric, job.mode, len(candidates) * len(seeds),
                                           experiment=exp,
                                           resource_wait=config.resource_wait)],
                **exp.tune_run_kwargs()))

    grid = fit_quietly(restore_or_create(trainable, exp, create), config.verbose)
    runs = collect(grid, job, trial_statuses(exp))
    by_source = {c.source_trial: c for c in candidates}
    for r in runs:
        cand = r.config.get("candidate", {})
        r.phase, r.seed, r.source_trial = "confirm", int(r.config.get("seed")), cand.get("source")
        if r.source_trial in by_source:
            by_source[r.source_trial].rows.append(r)
    return score(Confirmation(seeds, candidates, plan.job.mode, job))


def confirm_and_rewrite(plan: SearchPlan, rows: list[TrialRow], k: int,
                        seeds: int) -> dict[str, Any]:
    """Confirm the best k configs and the recipe over `seeds` seeds, rewrite the results with
    it and return the new summary. A confirmation run that fails leaves the search's results
    as they were written (a bad request still raises UserError first)."""
    from raytune_ft.experiment.results import write_results
    from raytune_ft.pipeline.testscore import score_and_rewrite

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


def confirm_experiment_at(path: str, k: int, seeds: int, address: str | None = None) -> bool:
    """Confirm a finished search found at `path` (`python -m raytune_ft.confirm EXP`), then
    rewrite its results and report; False when the confirmation run failed."""
    from raytune_ft.experiment.results import read_rows
    from raytune_ft.pipeline.plan import prepare
    from raytune_ft.experiment.report import write_report_or_say

    if k < 1:
        raise UserError(f"--confirm must be >= 1 (configs to confirm), got {k}.")
    experiment = experiment_at(path)
    config = load_config_of(experiment).replace(
        storage_path=experiment.storage.root, name=experiment.name, resume=False,
        check_only=False, smoke=False, address=address, confirm=k, seeds=seeds,
        num_samples=None)
    rows = [r for r in read_rows(experiment) if r.phase == "search"]
    if not rows:
        raise UserError(f"experiment '{experiment.path}' has no results yet (trials.json): "
                        "finish it first with python -m raytune_ft.search --resume.")
    plan = prepare(config)
    ok = bool(confirm_and_rewrite(plan, rows, k, seeds))
    write_report_or_say(plan.experiment)
    return ok


__all__ = ["confirm_and_rewrite", "confirm_experiment_at", "run_confirmation"]
