"""Checks that run before any trial starts, so a typo costs seconds instead of GPU-hours.

Each failing check raises a `UserError` (exit 2) naming the file or flag and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mmengine.config import Config

from raytune_ft.mmconfig.config import dataset_classes, innermost_dataset
from raytune_ft.errors import UserError
from raytune_ft.mmconfig.metrics import ENGINE_METRICS, expected_metrics



def annotation_file(cfg: Config, split: str = "train_dataloader") -> Path:
    ds, _ = innermost_dataset(cfg.get(split))
    ann = ds.get("ann_file")
    if not ann:
        raise UserError(f"config has no {split}.dataset.ann_file; set the annotation file of your "
                        "data set.")
    return Path(os.path.join(ds.get("data_root", "") or "", ann))


def check_coco_annotations(cfg: Config, split: str = "train_dataloader",
                           sample: int = 20) -> dict[str, Any]:
    """The annotation file exists, is COCO JSON with images and annotations, its categories
    match the config's classes, and a bounded sample of its images exists."""
    path = annotation_file(cfg, split)
    if not path.is_file():
        raise UserError(f"{split} annotation file '{path}' does not exist. Check data_root and "
                        "ann_file in the config (or convert your data: python -m raytune_ft.data).")
    try:
        coco = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{split} annotation file '{path}' is not JSON: {err}.") from err
    if not isinstance(coco, dict) or not coco.get("images") or "annotations" not in coco:
        raise UserError(f"{split} annotation file '{path}' has no 'images' or no 'annotations' "
                        "list: it is not a COCO detection file.")
    classes = dataset_classes(cfg)
    names = [c.get("name") for c in coco.get("categories", [])]
    if classes is not None and not set(classes) <= set(names):
        raise UserError(f"the config's classes {list(classes)} are not all categories of "
                        f"'{path}', which has {names}; missing: "
                        f"{sorted(set(classes) - set(names))}. Fix metainfo.classes.")
    ds, times = innermost_dataset(cfg.get(split))
    prefix = (ds.get("data_prefix") or {}).get("img", "")
    img_dir = Path(os.path.join(ds.get("data_root", "") or "", prefix))
    for image in coco["images"][:sample]:
        if not (img_dir / image["file_name"]).is_file():
            raise UserError(f"image '{img_dir / image['file_name']}' listed in '{path}' does not "
                            "exist. Check data_prefix.img and data_root in the config.")
    return {"images": len(coco["images"]) * times, "annotations": len(coco["annotations"])}


def _reads_voc_xml(dataset: dict) -> bool:
    from mmdet.datasets import XMLDataset
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    dataset_cls = DATASETS.get(dataset.get("type", "CocoDataset"))
    return isinstance(dataset_cls, type) and issubclass(dataset_cls, XMLDataset)


def check_voc_annotations(cfg: Config, split: str = "train_dataloader",
                          sample: int = 20) -> dict[str, Any]:
    """A VOC image-id list exists and a bounded sample of its XML files and images exists."""
    path = annotation_file(cfg, split)
    if not path.is_file():
        raise UserError(f"{split} image list '{path}' does not exist. Check data_root and "
                        "ann_file (e.g. VOC2012/ImageSets/Main/train.txt) in the config.")
    from raytune_ft.data.voc import read_ids

    ids = read_ids(path)
    if not ids:
        raise UserError(f"{split} image list '{path}' is empty.")
    ds, times = innermost_dataset(cfg.get(split))
    sub_root = Path(os.path.join(ds.get("data_root", "") or "",
                                 (ds.get("data_prefix") or {}).get("sub_data_root", "")))
    for image_id in ids[:sample]:
        xml = sub_root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise UserError(f"'{xml}' (listed in '{path}') does not exist. Check data_root and "
                            "data_prefix.sub_data_root in the config.")
    return {"images": len(ids) * times}


def check_annotations(cfg: Config, split: str = "train_dataloader") -> dict[str, Any]:
    """COCO JSON or a VOC list, whichever the split's dataset reads; returns its image count."""
    dataset, _ = innermost_dataset(cfg.get(split))
    if _reads_voc_xml(dataset):
        return check_voc_annotations(cfg, split)
    return check_coco_annotations(cfg, split)


def check_load_from(cfg: Config) -> None:
    load_from = cfg.get("load_from")
    if not load_from:
        return
    if "://" in str(load_from):
        from torch.hub import get_dir

        cached = Path(get_dir()) / "checkpoints" / os.path.basename(str(load_from))
        if cached.is_file():
            return
        if not _url_reachable(str(load_from)):
            raise UserError(f"load_from URL '{load_from}' cannot be fetched from here and is not "
                            f"in the local cache. Download it and put it at '{cached}', or set "
                            "load_from to a local path.")
        return
    if not Path(load_from).is_file():
        raise UserError(f"load_from checkpoint '{load_from}' does not exist. Point load_from at a "
                        "pretrained checkpoint (local path or model-zoo URL).")


def check_load_from_fits(cfg: Config, min_fraction: float = 0.9) -> None:
    """A local `load_from` checkpoint fills the model's backbone.

    mmengine loads `load_from` with strict=False and only logs the keys that did not match, so a
    checkpoint made for another backbone, or written with other key names, trains silently from
    random weights. Heads are allowed to differ (a fine-tune changes num_classes).
    """
    load_from = cfg.get("load_from")
    if not load_from or "://" in str(load_from) or not Path(load_from).is_file():
        return
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from raytune_ft.checkpoints import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    try:
        checkpoint = torch.load(load_from, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        raise UserError(unreadable_checkpoint(str(load_from), err)) from err
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"load_from checkpoint '{load_from}' holds no state dict.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    register_all_modules(init_default_scope=True)
    model_state = MODELS.build(copy.deepcopy(cfg.model)).state_dict()
    backbone = [k for k in model_state
                if k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    filled = [k for k in backbone
              if k in state and tuple(state[k].shape) == tuple(model_state[k].shape)]
    if backbone and len(filled) < min_fraction * len(backbone):
        missing = next(k for k in backbone if k not in filled)
        raise UserError(
            f"load_from checkpoint '{load_from}' fills only {len(filled)} of the model's "
            f"{len(backbone)} backbone tensors (e.g. nothing of shape "
            f"{tuple(model_state[missing].shape)} under '{missing}'). mmengine would only log "
            "this and train the rest from random weights. The checkpoint belongs to another "
            "backbone or uses other key names: convert it, or point load_from at a checkpoint of "
            "this model.")


def unreadable_checkpoint(path: str, err: BaseException) -> str:
    """Why `path` cannot be loaded, in words that never advise turning torch's safety off.

    torch answers a corrupt or truncated file under weights_only=True with "Re-running
    `torch.load` with `weights_only` set to `False` will likely succeed": for a damaged file that
    is wrong, and for an untrusted one unsafe. Only a real checkpoint that stores an unlisted
    Python object is named as such, with that object's type.
    """
    import re

    size = os.path.getsize(path)
    unlisted = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    if unlisted:
        return (f"load_from checkpoint '{path}' stores a Python object of type "
                f"{unlisted.group(1)} besides its weights, which a safe load refuses. If the "
                "file comes from a source you trust, allow that one type with "
                f"torch.serialization.add_safe_globals([{unlisted.group(1)}]); better, re-save "
                "only its state_dict (torch.save({'state_dict': sd}, path)).")
    what = "an empty file" if size == 0 else f"{size} bytes"
    return (f"load_from '{path}' is not a readable checkpoint ({what}): expected a file written "
            "by torch.save (a zip archive holding a 'state_dict', as MMDetection's model zoo "
            "ships). It is truncated, corrupt or not a checkpoint; download or copy it again "
            f"and compare its size with the source's. ({type(err).__name__})")


def _url_reachable(url: str, timeout: float = 5.0) -> bool:
    import urllib.request

    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout):
            return True
    except Exception:  # noqa: BLE001 - any failure means "cannot fetch"
        return False


def check_metric(cfg: Config, metric: str) -> None:
    known = expected_metrics(cfg)
    if metric in ENGINE_METRICS:
        return
    if known and metric not in known:
        raise UserError(f"--metric '{metric}' is not produced by this config's val_evaluator; it "
                        f"reports {known} (and raytune_ft adds {list(ENGINE_METRICS)}).")


def check_points_apply(cfg: Config, hparams_list: list[dict[str, Any]]) -> None:
    """Every fixed point (the recipe, --points) can be written into the config."""
    from raytune_ft.mmconfig.hparams import apply_hparams

    for hparams in hparams_list:
        apply_hparams(copy.deepcopy(cfg), hparams)


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke run measured: its whole length, and its training iterations (count and
    seconds each, forward + backward + step only: what a trial's epochs are made of)."""

    seconds: float
    iterations: int
    iteration_seconds: float


def remove_smoke_work_dir(runner, work_dir: str) -> None:
    """The smoke run's scratch folder (a checkpoint of the whole model, mmengine's log), gone
    with it: every --smoke used to leave one in the temp folder. mmengine keeps the run's
    logger (by experiment name) for the process's life: its log file is closed first."""
    import logging
    import shutil

    if runner is not None:
        for handler in list(runner.logger.handlers):
            if isinstance(handler, logging.FileHandler):
                handler.close()
                runner.logger.removeHandler(handler)
    shutil.rmtree(work_dir, ignore_errors=True)


def smoke(cfg: Config, cpu_stand_in: bool = False) -> SmokeResult:
    """One real training iteration and one validation batch, in this process, on a copy of the
    config: catches shape, pipeline and checkpoint errors in seconds, and times the iteration
    (the time budget's estimate of a trial).

    `cpu_stand_in`: the trials train on GPUs this driver does not have (a CPU head): the smoke
    run checks the same config on the CPU, with mixed precision (AmpOptimWrapper, which needs a
    GPU) run as a plain OptimWrapper; its timing is then not a trial's."""
    import time

    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class IterationTimer(Hook):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
            self._start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            self.times.append(time.perf_counter() - self._start)

    from raytune_ft.checkpoints import allow_mmengine_checkpoints

    started = time.time()
    cfg = copy.deepcopy(cfg)
    for split in ("train_dataloader", "val_dataloader"):
        ds, _ = innermost_dataset(cfg[split])
        ds["indices"] = int(cfg[split].get("batch_size", 1))  # one batch
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1, save_last=False,
                                        save_optimizer=False, max_keep_ckpts=1)
    cfg.work_dir = tempfile.mkdtemp(prefix="raytune_ft_smoke_")
    # mmengine keeps a run's logger and visualizer for the process's life by name (the logger's
    # is the second it started; mmdet's configs name every visualizer 'visualizer'): names of
    # its own, so a later run in this process never writes into this one's removed folder
    cfg.experiment_name = os.path.basename(cfg.work_dir)
    if cfg.get("visualizer"):
        cfg.visualizer.name = cfg.experiment_name
    cfg.launcher = "none"
    cfg.resume = False
    if cpu_stand_in and cfg.get("optim_wrapper", {}).get("type") == "AmpOptimWrapper":
        for key in ("loss_scale", "dtype", "use_fsdp"):
            cfg.optim_wrapper.pop(key, None)
        cfg.optim_wrapper.type = "OptimWrapper"
    allow_mmengine_checkpoints()
    timer = IterationTimer()
    runner = None
    try:
        runner = Runner.from_cfg(cfg)
        runner.register_hook(timer, priority="VERY_LOW")
        runner.train()
    except Exception as err:  # noqa: BLE001 - any failure of the real model is the finding
        raise UserError(f"--smoke: one training iteration + one validation batch of the config "
                        f"failed: {type(err).__name__}: {err}") from err
    finally:  # its log, checkpoint and visualizer files are of no use once it ended
        remove_smoke_work_dir(runner, cfg.work_dir)
    return SmokeResult(time.time() - started, len(timer.times),
                       sum(timer.times) / max(1, len(timer.times)))


def check_time_budget_holds_a_trial(budget_s: float, estimate_s: float, how: str) -> None:
    """--time-budget shorter than the training of one trial: nothing useful could run."""
    from raytune_ft.durations import format_duration

    if budget_s < estimate_s:
        raise UserError(f"--time-budget {format_duration(budget_s)} is shorter than one trial: "
                        f"preflight estimates about {format_duration(estimate_s)} ({how}). "
                        "Give the search at least a few trials' worth of time.")
