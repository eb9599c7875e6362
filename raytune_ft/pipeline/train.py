"""One fine-tune of an MMDetection config as a Ray Train run: `run_train(TrainConfig)`.

Also how a search's exported `best_config.py` is retrained. `python -m raytune_ft.train` is the
command line over this (raytune_ft.cli.train).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_ft.epoch_report import probe_key
from raytune_ft.options import TrainConfig


@dataclass(frozen=True)
class TrainResult:
    """A finished fine-tune.

    Attributes:
        run_dir: the run's folder (checkpoints, mmengine logs, metrics.jsonl, TensorBoard).
        records: the committed per-epoch reports (metric, train loss, lr, speed, ...).
        checkpoint: the last checkpoint file, or None when no epoch finished.
        config: the options it ran with, defaults resolved.
    """

    run_dir: str
    records: list[dict[str, Any]]
    checkpoint: str | None
    config: TrainConfig


def train_probe_spec(config: TrainConfig, cfg) -> dict | None:
    """The LR-step probe `--probe-epochs` asks for (each epoch before the LR step), or None."""
    from raytune_ft.engine.probe import check_probe_epochs, probe_spec

    spec = probe_spec(config.probe_length, epochs=config.probe_epochs)
    if spec:
        check_probe_epochs(config.probe_epochs, cfg)
    return spec


def say_lr(cfg, config: TrainConfig) -> None:
    """Run the config's lr at this run's total batch (linear scaling from the batch the config
    declares in auto_scale_lr.base_batch_size), unless --hparams sets lr, and say which."""
    from raytune_ft.mmconfig.hparams import lr_at_batch, lr_base_batch

    optimizer = cfg.optim_wrapper.optimizer
    total = int(cfg.train_dataloader.get("batch_size", 1)) * config.workers
    base = lr_base_batch(cfg)
    if "lr" in config.hparams:
        print(f"[raytune_ft] lr {optimizer.lr:g} (from --hparams) at a total batch of {total}",
              flush=True)
    elif base is not None and base != total:
        declared = optimizer.lr
        optimizer.lr = lr_at_batch(cfg, total)
        print(f"[raytune_ft] lr {optimizer.lr:g} at a total batch of {total}: the config's lr "
              f"{declared:g} is for {base} images (auto_scale_lr.base_batch_size)", flush=True)
    else:
        print(f"[raytune_ft] lr {optimizer.lr:g} at a total batch of {total}"
              + ("" if base else " (the config declares no auto_scale_lr.base_batch_size)"),
              flush=True)


def run_train(config: TrainConfig) -> TrainResult:
    """Fine-tune `config.config` with `config.hparams` applied, as one Ray Train run.

    Re-running with the same `name` and `work_dir` resumes the run from its last checkpoint.

    Args:
        config: the run's options (`TrainConfig()` alone trains the embedded demo).

    Example:
        >>> from raytune_ft import TrainConfig, run_train
        >>> run = run_train(TrainConfig(config="experiments/s1/best_config.py"))  # doctest: +SKIP
        >>> run.records[-1]["coco/bbox_mAP"], run.checkpoint  # doctest: +SKIP
    """
    from raytune_ft.engine.capacity import check_capacity, read_capacity
    from raytune_ft.engine.cluster import default_cpus_per_worker, init_ray, ray_logs_dir
    from raytune_ft.storage import DRIVER_LOG
    from raytune_ft.mmconfig.config import load_config
    from raytune_ft.mmconfig.metrics import default_metric
    from raytune_ft.storage import read_records
    from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial

    demo = config.config is None
    path = config.config or _default_config()
    cpus = default_cpus_per_worker(config.cpus_per_worker, config.workers, config.address, demo)
    cfg = load_config(path, dict(config.cfg_options), dict(config.hparams))
    say_lr(cfg, config)
    config = config.replace(
        config=path, cpus_per_worker=cpus, metric=config.metric or default_metric(cfg),
        work_dir=str(Path(config.work_dir or Path("work_dirs") / Path(path).stem).resolve()),
        name=config.name or time.strftime("train_%Y%m%d_%H%M%S"))
    spec = TrialSpec(
        name=config.name, storage_path=config.work_dir,
        resources=TrialResources(config.workers, cpus, config.gpus_per_worker, config.placement),
        max_failures=config.max_failures, metric=config.metric,
        max_preemptions=config.max_preemptions,
        resource_wait_s=config.resource_wait_s,
        probe=train_probe_spec(config, cfg),
        verbose=config.verbose,
    )
    driver_log = None
    if not config.verbose:  # Ray's own records of this driver: next to the run, not on screen
        driver_log = Path(spec.record_dir()) / DRIVER_LOG
        driver_log.parent.mkdir(parents=True, exist_ok=True)
    cluster = init_ray(config.address, log_file=driver_log)
    waits_for_nodes = check_capacity(read_capacity(cluster), spec.resources,
                                     resource_wait=config.resource_wait)
    if waits_for_nodes:
        print(f"[raytune_ft] {waits_for_nodes}", flush=True)
    print(f"[raytune_ft] training {path} with {config.workers} worker(s); run folder "
          f"{spec.run_dir}" + ("" if config.verbose else
                               f" (full logs: its mmengine/ folder, {driver_log}, and every Ray "
                               f"process's in {ray_logs_dir()} on its node; --verbose prints "
                               "them here)"), flush=True)
    started = time.time()
    result = run_trial(cfg, spec)
    records = read_records(spec.storage, spec.name)
    print(format_epochs(records, metric=config.metric))
    print(f"[raytune_ft] {len(records)} epoch(s) in {time.time() - started:.0f}s; metrics: "
          f"{spec.run_dir}/metrics.jsonl; TensorBoard: tensorboard --logdir {spec.run_dir}")
    checkpoint = f"{result.checkpoint.path}/checkpoint.pth" if result.checkpoint else None
    if checkpoint:
        print(f"[raytune_ft] last checkpoint: {checkpoint}")
    return TrainResult(spec.run_dir, records, checkpoint, config)


def format_epochs(epochs: list[dict], metric: str) -> str:
    """One line per committed epoch: the metric, train loss, lr and speed."""
    probe = probe_key(metric)
    lines = [f"{'epoch':>5}  {metric:>14}  {'train_loss':>10}  {'lr':>9}  {'it/s':>6}"
             + (f"  {'LR-step probe':>13}" if any(probe in e for e in epochs) else "")]
    for e in epochs:
        lines.append(f"{e['epoch']:>5}  {e.get(metric, float('nan')):>14.4f}  "
                     f"{e.get('train_loss', float('nan')):>10.4f}  {e.get('lr', 0):>9.2e}  "
                     f"{e.get('iters_per_s', 0):>6.2f}"
                     + (f"  {e[probe]:>13.4f}" if probe in e else ""))
    return "\n".join(lines)


def _default_config() -> str:
    from raytune_ft.data.demo import DEMO_CONFIG, ensure_demo

    ensure_demo()
    return str(DEMO_CONFIG)


__all__ = ["TrainResult", "run_train"]
