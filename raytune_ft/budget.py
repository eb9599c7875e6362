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

Pure Python (no Ray): the search's searcher asks `can_start`, the replay calls it with its own
clock.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

from raytune_ft.errors import UserError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])", re.IGNORECASE)


def parse_duration(text: str, name: str = "--time-budget") -> float:
    """Seconds in a duration such as `5h`, `90m`, `1h30m`, `45s` or a bare number of seconds;
    UserError naming `name` for anything that is not a positive duration."""
    raw = str(text).strip()
    example = f"e.g. {name} 5h, 90m or 1h30m"
    try:
        seconds = float(raw)
    except ValueError:
        parts = _PART.findall(raw)
        if not parts or _PART.sub("", raw).strip():
            raise UserError(f"{name} must be a duration such as 5h, 90m, 1h30m or 45s; got "
                            f"{text!r}.") from None
        seconds = sum(float(v) * _UNITS[u.lower()] for v, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{name} must be a positive duration ({example}); got {text!r}.")
    return seconds


def format_duration(seconds: float) -> str:
    """`3725` -> `1h02m`, `95` -> `1m35s`: how the console and summary.json say a duration."""
    seconds = max(0.0, float(seconds))
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.0f}s"


def confirmation_runs(configs: int, seeds: int) -> int:
    """Full-schedule runs a confirmation of `configs` configs makes: (configs + the recipe) x
    seeds; 0 without a confirmation."""
    return (configs + 1) * seeds if configs else 0


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
