"""A trial's outcome as a row (results.csv, trials.json) and the best of a set of rows.

Pure Python: the confirmation's statistics and the curve replay use rows without mmengine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrialRow:
    """One trial's outcome, as written to results.csv."""

    trial_id: str
    order: int
    config: dict[str, Any]
    hparams: dict[str, Any]
    status: str
    reason: str
    epochs_run: int
    max_epochs: int
    best_metric: float | None
    best_epoch: int | None
    last_metric: float | None
    device_seconds: float
    saved_device_seconds: float = 0.0
    phase: str = "search"  # or "confirm": a re-run of a search trial's config with a new seed
    seed: int | None = None
    source_trial: str | None = None  # confirm rows: the search trial whose config this re-ran
    restarts: int = 0  # times the trial resumed from its checkpoint (a lost worker, node or driver)
    wait_seconds: float = 0.0  # waiting for resources (node boot, placement, restarts): no cost


def best_row(rows: list[TrialRow], mode: str) -> TrialRow | None:
    scored = [r for r in rows if r.best_metric is not None and r.status != "diverged"]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r.best_metric)


__all__ = ["TrialRow", "best_row"]
