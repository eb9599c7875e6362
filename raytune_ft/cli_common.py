"""Argument parsing and Ray start-up shared by the `train` and `search` command lines."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from mmengine.config import DictAction

from raytune_ft.errors import UserError


def add_resource_args(parser: argparse.ArgumentParser, workers_flag: str = "--workers") -> None:
    parser.add_argument(workers_flag, dest="workers", type=int, default=1,
                        help="Ray Train workers (DDP ranks) per fine-tune (default 1)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="GPUs per worker; 0 trains on CPU (default 0)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0,
                        help="CPUs per worker, also its torch thread count (default 1)")
    parser.add_argument("--placement", choices=["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"],
                        default="PACK", help="how a trial's workers are placed on nodes")
    parser.add_argument("--address", default=None,
                        help="join a running Ray cluster ('auto' or HOST:PORT); default: start a "
                             "local Ray in this process")


def add_config_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--config", required=required,
                        help="MMDetection fine-tune config (.py)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override config keys, e.g. train_cfg.max_epochs=4 "
                             "optim_wrapper.optimizer.lr=0.01")


def parse_hparams(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--hparams is not valid JSON ({err.msg} at column {err.colno}): "
                        f"{text!r}. Example: --hparams '{{\"lr\": 0.02, \"max_epochs\": 6}}'.")
    if not isinstance(value, dict):
        raise UserError(f"--hparams must be a JSON object of name: value, got {text!r}.")
    return value


def check_resources(workers: int, cpus: float, gpus: float) -> None:
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}.")
    if cpus <= 0:
        raise UserError(f"--cpus-per-worker must be > 0, got {cpus}.")
    if gpus < 0:
        raise UserError(f"--gpus-per-worker must be >= 0, got {gpus}.")


def init_ray(address: str | None, quiet: bool = True) -> dict[str, float]:
    """Connect to a cluster or start a local Ray; return the cluster's total resources."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
        kwargs: dict[str, Any] = {"log_to_driver": True}
        if quiet:
            kwargs["logging_level"] = "WARNING"
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def check_cluster_fits(resources: dict[str, float], workers: int, cpus: float, gpus: float,
                       trial_cpus: float = 0.0) -> None:
    """Exit early (UserError) when no placement on this cluster can give a trial its workers."""
    have_cpu, have_gpu = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    need_cpu, need_gpu = workers * cpus + trial_cpus, workers * gpus
    if need_gpu > have_gpu or need_cpu > have_cpu:
        raise UserError(
            f"a trial needs {workers} worker(s) x ({cpus:g} CPU, {gpus:g} GPU)"
            + (f" + {trial_cpus:g} CPU for its driver" if trial_cpus else "")
            + f" = {need_cpu:g} CPU and {need_gpu:g} GPU, but the Ray cluster has "
            f"{have_cpu:g} CPU and {have_gpu:g} GPU in total. Lower --workers / "
            "--cpus-per-worker / --gpus-per-worker, or join a bigger cluster with --address."
        )
