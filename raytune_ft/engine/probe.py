"""The LR-step probe: what would this run score if its learning rate stepped down now?

Detection mAP jumps when the LR drops (He, Girshick, Dollar, "Rethinking ImageNet
Pre-training", Fig. 1), so a high-lr run looks worse than a low-lr one until its own step. To
compare runs fairly before their steps, the probe trains a copy of the current state for a few
iterations at `lr x gamma` (what MultiStepLR would do), evaluates it on the val set, and then puts
everything back: weights, BN statistics, optimizer state, every RNG and the batch sampler. The
run continues on its own un-stepped schedule exactly as if no probe had happened (tested in
tests/test_probe.py).

`StepProbeHook` runs it after the validation of chosen epochs; the early-stopping scheduler
(`raytune_ft.tuning.scheduler`) ranks a trial that has not stepped yet on the probe's value.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterable
from typing import Any, TypedDict

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from raytune_ft.epoch_report import is_probe_key, probe_key, probe_metrics
from raytune_ft.errors import UserError
from raytune_ft.options import flag

PROBE_INFO = "raytune_ft_probe"  # message-hub key the report hook reads


def probe_epochs(rungs: Iterable[float], max_epochs: int, step_epoch: int) -> list[int]:
    """Epochs at which a trial is judged at a progress rung while still before its LR step.

    A rung at progress r is judged at the first epoch e with e / max_epochs >= r (as Ray's ASHA
    does); a probe is needed there only if the trial has not trained an epoch at the stepped
    lr yet (e <= step_epoch) and the epoch is not its last.
    """
    epochs = set()
    for rung in rungs:
        epoch = max(1, math.ceil(rung * max_epochs - 1e-9))
        if epoch <= step_epoch and epoch < max_epochs:
            epochs.add(epoch)
    return sorted(epochs)


class ProbeSpec(TypedDict):
    """What a trial's workers read to probe (plain data: it travels in the worker's job)."""

    rungs: list[float]  # the scheduler's rungs as fractions of a schedule (a search's step-probe)
    epochs: list[int]  # fixed epochs (`train --probe-epochs`); they win over `rungs`
    epoch_fraction: float  # the probe's length, in epochs (`--probe-length`)


def probe_spec(epoch_fraction: float, *, rungs: Iterable[float] = (),
               epochs: Iterable[int] = ()) -> ProbeSpec | None:
    """What a trial's workers read to probe (`probe_hook`): at fixed `epochs` (`train
    --probe-epochs`) or at the pre-step epochs of the scheduler's progress `rungs` (a search's
    step-probe); None when neither asks for a probe."""
    rungs, epochs = [float(r) for r in rungs], sorted(int(e) for e in epochs)
    if not rungs and not epochs:
        return None
    check_probe_length(epoch_fraction)
    return {"rungs": rungs, "epochs": epochs, "epoch_fraction": float(epoch_fraction)}


def check_probe_epochs(epochs: Iterable[int], cfg) -> None:
    """Fixed probe epochs lie before the config's LR step (after it no step is left to probe)."""
    step, _ = lr_step(cfg)
    max_epochs = int(cfg.train_cfg.max_epochs)
    late = [e for e in epochs if e > step or e >= max_epochs]
    if late:
        raise UserError(f"{flag('probe_epochs')} {late} are not before this run's LR step (after "
                        f"epoch {step} of {max_epochs}): a probe asks what a step at that epoch "
                        f"would give. Use epochs 1..{min(step, max_epochs - 1)}.")


def probe_hook(spec: ProbeSpec | None, cfg) -> dict[str, Any] | None:
    """The StepProbeHook config for a run of `cfg` under `spec`, or None (nothing to probe)."""
    if not spec:
        return None
    step_epoch, gamma = lr_step(cfg)
    epochs = spec.get("epochs") or probe_epochs(spec.get("rungs", ()),
                                                int(cfg.train_cfg.max_epochs), step_epoch)
    if not epochs:
        return None
    return dict(type="StepProbeHook", epochs=list(epochs), gamma=gamma,
                epoch_fraction=float(spec.get("epoch_fraction", 0.5)))


def check_probe_length(length: float) -> None:
    """`--probe-length` is a fraction of an epoch (train and search share the flag)."""
    if not 0 < length <= 1:
        raise UserError(f"--probe-length is a fraction of an epoch in (0, 1], got {length:g}.")


def lr_step(cfg) -> tuple[int, float]:
    """The last epoch before the first LR step (max_epochs without a MultiStepLR) and its gamma."""
    from raytune_ft.mmconfig.hparams import find_scheduler

    max_epochs = int(cfg.train_cfg.max_epochs)
    sched = find_scheduler(cfg, "MultiStepLR")
    if sched is None or not sched.get("milestones"):
        return max_epochs, 0.1
    return int(min(sched["milestones"])), float(sched.get("gamma", 0.1))


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _loader_state(loader) -> dict[str, Any]:
    """What iterating a loader part-way changes: mmdet's AspectRatioBatchSampler keeps the
    indices of an unfinished batch in its buckets (the next epoch would start with them) and
    the sampler's epoch."""
    state: dict[str, Any] = {}
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None:
        state["batch_sampler"] = {k: copy.deepcopy(v) for k, v in vars(batch_sampler).items()
                                  if k != "sampler"}
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "epoch"):
        state["sampler_epoch"] = sampler.epoch
    return state


def _set_loader_state(loader, state: dict[str, Any]) -> None:
    if "batch_sampler" in state:
        vars(loader.batch_sampler).update(state["batch_sampler"])
    if "sampler_epoch" in state:
        loader.sampler.epoch = state["sampler_epoch"]


def _to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor on the CPU: the snapshot of a GPU run must not hold a second
    copy of the weights and optimizer state (3x the parameters with Adam) in GPU memory."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, _to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _probe_loader(loader):
    """The loader the probe iterates. With `persistent_workers` the run's loader keeps its
    worker processes, whose augmentation RNG the probe's batches would advance (the next epoch
    would see other flips and crops than without a probe): the probe iterates a copy that starts
    its own workers, seeded from the main process's RNG, which is restored afterwards."""
    if not getattr(loader, "persistent_workers", False):
        return loader
    clone = copy.copy(loader)
    object.__setattr__(clone, "persistent_workers", False)  # DataLoader guards its attributes
    object.__setattr__(clone, "_iterator", None)
    return clone


def run_probe(runner, iters: int, gamma: float) -> dict[str, float]:
    """Train `iters` iterations at lr x gamma from the runner's current state, evaluate with the
    val evaluator, restore the state; return the metrics and the probe's cost."""
    model, optim = runner.model, runner.optim_wrapper
    loader = runner.train_loop.dataloader
    iters = max(1, min(int(iters), len(loader)))
    saved = {"model": _to_cpu(model.state_dict()),
             "optim": _to_cpu(optim.state_dict()),
             "inner_count": getattr(optim, "_inner_count", None),
             "rng": _rng_state(), "loader": _loader_state(loader)}
    started = time.perf_counter()
    try:
        for group in optim.optimizer.param_groups:
            group["lr"] = group["lr"] * gamma
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(runner.epoch)  # the order the next (stepped) epoch would see
        model.train()
        for done, batch in enumerate(_probe_loader(loader)):
            if done >= iters:
                break
            model.train_step(batch, optim_wrapper=optim)
        train_s = time.perf_counter() - started
        model.eval()
        val_loop = runner.val_loop
        with torch.no_grad():
            for batch in val_loop.dataloader:
                outputs = model.val_step(batch)
                val_loop.evaluator.process(data_samples=outputs, data_batch=batch)
        metrics = val_loop.evaluator.evaluate(len(val_loop.dataloader.dataset))
    finally:
        model.load_state_dict(saved["model"])
        optim.load_state_dict(saved["optim"])
        if saved["inner_count"] is not None:
            optim._inner_count = saved["inner_count"]
        _set_rng_state(saved["rng"])
        _set_loader_state(loader, saved["loader"])
        model.train()
    out = probe_metrics(metrics)
    out.update(probe_iters=float(iters), probe_train_s=train_s,
               probe_seconds=time.perf_counter() - started)
    return out


@HOOKS.register_module()
class StepProbeHook(Hook):
    """After the validation of each epoch in `epochs`, run the LR-step probe (`run_probe`) and
    leave its metrics in the message hub for `RayTrainReportHook` to report with the epoch."""

    priority = "VERY_LOW"  # after the epoch's own validation hooks, before RayTrainReportHook

    def __init__(self, epochs: Iterable[int], epoch_fraction: float = 0.5,
                 gamma: float = 0.1) -> None:
        self.epochs = {int(e) for e in epochs}
        self.epoch_fraction, self.gamma = float(epoch_fraction), float(gamma)

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        if runner.epoch not in self.epochs:
            return
        from raytune_ft.mmconfig.metrics import expected_metrics

        iters = max(1, round(self.epoch_fraction * len(runner.train_loop.dataloader)))
        result = run_probe(runner, iters, self.gamma)
        expected = [probe_key(k) for k in expected_metrics(runner.cfg)]
        if expected and not any(k in result for k in expected):
            # mmdet's CocoMetric returns {} when the model detects nothing: an AP of 0
            result.update({k: 0.0 for k in expected}, probe_empty_predictions=1.0)
        runner.logger.info(f"LR-step probe after epoch {runner.epoch} ({iters} iterations "
                           f"at lr x {self.gamma:g}): " + ", ".join(
                               f"{k}={v:.4f}" for k, v in result.items() if is_probe_key(k)))
        runner.message_hub.update_info(PROBE_INFO, {"probe_epoch": runner.epoch, **result})


def probe_report(runner) -> dict[str, float]:
    """The probe results of the epoch that just finished, if a probe ran after it."""
    info = runner.message_hub.get_info(PROBE_INFO)
    if not info or info.get("probe_epoch") != runner.epoch:
        return {}
    return dict(info)
