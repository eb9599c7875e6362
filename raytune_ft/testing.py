"""Hooks for testing the engine, not for production runs: an audit of what each DDP rank saw
and a worker killer (chaos testing).

A config turns them on like any custom mmengine module:

    custom_imports = dict(imports=["raytune_ft.testing"], allow_failed_imports=False)
    custom_hooks = [dict(type="RankAuditHook"),
                    dict(type="FaultInjectionHook", rank=1, epoch=2, marker="/tmp/killed")]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

AUDIT_DIR = "ranks"  # <work_dir>/ranks/rank<r>.jsonl


def param_digest(model: torch.nn.Module) -> float:
    """An order-sensitive fingerprint of all parameters; equal on DDP ranks that are in sync."""
    total = 0.0
    for i, p in enumerate(model.parameters()):
        total += float(p.detach().double().sum()) * (1 + (i % 97) * 1e-3)
    return total


@HOOKS.register_module()
class RankAuditHook(Hook):
    """Append a line per validated epoch to `<work_dir>/ranks/rank<r>.jsonl`: the samples this
    rank trained on, a digest of its parameters, its Ray node and whether the attempt resumed,
    so DDP sharding, synchronisation and placement can be checked after the run."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self._samples: list[Any] = []

    def before_train_epoch(self, runner) -> None:
        self._samples = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        for sample in (data_batch or {}).get("data_samples", []):
            self._samples.append(sample.metainfo.get("img_id", sample.metainfo.get("img_path")))

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        import ray

        rank_dir = Path(runner.work_dir) / AUDIT_DIR
        rank_dir.mkdir(parents=True, exist_ok=True)
        line = {"epoch": runner.epoch, "rank": get_rank(), "samples": self._samples,
                "param_digest": param_digest(runner.model),
                "node_id": ray.get_runtime_context().get_node_id(),
                "resumed": int(bool(runner.cfg.get("resume"))),
                # the devices this worker could see and the one its model trained on
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "device": str(next(runner.model.parameters()).device),
                # the DDP wrapper as built (None: not wrapped, one worker)
                "find_unused_parameters": getattr(runner.model, "find_unused_parameters", None),
                "broadcast_buffers": getattr(runner.model, "broadcast_buffers", None)}
        with open(rank_dir / f"rank{get_rank()}.jsonl", "a") as f:
            f.write(json.dumps(line, default=str) + "\n")


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    """Kill this worker process once, to exercise recovery.

    Exits with `os._exit(1)` on `rank` at iteration `at_iter` of epoch `epoch` (1-based), the
    first time only: the marker file records that it fired, so the restarted attempt runs on.
    Before dying it waits until Ray has committed the reports already made, so the crash lands
    after the previous epoch's checkpoint is safe (as it is in any real run whose epochs last
    longer than Ray's few-second polling interval).
    """

    def __init__(self, rank: int, epoch: int, marker: str, at_iter: int = 0) -> None:
        self.rank, self.epoch, self.at_iter, self.marker = rank, epoch, at_iter, marker

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if (get_rank() == self.rank and runner.epoch + 1 == self.epoch
                and batch_idx == self.at_iter and not os.path.exists(self.marker)):
            import ray.train

            ray.train.get_all_reported_checkpoints()
            Path(self.marker).write_text(f"killed rank {self.rank} in epoch {self.epoch}\n")
            os._exit(1)
