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

from raytune_ft.epoch_report import BOOKKEEPING_KEYS, epoch_of
from raytune_ft.storage import METRICS_FILE, TB_DIR, Storage


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
        epoch = epoch_of(report)
        for key, value in report.items():
            if key in BOOKKEEPING_KEYS or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                continue
            tag = key if "/" in key else f"train/{key}"
            self._writer.add_scalar(tag, value, global_step=epoch)
        self._writer.flush()


try:  # Ray Train V2's controller hooks (the callbacks of RunConfig that are not UserCallbacks)
    from ray.train.v2._internal.execution.callback import ControllerCallback
except ImportError:  # pragma: no cover - Ray moved it: the phase record is then not written
    ControllerCallback = object  # type: ignore[misc,assignment]


class PhaseRecordCallback(ControllerCallback):
    """Append every state change of the Train controller to `<run_dir>/phases.jsonl`, so a
    trial's time splits into running (what it cost) and waiting for resources (node boot,
    image pull, placement, restarts: raytune_ft.phases), and the driver can say a trial waits.

    Runs on the controller, like EpochRecordCallback; with remote storage the file is uploaded
    into the run's folder at each change (a few per attempt)."""

    def __init__(self, run_dir: str, publish_to: tuple[Storage, str] | None = None) -> None:
        self.run_dir = run_dir
        self.publish_to = publish_to
        self._last: str | None = None

    def after_controller_state_update(self, previous_state, current_state) -> None:
        import time

        from raytune_ft.phases import PHASES_FILE

        state = current_state._state_type.state_name  # noqa: SLF001 - Ray has no public getter
        if state == self._last:  # the controller re-enters RUNNING at every poll of its workers
            return
        self._last = state
        os.makedirs(self.run_dir, exist_ok=True)
        path = os.path.join(self.run_dir, PHASES_FILE)
        if self.publish_to and not os.path.exists(path):  # a controller restarted elsewhere
            self.publish_to[0].download(path, self.publish_to[1], PHASES_FILE)
        with open(path, "a") as f:
            f.write(json.dumps({"state": state, "at": time.time()}) + "\n")
        if self.publish_to:
            storage, name = self.publish_to
            try:
                storage.upload(path, name, PHASES_FILE)
            except Exception:  # noqa: BLE001 - a slow bucket must not fail the run; next change
                pass
