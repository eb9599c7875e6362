"""Load a fine-tune config and make it consistent: 2.x keys translated, heads sized to the classes.

This is the only place an mmengine `Config` is built from a user's file; everything downstream
receives the finished `Config` (or its plain-dict form, to cross process boundaries).
"""

from __future__ import annotations

import ast
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmengine.config import Config

from raytune_ft.mmconfig.bases import resolved_bases
from raytune_ft.errors import UserError
from raytune_ft.mmconfig.hparams import apply_hparams, check_schedule
from raytune_ft.mmconfig.legacy import translate_legacy
from raytune_ft.storage import PROJECT_ROOT

log = logging.getLogger(__name__)

# Heads whose `num_classes` is the number of object classes (the RPN's is 1, a semantic
# head's counts stuff classes: they are left alone).
CLASS_HEAD_KEYS = ("bbox_head", "mask_head", "mask_iou_head")


class ConfigError(UserError):
    """The config file cannot be loaded or is inconsistent."""


def load_config(path: str | Path, cfg_options: Mapping[str, Any] | None = None,
                hparams: Mapping[str, Any] | None = None) -> Config:
    """Load `path`, apply `--cfg-options` and hyper-parameters, and return a consistent Config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist. Pass --config with the path of "
                          "an MMDetection config (.py), e.g. configs/demo/faster_rcnn_mnv2_trees.py.")
    _check_syntax(path)
    try:
        # 2.x-layout `../_base_/...` entries -> mmdet's shipped bases
        with resolved_bases(path) as source:
            cfg = Config.fromfile(str(source))
    except ImportError as err:
        raise ConfigError(missing_package_message(path, err)) from err
    except (FileNotFoundError, KeyError) as err:
        raise ConfigError(
            f"config '{path}' could not be loaded: {err}. Check its _base_ entries: a shipped "
            "MMDetection base is written 'mmdet::_base_/models/...', a local one as a path "
            "relative to the config file."
        ) from err
    translate_legacy(cfg, source=str(path))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    check_training_loop(cfg, source=str(path))
    sync_num_classes(cfg, explicit=_explicit_num_classes(path), source=str(path))
    absolutize_paths(cfg)
    if hparams:
        apply_hparams(cfg, hparams)
    check_schedule(cfg)
    return cfg


def missing_package_message(path: Path, err: ImportError) -> str:
    """One paragraph for a config that imports a package this environment lacks: the package
    by name and how to install it (mmengine's own message lists the whole sys.path)."""
    module, cause = None, err
    while cause is not None and module is None:  # mmengine re-raises twice without `from`
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            module = cause.name
        cause = cause.__cause__ or cause.__context__
    if module is None:  # `mmpretrain::` bases: "mmpretrain is not installed, please install ..."
        match = re.match(r"(\S+) is not installed", str(err))
        module = match.group(1) if match else None
    if module is None:
        return (f"config '{path}' could not be loaded: importing a module it needs failed: "
                f"{str(err).splitlines()[0]}")
    package = module.split(".")[0]
    if package.startswith("mm"):  # OpenMMLab's own packages install by their module name
        fix = (f"Install it (pip install {package}, into the environment of the driver and of "
               "every cluster node) or pick a config that does not need it.")
    else:
        fix = (f"Install the package that provides '{package}' or, for a module of your own, "
               "put its folder on PYTHONPATH on the driver and on every cluster node.")
    return f"config '{path}' needs the Python package '{package}', which is not installed. {fix}"


def check_training_loop(cfg: Config, source: str = "config") -> None:
    """raytune_ft tunes an epoch-based training schedule: a config without a training loop
    (MMDetection's tracking and test-time-augmentation configs) or with an iteration-based loop
    is refused at load, before any hyper-parameter is written into it."""
    train_cfg = cfg.get("train_cfg")
    if not train_cfg:
        state = "None" if "train_cfg" in cfg else "missing"
        raise ConfigError(
            f"{source} has no training loop (train_cfg is {state}): "
            "it is a tracking, test-time-augmentation or inference-only config. raytune_ft "
            "fine-tunes detectors: pass the detector config it builds on, one with "
            "train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=N).")
    by_epoch = train_cfg.get("by_epoch", True)  # mmengine's loop without a type
    loop = train_cfg.get("type", "EpochBasedTrainLoop" if by_epoch else "IterBasedTrainLoop")
    if loop != "EpochBasedTrainLoop" or "max_epochs" not in train_cfg:
        what = (f"train_cfg type {loop!r}" if loop != "EpochBasedTrainLoop"
                else "an EpochBasedTrainLoop without max_epochs")
        raise ConfigError(
            f"{source} trains with {what}; raytune_ft tunes "
            "epoch-based schedules only (train_cfg=dict(type='EpochBasedTrainLoop', "
            "max_epochs=N) with epoch milestones); iteration-based loops (IterBasedTrainLoop, "
            "e.g. the 90k-iteration configs) are not supported yet. Rewrite the schedule in "
            "epochs (train_cfg, param_scheduler by_epoch=True) to tune it.")


def _check_syntax(path: Path) -> None:
    try:
        ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as err:
        raise ConfigError(
            f"config '{path}' is not valid Python: {err.msg} at line {err.lineno}: "
            f"{(err.text or '').strip()!r}."
        ) from err


def innermost_dataset(loader: Mapping | None) -> tuple[dict, int]:
    """The dataset a dataloader reads, through Repeat/ClassBalanced wrappers, and how many times
    the wrappers repeat it."""
    dataset = (loader or {}).get("dataset") or {}
    times = 1
    while "dataset" in dataset and "ann_file" not in dataset:
        times *= int(dataset.get("times", 1))
        dataset = dataset["dataset"]
    return dataset, times


def dataset_classes(cfg: Config) -> tuple[str, ...] | None:
    """The object classes the config trains on, as MMDetection's dataset would resolve them.

    Looks at `train_dataloader.dataset.metainfo.classes` (through Repeat/ClassBalanced wrappers),
    then a top-level `metainfo`, then the dataset class's own METAINFO.
    """
    dataset, _ = innermost_dataset(cfg.get("train_dataloader"))
    for metainfo in (dataset.get("metainfo"), cfg.get("metainfo")):
        if metainfo and metainfo.get("classes"):
            return tuple(metainfo["classes"])
    if dataset.get("type"):
        from mmdet.registry import DATASETS
        from mmdet.utils import register_all_modules

        register_all_modules(init_default_scope=False)
        dataset_cls = DATASETS.get(dataset["type"])
        classes = getattr(dataset_cls, "METAINFO", {}).get("classes")
        if classes:
            return tuple(classes)
    return None


def _class_heads(node: Any, path: str = "model") -> Iterator[tuple[str, dict]]:
    """(dotted path, head dict) for every head whose num_classes counts object classes."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}"
            heads = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
            if key in CLASS_HEAD_KEYS:
                for i, head in enumerate(heads):
                    if isinstance(head, Mapping) and "num_classes" in head:
                        yield (f"{child}.{i}" if len(heads) > 1 else child), head
            elif key not in ("rpn_head", "semantic_head", "train_cfg", "test_cfg"):
                yield from _class_heads(value, child)
    elif isinstance(node, Sequence) and not isinstance(node, str):
        for i, item in enumerate(node):
            yield from _class_heads(item, f"{path}.{i}")


def _explicit_num_classes(path: Path) -> set[int]:
    """num_classes values of class heads written literally in the config file (not inherited)."""

    def head_values(tree: ast.AST) -> Iterator[ast.AST]:
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "num_classes":
                yield node.value
            elif isinstance(node, ast.Dict):
                yield from (v for k, v in zip(node.keys, node.values)
                            if isinstance(k, ast.Constant) and k.value == "num_classes")

    values: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg in CLASS_HEAD_KEYS:
            heads = [node.value]
        elif isinstance(node, ast.Dict):
            heads = [v for k, v in zip(node.keys, node.values)
                     if isinstance(k, ast.Constant) and k.value in CLASS_HEAD_KEYS]
        else:
            continue
        for head in heads:
            values.update(v.value for v in head_values(head)
                          if isinstance(v, ast.Constant) and isinstance(v.value, int))
    return values


def sync_num_classes(cfg: Config, explicit: set[int] | None = None,
                     source: str = "config") -> tuple[str, ...] | None:
    """Set `num_classes` of every class head to the number of dataset classes.

    A value inherited from a base (COCO's 80) is overwritten; a value written in the config
    itself that contradicts its classes is an error naming both numbers.
    """
    classes = dataset_classes(cfg)
    if classes is None:
        return None
    contradicting = sorted(n for n in (explicit or set()) if n != len(classes))
    if contradicting:
        raise ConfigError(
            f"{source} sets num_classes={contradicting[0]} but its dataset has {len(classes)} "
            f"classes {list(classes)}. Remove num_classes from the config (raytune_ft sets it from "
            "the classes) or make the classes match."
        )
    for head_path, head in _class_heads(cfg.get("model", {})):
        if head["num_classes"] != len(classes):
            log.info("%s.num_classes: %s -> %d (dataset classes)", head_path, head["num_classes"],
                     len(classes))
            head["num_classes"] = len(classes)
    return classes


def absolutize_paths(cfg: Config, base: Path | None = None) -> None:
    """Make relative data/checkpoint paths absolute, as the user meant them from their cwd.

    Ray workers run in other working directories (and on other nodes), so `data_root='data/'`
    must be resolved where the user typed the command.
    """
    bases = [base or Path.cwd(), PROJECT_ROOT]

    def fix(value: Any) -> Any:
        if not isinstance(value, str) or "://" in value or os.path.isabs(value):
            return value
        for root in bases:
            if (root / value).exists():
                resolved = str((root / value).resolve())
                return resolved + "/" if value.endswith("/") else resolved
        return value

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("data_root", "ann_file") and isinstance(value, str):
                    # a dataset's ann_file is relative to its data_root: leave it when one is set
                    if key == "ann_file" and node.get("data_root"):
                        continue
                    node[key] = fix(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for key in ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator",
                "test_evaluator"):
        if cfg.get(key) is not None:
            walk(cfg[key])
    if cfg.get("load_from"):
        cfg.load_from = fix(cfg.load_from)


def config_to_dict(cfg: Config) -> dict:
    """Plain-dict form of a Config, safe to pickle across Ray process boundaries."""
    return cfg.to_dict()


def test_annotation(cfg) -> str | None:
    """The test annotation file when the test data differ from the val data, else None."""
    test, _ = innermost_dataset(cfg.get("test_dataloader"))
    val, _ = innermost_dataset(cfg.get("val_dataloader"))
    if not test or not test.get("ann_file"):
        return None
    where = ("data_root", "ann_file", "data_prefix")
    if all(test.get(k) == val.get(k) for k in where):
        return None
    return os.path.join(test.get("data_root", "") or "", test["ann_file"])
