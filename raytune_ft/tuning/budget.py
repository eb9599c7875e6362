"""A search's time budget: when to stop starting trials so that the search *and* its
confirmation end in time.

One rule serves the live search (`--time-budget`, real clock) and the curve replay (simulated
clock), so what the replay predicts is what the search does:

    A new trial starts only while `elapsed + average trial + reserve <= budget`, where the
    average trial is the mean length of the trials that ended so far and the reserve is the
    confirmation's expected length (its full-schedule runs spread over the trial slots).
    Before any trial has ended nothing is known about trial lengths: the first wave (one trial
    per slot) starts.
    Running trials always finish; nothing is cut mid-epoch. The confirmation then runs if it
    ends within the budget plus one average trial (the same slack the running trials have).

Pure Python (no Ray): the search's searcher asks `can_start`, the replay (raytune_ft.simulate)
calls it with its own clock. Its state is kept in the experiment's budget.json
(`to_state` / `from_state`), which summary.json's `time_budget` includes.

Its class path `raytune_ft.budget.TimeBudget` (pickled with the searcher into older
experiments' tuner.pkl) still imports: raytune_ft._moved.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, TypedDict

from raytune_ft.durations import format_duration


class BudgetState(TypedDict, total=False):
    """budget.json: a running search's budget, written by its searcher at each trial's end and
    when it stops starting trials."""

    time_budget_s: float
    started_at: float  # when the budget's clock started (the first run of the search)
    trials_started: int
    trial_lengths_s: list[float]
    full_lengths_s: list[float]
    average_trial_s: float | None
    confirmation_reserve_s: float
    stopped_because: str | None


@dataclass
class TimeBudget:
    """The budget of one search in seconds (or any unit the clock counts in).

    Args:
        total: the whole budget, confirmation included.
        slots: trials that run at once (`--max-concurrent`).
        confirm_runs: full-schedule runs the confirmation will make ((K + 1) x seeds; 0: none).
    """

    total: float
    slots: int = 1
    confirm_runs: int = 0
    trial_lengths: list[float] = field(default_factory=list)  # ended trials
    full_lengths: list[float] = field(default_factory=list)  # ended trials that ran to the end
    stopped_because: str | None = None

    def trial_ended(self, length: float, full_schedule: bool) -> None:
        self.trial_lengths.append(float(length))
        if full_schedule:
            self.full_lengths.append(float(length))

    @property
    def average_trial(self) -> float | None:
        return statistics.fmean(self.trial_lengths) if self.trial_lengths else None

    @property
    def reserve(self) -> float:
        """The confirmation's expected length: its runs in waves of `slots`, each as long as
        the longest full-schedule trial so far (the candidates run their full schedules)."""
        if not self.confirm_runs:
            return 0.0
        full = max(self.full_lengths or self.trial_lengths or [0.0])
        return math.ceil(self.confirm_runs / self.slots) * full

    def can_start(self, elapsed: float, running: int) -> bool:
        """Whether a new trial may start now (and why not, in `stopped_because`)."""
        average = self.average_trial
        if average is None:  # nothing has ended yet: the first wave starts
            return running < self.slots
        if elapsed + average + self.reserve <= self.total:
            return True
        self.stopped_because = (
            f"time budget: {format_duration(self.total - elapsed)} of "
            f"{format_duration(self.total)} left, an average trial takes "
            f"{format_duration(average)}"
            + (f" and the confirmation needs {format_duration(self.reserve)}"
               if self.reserve else ""))
        return False

    def confirmation_fits(self, elapsed: float) -> bool:
        """Whether the confirmation still fits once the search phase has ended.

        Its time was reserved when the last trial started, but the trials running then finish
        whenever they finish; the confirmation may overrun by what the search may (one average
        trial), so a reserve kept for it is not thrown away by a trial that ran long. Beyond
        that it is skipped (`python -m raytune_ft.confirm` runs it later)."""
        return elapsed + self.reserve <= self.total + (self.average_trial or 0.0)

    def to_state(self, started_at: float, trials_started: int) -> BudgetState:
        """What budget.json keeps (`from_state` reads it back)."""
        return {"time_budget_s": self.total, "started_at": started_at,
                "trials_started": trials_started, "trial_lengths_s": self.trial_lengths,
                "full_lengths_s": self.full_lengths, "average_trial_s": self.average_trial,
                "confirmation_reserve_s": self.reserve, "stopped_because": self.stopped_because}

    @classmethod
    def from_state(cls, state: BudgetState | dict[str, Any], total: float, slots: int = 1,
                   confirm_runs: int = 0) -> TimeBudget:
        """The budget as budget.json left it: the trials that ended and why it stopped."""
        return cls(total, slots=slots, confirm_runs=confirm_runs,
                   trial_lengths=list(state.get("trial_lengths_s") or []),
                   full_lengths=list(state.get("full_lengths_s") or []),
                   stopped_because=state.get("stopped_because"))
