"""Ray Train callbacks (run on the Train controller) that record each *committed* epoch report.

Only reports Ray has committed reach here, so an epoch redone after a worker failure appears
once: `metrics.jsonl` and the TensorBoard curves (step = epoch) stay clean across restarts.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ray.train.v2.api.callback import UserCallback

from raytune_ft.storage import METRICS_FILE, TB_DIR, Storage
# Reported values that are bookkeeping, not curves.
_NOT_SCALARS = {"epoch", "max_epochs", "resumed", "start_epoch", "progress", "diverged",
                "train_started_at", "lr_step_epoch", "probe_epoch", "probe_iters", "reported_at",
                "probe_empty_predictions"}


class EpochRecordCallback(UserCallback):
    """Append rank 0's report to `<run_dir>/metrics.jsonl` and to TensorBoard, keyed by epoch.

    With remote storage `run_dir` is node-local and `publish_to` = (storage, run name): the
    records are uploaded there after every epoch, and a controller restarted on another node
    first brings the published records back so it appends to them.
    """

    def __init__(self, run_dir: str, tensorboard: bool = True,
                 publish_to: tuple[Storage, str] | None = None) -> None:
        self.run_dir = run_dir
        self.tensorboard = tensorboard
        self.publish_to = publish_to
        self._writer = None
        self._synced = False

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if self.publish_to and not self._synced:
            storage, name = self.publish_to
            if not os.path.exists(os.path.join(self.run_dir, METRICS_FILE)):
                storage.download(os.path.join(self.run_dir, METRICS_FILE), name, METRICS_FILE)
                storage.download(os.path.join(self.run_dir, TB_DIR), name, TB_DIR)
            self._synced = True
        report = dict(metrics[0])
        if checkpoint is not None:
            report["checkpoint_path"] = checkpoint.path
        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, METRICS_FILE), "a") as f:
            f.write(json.dumps(report, default=str) + "\n")
        if self.tensorboard:
            self._write_scalars(report)
        if self.publish_to:
            storage, name = self.publish_to
            storage.upload(self.run_dir, name)

    def _write_scalars(self, report: dict[str, Any]) -> None:
        from tensorboardX import SummaryWriter

        if self._writer is None:
            self._writer = SummaryWriter(os.path.join(self.run_dir, TB_DIR))
        epoch = int(report["epoch"])
        for key, value in report.items():
            if key in _NOT_SCALARS or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                continue
            tag = key if "/" in key else f"train/{key}"
            self._writer.add_scalar(tag, value, global_step=epoch)
        self._writer.flush()
