"""mmengine hooks that connect a Runner to Ray Train: report each validated epoch with its checkpoint.

Registered in mmengine's HOOKS registry so configs can name them (`custom_hooks=[dict(type=...)]`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from mmengine.dist import all_reduce, get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from raytune_ft.engine.probe import probe_report
from raytune_ft.epoch_report import epoch_report

CHECKPOINT_FILE = "checkpoint.pth"


class TrainingDiverged(RuntimeError):
    """The train loss became NaN/inf on some rank; raised on every rank at the same iteration
    (after the divergence was reported) so the worker loop can end the trial cleanly."""


def worst_value(mode: str) -> float:
    """A finite stand-in for a diverged metric (Optuna and ASHA cannot rank NaN)."""
    return -1.0 if mode == "max" else 1.0e9


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """Keep the numeric metrics (mmdet also returns strings such as `coco/bbox_mAP_copypaste`)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


@HOOKS.register_module()
class RayTrainReportHook(Hook):
    """After each validation: `ray.train.report(metrics, checkpoint)` on every rank.

    Rank 0 attaches the checkpoint mmengine's CheckpointHook has just written for the epoch, so
    Ray persists it and `ray.train.get_checkpoint()` returns it after a failure. Reported with the
    evaluator's metrics: epoch, progress (epoch / max_epochs, for schedule-aware early stopping),
    the epoch of the LR step, lr, mean train loss, iteration and data time, where this attempt
    started, and the LR-step probe's metrics (`probe/...`) when `StepProbeHook` ran one.
    """

    priority = "LOWEST"  # after CheckpointHook and the logger have seen the epoch

    def __init__(self, start_info: dict[str, Any] | None = None, metric: str | None = None,
                 mode: str = "max", expected_metrics: list[str] | None = None,
                 lr_step_epoch: int | None = None) -> None:
        self.start_info = dict(start_info or {})
        self.lr_step_epoch = lr_step_epoch
        self.metric, self.mode = metric, mode
        self.expected_metrics = list(expected_metrics or [])
        self._reset()

    def _reset(self) -> None:
        self._losses: list[float] = []
        self._iter_times: list[float] = []
        self._data_times: list[float] = []
        self._t_iter_end: float | None = None
        self._t_iter_start = 0.0

    def before_train(self, runner) -> None:
        self.start_info["train_started_at"] = time.time()  # wall clock: start-up cost of Ray

    def before_train_epoch(self, runner) -> None:
        self._reset()
        self._t_iter_end = time.perf_counter()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        now = time.perf_counter()
        if self._t_iter_end is not None:
            self._data_times.append(now - self._t_iter_end)
        self._t_iter_start = now

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        now = time.perf_counter()
        self._iter_times.append(now - self._t_iter_start)
        self._t_iter_end = now
        loss = float(torch.as_tensor(outputs["loss"]).detach()) if outputs and "loss" in outputs else 0.0
        self._losses.append(loss)
        if _any_rank(not math.isfinite(loss)):
            self._report(runner, {}, diverged_at=runner.iter + 1)
            raise TrainingDiverged(
                f"train loss became {loss} at epoch {runner.epoch + 1}, iteration {batch_idx + 1}")

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        self._report(runner, metrics or {})

    def _report(self, runner, metrics: dict[str, Any], diverged_at: int | None = None) -> None:
        import ray.train

        epoch = runner.epoch  # already incremented: the number of finished epochs
        max_epochs = runner.max_epochs
        report: dict[str, Any] = _numeric(metrics)
        for key, value in report.items():
            if not math.isfinite(value):
                report[key] = worst_value(self.mode)
        if diverged_at is None and self.expected_metrics and not report:
            # mmdet's CocoMetric returns {} when the model detects nothing: that is an AP of 0
            report = {key: 0.0 for key in self.expected_metrics}
            report["empty_predictions"] = 1.0
        if diverged_at is not None and self.metric:
            report[self.metric] = worst_value(self.mode)
        lrs = runner.optim_wrapper.get_lr()
        report = epoch_report(
            report, epoch=epoch, max_epochs=max_epochs, lr_step_epoch=self.lr_step_epoch,
            diverged=diverged_at is not None,
            lr=float(next(iter(lrs.values()))[0]),
            train_loss=(sum(self._losses) / len(self._losses)) if self._losses else float("nan"),
            iter_time=_mean(self._iter_times),
            data_time=_mean(self._data_times),
            iters_per_s=(len(self._iter_times) / sum(self._iter_times)) if self._iter_times else 0.0,
            reported_at=time.time(),
            **self.start_info,
        )
        report.update(probe_report(runner))
        if diverged_at is not None:  # no checkpoint of NaN weights; the trial ends here
            report.update(diverged_at_iter=diverged_at, train_loss=worst_value("min"))
            ray.train.report(report)
            return
        rank = get_rank()
        ckpt_path = runner.message_hub.get_info("last_ckpt") if rank == 0 else None
        if rank == 0 and (ckpt_path is None or not os.path.isfile(ckpt_path)):
            raise RuntimeError(
                "no epoch checkpoint to report: default_hooks.checkpoint must save every epoch "
                f"(got last_ckpt={ckpt_path!r})"
            )
        if ckpt_path is None:
            ray.train.report(report)
            return
        with tempfile.TemporaryDirectory(prefix="raytune_ft_ckpt_") as staging:
            _link_or_copy(Path(ckpt_path), Path(staging) / CHECKPOINT_FILE)
            (Path(staging) / "meta.json").write_text(
                json.dumps({"epoch": epoch, "source": str(ckpt_path)})
            )
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(staging))

def _any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any (one small all-reduce per iteration;
    mmengine.dist puts it on the backend's device and skips it without a process group)."""
    value = torch.tensor([1.0 if flag else 0.0])
    all_reduce(value, op="max")
    return bool(value.item() > 0)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
