"""A trial's time split into waiting and running, from the states of its Ray Train controller.

The controller of each trial's Train run records every state change (raytune_ft.engine.callbacks
.PhaseRecordCallback) in `<run>/phases.jsonl`. What a trial *cost* is the time its worker groups
ran (`RUNNING`: building the Runner, training, validating), summed over attempts; the time it
waited for a placement (nodes the autoscaler boots, an image pull, a GPU another trial holds,
restarts) is reported on its own and costs no GPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

PHASES_FILE = "phases.jsonl"  # one {"state": ..., "at": unix time} per controller state change
RUNNING_STATES = frozenset({"RUNNING"})
# No worker group is up (or it is being replaced): the trial holds no device and waits.
WAITING_STATES = frozenset({"INITIALIZING", "SCHEDULING", "RESCHEDULING", "RESTARTING"})


@dataclass(frozen=True)
class PhaseTimes:
    """Seconds a trial's worker groups ran and waited, how many times they were scheduled,
    and since when it has been waiting (None when it is not waiting now)."""

    running_s: float
    waiting_s: float
    schedulings: int
    waiting_since: float | None


def parse_phases(text: str) -> list[dict]:
    """The records of a phases.jsonl (a half-written last line is skipped)."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def phase_times(records: list[dict], now: float | None = None) -> PhaseTimes:
    """Sum the intervals between state changes by kind; an open last interval (the trial is
    still in it) counts up to `now` unless its state is terminal."""
    now = time.time() if now is None else now
    running = waiting = 0.0
    schedulings = 0
    since = None  # start of the current run of waiting states
    for i, record in enumerate(records):
        state, start = record.get("state"), float(record.get("at", 0.0))
        end = float(records[i + 1]["at"]) if i + 1 < len(records) else now
        if state == "SCHEDULING":
            schedulings += 1
        if state in RUNNING_STATES:
            running += max(0.0, end - start)
        elif state in WAITING_STATES:
            waiting += max(0.0, end - start)
        if state in WAITING_STATES:
            since = start if since is None else since
        else:
            since = None
    return PhaseTimes(running, waiting, schedulings, since)


__all__ = ["PHASES_FILE", "PhaseTimes", "RUNNING_STATES", "WAITING_STATES", "parse_phases",
           "phase_times"]
