"""What a Ray cluster can hold: the nodes up now and, with an autoscaler, the nodes it may add.

Preflight asks this before any trial starts. On an autoscaling cluster (`ray up cluster.yaml`
starts GPU workers at `min_workers: 0`) the GPUs are not up yet when the search starts: a trial
that fits a node type the autoscaler can launch passes (the pending placement makes the
autoscaler start it), and only a trial that no node up now and no node type can ever hold is
refused, naming the node types.

Where the node types come from, in order: Ray's own cluster config in the GCS (what Ray Train's
pre-check reads; written by the v2 autoscaler), else the autoscaling config file the head's
autoscaler (the monitor process, whose pid it publishes in the GCS) was started with
(`~/ray_bootstrap_config.yaml` on a `ray up` head).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from raytune_ft.engine.trial import TrialResources
from raytune_ft.errors import UserError


@dataclass(frozen=True)
class NodeType:
    """A worker node type of the autoscaler: what one node offers and how many it may start."""

    name: str
    resources: dict[str, float]
    max_workers: int

    def describe(self) -> str:
        return (f"{self.name} ({self.resources.get('CPU', 0):g} CPU, "
                f"{self.resources.get('GPU', 0):g} GPU; up to {self.max_workers})")


@dataclass(frozen=True)
class ClusterCapacity:
    """The nodes alive now and the worker node types an autoscaler may add.

    `autoscaler` is None on a cluster without one; else where its node types were read (an
    empty `node_types` with an autoscaler means they could not be read from this driver)."""

    nodes: list[dict[str, float]]
    node_types: tuple[NodeType, ...] = ()
    max_workers: int | None = None  # the cluster-wide cap on worker nodes
    autoscaler: str | None = None

    def addable(self) -> list[dict[str, float]]:
        """One resource dict per node the autoscaler could still start (an upper bound: nodes
        of a type already up are not subtracted, so nothing the autoscaler can do is refused)."""
        cap = self.max_workers if self.max_workers is not None else 1 << 30
        return [dict(t.resources) for t in self.node_types
                for _ in range(min(t.max_workers, cap, 256))]

    def describe_now(self) -> str:
        cpu = sum(n.get("CPU", 0.0) for n in self.nodes)
        gpu = sum(n.get("GPU", 0.0) for n in self.nodes)
        return f"{len(self.nodes)} node(s) up with {cpu:g} CPU and {gpu:g} GPU"


def read_capacity(nodes: list[dict[str, float]]) -> ClusterCapacity:
    """The cluster this driver is connected to (Ray initialised): `nodes` plus its autoscaler's
    worker node types, when it has an autoscaler."""
    from_gcs = _node_types_from_gcs()
    if from_gcs is not None:
        return ClusterCapacity(nodes, from_gcs, None, "Ray's cluster config (GCS)")
    status = _autoscaler_status()
    if status is None:
        return ClusterCapacity(nodes)
    for path in (_monitor_config_path(status.get("monitor_pid")),
                 Path.home() / "ray_bootstrap_config.yaml"):
        if path is not None and path.is_file():
            types, cap = node_types_of(path)
            return ClusterCapacity(nodes, types, cap, str(path))
    if _names_node_types(status):
        return ClusterCapacity(nodes, (), None,
                               "an autoscaler whose config this driver cannot read")
    return ClusterCapacity(nodes)  # the read-only autoscaler of a cluster without one


def node_types_of(path: Path) -> tuple[tuple[NodeType, ...], int | None]:
    """The worker node types of a cluster launcher / autoscaling config (the head's type is
    left out: it is up already) and the cluster-wide `max_workers`."""
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    head = raw.get("head_node_type")
    types = tuple(
        NodeType(name, {k: float(v) for k, v in (spec.get("resources") or {}).items()},
                 int(spec.get("max_workers", raw.get("max_workers", 0)) or 0))
        for name, spec in (raw.get("available_node_types") or {}).items() if name != head)
    cap = raw.get("max_workers")
    return tuple(t for t in types if t.max_workers > 0), (int(cap) if cap is not None else None)


def _node_types_from_gcs() -> tuple[NodeType, ...] | None:
    """Node groups of the cluster config the (v2) autoscaler reported to the GCS, or None."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - older GCS or no such key: fall back to the monitor
        return None
    if config is None or not config.node_group_configs:
        return None
    return tuple(NodeType(g.name, {k: float(v) for k, v in g.resources.items()},
                          g.max_count if g.max_count >= 0 else 1 << 16)
                 for g in config.node_group_configs if g.max_count != 0)


def _autoscaler_status() -> dict | None:
    """The status record the head's monitor keeps in the GCS (every cluster has one: without
    --autoscaling-config the monitor runs a read-only autoscaler that adds nothing)."""
    try:
        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    except Exception:  # noqa: BLE001 - not connected, or Ray's internals moved
        return None
    return json.loads(raw) if raw else None


def _names_node_types(status: dict) -> bool:
    """Whether the autoscaler reports nodes by user node types; the read-only one of a cluster
    without autoscaling names each node `node_<id>`."""
    report = status.get("autoscaler_report") or {}
    names = set(report.get("active_nodes") or {}) | set(report.get("idle_nodes") or {})
    return bool(names) and not all(n.startswith("node_") for n in names)


def _monitor_config_path(pid) -> Path | None:
    """The --autoscaling-config of the autoscaler process `pid`, when it runs on this host."""
    if not pid:
        return None
    try:
        import psutil

        cmdline = psutil.Process(int(pid)).cmdline()
    except Exception:  # noqa: BLE001 - another host, gone, or not ours to read
        return None
    for i, arg in enumerate(cmdline):
        if arg.startswith("--autoscaling-config="):
            return Path(os.path.expanduser(arg.split("=", 1)[1]))
        if arg == "--autoscaling-config" and i + 1 < len(cmdline):
            return Path(os.path.expanduser(cmdline[i + 1]))
    return None


def placement_fits(nodes: list[dict[str, float]], trial: TrialResources,
                   trial_cpus: float = 0.0) -> bool:
    """Whether `trial`'s workers can be placed on `nodes` (each worker needs one node with C
    CPUs and G GPUs; STRICT_SPREAD: W such nodes; STRICT_PACK: one node for all W) and the
    drivers' CPUs fit in what is left in total."""
    total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
    total_gpu = sum(n.get("GPU", 0.0) for n in nodes)
    if (trial.workers * trial.gpus_per_worker > total_gpu + 1e-9
            or trial.workers * trial.cpus_per_worker + trial_cpus > total_cpu + 1e-9):
        return False

    cpus, gpus = trial.cpus_per_worker, trial.gpus_per_worker

    def slots(node: dict[str, float]) -> int:
        by_cpu = int(node.get("CPU", 0.0) // cpus + 1e-9) if cpus else trial.workers
        by_gpu = int(node.get("GPU", 0.0) // gpus + 1e-9) if gpus else trial.workers
        return min(by_cpu, by_gpu)

    fits = [slots(n) for n in nodes]
    if trial.placement_strategy == "STRICT_PACK":
        return any(s >= trial.workers for s in fits)
    if trial.placement_strategy == "STRICT_SPREAD":
        return sum(1 for s in fits if s >= 1) >= trial.workers
    return sum(fits) >= trial.workers


def check_capacity(capacity: ClusterCapacity, trial: TrialResources, trial_cpus: float = 0.0,
                   resource_wait: str = "") -> str | None:
    """None when a trial fits the nodes up now; a line for the console when it fits only once
    the autoscaler adds nodes (or the autoscaler's node types are unknown here); a UserError
    when nothing the cluster has or can add would ever hold it."""
    nodes = capacity.nodes
    if placement_fits(nodes, trial, trial_cpus):
        return None
    largest = (f"largest node: {max((n.get('CPU', 0) for n in nodes), default=0):g} CPU, "
               f"{max((n.get('GPU', 0) for n in nodes), default=0):g} GPU")
    cpus = trial.workers * trial.cpus_per_worker + trial_cpus
    need = (f"a trial needs {trial.describe()} = {cpus:g} CPU and "
            f"{trial.workers * trial.gpus_per_worker:g} GPU ({trial.placement_strategy})")
    advice = ("Lower --workers-per-trial / --cpus-per-worker / --gpus-per-worker, or join a "
              "bigger cluster with --address.")
    if capacity.autoscaler is None:
        raise UserError(f"{need}, but the Ray cluster has {capacity.describe_now()} in total "
                        f"({largest}) and no autoscaler to add more. {advice}")
    if not capacity.node_types:
        return (f"cluster: {capacity.describe_now()}; {need}. The cluster has an autoscaler "
                f"whose node types this driver cannot read ({capacity.autoscaler}): trials "
                f"wait for the nodes it adds (up to --resource-wait {resource_wait} each)")
    if not placement_fits(nodes + capacity.addable(), trial, trial_cpus):
        offered = "; ".join(t.describe() for t in capacity.node_types)
        raise UserError(f"{need}, but neither the {capacity.describe_now()} nor any node the "
                        f"autoscaler may add can hold it: its worker node types are {offered}"
                        + (f", at most {capacity.max_workers} worker node(s) in all"
                           if capacity.max_workers is not None else "")
                        + f" (read from {capacity.autoscaler}). {advice}")
    useful = [t for t in capacity.node_types
              if placement_fits(nodes + [t.resources] * min(t.max_workers, trial.workers),
                                trial, trial_cpus)]
    will_add = ", ".join(t.describe() for t in (useful or capacity.node_types))
    return (f"cluster: {capacity.describe_now()}; {need}: the autoscaler will add "
            f"{will_add} when trials ask, and trials wait for them (up to --resource-wait "
            f"{resource_wait} each)")


__all__ = ["ClusterCapacity", "NodeType", "check_capacity", "node_types_of",
           "placement_fits", "read_capacity"]
