"""Ray start-up and what a cluster can hold: shared by a search and a single fine-tune."""

from __future__ import annotations

import os
from typing import Any

from raytune_ft.errors import UserError


def default_cpus_per_worker(cpus_per_worker: float | None, workers: int, address: str | None,
                            demo: bool, reserved: float = 0.0) -> float:
    """1 CPU per worker, except that the demo on a local Ray gives its one worker the machine
    (less `reserved`, e.g. what a Tune trial's driver holds)."""
    if cpus_per_worker is not None:
        return cpus_per_worker
    if demo and address is None and workers == 1:
        return max(1.0, (os.cpu_count() or 1) - reserved)
    return 1.0


def init_ray(address: str | None, quiet: bool = True) -> list[dict[str, float]]:
    """Connect to a cluster or start a local Ray; return each alive node's total resources."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
        if not address:
            # Ray starts workers at niceness 15, so on a small machine its own daemons and any
            # other process take CPU from training (measured: bench/overhead.py). Training is the
            # point of this Ray instance: run it at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs: dict[str, Any] = {"log_to_driver": True}
        if quiet:
            kwargs["logging_level"] = "WARNING"
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    return [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n["Alive"]]


def check_cluster_fits(nodes: list[dict[str, float]], workers: int, cpus: float, gpus: float,
                       placement: str = "PACK", trial_cpus: float = 0.0) -> None:
    """Exit early (UserError) when no placement on this cluster can give a trial its workers:
    each worker needs one node with C CPUs and G GPUs free (STRICT_SPREAD: W such nodes;
    STRICT_PACK: one node for all W)."""
    total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
    total_gpu = sum(n.get("GPU", 0.0) for n in nodes)
    have = (f"the Ray cluster has {len(nodes)} node(s) with {total_cpu:g} CPU and {total_gpu:g} "
            f"GPU in total (largest node: {max((n.get('CPU', 0) for n in nodes), default=0):g} "
            f"CPU, {max((n.get('GPU', 0) for n in nodes), default=0):g} GPU)")
    advice = ("Lower --workers / --cpus-per-worker / --gpus-per-worker, or join a bigger cluster "
              "with --address.")
    need = f"{workers} worker(s) x ({cpus:g} CPU, {gpus:g} GPU)"
    if workers * gpus > total_gpu or workers * cpus + trial_cpus > total_cpu:
        raise UserError(f"a trial needs {need} = {workers * cpus + trial_cpus:g} CPU and "
                        f"{workers * gpus:g} GPU, but {have}. {advice}")

    def slots(node: dict[str, float]) -> int:
        by_cpu = int(node.get("CPU", 0.0) // cpus) if cpus else workers
        by_gpu = int(node.get("GPU", 0.0) // gpus) if gpus else workers
        return min(by_cpu, by_gpu)

    fits = [slots(n) for n in nodes]
    if placement == "STRICT_PACK":
        ok = any(s >= workers for s in fits)
    elif placement == "STRICT_SPREAD":
        ok = sum(1 for s in fits if s >= 1) >= workers
    else:
        ok = sum(fits) >= workers
    if not ok:
        raise UserError(f"no placement ({placement}) of {need} fits: {have}. {advice}")
