"""The per-epoch report: what a trial tells Ray Tune after each validated epoch.

One schema for the one dict that crosses every layer: the trial's mmengine hook
(`raytune_ft.engine.hooks.RayTrainReportHook`) and the curve replay (`raytune_ft.simulate`)
build it with `epoch_report`; the scheduler, the searcher, the progress line, the console, the
results and report.html read it with the functions below. A key renamed here is renamed for
all of them, so the replay cannot drift from what a live trial reports.

It stays a plain dict (`EpochReport` types it): Ray Train pickles it, Tune adds its own keys
(`training_iteration`, `trial_id`, ...) and `metrics.jsonl` stores it as one JSON line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

PROBE_PREFIX = "probe/"  # the LR-step probe's value of metric m is reported as probe/m


class EpochReport(TypedDict, total=False):
    """The keys raytune_ft reports per epoch, beside the evaluator's metrics (`coco/bbox_mAP`,
    ...) and, after a probe, `probe/<metric>` with `probe_epoch`, `probe_iters`, ...)."""

    epoch: int  # epochs finished (1 after the first)
    max_epochs: int  # the trial's own schedule
    progress: float  # epoch / max_epochs: the schedulers' time axis
    lr_step_epoch: int  # the last epoch at the un-stepped lr (max_epochs without a step)
    diverged: float  # 1.0 when the train loss became NaN/inf (the trial ends)
    lr: float
    train_loss: float
    iter_time: float
    data_time: float
    iters_per_s: float
    reported_at: float  # time.time() of the report
    resumed: int  # 1 when this attempt resumed from a checkpoint
    start_epoch: int  # the first epoch this attempt trained
    train_started_at: float


# reported values that are bookkeeping, not curves (TensorBoard leaves them out)
BOOKKEEPING_KEYS = frozenset({
    "epoch", "max_epochs", "resumed", "start_epoch", "progress", "diverged", "train_started_at",
    "lr_step_epoch", "probe_epoch", "probe_iters", "reported_at", "probe_empty_predictions"})


def probe_key(metric: str) -> str:
    """The key of the LR-step probe's value of `metric`."""
    return PROBE_PREFIX + metric


def probe_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """An evaluator's numeric metrics under their probe keys."""
    return {probe_key(k): float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def is_probe_key(key: str) -> bool:
    return key.startswith(PROBE_PREFIX)


def epoch_report(metrics: Mapping[str, Any], *, epoch: int, max_epochs: int,
                 lr_step_epoch: int | None, diverged: bool = False,
                 **measured: Any) -> dict[str, Any]:
    """A report of `epoch`: the evaluator's `metrics`, the schedule keys every reader needs,
    then what the trial `measured` (lr, loss, timings, its start)."""
    return {**metrics, "epoch": epoch, "max_epochs": max_epochs, "progress": epoch / max_epochs,
            # the scheduler never ranks a report of epoch <= lr_step_epoch on its raw metric
            "lr_step_epoch": max_epochs if lr_step_epoch is None else lr_step_epoch,
            "diverged": float(diverged), **measured}


def epoch_of(report: Mapping[str, Any], default: int = 0) -> int:
    return int(report.get("epoch", default))


def max_epochs_of(report: Mapping[str, Any], default: int = 0) -> int:
    return int(report.get("max_epochs", default))


def is_diverged(report: Mapping[str, Any] | None) -> bool:
    return bool(report and report.get("diverged"))


def probe_value(report: Mapping[str, Any], metric: str) -> float | None:
    """The probe's value of `metric` in this report (None when no probe ran after it)."""
    value = report.get(probe_key(metric))
    return None if value is None else float(value)


def has_stepped(report: Mapping[str, Any]) -> bool:
    """True once the trial has trained an epoch at its stepped lr (or has no step info)."""
    epoch, step = report.get("epoch"), report.get("lr_step_epoch")
    if epoch is None or step is None:
        return True
    return int(epoch) > int(step)


def stopped_early(report: Mapping[str, Any] | None) -> bool:
    """A last report that ends a trial before its schedule's last epoch (not by diverging)."""
    if not report or is_diverged(report):
        return False
    epoch, max_epochs = report.get("epoch"), report.get("max_epochs")
    return epoch is not None and max_epochs is not None and int(epoch) < int(max_epochs)


def first_report_of_attempt(report: Mapping[str, Any]) -> bool:
    """The first epoch an attempt (a fresh start or a resume) reported."""
    return report.get("start_epoch") == report.get("epoch")


__all__ = ["BOOKKEEPING_KEYS", "EpochReport", "PROBE_PREFIX", "epoch_of", "epoch_report", "first_report_of_attempt",
           "has_stepped", "is_diverged", "is_probe_key", "max_epochs_of", "probe_key",
           "probe_metrics", "probe_value", "stopped_early"]
