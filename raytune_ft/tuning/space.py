"""Search spaces: parse and validate a YAML file, sample it, and turn a sample into hyper-parameters.

A space names engine hyper-parameters (`raytune_ft.mmconfig.hparams.HPARAMS`) or one of the derived
ones below, each with a distribution. The constraints that keep every sample a valid schedule
are applied here, so no user has to encode them:

- `step_frac` places the single LR step at that fraction of the trial's own `max_epochs`,
  always strictly inside it (1 <= step <= max_epochs - 1);
- `warmup_iters` is capped at `max_warmup_fraction` of the trial's total iterations;
- with `base_batch_size: B`, `lr` means "lr for a total batch of B images" and is scaled
  linearly to the trial's real total batch (workers x images per worker), as MMDetection's
  `auto_scale_lr` does, so a tuned value transfers to another GPU count.

This module never imports Ray: `to_tune` builds the Tune distributions lazily.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raytune_ft.errors import UserError
from raytune_ft.mmconfig.hparams import HPARAMS

DERIVED = {"step_frac": "LR step position as a fraction of max_epochs (-> milestones)"}
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
SPACE_KEYS = {"params", "base_batch_size", "max_warmup_fraction", "description"}


class SpaceError(UserError):
    """A search-space file that cannot be used."""


@dataclass(frozen=True)
class Param:
    """One searched hyper-parameter and its distribution."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()
    step: float | None = None
    log: bool = False

    def grid(self, points: int) -> list[Any]:
        """Evenly spaced values (log-spaced for log distributions) for grid search."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            step = int(self.step or 1)
            n = min(points, (int(self.high) - int(self.low)) // step + 1)
            raw = [self.low + (self.high - self.low) * i / max(1, n - 1) for i in range(n)]
            return sorted({int(self.low) + int(round((v - self.low) / step)) * step for v in raw})
        if self.type == "loguniform" or self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return [math.exp(lo + (hi - lo) * i / max(1, points - 1)) for i in range(points)]
        return [self.low + (self.high - self.low) * i / max(1, points - 1) for i in range(points)]


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space plus the constraints applied to every sample."""

    source: str
    params: dict[str, Param]
    base_batch_size: int | None = None
    max_warmup_fraction: float = 0.25
    description: str = ""

    def to_tune(self, searcher: str = "tpe", grid_points: int = 3) -> dict[str, Any]:
        """Ray Tune distributions (grid: `tune.grid_search` over each param's grid)."""
        from ray import tune

        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if searcher == "grid":
                out[name] = tune.grid_search(p.grid(grid_points))
            elif p.type == "choice":
                out[name] = tune.choice(list(p.values))
            elif p.type == "int":
                step = int(p.step or 1)
                out[name] = (tune.lograndint(int(p.low), int(p.high) + 1) if p.log and step == 1
                             else tune.qrandint(int(p.low), int(p.high), step))
            elif p.type == "loguniform" or p.log:
                out[name] = tune.loguniform(p.low, p.high)
            else:
                out[name] = tune.quniform(p.low, p.high, p.step) if p.step \
                    else tune.uniform(p.low, p.high)
        return out

    def grid_size(self, grid_points: int = 3) -> int:
        """How many points `--searcher grid` runs beside the fixed ones: the product of every
        parameter's grid."""
        return math.prod(len(p.grid(grid_points)) for p in self.params.values())


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file; errors name the file, the key and why."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space '{path}' does not exist. Shipped spaces are in "
                         "search_spaces/ (e.g. search_spaces/default.yaml).")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpaceError(f"search space '{path}' is not valid YAML{where}: "
                         f"{getattr(err, 'problem', err)}.") from err
    return parse_space(raw, source=str(path))


def parse_space(raw: Any, source: str = "<space>") -> SearchSpace:
    flat = sorted(k for k in raw if k in HPARAMS or k in DERIVED) \
        if isinstance(raw, Mapping) and "params" not in raw else []
    if flat:  # a flat mapping of hyper-parameters: show the fix with the user's own keys
        fixed = yaml.safe_dump({"params": {k: raw[k] for k in raw if k not in SPACE_KEYS},
                                **{k: raw[k] for k in raw if k in SPACE_KEYS}},
                               default_flow_style=None, sort_keys=False)
        raise SpaceError(f"search space '{source}' lists {', '.join(flat)} at the top level, "
                         "but the parameters belong under a 'params:' key. Write it as:\n"
                         + "".join(f"    {line}\n" for line in fixed.splitlines()))
    if not isinstance(raw, Mapping) or not isinstance(raw.get("params"), Mapping) \
            or not raw["params"]:
        raise SpaceError(f"search space '{source}' must be a mapping with a non-empty 'params:' "
                         "section, e.g. params: {lr: {type: loguniform, low: 1.0e-4, high: 0.05}}.")
    unknown_top = sorted(set(raw) - SPACE_KEYS)
    if unknown_top:
        raise SpaceError(f"search space '{source}': unknown top-level key(s) {unknown_top}; "
                         f"allowed: {sorted(SPACE_KEYS)}.")
    params = {name: _parse_param(name, spec, source) for name, spec in raw["params"].items()}
    if "step_frac" in params and "milestones" in params:
        raise SpaceError(f"search space '{source}': 'step_frac' and 'milestones' both set the LR "
                         "step; keep one.")
    base = raw.get("base_batch_size")
    if base is not None and (not isinstance(base, int) or base < 1):
        raise SpaceError(f"search space '{source}': base_batch_size must be a positive integer "
                         f"(images per step the lr is given for), got {base!r}.")
    frac = raw.get("max_warmup_fraction", 0.25)
    if not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise SpaceError(f"search space '{source}': max_warmup_fraction must be in (0, 1], "
                         f"got {frac!r}.")
    return SearchSpace(source=source, params=params, base_batch_size=base,
                       max_warmup_fraction=float(frac), description=str(raw.get("description", "")))


def _parse_param(name: str, spec: Any, source: str) -> Param:
    where = f"search space '{source}', key '{name}'"
    if name not in HPARAMS and name not in DERIVED:
        raise SpaceError(f"{where}: unknown hyper-parameter; known: "
                         f"{sorted(set(HPARAMS) | set(DERIVED))}.")
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise SpaceError(f"{where}: expected a mapping with 'type' (one of {list(DISTRIBUTIONS)}), "
                         f"got {spec!r}.")
    kind = spec["type"]
    if kind not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: unknown type '{kind}'; use one of {list(DISTRIBUTIONS)}.")
    allowed = {"type", "values"} if kind == "choice" else {"type", "low", "high", "step", "log"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise SpaceError(f"{where}: field(s) {extra} do not apply to type '{kind}' "
                         f"(allowed: {sorted(allowed)}).")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: a choice needs a non-empty 'values' list.")
        return Param(name, kind, values=tuple(values))
    for bound in ("low", "high"):
        if not isinstance(spec.get(bound), (int, float)) or isinstance(spec.get(bound), bool):
            raise SpaceError(f"{where}: '{bound}' must be a number, got {spec.get(bound)!r}.")
    low, high = float(spec["low"]), float(spec["high"])
    if low >= high:
        raise SpaceError(f"{where}: low ({spec['low']}) must be below high ({spec['high']}).")
    log = bool(spec.get("log", False))
    if (kind == "loguniform" or log) and low <= 0:
        raise SpaceError(f"{where}: a log distribution needs low > 0, got {spec['low']}.")
    step = spec.get("step")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise SpaceError(f"{where}: step must be a positive number, got {step!r}.")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise SpaceError(f"{where}: an int distribution needs whole-number bounds.")
    return Param(name, kind, low=low, high=high, step=step, log=log)


@dataclass(frozen=True)
class TrialShape:
    """What the constraints need to know about a trial: its total batch and epoch length."""

    total_batch: int
    iters_per_epoch: int


def to_hparams(sample: Mapping[str, Any], space: SearchSpace, recipe: Mapping[str, Any],
               shape: TrialShape) -> dict[str, Any]:
    """Turn a sampled point into engine hyper-parameters with the constraints applied."""
    hp: dict[str, Any] = {k: v for k, v in sample.items() if k in HPARAMS}
    max_epochs = int(hp.get("max_epochs", recipe.get("max_epochs", 1)))
    if "max_epochs" in hp:
        hp["max_epochs"] = max_epochs
    if "lr" in hp and space.base_batch_size:
        hp["lr"] = float(hp["lr"]) * shape.total_batch / space.base_batch_size
    elif "lr" not in hp and recipe.get("lr_base_batch") and "lr" in recipe \
            and recipe["lr_base_batch"] != shape.total_batch:
        # lr is not searched: the config's lr, moved from its declared batch to this one
        hp["lr"] = float(recipe["lr"]) * shape.total_batch / recipe["lr_base_batch"]
    if "step_frac" in sample:
        hp["milestones"] = [step_epoch(float(sample["step_frac"]), max_epochs)]
    elif "max_epochs" in hp and "milestones" not in hp and recipe.get("milestones"):
        # keep the recipe's step at the same phase of the new schedule
        frac = recipe["milestones"][0] / max(1, recipe.get("max_epochs", max_epochs))
        hp["milestones"] = [step_epoch(frac, max_epochs)]
    if "milestones" in hp:
        hp["milestones"] = sorted({min(max(1, int(m)), max_epochs - 1) for m in hp["milestones"]}) \
            if max_epochs > 1 else hp["milestones"]
    if "warmup_iters" in hp:
        cap = int(space.max_warmup_fraction * max_epochs * shape.iters_per_epoch)
        hp["warmup_iters"] = max(0, min(int(hp["warmup_iters"]), cap))
    return hp


def step_epoch(frac: float, max_epochs: int) -> int:
    """The epoch of an LR step at `frac` of the schedule, strictly inside (1..max_epochs-1)."""
    if max_epochs < 2:
        raise SpaceError(f"an LR step needs max_epochs >= 2, got {max_epochs}.")
    return min(max_epochs - 1, max(1, int(round(frac * max_epochs))))


def recipe_point(space: SearchSpace, recipe: Mapping[str, Any], shape: TrialShape) -> dict[str, Any]:
    """The config's own values expressed in the space's terms (evaluated as trial 0)."""
    point: dict[str, Any] = {}
    for name, p in space.params.items():
        if name == "step_frac":
            if recipe.get("milestones") and recipe.get("max_epochs"):
                point[name] = recipe["milestones"][0] / recipe["max_epochs"]
        elif name == "lr" and space.base_batch_size and "lr" in recipe:
            # the config's lr is for auto_scale_lr.base_batch_size images when it says so, else
            # for this trial's own total batch
            lr_batch = recipe.get("lr_base_batch") or shape.total_batch
            point[name] = recipe["lr"] * space.base_batch_size / lr_batch
        elif name in recipe:
            point[name] = recipe[name]
        if name in point and p.type == "int":
            point[name] = int(point[name])
    missing = sorted(set(space.params) - set(point))
    if missing:
        raise SpaceError(f"search space '{space.source}' searches {missing}, which the config "
                         "does not set, so its recipe cannot be trial 0; add them to the config.")
    return point


def values_outside(space: SearchSpace, point: Mapping[str, Any]) -> dict[str, str]:
    """Per parameter of `point` the space could never sample, why: 'lr 0.02 lies outside
    [0.001, 0.01]' (a fixed point still runs) or 'max_epochs 8 is not among [4, 6]' (Optuna
    cannot run a categorical value it was not given)."""
    out: dict[str, str] = {}
    for name, value in point.items():
        param = space.params.get(name)
        if param is None:
            continue
        if param.type == "choice":
            if value not in param.values:
                out[name] = f"{name} {value!r} is not among {list(param.values)}"
        elif not param.low <= float(value) <= param.high:
            out[name] = f"{name} {value:g} lies outside [{param.low:g}, {param.high:g}]"
    return out
