"""The console of a search or a confirmation, from the driver: Ray Tune's reporter API.

Tune's own status table, its trial boxes and every actor's output stay off the console
(`RunConfig(verbose=0)`, `ray.init(log_to_driver=False)`, see raytune_ft.engine.cluster); this
`Callback` prints what a person follows instead:

    [raytune_ft] trial 64785fe3 started: lr 0.02, max_epochs 6, step_frac 0.667
    [raytune_ft] trial_64785fe3  epoch 3/6  coco/bbox_mAP 0.0340  loss 0.912  ...
    [raytune_ft] trial 64785fe3 ended: finished, best coco/bbox_mAP 0.0690 at epoch 6 of 6
    [raytune_ft] [4/10 trials] best 0.0920 (trial 64785fe3) | running: c30c2599 epoch 2/4 |
                 18 min elapsed

    [raytune_ft] trial 64785fe3 waiting 2m10s for its workers' resources (8 worker(s) x
                 (6 CPU, 1 GPU)): nodes the autoscaler starts, or GPUs other trials free; ...
    [raytune_ft] trial 64785fe3: resources arrived after 3m02s of waiting

A progress line follows every trial end and, while trials run, at most every `every_s`. A trial
whose workers wait for resources (read from its controller's phases, raytune_ft.phases) is
named once it has waited WAIT_NOTICE_S, again every WAIT_REPEAT_S, and when they arrive.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray.tune import Callback

from raytune_ft.console import epoch_line, metric_text
from raytune_ft.epoch_report import epoch_of, is_diverged, max_epochs_of
from raytune_ft.tuning.trainable import ConfirmRun

PROGRESS_EVERY_S = 300.0
WAIT_NOTICE_S = 30.0  # a placement that takes longer is worth a line
WAIT_REPEAT_S = 300.0
WAIT_POLL_S = 10.0


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if not isinstance(value, str) else value


def describe(config: dict[str, Any]) -> str:
    """A trial's sampled point in words: `lr 0.02, max_epochs 6` (a confirmation run: the
    candidate's point, its source trial and the seed)."""
    run = ConfirmRun.of(config)
    point = run.point if run is not None else config
    words = ", ".join(f"{k} {_short(v)}" for k, v in point.items())
    if run is not None:
        words += f" (config of trial {run.source_trial}), seed {run.seed}"
    return words or "the config's recipe"


class ConsoleProgress(Callback):
    """One line per trial start, epoch and end, and a compact progress line."""

    def __init__(self, metric: str, mode: str, total: int, every_s: float = PROGRESS_EVERY_S,
                 started_at: float | None = None, experiment=None, demand: str = "",
                 resource_wait: str = "") -> None:
        """`experiment` (an ExperimentStorage) lets the console read each running trial's
        phases; `demand` (what a trial's workers ask) and `resource_wait` go into its line."""
        self.metric, self.mode, self.total, self.every_s = metric, mode, total, every_s
        self.experiment, self.demand, self.resource_wait = experiment, demand, resource_wait
        self._wait_said: dict[str, float] = {}  # trial id -> when its wait was last named
        self._last_wait_poll = 0.0
        self.started_at = started_at or time.time()
        self._last_progress = time.time()
        self._best: dict[str, tuple[float, int]] = {}  # trial id -> (best value, its epoch)
        self._last: dict[str, dict[str, Any]] = {}
        self._running: set[str] = set()
        self._ended: set[str] = set()

    # -- Tune's callback API ------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._running.add(trial.trial_id)
        print(f"[raytune_ft] trial {trial.trial_id} started: {describe(trial.config)}",
              flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict,
                        **info: Any) -> None:
        self._last[trial.trial_id] = result
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and not is_diverged(result):
            best = self._best.get(trial.trial_id)
            if best is None or (value > best[0] if self.mode == "max" else value < best[0]):
                self._best[trial.trial_id] = (float(value), epoch_of(result))
        print(epoch_line(f"trial_{trial.trial_id}", result, self.metric), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._end(trial, self._why(trial.trial_id), trials)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        where = getattr(trial, "error_file", None) or getattr(trial, "path", "")
        self._end(trial, f"errored (the error: {where}; results.csv has its first line)",
                  trials)

    def on_step(self, iteration: int, trials: list, **info: Any) -> None:
        if self._running and time.time() - self._last_progress >= self.every_s:
            self._progress(trials)
        if (self.experiment is not None and self._running
                and time.time() - self._last_wait_poll >= WAIT_POLL_S):
            self._last_wait_poll = time.time()
            for trial_id in sorted(self._running):
                self._say_wait(trial_id)

    def _say_wait(self, trial_id: str) -> None:
        """Name a trial whose workers wait for their resources, and say when they arrived."""
        from raytune_ft.durations import format_duration

        try:
            times = self.experiment.phases(trial_id)
        except Exception:  # noqa: BLE001 - a half-written file or a slow bucket: next poll
            return
        if times is None:
            return
        now = time.time()
        if times.waiting_since is not None:
            waited = now - times.waiting_since
            said = self._wait_said.get(trial_id)
            if waited >= WAIT_NOTICE_S and (said is None or now - said >= WAIT_REPEAT_S):
                self._wait_said[trial_id] = now
                print(f"[raytune_ft] trial {trial_id} waiting {format_duration(waited)} for its "
                      f"workers' resources" + (f" ({self.demand})" if self.demand else "")
                      + ": nodes the autoscaler starts, or what other trials free"
                      + (f"; it gives up after --resource-wait {self.resource_wait} of waiting"
                         if self.resource_wait else ""), flush=True)
        elif trial_id in self._wait_said:
            del self._wait_said[trial_id]
            print(f"[raytune_ft] trial {trial_id}: resources arrived after "
                  f"{format_duration(times.waiting_s)} of waiting", flush=True)

    # -- lines ------------------------------------------------------------------------------
    def _why(self, trial_id: str) -> str:
        last = self._last.get(trial_id, {})
        epoch, total = epoch_of(last), max_epochs_of(last)
        if is_diverged(last):
            return f"diverged (loss NaN/inf) in epoch {epoch}"
        if total and epoch < total:
            return f"stopped early by the scheduler after epoch {epoch} of {total}"
        return "finished"

    def _end(self, trial, why: str, trials: list) -> None:
        self._running.discard(trial.trial_id)
        self._ended.add(trial.trial_id)
        best = self._best.get(trial.trial_id)
        last = self._last.get(trial.trial_id, {})
        total = max_epochs_of(last)
        score = (f", best {self.metric} {metric_text(best[0])} at epoch {best[1]}"
                 + (f" of {total}" if total else "")) if best else ""
        print(f"[raytune_ft] trial {trial.trial_id} ended: {why}{score}", flush=True)
        self._progress(trials)

    def _progress(self, trials: list) -> None:
        self._last_progress = time.time()
        pick = max if self.mode == "max" else min
        scored = {t: v for t, (v, _) in self._best.items()}
        best = pick(scored, key=scored.get) if scored else None
        running = []
        for trial_id in sorted(self._running):
            last = self._last.get(trial_id, {})
            running.append(f"{trial_id} epoch {epoch_of(last)}/{last.get('max_epochs', '?')}"
                           if last else f"{trial_id} starting")
        parts = [f"[{len(self._ended)}/{self.total} trials] "
                 + (f"best {metric_text(scored[best])} (trial {best})" if best
                    else "no score yet")]
        if running:
            parts.append("running: " + ", ".join(running))
        parts.append(f"{(time.time() - self.started_at) / 60:.0f} min elapsed")
        print("[raytune_ft] " + " | ".join(parts), flush=True)


__all__ = ["ConsoleProgress", "describe"]
