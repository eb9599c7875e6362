"""One trial = one Ray Train `TorchTrainer` run of an MMDetection fine-tune.

This is the only place the Ray Train objects are built. `python -m raytune_ft.train` calls
`run_trial` directly; the search calls it from inside a Tune function trainable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mmengine.config import Config

from raytune_ft.durations import parse_duration
from raytune_ft.epoch_report import first_report_of_attempt
from raytune_ft.mmconfig.config import config_to_dict
from raytune_ft.options import DEFAULT_MAX_PREEMPTIONS, DEFAULT_RESOURCE_WAIT
from raytune_ft.storage import Storage

if TYPE_CHECKING:
    from raytune_ft.engine.probe import ProbeSpec
    from raytune_ft.engine.worker import WorkerJob


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks of the cluster: W workers, each with its CPUs and GPUs."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    placement_strategy: str = "PACK"

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def device(self) -> str:
        """What a trial's cost is counted in: "GPU" (GPU-seconds) or "CPU" (CPU-seconds)."""
        return "GPU" if self.use_gpu else "CPU"

    def describe(self) -> str:
        return (f"{self.workers} worker(s) x ({self.cpus_per_worker:g} CPU, "
                f"{self.gpus_per_worker:g} GPU)")

    def per_worker(self) -> dict[str, float]:
        res = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            res["GPU"] = self.gpus_per_worker
        return res


START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"  # Ray Train V2's, default 60 s
DEFAULT_START_TIMEOUT_S = 60.0


def worker_group_start_timeout() -> float:
    """Ray Train's wait for one worker group's placement, as this process's environment sets it
    (a user may lower or raise it; Ray's default is 60 s)."""
    try:
        return max(1.0, float(os.environ.get(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_START_TIMEOUT_S


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs besides the config: where it lives and how it recovers."""

    name: str
    storage_path: str  # a folder or URI; the run lives in <storage_path>/<name>
    resources: TrialResources = field(default_factory=TrialResources)
    max_failures: int = 2  # crashes (WorkerGroupError) a trial restarts from
    # restarts after a node Ray knows was preempted (-1: no limit)
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS
    # the longest a trial's worker groups wait for resources, in all
    resource_wait_s: float = parse_duration(DEFAULT_RESOURCE_WAIT)
    # Ray Train's wait for one worker group's placement (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S,
    # read on the driver that made the spec); waits longer than it are retried, see
    # `startup_retries`.
    start_timeout_s: float = field(default_factory=worker_group_start_timeout)
    num_to_keep: int = 2
    metric: str | None = None
    mode: str = "max"
    probe: ProbeSpec | None = None  # the LR-step probe's epochs (raytune_ft.engine.probe); None: none
    verbose: bool = False  # workers print everything (default: noise to the trial's log files)

    @property
    def startup_retries(self) -> int:
        """Ray Train charges a worker group that is not placed within its start timeout
        (WorkerGroupStartupTimeoutError) to `controller_failure_limit`, a budget of its own,
        separate from crashes (`max_failures`) and preemptions (`max_preemption_failures`):
        allowing as many timeouts as fit in `resource_wait_s` makes waiting for nodes cost
        nothing of the crash budget and bounds the wait."""
        return max(1, math.ceil(self.resource_wait_s / self.start_timeout_s))

    @cached_property
    def storage(self) -> Storage:
        return Storage.resolve(self.storage_path)

    @property
    def run_dir(self) -> str:
        """The run's folder or URI (Ray's checkpoints, the published records)."""
        return self.storage.join(self.name)

    def record_dir(self) -> str:
        """Where the Train controller writes the committed per-epoch records (a local path:
        the run folder itself, or node-local scratch that is uploaded after each epoch)."""
        if self.storage.is_remote:
            return os.path.join(self.storage.scratch_dir(self.name), "records")
        return self.run_dir

    def local_work_dir(self) -> str:
        """mmengine's work_dir: inside the run folder on a local storage path, else node-local."""
        return os.path.join(self.storage.scratch_dir(self.name), "mmengine")


def build_trainer(cfg: Config, spec: TrialSpec, callbacks: list | None = None):
    """A `TorchTrainer` that runs `cfg` with `spec`'s workers, failure handling and storage."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raytune_ft.engine.worker import train_loop_per_worker

    res = spec.resources
    dist_timeout = ((cfg.get("env_cfg") or {}).get("dist_cfg") or {}).get("timeout")
    job: WorkerJob = {
        "cfg": config_to_dict(cfg),
        "work_dir": spec.local_work_dir(),
        "use_gpu": res.use_gpu,
        "gpus_per_worker": res.gpus_per_worker,
        "cpus_per_worker": res.cpus_per_worker,
        "metric": spec.metric,
        "mode": spec.mode,
        "probe": spec.probe,
        "verbose": spec.verbose,
    }
    checkpoint_config = ray.train.CheckpointConfig(
        num_to_keep=spec.num_to_keep,
        checkpoint_score_attribute=spec.metric,
        checkpoint_score_order=spec.mode,
    ) if spec.metric else ray.train.CheckpointConfig(num_to_keep=spec.num_to_keep)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=job,
        # mmengine skips its own init_dist (the group exists), so the config's
        # env_cfg.dist_cfg.timeout reaches the process group only through TorchConfig
        torch_config=TorchConfig(backend="nccl" if res.use_gpu else "gloo",
                                 **({"timeout_s": int(dist_timeout)} if dist_timeout else {})),
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers,
            use_gpu=res.use_gpu,
            resources_per_worker=res.per_worker(),
            placement_strategy=res.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=spec.name,
            **spec.storage.ray_kwargs(),
            failure_config=ray.train.FailureConfig(
                max_failures=spec.max_failures,
                controller_failure_limit=spec.startup_retries,
                max_preemption_failures=spec.max_preemptions,
            ),
            checkpoint_config=checkpoint_config,
            callbacks=callbacks or None,
            # Ray >= 2.5x keeps the machine's CUDA_VISIBLE_DEVICES in a 0-GPU actor: a CPU
            # trial on a GPU node would train on cuda:0. Its workers see no GPU.
            worker_runtime_env=(None if res.use_gpu
                                else {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}),
            # Train's own INFO lines (requesting resources, starting the worker group, the
            # process group) stay in Ray's train log files unless --verbose
            logging_config=ray.train.LoggingConfig(log_level="INFO" if spec.verbose
                                                   else "WARNING"),
        ),
    )


class EpochFollower:
    """Print a run's committed epochs on the driver as they land in its storage (`train`: the
    driver waits in `TorchTrainer.fit()`; the actors' own output stays in Ray's logs)."""

    def __init__(self, spec: TrialSpec, every_s: float = 2.0) -> None:
        import threading

        self.spec, self.every_s, self.printed = spec, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="epoch-follower")

    def __enter__(self) -> EpochFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()  # the last epoch, committed just before fit() returned

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()

    def poll(self) -> None:
        from raytune_ft.console import epoch_line
        from raytune_ft.storage import read_records

        try:
            records = read_records(self.spec.storage, self.spec.name)
        except Exception:  # noqa: BLE001 - a half-written file or a slow bucket: next time
            return
        for report in records[self.printed:]:
            if first_report_of_attempt(report):
                start = (f"resumed at epoch {report['start_epoch']} from {report.get('init_from')}"
                         if report.get("resumed") else
                         f"fresh start from load_from={report.get('init_from')}")
                print(f"[raytune_ft] {self.spec.name}: {start}", flush=True)
            print(epoch_line(self.spec.name, report, self.spec.metric), flush=True)
        self.printed = max(self.printed, len(records))


def run_trial(cfg: Config, spec: TrialSpec, callbacks: list | None = None,
              announce: bool = True):
    """Run the fine-tune to its end (resuming a previous run of the same name) and return the
    Ray Train `Result`. `announce`: print one line per committed epoch from this driver
    (`train`); a Tune trial's epochs are printed by the search's driver instead."""
    from raytune_ft.engine.callbacks import EpochRecordCallback, PhaseRecordCallback

    if not spec.storage.is_remote:
        os.makedirs(spec.storage.root, exist_ok=True)
    publish_to = (spec.storage, spec.name) if spec.storage.is_remote else None
    record = EpochRecordCallback(spec.record_dir(), publish_to=publish_to)
    phases = PhaseRecordCallback(spec.record_dir(), publish_to=publish_to)
    # Ray Train propagates this variable from the process that calls fit() to the controller
    os.environ[START_TIMEOUT_ENV] = f"{spec.start_timeout_s:g}"
    trainer = build_trainer(cfg, spec, [record, phases, *(callbacks or [])])
    if not announce:
        return trainer.fit()
    with EpochFollower(spec):
        return trainer.fit()
