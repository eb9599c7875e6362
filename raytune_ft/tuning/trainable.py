"""The Ray Tune function trainable: one Tune trial = one Ray Train run (`raytune_ft.engine.trial`).

Ray 2.60 (Train V2) no longer accepts a TorchTrainer inside `tune.Tuner`; the supported pattern
is a function trainable that builds and fits the trainer, with `TuneReportCallback` forwarding
rank 0's reports to Tune. The Train run is named after the Tune trial id, so a restarted or
restored trial finds its own checkpoints and resumes from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmengine.config import Config

from raytune_ft.durations import parse_duration
from raytune_ft.mmconfig.hparams import apply_hparams
from raytune_ft.options import DEFAULT_MAX_PREEMPTIONS, DEFAULT_RESOURCE_WAIT
from raytune_ft.tuning.space import SearchSpace, TrialShape, to_hparams
from raytune_ft.storage import ExperimentStorage
from raytune_ft.engine.probe import ProbeSpec
from raytune_ft.engine.trial import (TrialResources, TrialSpec, run_trial,
                                    worker_group_start_timeout)


@dataclass(frozen=True)
class SearchJob:
    """What every trial of a search shares (passed with `tune.with_parameters`)."""

    cfg: dict
    space: SearchSpace
    recipe: dict[str, Any]
    shape: TrialShape
    resources: TrialResources
    experiment: ExperimentStorage
    metric: str
    mode: str
    max_failures: int
    num_to_keep: int
    probe: ProbeSpec | None = None  # LR-step probe at the scheduler's rungs (step-probe)
    verbose: bool = False
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS
    resource_wait_s: float = parse_duration(DEFAULT_RESOURCE_WAIT)
    # Ray Train's start timeout as the search's driver sees it (trials run in other processes)
    start_timeout_s: float = field(default_factory=worker_group_start_timeout)


@dataclass(frozen=True)
class ConfirmRun:
    """A confirmation run: a search trial's config re-run with a fresh seed.

    Tune sees it as the plain config `{"candidate": {"source": trial id, "point": {...}},
    "seed": s}` (a grid over candidates x seeds; the dict is what older experiments saved),
    built by `candidate` and read back by `of`."""

    source_trial: str
    point: dict[str, Any]
    seed: int

    @staticmethod
    def candidate(source_trial: str, point: dict[str, Any]) -> dict[str, Any]:
        """One value of the confirmation's grid over candidates."""
        return {"source": source_trial, "point": point}

    @classmethod
    def of(cls, config: dict[str, Any]) -> ConfirmRun | None:
        """The confirmation run a Tune trial config describes (None for a search trial)."""
        candidate = config.get("candidate")
        if not isinstance(candidate, dict):
            return None
        return cls(candidate.get("source"), candidate.get("point", {}), int(config.get("seed")))


def sampled_point(config: dict[str, Any]) -> dict[str, Any]:
    """The space's point of a Tune trial config: the config itself for a search trial, its
    candidate's point for a confirmation run (`ConfirmRun`)."""
    run = ConfirmRun.of(config)
    return run.point if run is not None else config


def trial_hparams(config: dict[str, Any], job: SearchJob) -> dict[str, Any]:
    """Engine hyper-parameters of a Tune trial config, constraints applied."""
    return to_hparams(sampled_point(config), job.space, job.recipe, job.shape)


def tune_trainable(config: dict[str, Any], job: SearchJob) -> None:
    """A search trial: the sampled point's schedule, from the pretrained checkpoint."""
    _run(config, job)


def confirm_trainable(config: dict[str, Any], job: SearchJob) -> None:
    """A confirmation run (`ConfirmRun`): the candidate's full schedule with mmengine's
    `randomness.seed` = its seed."""
    _run(config, job, seed=ConfirmRun.of(config).seed)


def _run(config: dict[str, Any], job: SearchJob, seed: int | None = None) -> None:
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    hparams = trial_hparams(config, job)
    cfg = apply_hparams(Config(job.cfg), hparams)
    if seed is not None:
        cfg.randomness = {**dict(cfg.get("randomness") or {}), "seed": seed}
    spec = TrialSpec(
        name=job.experiment.trial_name(trial_id),
        storage_path=job.experiment.trials_root,
        resources=job.resources,
        max_failures=job.max_failures,
        max_preemptions=job.max_preemptions,
        resource_wait_s=job.resource_wait_s,
        start_timeout_s=job.start_timeout_s,
        num_to_keep=job.num_to_keep,
        metric=job.metric,
        mode=job.mode,
        probe=job.probe,
        verbose=job.verbose,
    )
    run_trial(cfg, spec, callbacks=[TuneReportCallback()], announce=False)
