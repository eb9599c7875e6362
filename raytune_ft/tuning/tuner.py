"""Opening a Tune run, for the pipeline's search and confirmation: a new `tune.Tuner`, or
`Tuner.restore` of the same experiment's saved state (the search's `--resume`, a confirmation
finishing its runs), and what each Tune trial reserves for itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raytune_ft.errors import UserError
from raytune_ft.storage import ExperimentStorage

if TYPE_CHECKING:
    from ray.tune import Tuner

    from raytune_ft.options import SearchConfig
    from raytune_ft.tuning.trainable import SearchJob

TRIAL_DRIVER_CPU = 0.01  # the Tune trial only drives a Train run; its workers hold the resources


def trial_driver_resources(nodes: list[dict[str, float]]) -> dict[str, float]:
    """What a Tune trial (the driver of one Train run) reserves. On a cluster that offers the
    `trial_driver` resource (cluster.yaml puts it on the CPU head) trials stay off GPU nodes."""
    if any(n.get("trial_driver") for n in nodes):
        return {"cpu": 0, "trial_driver": 1}
    return {"cpu": TRIAL_DRIVER_CPU}


def driven_trainable(function: Callable, job: SearchJob, nodes: list[dict[str, float]]):
    """`function(config, job)` as a Tune trainable that reserves only what driving one Train
    run needs (`trial_driver_resources`); the job reaches each trial through the object store."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(function, job=job),
                               trial_driver_resources(nodes))


def restore_or_create(trainable: Any, experiment: ExperimentStorage,
                      create: Callable[[], Any], resume: bool | None = None):
    """`Tuner.restore` of `experiment` (unfinished and errored trials run again from their last
    checkpoints) when Tune saved state there, else `create()`.

    resume: True when the caller promised a resume (no saved state is a UserError naming
        --resume), False when it promised a new experiment (saved state is a UserError: the
        name is taken), None when either is fine.
    """
    from ray import tune

    where = experiment.restore_kwargs()
    saved = tune.Tuner.can_restore(**where)
    if resume is True and not saved:
        raise UserError(f"--resume: no experiment to resume at '{experiment.path}'. Use the "
                        "--name and --storage-path of the interrupted search.")
    if resume is False and (saved or experiment.storage.exists(experiment.name, "tuner.pkl")):
        raise UserError(f"experiment '{experiment.path}' exists already: pass --resume to "
                        "continue it or choose another --name.")
    if saved:
        return tune.Tuner.restore(trainable=trainable, resume_unfinished=True,
                                  resume_errored=True, **where)
    return create()


def new_tuner(trainable: Any, param_space: dict[str, Any], tune_config: Any,
              config: SearchConfig, where: ExperimentStorage, callbacks: list[Any]) -> Tuner:
    """A Tune run of the search or of its confirmation: `tune_config` (search algorithm,
    scheduler, samples) is the caller's; the rest is the same for both: Tune's own output
    only with --verbose, no Tune-level retries (a trial's retries are Ray Train's, from its
    checkpoint), raytune_ft's `callbacks`, the run's state in `where`."""
    from ray import tune

    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config,
        run_config=tune.RunConfig(verbose=1 if config.verbose else 0,
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  callbacks=callbacks, **where.tune_run_kwargs()))


def fit_quietly(tuner, verbose: bool):
    """`tuner.fit()`; unless `verbose`, with Tune's legacy reporter (`RAY_AIR_NEW_OUTPUT=0`),
    which at `RunConfig(verbose=0)` prints nothing (the new one still prints its experiment
    box): the console is raytune_ft.tuning.progress's."""
    if verbose:
        return tuner.fit()
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        return tuner.fit()
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before


def trial_statuses(experiment: ExperimentStorage) -> dict[str, str]:
    """Each trial's status as Tune saved it: what a resume would do with it (TERMINATED, ERROR,
    or PENDING for a trial an interruption cut short: in memory Tune calls those TERMINATED)."""
    from ray.tune import ExperimentAnalysis

    where = experiment.restore_kwargs()
    analysis = ExperimentAnalysis(where["path"], storage_filesystem=where["storage_filesystem"])
    return {t.trial_id: t.status for t in analysis.trials}


__all__ = ["TRIAL_DRIVER_CPU", "driven_trainable", "fit_quietly", "new_tuner", "restore_or_create",
           "trial_driver_resources", "trial_statuses"]
