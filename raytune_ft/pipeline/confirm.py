"""The confirmation run: re-run the search's top K configs *and the recipe* at their full
schedules with S fresh seeds each (a second Ray Tune run, FIFO over configs x seeds, seeds
through mmengine's `randomness.seed`), then rewrite the experiment's results around the
confirmed winner. The statistics are raytune_ft.experiment.confirmation's.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

from raytune_ft.errors import UserError
from raytune_ft.experiment.confirmation import (FIRST_SEED, Confirmation, format_confirmation,
                                                pick_candidates, score)
from raytune_ft.experiment.record import confirm_experiment, experiment_at, load_config_of
from raytune_ft.pipeline.plan import SearchPlan, start_ray

if TYPE_CHECKING:
    from raytune_ft.experiment.results import TrialRow
    from raytune_ft.experiment.summary import Summary


def run_confirmation(plan: SearchPlan, rows: list[TrialRow], k: int,
                     n_seeds: int) -> Confirmation:
    """Run (or resume) the confirmation of `rows`' top k configs and the recipe."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from raytune_ft.experiment.results import collect
    from raytune_ft.tuning.progress import ConsoleProgress
    from raytune_ft.tuning.trackers import result_loggers
    from raytune_ft.tuning.trainable import ConfirmRun, confirm_trainable
    from raytune_ft.tuning.tuner import (driven_trainable, fit_quietly, new_tuner,
                                         restore_or_create, trial_statuses)

    config = plan.config
    seeds = list(range(FIRST_SEED, FIRST_SEED + n_seeds))
    candidates = pick_candidates(rows, k, plan.job.mode)
    exp = confirm_experiment(plan.experiment)
    job = dataclasses.replace(plan.job, experiment=exp, probe=None)
    nodes = start_ray(plan)
    trainable = driven_trainable(confirm_trainable, job, nodes)
    print(f"\n[raytune_ft] confirmation: {len(candidates)} config(s) "
          f"({', '.join(c.role for c in candidates)}) x seeds {seeds} at their full schedules; "
          f"runs in {exp.path}", flush=True)

    def create():
        space = {"candidate": tune.grid_search([ConfirmRun.candidate(c.source_trial, c.point)
                                                for c in candidates]),
                 "seed": tune.grid_search(seeds)}
        # the generator bounds concurrency itself (Tune ignores max_concurrent_trials then)
        return new_tuner(
            trainable, space,
            tune.TuneConfig(search_alg=BasicVariantGenerator(max_concurrent=config.max_concurrent)),
            config, exp,
            [*result_loggers(),
             ConsoleProgress(job.metric, job.mode, len(candidates) * len(seeds), experiment=exp,
                             resource_wait=config.resource_wait)])

    grid = fit_quietly(restore_or_create(trainable, exp, create), config.verbose)
    runs = collect(grid, job, trial_statuses(exp))
    by_source = {c.source_trial: c for c in candidates}
    for r in runs:
        run = ConfirmRun.of(r.config)
        r.phase, r.seed, r.source_trial = "confirm", run.seed, run.source_trial
        if r.source_trial in by_source:
            by_source[r.source_trial].rows.append(r)
    return score(Confirmation(seeds, candidates, plan.job.mode, job))


def confirm_and_rewrite(plan: SearchPlan, rows: list[TrialRow], k: int,
                        seeds: int) -> Summary | None:
    """Confirm the best k configs and the recipe over `seeds` seeds, rewrite the results with
    it and return the new summary. A confirmation run that fails leaves the search's results
    as they were written and returns None (a bad request still raises UserError first)."""
    from raytune_ft.experiment.results import write_results
    from raytune_ft.pipeline.testscore import score_and_rewrite

    pick_candidates(rows, k, plan.job.mode)  # UserError before anything runs
    try:
        confirmation = run_confirmation(plan, rows, k, seeds)
    except Exception as err:  # noqa: BLE001 - the search's results must survive any failure
        print(f"[raytune_ft] the confirmation failed ({type(err).__name__}: {err}); the "
              f"search's results are kept. Retry with: python -m raytune_ft.confirm "
              f"{plan.experiment.path}", file=sys.stderr)
        return None
    print("\n" + format_confirmation(confirmation, plan.job.metric))
    summary = score_and_rewrite(plan, rows, confirmation)
    if summary is None:
        summary = write_results(rows, plan.job, confirmation)
    print(f"[raytune_ft] best config:     {summary.best_config} (the confirmed winner)")
    print(f"[raytune_ft] best checkpoint: {summary.best_checkpoint}")
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
    ok = confirm_and_rewrite(plan, rows, k, seeds) is not None
    write_report_or_say(plan.experiment)
    return ok


__all__ = ["confirm_and_rewrite", "confirm_experiment_at", "run_confirmation"]
