"""The held-out test score: picked on val, scored on test.

The search and the confirmation choose on the val set, so the winner's val score is optimistic.
When the config's `test_dataloader` reads other data than its `val_dataloader` (e.g. a converter's
`--test-fraction` split), the winner's and the recipe's checkpoints are evaluated once on it with
mmengine's `Runner.test()`, in a Ray task with one trial worker's resources.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from raytune_ft.experiment.summary import Summary, TestNote, TestScore
from raytune_ft.mmconfig.config import test_annotation
from raytune_ft.storage import TRIALS_DIR

if TYPE_CHECKING:
    from raytune_ft.experiment.confirmation import Confirmation
    from raytune_ft.experiment.rows import TrialRow
    from raytune_ft.pipeline.plan import SearchPlan
    from raytune_ft.tuning.trainable import SearchJob

VAL_ONLY_NOTE = ("no held-out test set: the config's test_dataloader reads the val data, so "
                 "only val scores exist (a converter's --test-fraction makes one)")
DEMO_NOTE = ("val only: the embedded demo's four labelled source images all go into its "
             "train/val tiles, so it has no held-out test set")


def test_score(plan: SearchPlan, rows: list[TrialRow],
               confirmation: Confirmation | None = None) -> TestScore | TestNote:
    """The returned config ("winner") and the recipe scored on test, or the note why not.

    The winner's run is `returned_config`'s (the confirmed winner's best seed run, else the
    search's best run); the recipe's its confirmation's best seed run (else trial 0).
    """
    from mmengine.config import Config

    from raytune_ft.experiment.confirmation import returned_config

    job = plan.job
    annotation = test_annotation(Config(job.cfg))
    if annotation is None:
        return TestNote(DEMO_NOTE if plan.is_demo else VAL_ONLY_NOTE)
    runs: dict[str, tuple[SearchJob, str]] = {}
    returned = returned_config(rows, job.mode, confirmation, job)
    if returned is not None:
        runs["winner"] = (returned.job, returned.run.trial_id)
    if returned is not None and returned.confirmed is not None:
        recipe_run = confirmation.best_run(confirmation.recipe)
        if recipe_run is not None:
            runs["recipe"] = (confirmation.job, recipe_run.trial_id)
    elif rows and rows[0].best_metric is not None:
        runs["recipe"] = (job, rows[0].trial_id)
    if not runs:
        return TestNote("no finished run to score on test")
    print(f"[raytune_ft] scoring {', '.join(runs)} on the held-out test set {annotation}",
          flush=True)
    return TestScore(score_on_test(job, runs), job.metric, annotation)


def _evaluate(cfg_dict: dict, run: dict[str, Any], metric: str, mode: str) -> dict[str, Any]:
    """In a Ray task: the run's best checkpoint scored by the config's test evaluator."""
    import tempfile
    from pathlib import Path

    import ray.train
    from mmengine.config import Config
    from mmengine.runner import Runner

    from raytune_ft.checkpoints import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    result = ray.train.Result.from_path(run["storage_path"],
                                        storage_filesystem=run.get("storage_filesystem"))
    checkpoint = result.get_best_checkpoint(metric, mode)
    if checkpoint is None:
        return {"error": "no checkpoint"}
    with checkpoint.as_directory() as ckpt_dir, tempfile.TemporaryDirectory() as work:
        cfg = Config(cfg_dict)
        cfg.load_from = str(Path(ckpt_dir) / "checkpoint.pth")
        cfg.resume = False
        cfg.work_dir = work
        cfg.launcher = "none"
        cfg.custom_hooks = []
        metrics = Runner.from_cfg(cfg).test()
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def score_on_test(job: SearchJob, runs: dict[str, tuple[SearchJob, str]]
                  ) -> dict[str, float | None]:
    """`runs`: label -> (the SearchJob whose experiment holds it, trial id). Each run's best
    checkpoint is tested in its own Ray task; returns label -> the metric on test."""
    import ray

    res = job.resources
    task = ray.remote(_evaluate).options(num_cpus=res.cpus_per_worker,
                                         num_gpus=res.gpus_per_worker or 0)
    pending = {}
    for label, (run_job, trial_id) in runs.items():
        exp = run_job.experiment
        where = exp.storage.ray_kwargs(exp.name, TRIALS_DIR, exp.trial_name(trial_id))
        pending[label] = task.remote(job.cfg, where, job.metric, job.mode)
    out: dict[str, float | None] = {}
    for label, ref in pending.items():
        metrics = ray.get(ref)
        out[label] = metrics.get(job.metric)
    return out


def score_and_rewrite(plan: SearchPlan, rows: list[TrialRow],
                      confirmation: Confirmation | None) -> Summary | None:
    """Score the winner and the recipe on the held-out test set (when the config has one) and
    rewrite the results with it; None when that fails (the results written so far stay)."""
    from raytune_ft.experiment.results import write_results

    try:
        test = test_score(plan, rows, confirmation)
    except Exception as err:  # noqa: BLE001 - val results must survive a failing test run
        print(f"[raytune_ft] scoring on the test set failed ({type(err).__name__}: {err}); "
              "the val results are kept.", file=sys.stderr)
        return None
    summary = write_results(rows, plan.job, confirmation, test)
    if isinstance(test, TestNote):
        print(f"[raytune_ft] test score: {test.note}")
    else:
        print(f"[raytune_ft] picked on val, scored on test ({test.test_annotation}): "
              + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} -"
                          for k, v in test.scores.items()))
    return summary
