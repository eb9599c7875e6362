"""The options of a search and of one fine-tune, as typed, frozen dataclasses.

One definition serves both front ends: `SearchConfig` / `TrainConfig` are what the Python API
takes, and the command lines are generated from their fields (flag = field name with dashes,
same default, help from the field's metadata). Cheap checks run when an object is made, so
`SearchConfig(num_samples=0)` raises the same `UserError` the CLI prints before exiting 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raytune_ft.errors import UserError

SCHEDULERS = ("step-probe", "step-after", "progress-asha", "fifo")  # raytune_ft.tuning.scheduler
SEARCHERS = ("tpe", "random", "grid")
PLACEMENTS = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
DEFAULT_GRACE = 1 / 3  # rungs at 1/3 and 2/3 of each schedule (rf 2)
OLD_GRACE = 0.34
# Chosen on the demo's curve replay (bench/replay.py, 300 seeds): with 10-30 trials, TPE that
# starts modelling after 3 trials reached 95% of the best config in about half the trial-epochs
# of Optuna's default 10 (2 and 3 tie; 4, 5 and 10 are slower).
TPE_STARTUP_TRIALS = 3
# TPE's two switches, set explicitly (Optuna 4 has both off, Optuna 5 both on): constant_liar
# makes TPE treat running trials as bad results so K trials at once do not sample the same
# spot; multivariate models the parameters jointly. Chosen on the replay (bench/replay.py).
TPE_CONSTANT_LIAR = True
TPE_MULTIVARIATE = False
DEMO_TRIALS = 10  # about 55 trial-epochs on the demo: ~10 min on 2 CPU cores
# The demo's default --time-budget: search + confirmation end within 20 min on a 2-core machine
# (a slower one runs fewer trials); 2 min of it are the margin for a trial that overruns.
DEMO_TIME_BUDGET = "18m"
DEFAULT_TRIALS = 8
# Confirmation: off by default. On the seeded curve replay (bench/replay.py, 100 replays) it never
# made the returned config truly better at an equal budget: the demo's seed noise (median std
# 0.007 mAP) is small next to the spread of its configs (0.027), and its 4 full runs (1 config +
# the recipe, 2 seeds) cost half of a 60-epoch budget (true quality 0.066 vs 0.102 without it).
# `--confirm 1` (2 fresh seeds each, enough for a paired interval) or `python -m
# raytune_ft.confirm EXP` afterwards gives the verdict when the budget allows.
DEFAULT_CONFIRM = 0
CONFIRM_CLI_DEFAULT = 1  # `python -m raytune_ft.confirm EXP`: the best config and the recipe
DEFAULT_SEEDS = 2
# Early stopping: step-after (ASHA judging a trial only after its LR step, no probes) returned a
# truly better config than step-probe on the seeded demo replay (B = 60: 0.102 vs 0.094 mAP;
# B = 100: both the best config, p_beats_recipe 0.97 vs 0.92) and tied on the long-schedule
# table; the probes' cost (0.56 epoch each) bought nothing there.
DEFAULT_SCHEDULER = "step-after"
# Waiting is not failing: a trial's worker group may wait this long in all for its resources
# (a spot GPU node takes minutes to boot and pull the image); preemptions have their own budget.
DEFAULT_RESOURCE_WAIT = "30m"
DEFAULT_MAX_PREEMPTIONS = 10


def _opt(help: str, **cli: Any) -> Any:
    """Field metadata: the help text and any extra argparse keywords for its flag."""
    return {"help": help, "cli": cli}


def flag(name: str) -> str:
    """The command-line flag of a field: `num_samples` -> `--num-samples`."""
    return "--" + name.replace("_", "-")


def confirmation_runs(configs: int, seeds: int) -> int:
    """Full-schedule runs a confirmation of `configs` configs makes: (configs + the recipe) x
    seeds; 0 without a confirmation (what `--time-budget` reserves for it)."""
    return (configs + 1) * seeds if configs else 0


def _name(name: str) -> str:
    """How an error names a field: its flag and its API name."""
    return f"{flag(name)} ({name})"


@dataclass(frozen=True)
class _Common:
    config: str | None = field(default=None, metadata=_opt(
        "MMDetection fine-tune config (.py); default: the embedded demo"))
    cfg_options: Mapping[str, Any] = field(default_factory=dict, metadata=_opt(
        "override config keys, e.g. train_cfg.max_epochs=4 optim_wrapper.optimizer.lr=0.01",
        cli_kind="dict"))
    gpus_per_worker: float = field(default=0.0, metadata=_opt(
        "GPUs per worker; 0 trains on CPU (default 0)"))
    cpus_per_worker: float | None = field(default=None, metadata=_opt(
        "CPUs per worker, also its torch thread count (default 1; the embedded demo on a local "
        "Ray: all CPUs of the machine)"))
    placement: str = field(default="PACK", metadata=_opt(
        "how a trial's workers are placed on nodes", choices=PLACEMENTS))
    address: str | None = field(default=None, metadata=_opt(
        "join a running Ray cluster ('auto' or HOST:PORT); default: start a local Ray in this "
        "process"))
    metric: str | None = field(default=None, metadata=_opt(
        "metric to optimise and keep checkpoints by (default coco/bbox_mAP, or the val "
        "evaluator's first metric when it reports no COCO box mAP)"))
    max_failures: int = field(default=2, metadata=_opt(
        "restarts per trial after a crash of its workers (an exception, a killed process, a "
        "node that vanished) before it is marked errored (default 2); waiting for resources "
        "and preemptions have budgets of their own (--resource-wait, --max-preemptions)"))
    max_preemptions: int = field(default=DEFAULT_MAX_PREEMPTIONS, metadata=_opt(
        "restarts per trial after a node Ray knows was preempted (drained with reason "
        f"PREEMPTION, e.g. a spot reclaim) (default {DEFAULT_MAX_PREEMPTIONS}; -1: no limit)"))
    resource_wait: str = field(default=DEFAULT_RESOURCE_WAIT, metadata=_opt(
        "how long a trial's workers may wait in all for their resources (nodes the autoscaler "
        "starts, a GPU that another trial frees) before the trial is marked errored, e.g. 30m, "
        f"2h (default {DEFAULT_RESOURCE_WAIT}: a spot GPU node plus an image pull)"))
    probe_length: float = field(default=0.5, metadata=_opt(
        "LR-step probe length as a fraction of an epoch (default 0.5)"))
    verbose: bool = field(default=False, metadata=_opt(
        "print the workers' full mmengine logs, the COCO evaluation tables and Ray Train's "
        "report lines here too (by default they go to files in each trial's folder)"))

    @property
    def resource_wait_s(self) -> float:
        from raytune_ft.durations import parse_duration

        return parse_duration(self.resource_wait, flag("resource_wait"))

    def replace(self, **changes: Any):
        """A copy with `changes` (validated again)."""
        return dataclasses.replace(self, **changes)

    def _check_common(self, workers_field: str) -> None:
        workers = getattr(self, workers_field)
        _at_least(workers_field, workers, 1)
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise UserError(f"{_name('cpus_per_worker')} must be > 0, got "
                            f"{self.cpus_per_worker:g}.")
        if self.gpus_per_worker < 0:
            raise UserError(f"{_name('gpus_per_worker')} must be >= 0, got "
                            f"{self.gpus_per_worker:g}.")
        _one_of("placement", self.placement, PLACEMENTS)
        _at_least("max_failures", self.max_failures, 0)
        _at_least("max_preemptions", self.max_preemptions, -1)
        from raytune_ft.durations import parse_duration

        parse_duration(self.resource_wait, flag("resource_wait"))
        _check_gpus(self.gpus_per_worker, workers, flag(workers_field))
        if not 0 < self.probe_length <= 1:
            raise UserError(f"{_name('probe_length')} is a fraction of an epoch and must be in "
                            f"(0, 1], got {self.probe_length:g}.")
        if not isinstance(self.cfg_options, Mapping):
            raise UserError(f"{_name('cfg_options')} must map config keys to values, e.g. "
                            "{'train_cfg.max_epochs': 4}.")


@dataclass(frozen=True)
class SearchConfig(_Common):
    """Everything a search takes; the fields are the flags of `python -m raytune_ft.search`.

    Unset fields (None) take the defaults the search resolves from the config: the demo when
    `config` is None, 8 trials (demo: 10), the config's metric, the scheduler's grace.

    Example:
        >>> from raytune_ft import SearchConfig, run_search
        >>> result = run_search(SearchConfig(num_samples=4, storage_path="/tmp/exp"))  # doctest: +SKIP
        >>> result.best_hparams, result.summary.best_metric  # doctest: +SKIP
    """

    space: str | None = field(default=None, metadata=_opt(
        "search space YAML (default search_spaces/default.yaml; demo: demo.yaml)"))
    workers_per_trial: int = field(default=1, metadata=_opt(
        "Ray Train workers (DDP ranks) per trial (default 1)"))
    num_samples: int | None = field(default=None, metadata=_opt(
        f"trials to run (default {DEFAULT_TRIALS}; the demo: {DEMO_TRIALS}); with "
        "--time-budget, whichever ends first ends the search"))
    time_budget: str | None = field(default=None, metadata=_opt(
        "wall-clock budget of the whole search, confirmation included, e.g. 5h, 90m, 1h30m: no "
        "trial starts once the rest cannot hold an average trial plus the confirmation; "
        f"running trials finish (default: none; the demo: {DEMO_TIME_BUDGET})"))
    max_concurrent: int = field(default=1, metadata=_opt("trials running at once"))
    scheduler: str = field(default=DEFAULT_SCHEDULER, metadata=_opt(
        "early stopping: step-after (default: ASHA judging each trial only after its LR "
        "step), step-probe (ASHA ranking trials before their LR step on an LR-step probe), "
        "progress-asha (the old rule: ASHA on raw values at a fraction of each schedule, "
        "biased against high lr), fifo (none)", choices=SCHEDULERS))
    searcher: str = field(default="tpe", metadata=_opt(
        "tpe (Optuna), random, grid", choices=SEARCHERS))
    startup_trials: int = field(default=TPE_STARTUP_TRIALS, metadata=_opt(
        "TPE: trials sampled at random (the recipe included) before TPE models the results "
        f"(default {TPE_STARTUP_TRIALS}; Optuna's own default is 10, tuned for cheap "
        "objectives)"))
    grid_points: int = field(default=3, metadata=_opt(
        "values per continuous parameter for --searcher grid"))
    grace: float | None = field(default=None, metadata=_opt(
        f"first rung, as a fraction of each trial's own schedule (default {DEFAULT_GRACE:.3g}; "
        f"progress-asha: its old {OLD_GRACE})"))
    reduction_factor: float = field(default=2.0, metadata=_opt(
        "keep the best 1/rf of the trials at each rung (default 2)"))
    mode: str = field(default="max", metadata=_opt("max or min", choices=("max", "min")))
    storage_path: str = field(default="experiments", metadata=_opt(
        "where experiments are written: a folder, or a URI such as s3://bucket/prefix on a "
        "cluster (S3-compatible servers: set AWS_ENDPOINT_URL)"))
    name: str | None = field(default=None, metadata=_opt(
        "experiment name (default search_<time>)"))
    resume: bool = field(default=False, metadata=_opt(
        "continue the interrupted experiment --name"))
    seed: int = field(default=0, metadata=_opt("seed of the searcher"))
    num_to_keep: int = field(default=2, metadata=_opt(
        "checkpoints kept per trial (the best ones by --metric)"))
    points: Sequence[Mapping[str, Any]] = field(default=(), metadata=_opt(
        "extra points (in the space's terms) evaluated right after the recipe, as JSON on the "
        "command line, e.g. '[{\"lr\": 0.001}]'; unset keys take the recipe's",
        cli_kind="json_points"))
    confirm: int = field(default=DEFAULT_CONFIRM, metadata=_opt(
        "after the search, re-run the best K configs and the recipe with --seeds fresh seeds "
        f"each at their full schedules; the winner is the best confirmed mean (default "
        f"{DEFAULT_CONFIRM}: off; within --time-budget it is reserved before trials stop)"))
    seeds: int = field(default=DEFAULT_SEEDS, metadata=_opt(
        f"seeds per confirmed config (default {DEFAULT_SEEDS}; 2 or more give a paired 95%% "
        "interval against the recipe)"))
    mlflow: str | None = field(default=None, metadata=_opt(
        "log every trial to MLflow (one run per trial: hyper-parameters and per-epoch "
        "metrics); a tracking URI, or 'auto' (what the bare flag means): MLflow's SQLite store "
        "<experiment>/mlflow.db", cli_kind="optional", const="auto"))
    wandb: str | None = field(default=None, metadata=_opt(
        "log every trial to Weights & Biases under this project (needs `pip install wandb`; "
        "WANDB_MODE=offline works without an account)"))
    smoke: bool = field(default=False, metadata=_opt(
        "preflight also runs one real training iteration and one validation batch in this "
        "process (seconds) before any trial starts"))
    check_only: bool = field(default=False, metadata=_opt(
        "run every preflight check and exit without starting trials"))

    def __post_init__(self) -> None:
        self._check_common("workers_per_trial")
        if self.num_samples is not None:
            _at_least("num_samples", self.num_samples, 1)
        _at_least("max_concurrent", self.max_concurrent, 1)
        if self.time_budget is not None:
            from raytune_ft.durations import parse_duration

            parse_duration(self.time_budget, flag("time_budget"))
            if self.is_grid:
                raise UserError(f"{_name('time_budget')} decides when to stop starting trials; "
                                "--searcher grid runs every point of its grid. Use --searcher "
                                "tpe or random with a time budget.")
        _at_least("startup_trials", self.startup_trials, 1)
        _at_least("grid_points", self.grid_points, 2)
        _at_least("num_to_keep", self.num_to_keep, 1)
        _at_least("confirm", self.confirm, 0)
        _at_least("seeds", self.seeds, 1)
        if self.num_samples is not None and self.confirm > self.num_samples:
            raise UserError(f"{_name('confirm')} {self.confirm} asks to confirm more configs "
                            f"than the {self.num_samples} trials the search runs.")
        _one_of("scheduler", self.scheduler, SCHEDULERS)
        _one_of("searcher", self.searcher, SEARCHERS)
        _one_of("mode", self.mode, ("max", "min"))
        if self.scheduler != "fifo":
            if not 0 < self.resolved_grace < 1:
                raise UserError(f"{_name('grace')} is the first rung as a fraction of each "
                                f"trial's schedule and must be in (0, 1), got "
                                f"{self.resolved_grace:g}.")
            if self.reduction_factor <= 1:
                raise UserError(f"{_name('reduction_factor')} must be > 1 (keep the best 1/rf "
                                f"at each rung), got {self.reduction_factor:g}.")
        if self.resume and not self.name:
            raise UserError(f"{_name('resume')} continues an experiment by name: pass "
                            f"{_name('name')} (and the same --storage-path).")
        _check_points(self.points)

    @property
    def time_budget_s(self) -> float | None:
        from raytune_ft.durations import parse_duration

        return None if self.time_budget is None else parse_duration(self.time_budget)

    @property
    def confirm_runs(self) -> int:
        """Full-schedule runs the confirmation makes: (K + recipe) x seeds (0 without one)."""
        return confirmation_runs(self.confirm, self.seeds)

    @property
    def is_grid(self) -> bool:
        """`--searcher grid`: every point of the grid once; no time budget, no extension."""
        return self.searcher == "grid"

    @property
    def uses_optuna(self) -> bool:
        """TPE or random: an Optuna study in optuna.db (a grid's generator is Tune's own)."""
        return self.searcher in ("tpe", "random")

    def tune_num_samples(self, fixed_points: int, trials: int) -> int:
        """Tune's `num_samples` for `trials` trials after `fixed_points` fixed points. Tune's
        grid runs each fixed point once (each counts as one sample) and the whole grid once
        per sample left: the points and the grid once each is `fixed_points + 1`."""
        return fixed_points + 1 if self.is_grid else trials

    @property
    def resolved_grace(self) -> float:
        if self.grace is not None:
            return self.grace
        return OLD_GRACE if self.scheduler == "progress-asha" else DEFAULT_GRACE


@dataclass(frozen=True)
class TrainConfig(_Common):
    """One fine-tune as a Ray Train run; the fields are the flags of `python -m raytune_ft.train`.

    Example:
        >>> from raytune_ft import TrainConfig, run_train
        >>> run = run_train(TrainConfig(hparams={"lr": 0.02, "max_epochs": 2}))  # doctest: +SKIP
        >>> run.records[-1]["coco/bbox_mAP"]  # doctest: +SKIP
    """

    workers: int = field(default=1, metadata=_opt(
        "Ray Train workers (DDP ranks) of the fine-tune (default 1)"))
    hparams: Mapping[str, Any] = field(default_factory=dict, metadata=_opt(
        "hyper-parameters, as JSON on the command line, e.g. '{\"lr\": 0.02, \"max_epochs\": 6, "
        "\"milestones\": [4]}'", cli_kind="json_hparams"))
    work_dir: str | None = field(default=None, metadata=_opt(
        "where the run's checkpoints, logs and metrics go (default work_dirs/<config name>)"))
    name: str | None = field(default=None, metadata=_opt(
        "run name; re-running with the same name resumes it"))
    probe_epochs: Sequence[int] = field(default=(), metadata=_opt(
        "comma-separated epochs (before the LR step) after which to run the LR-step probe: a "
        "short run at lr x gamma from that epoch's state, scored on val and then discarded "
        "(e.g. 1,2,3)", cli_kind="int_list"))

    def __post_init__(self) -> None:
        self._check_common("workers")
        if not isinstance(self.hparams, Mapping):
            raise UserError(f"{_name('hparams')} must be a JSON object of name: value, got "
                            f"{self.hparams!r}.")
        if any(not isinstance(e, int) or e < 1 for e in self.probe_epochs):
            raise UserError(f"{_name('probe_epochs')} must list epochs >= 1, got "
                            f"{list(self.probe_epochs)!r}.")


def _check_gpus(gpus: float, workers: int, workers_flag: str) -> None:
    """What one DDP rank can use: an mmengine Runner drives one device, so a worker holds at
    most one GPU; a fraction of a GPU is shared with other trials, which only works when the
    trial has one rank (NCCL refuses two ranks on one GPU: "Duplicate GPU detected")."""
    if gpus > 1:
        raise UserError(f"{_name('gpus_per_worker')} {gpus:g}: a worker is one DDP rank, and a "
                        "rank (one mmengine Runner) trains on one GPU, so the others would sit "
                        f"idle while being booked. For {math.ceil(gpus) * workers} GPUs per trial "
                        f"use {workers_flag} {math.ceil(gpus) * workers} --gpus-per-worker 1.")
    if 0 < gpus < 1 and workers > 1:
        raise UserError(f"{_name('gpus_per_worker')} {gpus:g} with {workers_flag} {workers}: "
                        "Ray could put two ranks of the trial on the same GPU, which NCCL "
                        "refuses (\"Duplicate GPU detected\"). Fractional GPUs let several "
                        f"one-worker trials share a GPU: use {workers_flag} 1, or "
                        "--gpus-per-worker 1.")


def _at_least(name: str, value: int | float, low: int | float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise UserError(f"{_name(name)} must be >= {low}, got {value!r}.")


def _one_of(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UserError(f"{_name(name)} must be one of {', '.join(allowed)}; got {value!r}.")


def _check_points(points: Sequence[Mapping[str, Any]]) -> None:
    if isinstance(points, (str, bytes)) or not all(isinstance(p, Mapping) for p in points):
        raise UserError(f"{_name('points')} must be a list of objects (JSON on the command "
                        "line), e.g. '[{\"lr\": 0.001}]'.")


# -- the command lines, generated from the fields ------------------------------------------------
def _parse_json(name: str, example: str):
    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{flag(name)} is not valid JSON ({err.msg} at column {err.colno}): "
                            f"{text!r}. Example: {flag(name)} '{example}'.") from err
    return parse


def _parse_int_list(name: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(sorted({int(e) for e in text.split(",") if e.strip()}))
        except ValueError as err:
            raise UserError(f"{flag(name)} must be comma-separated whole epochs, e.g. 1,2,3; "
                            f"got {text!r}.") from err
    return parse


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of `cls`, with the field's default and help."""
    from mmengine.config import DictAction

    for f in dataclasses.fields(cls):
        meta = dict(f.metadata.get("cli", {}))
        kind = meta.pop("cli_kind", None)
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", ""), **meta}
        default = f.default if f.default is not dataclasses.MISSING else None
        if kind == "dict":
            kwargs.update(nargs="+", action=DictAction, default={})
        elif kind in ("json_points", "json_hparams"):
            kwargs.update(default=None)  # parsed (and reported) by config_from_args
        elif kind == "int_list":
            kwargs.update(default=None)
        elif kind == "optional":
            kwargs.update(nargs="?", default=None)
        elif f.type in ("bool",):
            kwargs.update(action="store_true", default=False)
        else:
            kwargs.update(default=default, type=_scalar_type(f.type))
        parser.add_argument(flag(f.name), **kwargs)


def _scalar_type(annotation: str):
    if annotation.startswith("int"):
        return int
    if annotation.startswith("float"):
        return float
    return str


def config_from_args(cls: type, args: argparse.Namespace):
    """The dataclass from parsed flags; JSON-valued flags are decoded here, so a bad value is a
    `UserError` naming the flag (exit 2), not an argparse usage error."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name)
        kind = f.metadata.get("cli", {}).get("cli_kind")
        if kind == "json_points":
            value = _parse_json(f.name, '[{"lr": 0.001}]')(value) if value else ()
            if not isinstance(value, (list, tuple)):
                raise UserError(f"{flag(f.name)} must be a JSON list of objects, e.g. "
                                "'[{\"lr\": 0.001}]'.")
        elif kind == "json_hparams":
            value = _parse_json(f.name, '{"lr": 0.02, "max_epochs": 6}')(value) if value else {}
            if not isinstance(value, dict):
                raise UserError(f"{flag(f.name)} must be a JSON object of name: value, got "
                                f"{getattr(args, f.name)!r}.")
        elif kind == "int_list":
            value = _parse_int_list(f.name)(value) if value else ()
            if getattr(args, f.name) and not value:
                raise UserError(f"{flag(f.name)} must list epochs >= 1, got "
                                f"{getattr(args, f.name)!r}.")
        values[f.name] = value
    return cls(**values)
