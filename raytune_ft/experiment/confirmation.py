"""Confirmation statistics: is the search's winner better than the recipe, or a lucky seed?

A search scores each config once, with one seed, on the val set that picked it: its best value
is biased upwards (the winner's curse) and run-to-run noise is the size of the gains it finds.
Confirmation re-runs the top K configs *and the recipe* at their full schedules with S fresh
seeds each (a second Ray Tune run, FIFO over configs x seeds, seeds through mmengine's
`randomness.seed`), compares each config with the recipe seed by seed (a paired t interval),
and names as winner the best confirmed mean.

This module is the statistics only (which configs, each seed's value, the paired interval, the
winner, the table); no Ray. The runs are raytune_ft.pipeline.confirm's; `python -m
raytune_ft.confirm EXP` runs (or finishes) them for an existing experiment.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raytune_ft.console import columns, metric_text
from raytune_ft.errors import UserError
from raytune_ft.experiment.rows import TrialRow, best_row
from raytune_ft.experiment.summary import CandidateRecord, ConfirmationRecord
from raytune_ft.options import flag

if TYPE_CHECKING:
    from raytune_ft.tuning.trainable import SearchJob

FIRST_SEED = 1  # fresh seeds 1..S (the demo's search runs with seed 0)


@dataclass
class Candidate:
    """One config under confirmation and what its seeds gave."""

    source_trial: str
    role: str  # "recipe" or "best #k"
    point: dict[str, Any]  # the sampled point (the space's terms)
    hparams: dict[str, Any]
    search_value: float | None  # its single value in the search
    values: dict[int, float | None] = field(default_factory=dict)  # seed -> best metric
    rows: list[TrialRow] = field(default_factory=list)
    diff: dict[str, Any] | None = None  # vs the recipe: mean, ci95, n

    @property
    def scored(self) -> list[float]:
        return [v for v in self.values.values() if v is not None]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scored) if self.scored else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.scored) if len(self.scored) > 1 else 0.0


@dataclass
class Confirmation:
    """The candidates, their seeds' values, and the winner."""

    seeds: list[int]
    candidates: list[Candidate]
    mode: str
    job: SearchJob | None = None  # the confirmation's own job (its experiment holds the runs)

    @property
    def recipe(self) -> Candidate | None:
        return next((c for c in self.candidates if "recipe" in c.role), None)

    @property
    def rows(self) -> list[TrialRow]:
        return [r for c in self.candidates for r in c.rows]

    @property
    def winner(self) -> Candidate | None:
        """The best confirmed mean among candidates every seed of which scored."""
        complete = [c for c in self.candidates if c.values and len(c.scored) == len(self.seeds)]
        if not complete:
            return None
        pick = max if self.mode == "max" else min
        return pick(complete, key=lambda c: c.mean)

    def best_run(self, candidate: Candidate | None):
        """The candidate's run (seed) with the best value, by this confirmation's mode: its
        checkpoint becomes best_checkpoint.pth and is the one scored on test."""
        return best_row(candidate.rows, self.mode) if candidate is not None else None

    def beats_recipe(self, candidate: Candidate) -> bool:
        """Better than the recipe beyond noise: the paired 95% interval excludes 0."""
        d = candidate.diff
        if not d or d.get("ci95") is None:
            return False
        lo, hi = d["ci95"]
        return lo > 0 if self.mode == "max" else hi < 0

    def record(self) -> ConfirmationRecord:
        """What summary.json keeps of it."""
        winner = self.winner
        return ConfirmationRecord(
            folder=self.job.experiment.name if self.job is not None else None,
            seeds=self.seeds,
            winner_trial=winner.source_trial if winner else None,
            winner_beats_recipe_beyond_noise=bool(winner and self.beats_recipe(winner)),
            candidates=[CandidateRecord(
                trial=c.source_trial, role=c.role, hparams=c.hparams,
                search_value=c.search_value, values={str(s): v for s, v in c.values.items()},
                mean=None if math.isnan(c.mean) else c.mean, std=c.std, diff_to_recipe=c.diff)
                for c in self.candidates])


@dataclass(frozen=True)
class ReturnedConfig:
    """The config a search hands its user (best_config.py, best_checkpoint.pth, the test
    score's "winner"): the confirmation's winner when one was confirmed, else the search's best
    trial. `run` is the run whose checkpoint is returned: the winner's best seed run, or the
    best trial itself (None in a replay, whose confirmation has values but no runs); `job` the
    SearchJob whose experiment holds `run` (the confirmation's or the search's)."""

    trial_id: str  # the search trial whose config it is
    point: dict[str, Any]  # its sampled point, in the space's terms
    hparams: dict[str, Any]
    run: TrialRow | None
    job: SearchJob | None = None
    confirmed: Candidate | None = None  # the confirmation's winner, when it picked one


def returned_config(rows: list[TrialRow], mode: str, confirmation: Confirmation | None = None,
                    search_job: SearchJob | None = None) -> ReturnedConfig | None:
    """Which config a search returns: the one rule the search, its results files and the curve
    replay follow (None when no search trial scored). `search_job` is the search's own job,
    the one that holds its trials' runs."""
    winner = confirmation.winner if confirmation is not None else None
    if winner is not None:
        return ReturnedConfig(winner.source_trial, winner.point, winner.hparams,
                              confirmation.best_run(winner), confirmation.job, confirmed=winner)
    best = best_row([r for r in rows if r.phase == "search"], mode)
    if best is None:
        return None
    return ReturnedConfig(best.trial_id, best.config, best.hparams, best, search_job)


def paired_interval(diffs: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of per-seed differences with a two-sided t interval (None below 2 seeds).

    A t interval, not a bootstrap: with 2-5 seeds a bootstrap has almost no distinct resamples
    and is far too narrow; t's heavy tails at few degrees of freedom say honestly how little
    two seeds can tell.
    """
    from scipy import stats

    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n}
    half = stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


def pick_candidates(rows: list[TrialRow], k: int, mode: str) -> list[Candidate]:
    """The top k search trials by value among those that ran their full schedule, and the
    recipe (trial 0), each once."""
    finished = [r for r in rows if r.phase == "search" and r.status == "finished"
                and r.best_metric is not None]
    if k > len(finished):
        raise UserError(f"{flag('confirm')} {k} asks for more configs than the "
                        f"{len(finished)} search trial(s) that ran their full schedule.")
    ranked = sorted(finished, key=lambda r: r.best_metric, reverse=(mode == "max"))[:k]
    recipe = next((r for r in rows if r.phase == "search" and r.order == 0), None)
    picked = [Candidate(r.trial_id, f"best #{i + 1}", dict(r.config), dict(r.hparams),
                        r.best_metric) for i, r in enumerate(ranked)]
    if recipe is not None:
        if recipe.trial_id in {c.source_trial for c in picked}:
            next(c for c in picked if c.source_trial == recipe.trial_id).role += " (recipe)"
        else:
            picked.append(Candidate(recipe.trial_id, "recipe", dict(recipe.config),
                                    dict(recipe.hparams), recipe.best_metric))
    return picked


def score(confirmation: Confirmation) -> Confirmation:
    """Fill each candidate's values from its rows and its paired difference to the recipe."""
    for c in confirmation.candidates:
        c.values = {s: None for s in confirmation.seeds}
        for r in c.rows:
            if r.status == "finished" and r.best_metric is not None:
                c.values[r.seed] = r.best_metric
    recipe = confirmation.recipe
    for c in confirmation.candidates:
        if recipe is None or c is recipe:
            continue
        pairs = [(c.values[s], recipe.values[s]) for s in confirmation.seeds
                 if c.values.get(s) is not None and recipe.values.get(s) is not None]
        c.diff = paired_interval([a - b for a, b in pairs])
    return confirmation


def format_confirmation(conf: Confirmation, metric: str) -> str:
    """The confirmation table and one plain sentence on the winner."""
    head = ["trial", "role", "search", *[f"seed {s}" for s in conf.seeds], "mean +- std",
            "vs recipe (95% CI)"]
    body = []
    for c in conf.candidates:
        diff = ""
        if c.diff and c.diff.get("ci95"):
            lo, hi = c.diff["ci95"]
            diff = f"{c.diff['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        elif c.diff:
            diff = f"{c.diff['mean']:+.4f} (1 seed: no interval)"
        body.append([c.source_trial, c.role, metric_text(c.search_value),
                     *[metric_text(c.values.get(s)) for s in conf.seeds],
                     "" if math.isnan(c.mean) else f"{c.mean:.4f} +- {c.std:.4f}", diff])
    lines = [columns(head, body)]
    winner, recipe = conf.winner, conf.recipe
    if winner is None:
        lines.append("[raytune_ft] no config finished every seed: no confirmed winner; "
                     "best_config.py keeps the search's best single run.")
    elif "recipe" in winner.role:
        lines.append(f"[raytune_ft] winner: the recipe (trial {winner.source_trial}), "
                     f"{metric} {winner.mean:.4f} +- {winner.std:.4f}: no searched config beat "
                     "it on fresh seeds.")
    else:
        d = winner.diff or {}
        if conf.beats_recipe(winner):
            verdict = "beats the recipe beyond noise (the paired 95% interval excludes 0)"
        elif d.get("ci95"):
            verdict = ("is ahead of the recipe but within noise (the paired 95% interval "
                       f"includes 0 at {len(conf.seeds)} seeds; more --seeds would tell)")
        else:
            verdict = "cannot be compared with the recipe beyond noise with 1 seed"
        lines.append(f"[raytune_ft] winner: trial {winner.source_trial} ({winner.role}), "
                     f"{metric} {winner.mean:.4f} +- {winner.std:.4f} over {len(conf.seeds)} "
                     f"seeds vs recipe {recipe.mean:.4f}: it {verdict}." if recipe else
                     f"[raytune_ft] winner: trial {winner.source_trial}, {metric} "
                     f"{winner.mean:.4f} +- {winner.std:.4f}.")
    return "\n".join(lines)




__all__ = ["Candidate", "Confirmation", "FIRST_SEED", "ReturnedConfig", "format_confirmation",
           "paired_interval", "pick_candidates", "returned_config", "score"]
