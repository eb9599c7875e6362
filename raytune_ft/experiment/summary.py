"""summary.json as a typed record: what a search found, what it cost, how it was confirmed,
scored on test and stopped by its time budget.

`Summary` is built by `raytune_ft.experiment.results.write_results` and written by exactly one
function, `write_summary`; the search (`SearchResult.summary`), the confirmation and report.html
read its attributes. `to_json()` gives the file's keys in the file's order (byte for byte what
the dict-built summary.json held); `from_json` reads any summary.json raytune_ft wrote, keys a
newer or older version added kept as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raytune_ft.storage import ExperimentStorage

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class TestScore:
    """The returned config and the recipe, picked on val, scored on the held-out test set."""

    scores: dict[str, float | None]  # "winner" / "recipe" -> the metric on test (None: failed)
    metric: str
    test_annotation: str

    @property
    def winner(self) -> float | None:
        return self.scores.get("winner")

    @property
    def recipe(self) -> float | None:
        return self.scores.get("recipe")

    def to_json(self) -> dict[str, Any]:
        return {**self.scores, "metric": self.metric, "test_annotation": self.test_annotation}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestScore:
        scores = {k: v for k, v in data.items() if k not in ("metric", "test_annotation")}
        return cls(scores, data.get("metric", ""), data.get("test_annotation", ""))


@dataclass(frozen=True)
class TestNote:
    """Why a search has no test score (val only, or nothing finished to score)."""

    note: str


@dataclass(frozen=True)
class CandidateRecord:
    """One confirmed config as summary.json keeps it."""

    trial: str
    role: str  # "recipe", "best #k" or "best #k (recipe)"
    hparams: dict[str, Any]
    search_value: float | None  # its single search run
    values: dict[str, float | None]  # seed (as text) -> best metric of that seed's run
    mean: float | None
    std: float
    diff_to_recipe: dict[str, Any] | None  # paired difference: mean, ci95 ([lo, hi] or None), n

    @property
    def confirmed(self) -> bool:
        return self.mean is not None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateRecord:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class ConfirmationRecord:
    """A confirmation as summary.json keeps it: where its runs are, the seeds, every config's
    values, the winner."""

    folder: str | None  # the confirmation's experiment folder (confirm/, confirm_1/, ...)
    seeds: list[int]
    winner_trial: str | None
    winner_beats_recipe_beyond_noise: bool
    candidates: list[CandidateRecord]

    @property
    def winner(self) -> CandidateRecord | None:
        return next((c for c in self.candidates if c.trial == self.winner_trial), None)

    @property
    def recipe(self) -> CandidateRecord | None:
        return next((c for c in self.candidates if "recipe" in c.role), None)

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "seeds": self.seeds, "winner_trial": self.winner_trial,
                "winner_beats_recipe_beyond_noise": self.winner_beats_recipe_beyond_noise,
                "candidates": [c.to_json() for c in self.candidates]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfirmationRecord:
        return cls(data.get("folder"), list(data.get("seeds") or []), data.get("winner_trial"),
                   bool(data.get("winner_beats_recipe_beyond_noise")),
                   [CandidateRecord.from_json(c) for c in data.get("candidates") or []])


@dataclass(frozen=True)
class BudgetOutcome:
    """A `--time-budget` search's budget when its search phase ended: its size, the budget's
    state (`raytune_ft.tuning.budget.BudgetState`, from budget.json), why trials stopped starting,
    and, once the search ends, the time used and the trials run."""

    time_budget: str  # as the user wrote it ("5h")
    time_budget_s: float
    stopped_because: str
    # the rest of budget.json (`BudgetState` but its size and reason); {}: none recorded
    state: dict[str, Any] = field(default_factory=dict)
    used_s: float | None = None
    trials_run: int | None = None

    @property
    def started_at(self) -> float | None:
        return self.state.get("started_at")

    @property
    def confirmation_reserve_s(self) -> float:
        return self.state.get("confirmation_reserve_s") or 0.0

    @property
    def stopped_by_budget(self) -> bool:
        return self.stopped_because.startswith("time budget")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time_budget": self.time_budget,
                               "time_budget_s": self.time_budget_s, **self.state}
        out["stopped_because"] = self.stopped_because
        if self.used_s is not None:
            out.update(used_s=self.used_s, trials_run=self.trials_run)
        return out

    @classmethod
    def of(cls, time_budget: str, time_budget_s: float, stopped_because: str,
           state: dict[str, Any]) -> BudgetOutcome:
        """From budget.json's state (its `stopped_because` is last there, as in `to_json`)."""
        rest = {k: v for k, v in state.items() if k not in ("time_budget_s", "stopped_because")}
        return cls(time_budget, time_budget_s, stopped_because, rest)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BudgetOutcome:
        state = {k: v for k, v in data.items()
                 if k not in ("time_budget", "used_s", "trials_run")}
        outcome = cls.of(data["time_budget"], data["time_budget_s"],
                         data.get("stopped_because") or "", state)
        return replace(outcome, used_s=data.get("used_s"), trials_run=data.get("trials_run"))


@dataclass(frozen=True)
class Summary:
    """summary.json. The first block is always there; the rest only when it happened (a test
    score or its note, a confirmation and its winner, a best config, a time budget)."""

    metric: str
    mode: str
    trials: int
    by_status: dict[str, int]
    best_trial: str | None
    best_metric: float | None
    best_hparams: dict[str, Any] | None
    trial0_trial: str | None
    trial0_metric: float | None
    gain_over_trial0: float | None
    # device-seconds: GPU-seconds of GPU trials, CPU-seconds of CPU trials (`device`)
    total_device_seconds: float
    device_seconds_saved_by_early_stopping: float
    total_wait_seconds: float
    device: str  # "GPU" or "CPU"
    experiment: str
    test: TestScore | TestNote | None = None
    confirmation: ConfirmationRecord | None = None
    winner_trial: str | None = None  # the confirmed winner (when the confirmation picked one)
    winner_hparams: dict[str, Any] | None = None
    best_config: str | None = None  # best_config.py and best_checkpoint.pth, when written
    best_checkpoint: str | None = None
    time_budget: BudgetOutcome | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    _ALWAYS = ("metric", "mode", "trials", "by_status", "best_trial", "best_metric",
               "best_hparams", "trial0_trial", "trial0_metric", "gain_over_trial0",
               "total_device_seconds", "device_seconds_saved_by_early_stopping",
               "total_wait_seconds", "device", "experiment")

    @property
    def test_score(self) -> TestScore | None:
        return self.test if isinstance(self.test, TestScore) else None

    @property
    def test_note(self) -> str | None:
        return self.test.note if isinstance(self.test, TestNote) else None

    @property
    def returned_hparams(self) -> dict[str, Any] | None:
        """The hyper-parameters a user gets: the confirmed winner's, else the best run's."""
        return self.winner_hparams or self.best_hparams

    def __getitem__(self, key: str) -> Any:
        """`summary["best_metric"]`: summary.json's value of `key` (the dict API
        `SearchResult.summary` had before it was typed)."""
        return self.to_json()[key]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self._ALWAYS}
        if isinstance(self.test, TestNote):
            out["test_note"] = self.test.note
        elif self.test is not None:
            out["test_score"] = self.test.to_json()
        if self.confirmation is not None:
            out["confirmation"] = self.confirmation.to_json()
        if self.winner_trial is not None:
            out.update(winner_trial=self.winner_trial, winner_hparams=self.winner_hparams)
        if self.best_config is not None:
            out.update(best_config=self.best_config, best_checkpoint=self.best_checkpoint)
        if self.time_budget is not None:
            out["time_budget"] = self.time_budget.to_json()
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        known = set(cls._ALWAYS) | {"test_note", "test_score", "confirmation", "winner_trial",
                                    "winner_hparams", "best_config", "best_checkpoint",
                                    "time_budget"}
        test: TestScore | TestNote | None = None
        if "test_note" in data:
            test = TestNote(data["test_note"])
        elif data.get("test_score"):
            test = TestScore.from_json(data["test_score"])
        return cls(
            **{k: data.get(k) for k in cls._ALWAYS},
            test=test,
            confirmation=(ConfirmationRecord.from_json(data["confirmation"])
                          if data.get("confirmation") else None),
            winner_trial=data.get("winner_trial"), winner_hparams=data.get("winner_hparams"),
            best_config=data.get("best_config"), best_checkpoint=data.get("best_checkpoint"),
            time_budget=(BudgetOutcome.from_json(data["time_budget"])
                         if data.get("time_budget") else None),
            extra={k: v for k, v in data.items() if k not in known})


def write_summary(experiment: ExperimentStorage, summary: Summary) -> Summary:
    """The one writer of summary.json (staged locally, then published with the experiment)."""
    experiment.local_path(SUMMARY_FILE).write_text(
        json.dumps(summary.to_json(), indent=2, default=str))
    experiment.publish(SUMMARY_FILE)
    return summary


def read_summary(experiment: ExperimentStorage) -> Summary | None:
    """The experiment's summary.json (None before a search wrote one)."""
    raw = experiment.storage.read_bytes(experiment.name, SUMMARY_FILE)
    return Summary.from_json(json.loads(raw)) if raw else None


__all__ = ["BudgetOutcome", "CandidateRecord", "ConfirmationRecord", "SUMMARY_FILE", "Summary",
           "TestNote", "TestScore", "read_summary", "write_summary"]
