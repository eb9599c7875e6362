"""What a person sees: known noise silenced in one place, everything else kept in log files.

Default output of `train` and `search`: the preflight line, one line per trial epoch, a
progress line (search), the final table and paths. Worker output that is only noise on a
console goes to files instead: mmengine's INFO log (config, hooks, iteration lines) to
`<trial>/mmengine/<time>/<time>.log`, what libraries print (pycocotools' AP tables) to
`<trial>/mmengine/stdout.log`. `--verbose` shows all of it again. Only warnings named in
KNOWN_NOISE are silenced, never errors.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import io
import logging
import math
import os
import sys
import warnings
from collections.abc import Sequence

from raytune_ft.epoch_report import epoch_of, is_diverged, max_epochs_of, probe_key

# Warnings that are known, harmless and repeated in every process: the start of their message
# (a literal prefix, as PYTHONWARNINGS matches it). All are UserWarnings.
KNOWN_NOISE = (
    # mmengine/mmdet import pkg_resources (setuptools < 81 is pinned for mmcv's build)
    "pkg_resources is deprecated",
    # mmdet's DetLocalVisualizer is built once per Runner; mmengine warns on the second
    "<class 'mmdet.visualization.local_visualizer.DetLocalVisualizer'> instance named",
    # Optuna on a fixed point (trial 0, --points) outside the space: preflight says it in
    # raytune_ft's own line (pipeline/plan.check_points_in_space)
    "Fixed parameter ",
    # mmdet 3.5 (onedl) on import of its optional faster COCO metric; raytune_ft uses CocoMetric
    "faster_coco_eval is not installed",
)
# Lines printed (not warned) at import: onedl-mmdetection's mmdet.datasets tries OneDL's own
# data SDK and, without it, says so through mmengine's print_log, which prints whatever the level.
KNOWN_IMPORT_PRINTS = {"mmdet.datasets": ("Could not import OneDL. Skipping OneDL datasets.",)}
# mmengine log records (not Python warnings) that every checkpoint load repeats.
KNOWN_LOG_NOISE = (
    '"FileClient" will be deprecated in future',
    '"HardDiskBackend" is the alias of "LocalBackend"',
)
# Ray Train V2 logs every report (metrics and checkpoint path) at INFO.
RAY_REPORT_LOGGER = "ray.train.v2._internal.execution.context"


class _QuietImports(importlib.abc.MetaPathFinder):
    """Imports the modules of KNOWN_IMPORT_PRINTS with those lines held back (every other line
    they print still reaches stdout). Lazy: nothing is imported until the program imports it."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201 - importlib's protocol
        if name not in KNOWN_IMPORT_PRINTS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        known, exec_module = KNOWN_IMPORT_PRINTS[name], spec.loader.exec_module

        def exec_quietly(module) -> None:  # noqa: ANN001
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer):
                    exec_module(module)
            finally:
                for line in buffer.getvalue().splitlines(keepends=True):
                    if line.strip() not in known:
                        sys.stdout.write(line)

        spec.loader.exec_module = exec_quietly
        return spec


def silence_known_noise() -> None:
    """In this process and, through PYTHONWARNINGS, in the Ray workers it starts."""
    import re

    if not any(isinstance(finder, _QuietImports) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImports())

    for prefix in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=re.escape(prefix), category=UserWarning)
    entries = [f"ignore:{prefix}:UserWarning" for prefix in KNOWN_NOISE]
    present = os.environ.get("PYTHONWARNINGS", "")
    missing = [e for e in entries if e not in present]
    if missing:
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [present, *missing]))


def quiet_worker() -> None:
    """In a Ray Train worker: no per-report dump from Ray Train."""
    silence_known_noise()
    import ray.train.v2._internal.execution.context as context

    for name in (RAY_REPORT_LOGGER, context.__file__):  # Ray names that logger by its file
        logging.getLogger(name).setLevel(logging.WARNING)


class DropKnownLogNoise(logging.Filter):
    """A logging filter for the console handler: drops KNOWN_LOG_NOISE, passes the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_LOG_NOISE)


def say(line: str) -> None:
    """One line to the console from a Ray Train worker, once (Ray Train V2's patched print()
    would both log it and tee it)."""
    import sys

    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def epoch_line(name: str, report: dict, metric: str | None) -> str:
    """`trial_x  epoch 3/6  coco/bbox_mAP 0.0340  loss 0.912  lr 2.00e-02  2.9 it/s  ETA 31s`"""
    epoch, total = epoch_of(report), max_epochs_of(report)
    parts = [f"[raytune_ft] {name}  epoch {epoch}/{total}"]
    if metric and isinstance(report.get(metric), (int, float)):
        parts.append(f"{metric} {report[metric]:.4f}")
    probe = report.get(probe_key(metric)) if metric else None
    if isinstance(probe, (int, float)):
        parts.append(f"(LR-step probe {probe:.4f})")
    if isinstance(report.get("train_loss"), (int, float)):
        parts.append(f"loss {report['train_loss']:.3f}")
    if isinstance(report.get("lr"), (int, float)):
        parts.append(f"lr {report['lr']:.2e}")
    if report.get("iters_per_s"):
        parts.append(f"{report['iters_per_s']:.1f} it/s")
    at, started = report.get("reported_at"), report.get("train_started_at")
    if started and at and epoch and total > epoch:
        per_epoch = (at - started) / max(1, epoch - int(report.get("start_epoch", 1)) + 1)
        parts.append(f"ETA {per_epoch * (total - epoch):.0f}s")
    if is_diverged(report):
        parts.append("DIVERGED (loss NaN/inf)")
    return "  ".join(parts)


def metric_text(value: float | None, missing: str = "") -> str:
    """A metric as every table prints it (4 decimals); `missing` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value:.4f}"


def columns(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A header and rows of text, left-aligned in columns two spaces apart."""
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths))
                     for line in [head, *body])


LIBRARY_LOGGERS = ("ray", "optuna")


NODE_DIED = "Raylet is terminated"  # what Ray's cluster-wide error channel says of a lost node


def route_ray_messages_to(path: os.PathLike | str) -> None:
    """The messages Ray's raylets publish to every driver (worker-pool warnings, a dead node's
    last 20 log lines, ...) are printed by Ray's driver thread to stdout whatever
    `log_to_driver` says: they go to `path`, and the console gets one line when a node died
    (a spot node reclaimed: the trials on it restart). Idempotent."""
    import ray._private.worker as ray_worker

    if getattr(ray_worker.print_to_stdstream, "raytune_ft_path", None) == str(path):
        return

    def to_log(data, ignore_prefix: bool) -> None:
        lines = [str(line) for line in data.get("lines", [])]
        with open(path, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(f"({data.get('pid')}) {line}\n")
        if any(NODE_DIED in line for line in lines):
            print(f"[raytune_ft] Ray reports a node lost (its raylet died); trials that ran on "
                  f"it restart from their checkpoints; details in {path}", flush=True)

    to_log.raytune_ft_path = str(path)  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_log


def log_libraries_to(path: os.PathLike | str) -> None:
    """Ray's and Optuna's log records in this (driver) process go to `path`; their console
    handlers keep only ERROR and above, so a real error still shows. Called again after
    ray.init (which sets the ray logger's level); idempotent."""
    target = os.path.abspath(path)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
        if not any(isinstance(h, logging.FileHandler) and h.baseFilename == target
                   for h in logger.handlers):
            handler = logging.FileHandler(target, encoding="utf-8")
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)s -- %(message)s"))
            logger.addHandler(handler)
