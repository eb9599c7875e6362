"""Translate MMDetection 2.x config keys (the fine-tune tutorial's) into their 3.x form.

MMDetection 3.x/mmengine silently ignore the 2.x keys, so a tutorial config that sets
`optimizer`, `lr_config` or `runner` would train with the base config's schedule. This module
rewrites them, on the merged config, into `optim_wrapper`, `param_scheduler` and `train_cfg`.
"""

from __future__ import annotations

import logging
from typing import Any

from mmengine.config import Config, ConfigDict

from raytune_ft.errors import UserError

log = logging.getLogger(__name__)

LEGACY_KEYS = ("optimizer", "optimizer_config", "lr_config", "runner", "log_config",
               "checkpoint_config", "evaluation")


class LegacyConfigError(UserError):
    """A 2.x key whose value has no faithful 3.x translation."""


def translate_legacy(cfg: Config, source: str = "config") -> list[str]:
    """Rewrite 2.x keys of `cfg` in place; return a line per translation made (for the log)."""
    done: list[str] = []
    if "runner" in cfg:  # first: lr_config needs max_epochs
        done.append(_runner(cfg, cfg.pop("runner"), source))
    if "optimizer" in cfg:
        done.append(_optimizer(cfg, cfg.pop("optimizer")))
    if "optimizer_config" in cfg:
        done.append(_optimizer_config(cfg, cfg.pop("optimizer_config"), source))
    if "lr_config" in cfg:
        done.append(_lr_config(cfg, cfg.pop("lr_config"), source))
    if "log_config" in cfg:
        done.append(_log_config(cfg, cfg.pop("log_config")))
    if "checkpoint_config" in cfg:
        done.append(_hook_interval(cfg, cfg.pop("checkpoint_config"), "checkpoint"))
    if "evaluation" in cfg:
        evaluation = cfg.pop("evaluation") or {}
        if "interval" in evaluation:
            cfg.setdefault("train_cfg", ConfigDict()).val_interval = int(evaluation["interval"])
        done.append("evaluation.interval -> train_cfg.val_interval")
    model = cfg.get("model")
    if model is not None and "pretrained" in model:
        pretrained = model.pop("pretrained")
        if "backbone" in model:
            model.backbone.init_cfg = (
                None if pretrained is None else dict(type="Pretrained", checkpoint=pretrained)
            )
        done.append("model.pretrained -> model.backbone.init_cfg")
    for line in done:
        log.info("2.x config key translated: %s", line)
    return done


def _runner(cfg: Config, runner: dict, source: str) -> str:
    kind = runner.get("type", "EpochBasedRunner")
    if kind != "EpochBasedRunner" or "max_epochs" not in runner:
        raise LegacyConfigError(
            f"{source}: runner={dict(runner)} cannot be translated: only "
            "runner=dict(type='EpochBasedRunner', max_epochs=N) is supported. Write "
            "train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=N, val_interval=1) instead."
        )
    train_cfg = cfg.get("train_cfg") or ConfigDict()
    train_cfg.update(type="EpochBasedTrainLoop", max_epochs=int(runner["max_epochs"]))
    train_cfg.setdefault("val_interval", 1)
    cfg.train_cfg = train_cfg
    return "runner.max_epochs -> train_cfg.max_epochs"


def _optimizer(cfg: Config, optimizer: dict) -> str:
    wrapper = cfg.get("optim_wrapper") or ConfigDict(type="OptimWrapper")
    wrapper.optimizer = ConfigDict(optimizer)  # the 2.x key is a complete optimizer spec
    cfg.optim_wrapper = wrapper
    return "optimizer -> optim_wrapper.optimizer"


def _optimizer_config(cfg: Config, opt_cfg: dict, source: str) -> str:
    # `_delete_=True` (MMDetection's own 2.x configs: "replace the base's optimizer_config")
    # means the same here: the translation replaces optim_wrapper.clip_grad as a whole
    unknown = set(opt_cfg) - {"grad_clip", "type", "_delete_"}
    if unknown or opt_cfg.get("type", "OptimizerHook") != "OptimizerHook":
        raise LegacyConfigError(
            f"{source}: optimizer_config={dict(opt_cfg)} cannot be translated: only grad_clip is "
            "supported. Set optim_wrapper (e.g. type='AmpOptimWrapper', clip_grad=...) instead."
        )
    wrapper = cfg.setdefault("optim_wrapper", ConfigDict(type="OptimWrapper"))
    grad_clip = opt_cfg.get("grad_clip")
    if grad_clip is None:
        wrapper.pop("clip_grad", None)
    else:
        wrapper.clip_grad = ConfigDict({k: v for k, v in grad_clip.items() if k != "_delete_"})
    return "optimizer_config.grad_clip -> optim_wrapper.clip_grad"


def _lr_config(cfg: Config, lr_cfg: dict, source: str) -> str:
    policy = str(lr_cfg.get("policy", "")).lower()
    if policy != "step":
        raise LegacyConfigError(
            f"{source}: lr_config policy '{lr_cfg.get('policy')}' cannot be translated; only "
            "policy='step' is. Write param_scheduler (mmengine LR schedulers) instead."
        )
    warmup = lr_cfg.get("warmup")
    if warmup not in (None, "linear"):
        raise LegacyConfigError(
            f"{source}: lr_config warmup='{warmup}' cannot be translated; only 'linear' is."
        )
    max_epochs = cfg.get("train_cfg", {}).get("max_epochs")
    if max_epochs is None:
        raise LegacyConfigError(
            f"{source}: lr_config needs the schedule length; set runner=dict(max_epochs=N) "
            "or train_cfg.max_epochs."
        )
    step = lr_cfg.get("step")
    milestones = [int(step)] if isinstance(step, (int, float)) else [int(s) for s in step or []]
    scheds: list[dict[str, Any]] = []
    if warmup == "linear":
        scheds.append(dict(type="LinearLR", start_factor=float(lr_cfg.get("warmup_ratio", 0.001)),
                           by_epoch=False, begin=0, end=int(lr_cfg.get("warmup_iters", 500))))
    scheds.append(dict(type="MultiStepLR", by_epoch=True, begin=0, end=int(max_epochs),
                       milestones=milestones, gamma=float(lr_cfg.get("gamma", 0.1))))
    cfg.param_scheduler = scheds
    return "lr_config -> param_scheduler [LinearLR, MultiStepLR]"


def _log_config(cfg: Config, log_cfg: dict) -> str:
    if "interval" in log_cfg:
        _hook_interval(cfg, {"interval": log_cfg["interval"]}, "logger")
    hooks = [h.get("type") for h in log_cfg.get("hooks", [])]
    if "TensorboardLoggerHook" in hooks:
        vis = cfg.setdefault("visualizer", ConfigDict(type="DetLocalVisualizer"))
        backends = vis.setdefault("vis_backends", [dict(type="LocalVisBackend")])
        if not any(b.get("type") == "TensorboardVisBackend" for b in backends):
            backends.append(dict(type="TensorboardVisBackend"))
    return "log_config.interval -> default_hooks.logger.interval"


def _hook_interval(cfg: Config, hook_cfg: dict, hook: str) -> str:
    hooks = cfg.setdefault("default_hooks", ConfigDict())
    entry = hooks.setdefault(hook, ConfigDict(type=f"{hook.capitalize()}Hook"))
    if "interval" in hook_cfg:
        entry.interval = int(hook_cfg["interval"])
    return f"{hook}_config.interval -> default_hooks.{hook}.interval"
