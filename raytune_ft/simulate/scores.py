"""What a design does over many replayed searches: the best value it saw, how fast, and the
true quality of what it returned (`summarize`)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from raytune_ft.simulate.replay import ReplayRun
from raytune_ft.simulate.table import ConfigKey, CurveTable


def summarize(runs: list[ReplayRun], table: CurveTable, recipe: ConfigKey | None = None
              ) -> dict[str, Any]:
    """What a design does over many seeds.

    Seen (as the first replay reported them): median and IQR of the best value seen, slot-epochs
    spent until one run reached 95% of the table's best single run, how often the best config
    (by true mean), once sampled, ran to its end. Returned (what a user gets): the true mean of
    the returned config (median, ratio to the best config's true mean), the share of searches
    whose returned config is truly better than the recipe, and wall-clock (epochs of one slot):
    until the incumbent is a config within 95% of the best true mean, and until the pipeline
    ends."""
    seen_best, _ = table.seen_best()
    best_true, best_key = table.true_best()
    target = 0.95 * seen_best
    bests = sorted(r.best for r in runs)
    to95 = sorted(r.spent_to_reach(target) for r in runs)
    sampled = [r for r in runs if any(t.key == best_key for t in r.trials)]
    survived = [r for r in sampled if any(t.key == best_key and t.finished for t in r.trials)]
    median95 = _quantile(to95, 0.5)
    true = sorted(table.true_mean(r.returned) if r.returned else -math.inf for r in runs)
    recipe_true = table.true_mean(recipe) if recipe in table.curves else None
    wall95 = sorted(next((w for w, k in r.incumbent if table.true_mean(k) >= 0.95 * best_true),
                         math.inf) for r in runs)
    median_wall95 = _quantile(wall95, 0.5)
    return {
        "median_best": _quantile(bests, 0.5),
        "iqr_best": [_quantile(bests, 0.25), _quantile(bests, 0.75)],
        "median_epochs_to_95": None if math.isinf(median95) else median95,
        "p_best_survives": (len(survived) / len(sampled)) if sampled else None,
        "mean_trials": statistics.mean(len(r.trials) for r in runs),
        "share_reaching_95": sum(1 for v in to95 if not math.isinf(v)) / len(runs),
        "true_quality": {
            "median": _quantile(true, 0.5),
            "ratio_to_best": _quantile(true, 0.5) / best_true,
            "p_beats_recipe": (sum(1 for v in true if v > recipe_true) / len(runs)
                               if recipe_true is not None else None),
            "iqr": [_quantile(true, 0.25), _quantile(true, 0.75)],
        },
        "median_wall_clock": _quantile(sorted(r.wall for r in runs), 0.5),
        "median_wall_to_95_true": None if math.isinf(median_wall95) else median_wall95,
        "median_device": _quantile(sorted(r.device for r in runs), 0.5),
        "share_confirmed": sum(1 for r in runs if r.confirmed) / len(runs),
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile that keeps infinities (a seed that never got there)."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    a, b = sorted_values[lo], sorted_values[hi]
    if math.isinf(a) or math.isinf(b):
        return b if pos - lo > 0 else a
    return a + (b - a) * (pos - lo)
