"""The measured learning curves a replay draws from: one `Curve` per run (config x seed), a
`CurveTable` with the probe values and the measured costs of a trial start and of a probe.

Read from `bench/curves/demo.json` (made by `bench/measure_curves.py`): each epoch there is a
trial's own epoch report (`raytune_ft.epoch_report`), read through the same schema.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytune_ft.epoch_report import epoch_of, is_diverged, probe_value
from raytune_ft.errors import UserError
from raytune_ft.tuning.space import step_epoch

ConfigKey = tuple[float, int, int]  # (lr, max_epochs, LR-step epoch)


@dataclass(frozen=True)
class Curve:
    """One measured run: its schedule, seed and per-epoch metric. A run that diverged ends at
    the epoch it diverged in, with the finite worst value the trial reported."""

    lr: float
    max_epochs: int
    step: int
    values: tuple[float, ...]
    diverged: bool = False
    seed: int = 0

    @property
    def key(self) -> ConfigKey:
        return (self.lr, self.max_epochs, self.step)

    @property
    def best(self) -> float:
        """What the pipeline keeps of a run: its best epoch (checkpoints are kept by it)."""
        return max(self.values)


@dataclass
class CurveTable:
    """Measured curves by config and seed, probe values by (lr, epoch, seed), and the measured
    costs (in epochs) of a trial start and of one probe."""

    curves: dict[ConfigKey, dict[int, Curve]]
    probes: dict[tuple[float, int, int], float] = field(default_factory=dict)
    start_cost: float = 0.5
    probe_cost: float = 0.5
    metric: str = "coco/bbox_mAP"
    source: str = "the curve table"
    epoch_seconds: float = 1.0  # the measured seconds of one epoch (the unit of the costs)

    @classmethod
    def of(cls, curves: list[Curve], probes: dict[tuple, float] | None = None,
           **kwargs: Any) -> "CurveTable":
        """A table from a list of curves; probe keys (lr, epoch) mean seed 0."""
        by_key: dict[ConfigKey, dict[int, Curve]] = {}
        for c in curves:
            by_key.setdefault(c.key, {})[c.seed] = c
        norm = {(k[0], k[1], k[2] if len(k) > 2 else 0): v for k, v in (probes or {}).items()}
        return cls(by_key, norm, **kwargs)

    @property
    def lrs(self) -> list[float]:
        return sorted({k[0] for k in self.curves})

    @property
    def seeds(self) -> list[int]:
        """The seeds every config was measured with."""
        common = set.intersection(*(set(runs) for runs in self.curves.values()))
        return sorted(common)

    def true_mean(self, key: ConfigKey) -> float:
        """A config's true quality: the mean over its seeds of the value the pipeline keeps."""
        return statistics.fmean(c.best for c in self.curves[key].values())

    def true_best(self) -> tuple[float, ConfigKey]:
        key = max(self.curves, key=self.true_mean)
        return self.true_mean(key), key

    def seen_best(self) -> tuple[float, Curve]:
        """The best single run of the table (any config, any seed)."""
        curve = max((c for runs in self.curves.values() for c in runs.values()),
                    key=lambda c: c.best)
        return curve.best, curve

    def key_for(self, config: dict[str, Any]) -> ConfigKey:
        """The measured config of a sampled point: nearest lr, the exact LR step the space's
        `step_frac` constraint gives for its `max_epochs`."""
        max_epochs = int(config["max_epochs"])
        step = step_epoch(float(config["step_frac"]), max_epochs)
        lr = float(config["lr"])
        nearest = min(self.lrs, key=lambda v: abs(math.log(v) - math.log(lr)))
        key = (nearest, max_epochs, int(step))
        if key not in self.curves:
            raise KeyError(f"no measured curve for lr={nearest:g}, max_epochs={max_epochs}, "
                           f"LR step at epoch {step}")
        return key

    def require_seeds(self, n: int, why: str) -> None:
        if len(self.seeds) < n:
            raise UserError(
                f"{self.source} has {len(self.seeds)} seed(s) per config ({self.seeds}); {why} "
                f"needs at least {n}. Measure more with: bench/measure_curves.py --seeds 1,2")

    @classmethod
    def from_json(cls, *paths: str | Path, metric: str = "coco/bbox_mAP") -> "CurveTable":
        """Read bench/curves/demo.json (and more tables of the same set-up to merge with it):
        every seed's curves and probe values, and the costs of seed 0's runs (measured with
        nothing else on the machine; later seeds may have shared it)."""
        curves: dict[ConfigKey, dict[int, Curve]] = {}
        probes: dict[tuple[float, int, int], float] = {}
        epoch_s, start_s, probe_s = [], [], []
        for path in paths:
            for config in json.loads(Path(path).read_text())["configs"].values():
                key = (float(config["lr"]), int(config["max_epochs"]), int(config["step"]))
                runs = {0: config, **{int(s): r for s, r in config.get("seed_runs", {}).items()}}
                for seed, run in runs.items():
                    curve = _curve(key, seed, run["epochs"], metric)
                    if curve is None:
                        continue  # an unfinished measurement is not a curve
                    curves.setdefault(key, {})[seed] = curve
                    for e in run["epochs"]:
                        probe = probe_value(e, metric)
                        if probe is not None:
                            probes[(key[0], epoch_of(e), seed)] = probe
                            if seed == 0:
                                probe_s.append(float(e["probe_seconds"]))
                epochs = config["epochs"]
                times = [float(e["reported_at"]) for e in epochs if not is_diverged(e)]
                if not config.get("probed"):
                    epoch_s += [b - a for a, b in zip(times, times[1:])]
                start_s.append(float(epochs[0]["train_started_at"]) - float(config["started_at"]))
        # an lr measured for only some schedules (a measurement still running) is left out, so
        # every sampled point of a kept lr has its curve; likewise a seed not yet measured for
        # every kept config
        schedules = {(m, s) for _, m, s in curves}
        complete = {lr for lr, _, _ in curves if all((lr, m, s) in curves for m, s in schedules)}
        curves = {k: v for k, v in curves.items() if k[0] in complete and 0 in v}
        seeds = set.intersection(*(set(v) for v in curves.values())) if curves else set()
        curves = {k: {s: c for s, c in v.items() if s in seeds} for k, v in curves.items()}
        epoch = statistics.median(epoch_s) if epoch_s else 1.0
        return cls(curves, probes,
                   start_cost=statistics.median(start_s) / epoch if start_s else 0.5,
                   probe_cost=statistics.median(probe_s) / epoch if probe_s else 0.5,
                   metric=metric, source=", ".join(str(p) for p in paths), epoch_seconds=epoch)


def _curve(key: ConfigKey, seed: int, epochs: list[dict], metric: str) -> Curve | None:
    values = tuple(float(e[metric]) for e in epochs)
    diverged = bool(epochs) and is_diverged(epochs[-1])
    if not values or (len(values) != key[1] and not diverged):
        return None
    return Curve(*key, values=values, diverged=diverged, seed=seed)
