"""The Ray Train worker loop: one mmengine Runner per worker, inside the process group Ray made.

A fresh attempt initialises from the config's `load_from` (a pretrained checkpoint, weights
only); an attempt after a failure resumes from the trial's own last Ray checkpoint (weights,
optimizer, schedulers, epoch) and never touches `load_from` again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, TypedDict

from raytune_ft.checkpoints import allow_mmengine_checkpoints
from raytune_ft.engine.hooks import CHECKPOINT_FILE, TrainingDiverged
from raytune_ft.mmconfig.metrics import expected_metrics
from raytune_ft.engine.probe import ProbeSpec, lr_step, probe_hook

log = logging.getLogger(__name__)


def _set_threads(cpus: float) -> None:
    """mmengine forces 1 OMP thread in distributed mode unless set: give each worker its CPUs."""
    import torch

    threads = str(max(1, math.ceil(cpus - 1e-6)))  # 1.99 reserved CPUs -> 2 threads
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    torch.set_num_threads(int(threads))


def _restore_from_ray(local_dir: Path) -> tuple[Path, int] | None:
    """Copy the trial's last committed Ray checkpoint into `local_dir`; None on a fresh start."""
    import json

    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    local_dir.mkdir(parents=True, exist_ok=True)
    target = local_dir / "resume_from.pth"
    with checkpoint.as_directory() as ckpt_dir:
        shutil.copyfile(Path(ckpt_dir) / CHECKPOINT_FILE, target)
        epoch = int(json.loads((Path(ckpt_dir) / "meta.json").read_text())["epoch"])
    return target, epoch


def ddp_wrapper_config(cfg, use_gpu: bool, local_device: int):
    """The config's own DDP settings (`model_wrapper_cfg` fields such as a custom wrapper type,
    and `find_unused_parameters=True` at its top level or in the wrapper, which models with
    branches unused in some iterations need) with what Ray decided merged in: the device this
    rank was given, and mmengine's default type when the config names none.
    `broadcast_buffers` defaults to False (BN statistics stay per rank, as in mmdet's own
    distributed training) unless the config sets it."""
    from mmengine.config import ConfigDict

    merged = ConfigDict(type="MMDistributedDataParallel", broadcast_buffers=False,
                        find_unused_parameters=bool(cfg.get("find_unused_parameters", False)))
    merged.update(cfg.get("model_wrapper_cfg") or {})
    merged["device_ids"] = [local_device] if use_gpu else None
    return merged


class WorkerJob(TypedDict, total=False):
    """What every Ray Train worker of a trial gets (`train_loop_config`: Ray Train takes a
    plain dict), built by `raytune_ft.engine.trial.build_trainer`."""

    cfg: dict  # the trial's mmengine config, hyper-parameters applied
    work_dir: str  # mmengine's work_dir (node-local with remote storage)
    use_gpu: bool
    gpus_per_worker: float
    cpus_per_worker: float
    metric: str | None
    mode: str
    probe: ProbeSpec | None
    verbose: bool
    local_device: int  # set by the worker itself: its CUDA device index


def prepare_worker_config(cfg, job: WorkerJob, rank: int, world_size: int,
                          use_gpu: bool) -> tuple[Any, dict[str, Any]]:
    """Set launcher, DDP wrapper, metric collection, checkpointing and the init source."""
    from mmengine.config import ConfigDict

    cfg.work_dir = job["work_dir"]
    cfg.launcher = "pytorch" if world_size > 1 else "none"
    if world_size > 1:
        cfg.model_wrapper_cfg = ddp_wrapper_config(cfg, use_gpu, int(job.get("local_device", 0)))
        # Gather eval results with collectives: a temp dir is not shared across nodes.
        evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
        for evaluator in evaluators:
            evaluator["collect_device"] = "gpu"
    hooks = cfg.setdefault("default_hooks", ConfigDict())
    ckpt = hooks.setdefault("checkpoint", ConfigDict(type="CheckpointHook"))
    ckpt.update(interval=1, by_epoch=True, max_keep_ckpts=1, save_last=True)
    cfg.train_cfg.val_interval = 1
    if (cfg.get("auto_scale_lr") or {}).get("enable"):
        # raytune_ft already moved lr to this run's total batch; mmengine's Runner.train() would
        # scale it a second time (Runner.scale_lr)
        cfg.auto_scale_lr.enable = False
        if rank == 0:
            print("[raytune_ft] auto_scale_lr.enable=True switched off for this run: raytune_ft "
                  "already set lr for its total batch", flush=True)
    cfg.setdefault("env_cfg", ConfigDict()).setdefault("dist_cfg", ConfigDict(backend="gloo"))

    restored = _restore_from_ray(Path(job["work_dir"]) / f"restore_rank{rank}")
    if restored is None:
        start = {"resumed": 0, "start_epoch": 1}
        cfg.resume = False  # a model-zoo checkpoint's meta.epoch would end training at once
        start["init_from"] = str(cfg.get("load_from"))
    else:
        path, epoch = restored
        cfg.load_from = str(path)
        cfg.resume = True
        start = {"resumed": 1, "start_epoch": epoch + 1, "init_from": str(path)}
    custom = list(cfg.get("custom_hooks", []))
    step_epoch, _ = lr_step(cfg)
    custom.append(dict(type="RayTrainReportHook", start_info=start, metric=job.get("metric"),
                       mode=job.get("mode", "max"), expected_metrics=expected_metrics(cfg),
                       lr_step_epoch=step_epoch))
    probe = probe_hook(job.get("probe"), cfg)
    if probe:
        custom.append(probe)
    cfg.custom_hooks = custom
    return cfg, start


def train_loop_per_worker(job: WorkerJob) -> None:
    """Entry point Ray Train runs on every worker (`TorchTrainer(train_loop_per_worker=...)`)."""
    if not job.get("use_gpu"):
        # before anything initialises CUDA: a CPU trial on a GPU node must not see its GPUs
        # (the worker's runtime env already says so; this also covers `ray.init(local_mode)`)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import ray.train
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    import raytune_ft.engine.hooks  # noqa: F401  (registers the hooks)
    import raytune_ft.engine.probe  # noqa: F401

    # Ray Train logs every report and checkpoint at INFO; mmengine's own progress lines suffice.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    verbose = bool(job.get("verbose"))
    if not verbose:
        from raytune_ft.console import quiet_worker

        quiet_worker()
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    use_gpu = bool(job.get("use_gpu")) and torch.cuda.is_available()
    _set_threads(job.get("cpus_per_worker", 1))
    os.environ.setdefault("LOCAL_RANK", str(ctx.get_local_rank()))
    if use_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
        job = {**job, "local_device": device.index or 0}
        share = float(job.get("gpus_per_worker") or 1.0)
        if share < 1.0:
            # Ray shares the GPU between trials but does not bound their memory: each trial's
            # caching allocator is held to its share (an OOM names the cap, not a neighbour)
            torch.cuda.set_per_process_memory_fraction(share, device)
    allow_mmengine_checkpoints()

    cfg = Config(job["cfg"])
    if cfg.get("custom_imports"):  # Config.fromfile did this on the driver, not in this process
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**cfg.custom_imports)
    cfg, start = prepare_worker_config(cfg, job, rank, world_size, use_gpu)
    if rank == 0:
        from raytune_ft.console import say

        say(f"[raytune_ft] rank 0/{world_size}: "
            + (f"resuming at epoch {start['start_epoch']} from {start['init_from']}"
               if start["resumed"] else f"fresh start from load_from={start['init_from']}"))
    if not verbose:
        cfg.log_level = "WARNING"  # the console; the log file is set back to INFO below
    runner = Runner.from_cfg(cfg)
    try:
        with _quiet_console(runner, verbose):
            runner.train()
    except TrainingDiverged as err:  # already reported on every rank: end the run cleanly
        if rank == 0:
            print(f"[raytune_ft] stopping: {err}", flush=True)


@contextlib.contextmanager
def _quiet_console(runner, verbose: bool):
    """Unless verbose: mmengine's INFO lines only in its log file, and what libraries print
    (pycocotools' AP tables, ...) in <work_dir>/stdout.log instead of the console."""
    if verbose:
        yield
        return
    from raytune_ft.console import DropKnownLogNoise

    runner.logger.setLevel(logging.INFO)
    for handler in runner.logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.INFO)
        else:
            handler.addFilter(DropKnownLogNoise())
    import builtins

    try:  # Ray Train V2 patches print() to log each line at INFO (to the console) *and* tee it
        from ray.train.v2._internal.logging.patch_print import _original_print
    except ImportError:
        _original_print = builtins.print
    patched = builtins.print
    with open(Path(runner.work_dir) / "stdout.log", "a") as sink, \
            contextlib.redirect_stdout(sink):
        builtins.print = _original_print
        try:
            yield
        finally:
            builtins.print = patched
