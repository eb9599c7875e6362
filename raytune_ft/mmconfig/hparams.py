"""The tunable hyper-parameters, defined once, and how each is written into an MMDetection 3.x config.

The search-space parser, the trial engine and the exported best config all go through `HPARAMS`
and `apply_hparams`, so a name means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mmengine.config import Config

from raytune_ft.errors import UserError


class HParamError(UserError):
    """A hyper-parameter value that cannot be applied to the config."""


@dataclass(frozen=True)
class HParam:
    """One tunable hyper-parameter: its name, value type and the config keys it writes."""

    name: str
    value_type: type
    writes: str
    apply: Callable[[Config, Any], None]


def _schedulers(cfg: Config) -> list[dict]:
    scheds = cfg.get("param_scheduler")
    if scheds is None:
        return []
    if isinstance(scheds, Mapping):
        cfg.param_scheduler = [scheds]
        scheds = cfg.param_scheduler
    return list(scheds)


def find_scheduler(cfg: Config, type_name: str) -> dict | None:
    """The `param_scheduler` entry of the given type (e.g. 'LinearLR'), or None."""
    matches = [s for s in _schedulers(cfg) if s.get("type") == type_name]
    return matches[0] if matches else None


def _require_scheduler(cfg: Config, type_name: str, hparam: str) -> dict:
    sched = find_scheduler(cfg, type_name)
    if sched is None:
        types = [s.get("type") for s in _schedulers(cfg)] or "none"
        raise HParamError(
            f"hyper-parameter '{hparam}' needs a {type_name} entry in the config's "
            f"param_scheduler, but the config has {types}. Add the scheduler to the config "
            f"or remove '{hparam}' from the hyper-parameters / search space."
        )
    return sched


def _optimizer(cfg: Config, hparam: str) -> dict:
    opt = cfg.get("optim_wrapper", {}).get("optimizer")
    if opt is None:
        raise HParamError(
            f"hyper-parameter '{hparam}' is written to optim_wrapper.optimizer, but the config "
            "has no optim_wrapper.optimizer (nor a 2.x 'optimizer' key)."
        )
    return opt


def _set_optimizer_key(key: str) -> Callable[[Config, Any], None]:
    def apply(cfg: Config, value: Any) -> None:
        _optimizer(cfg, key)[key] = float(value)

    return apply


def _set_warmup_iters(cfg: Config, value: Any) -> None:
    sched = _require_scheduler(cfg, "LinearLR", "warmup_iters")
    iters = int(value)
    if iters < 0:
        raise HParamError(f"warmup_iters must be >= 0, got {value}.")
    if iters == 0:  # no warmup: a LinearLR with begin == end is invalid in mmengine
        cfg.param_scheduler = [s for s in _schedulers(cfg) if s is not sched]
        return
    sched["begin"] = 0
    sched["end"] = iters
    sched["by_epoch"] = False


def _set_warmup_ratio(cfg: Config, value: Any) -> None:
    ratio = float(value)
    if not 0.0 < ratio <= 1.0:
        raise HParamError(f"warmup_ratio must be in (0, 1], got {value}.")
    sched = find_scheduler(cfg, "LinearLR")
    if sched is None:
        _require_scheduler(cfg, "LinearLR", "warmup_ratio")
    sched["start_factor"] = ratio


def _set_milestones(cfg: Config, value: Any) -> None:
    values = [value] if isinstance(value, (int, float)) else list(value)
    if not values or any(float(v) != int(v) for v in values):
        raise HParamError(f"milestones must be a non-empty list of whole epochs, got {value!r}.")
    sched = _require_scheduler(cfg, "MultiStepLR", "milestones")
    sched["milestones"] = sorted(int(v) for v in values)


def _set_max_epochs(cfg: Config, value: Any) -> None:
    epochs = int(value)
    if epochs < 1 or float(value) != epochs:
        raise HParamError(f"max_epochs must be a whole number >= 1, got {value!r}.")
    if cfg.get("train_cfg") is None:
        raise HParamError("hyper-parameter 'max_epochs' needs train_cfg in the config.")
    if cfg.train_cfg.get("type", "EpochBasedTrainLoop") != "EpochBasedTrainLoop":
        raise HParamError(
            f"max_epochs applies to an EpochBasedTrainLoop; this config's train_cfg is "
            f"{cfg.train_cfg.get('type')}."
        )
    cfg.train_cfg.max_epochs = epochs
    for sched in _schedulers(cfg):
        if sched.get("by_epoch", True) and sched.get("type") != "LinearLR":
            sched["end"] = epochs


HPARAMS: dict[str, HParam] = {
    h.name: h
    for h in (
        HParam("lr", float, "optim_wrapper.optimizer.lr", _set_optimizer_key("lr")),
        HParam("weight_decay", float, "optim_wrapper.optimizer.weight_decay",
               _set_optimizer_key("weight_decay")),
        HParam("momentum", float, "optim_wrapper.optimizer.momentum",
               _set_optimizer_key("momentum")),
        HParam("max_epochs", int, "train_cfg.max_epochs and the epoch schedulers' end",
               _set_max_epochs),
        HParam("milestones", list, "MultiStepLR.milestones (epochs)", _set_milestones),
        HParam("warmup_iters", int, "LinearLR.end (iterations; 0 removes the warmup)",
               _set_warmup_iters),
        HParam("warmup_ratio", float, "LinearLR.start_factor", _set_warmup_ratio),
    )
}

# max_epochs first (it moves schedulers' `end`), warmup_ratio before warmup_iters (0 removes it).
_APPLY_ORDER = ["max_epochs", "milestones", "lr", "weight_decay", "momentum", "warmup_ratio",
                "warmup_iters"]


def apply_hparams(cfg: Config, hparams: Mapping[str, Any]) -> Config:
    """Write `hparams` into `cfg` (in place) by name and check the resulting schedule.

    Raises `HParamError` naming the offending hyper-parameter.
    """
    unknown = sorted(set(hparams) - set(HPARAMS))
    if unknown:
        raise HParamError(
            f"unknown hyper-parameter(s) {unknown}; the trial engine knows {sorted(HPARAMS)}."
        )
    for name in _APPLY_ORDER:
        if name in hparams:
            HPARAMS[name].apply(cfg, hparams[name])
    check_schedule(cfg)
    return cfg


def read_hparams(cfg: Config) -> dict[str, Any]:
    """The config's own values of every hyper-parameter it has (the recipe, i.e. trial 0)."""
    out: dict[str, Any] = {}
    opt = cfg.get("optim_wrapper", {}).get("optimizer", {})
    for key in ("lr", "weight_decay", "momentum"):
        if key in opt:
            out[key] = opt[key]
    if cfg.get("train_cfg", {}).get("max_epochs") is not None:
        out["max_epochs"] = int(cfg.train_cfg.max_epochs)
    step = find_scheduler(cfg, "MultiStepLR")
    if step is not None:
        out["milestones"] = list(step.get("milestones", []))
    warm = find_scheduler(cfg, "LinearLR")
    if warm is not None:
        out["warmup_iters"] = int(warm.get("end", 0)) - int(warm.get("begin", 0))
        out["warmup_ratio"] = float(warm.get("start_factor", 1.0 / 3))
    else:
        out["warmup_iters"] = 0
    if lr_base_batch(cfg):
        out["lr_base_batch"] = lr_base_batch(cfg)  # the batch `lr` is for (not a hyper-parameter)
    return out


def lr_base_batch(cfg: Config) -> int | None:
    """The total batch the config's lr is for: `auto_scale_lr.base_batch_size` (MMDetection 3.x's
    way of saying "lr 0.02 for 16 images"), or None when the config does not say."""
    declared = (cfg.get("auto_scale_lr") or {}).get("base_batch_size")
    return int(declared) if declared else None


def lr_at_batch(cfg: Config, total_batch: int) -> float | None:
    """The config's lr moved to `total_batch` by the linear scaling rule (unchanged when the
    config declares no base batch)."""
    lr = cfg.get("optim_wrapper", {}).get("optimizer", {}).get("lr")
    base = lr_base_batch(cfg)
    if lr is None or base is None:
        return lr
    return float(lr) * total_batch / base


def check_schedule(cfg: Config) -> None:
    """Every LR milestone must fall strictly inside the training schedule."""
    max_epochs = cfg.get("train_cfg", {}).get("max_epochs")
    step = find_scheduler(cfg, "MultiStepLR")
    if max_epochs is None or step is None:
        return
    bad = [m for m in step.get("milestones", []) if not 0 < m < max_epochs]
    if bad:
        raise HParamError(
            f"LR milestone(s) {bad} are not strictly inside the schedule of max_epochs="
            f"{max_epochs}: a step at or beyond the last epoch never takes effect. Use "
            f"milestones between 1 and {max_epochs - 1}."
        )
