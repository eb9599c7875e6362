"""The typed records that cross layers: summary.json read and written as a `Summary` keeps every
byte of the files the dict-built version wrote, the time budget's state survives budget.json,
and one rule decides which config a search returns (the search, its results and the replay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raytune_ft.experiment.confirmation import (Confirmation, pick_candidates,
                                                returned_config, score)
from raytune_ft.experiment.rows import TrialRow
from raytune_ft.experiment.summary import (BudgetOutcome, Summary, TestNote, TestScore,
                                           read_summary, write_summary)
from raytune_ft.storage import ExperimentStorage
from raytune_ft.tuning.budget import TimeBudget

# summary.json files written by raytune_ft before summary.json became a record (commit 74327f2,
# by the suite's own searches): plain, early-stopped, errored, time-budgeted, confirmed with a
# test score, confirmed and time-budgeted, a demo's val-only note.
OLD_SUMMARIES = sorted((Path(__file__).parent / "data" / "summaries").glob("*.json"))


def test_the_old_summaries_cover_every_optional_part():
    keys = set().union(*(json.loads(p.read_text()) for p in OLD_SUMMARIES))
    assert {"test_note", "test_score", "confirmation", "winner_trial", "best_config",
            "time_budget"} <= keys


@pytest.mark.parametrize("path", OLD_SUMMARIES, ids=lambda p: p.stem)
def test_a_summary_written_before_the_record_reads_and_writes_back_byte_for_byte(path, tmp_path):
    raw = path.read_text()
    summary = Summary.from_json(json.loads(raw))
    assert summary.extra == {}  # every key is a field: nothing read by accident as unknown
    exp = ExperimentStorage.create(str(tmp_path), "exp")
    write_summary(exp, summary)
    assert exp.local_path("summary.json").read_text() == raw
    assert read_summary(exp) == summary


def test_the_record_answers_what_the_dict_held():
    data = json.loads(next(p for p in OLD_SUMMARIES if "test_score" in p.read_text())
                      .read_text())
    summary = Summary.from_json(data)
    assert isinstance(summary.test, TestScore)
    assert (summary.test_score.winner, summary.test_score.recipe) == (
        data["test_score"]["winner"], data["test_score"]["recipe"])
    assert summary.returned_hparams == data["winner_hparams"]
    conf = summary.confirmation
    assert conf.winner.trial == data["winner_trial"] and conf.recipe is not None
    assert summary["best_metric"] == data["best_metric"]  # SearchResult.summary's old dict use
    note = Summary.from_json(json.loads(next(p for p in OLD_SUMMARIES
                                             if "test_note" in p.read_text()).read_text()))
    assert isinstance(note.test, TestNote) and note.test_note and note.test_score is None


def test_keys_a_later_version_adds_are_kept():
    data = json.loads(OLD_SUMMARIES[0].read_text())
    summary = Summary.from_json({**data, "new_key": [1, 2]})
    assert summary.extra == {"new_key": [1, 2]}
    assert list(summary.to_json())[-1] == "new_key"


def test_a_budget_outcome_without_a_recorded_state_keeps_its_key_order():
    outcome = BudgetOutcome("1h", 3600.0, "interrupted", used_s=5.0, trials_run=2)
    assert list(outcome.to_json()) == ["time_budget", "time_budget_s", "stopped_because",
                                       "used_s", "trials_run"]
    assert BudgetOutcome.from_json(outcome.to_json()) == outcome


def test_the_time_budget_state_round_trips_through_budget_json():
    """A resumed search rebuilds the budget from budget.json and decides as the live one."""
    live = TimeBudget(100.0, slots=2, confirm_runs=4)
    live.trial_ended(20.0, True)
    live.trial_ended(10.0, False)
    assert not live.can_start(elapsed=70.0, running=1)  # sets stopped_because
    state = json.loads(json.dumps(live.to_state(started_at=123.0, trials_started=3)))
    assert state["started_at"] == 123.0 and state["trials_started"] == 3
    back = TimeBudget.from_state(state, 100.0, slots=2, confirm_runs=4)
    assert (back.trial_lengths, back.full_lengths, back.stopped_because) == (
        live.trial_lengths, live.full_lengths, live.stopped_because)
    for elapsed in (0.0, 30.0, 45.0, 70.0):
        assert back.can_start(elapsed, 1) == live.can_start(elapsed, 1)
        assert back.confirmation_fits(elapsed) == live.confirmation_fits(elapsed)


def _row(trial_id: str, order: int, value: float | None, **kw) -> TrialRow:
    return TrialRow(trial_id, order, {"lr": 0.01 * (order + 1)}, {"lr": 0.01 * (order + 1)},
                    kw.pop("status", "finished"), "", 4, 4, value, 4, value, 1.0, **kw)


def test_the_search_returns_its_best_run_without_a_confirmation():
    rows = [_row("recipe", 0, 0.10), _row("best", 1, 0.20), _row("nan", 2, None)]
    search_job = object()  # stands in for the search's SearchJob: only passed through
    returned = returned_config(rows, "max", None, search_job)
    assert returned.trial_id == "best" and returned.run is rows[1]
    assert returned.job is search_job  # its checkpoint is in the search's experiment
    assert returned.confirmed is None and returned.point == {"lr": 0.02}
    assert returned_config(rows, "min").trial_id == "recipe"
    assert returned_config([_row("x", 0, None)], "max") is None


def test_a_confirmed_winner_is_returned_over_the_best_single_run():
    rows = [_row("recipe", 0, 0.10), _row("lucky", 1, 0.30), _row("solid", 2, 0.25)]
    conf = Confirmation([1, 2], pick_candidates(rows, 2, "max"), "max", job=object())
    values = {"lucky": (0.05, 0.07), "solid": (0.22, 0.24), "recipe": (0.10, 0.11)}
    for c in conf.candidates:
        c.rows = [_row(f"{c.source_trial}{s}", 9, v, phase="confirm", seed=s,
                       source_trial=c.source_trial)
                  for s, v in zip((1, 2), values[c.source_trial])]
    score(conf)
    returned = returned_config(rows, "max", conf, object())
    assert returned.trial_id == "solid" and returned.confirmed is conf.winner
    assert returned.job is conf.job  # the winner's seed runs are in the confirmation's folder
    assert returned.run.trial_id == "solid2"  # the winner's best seed run: its checkpoint
    # a confirmation that named no winner (a seed missing everywhere) leaves the search's best
    for c in conf.candidates:
        c.values[2] = None
    assert returned_config(rows, "max", conf).trial_id == "lucky"
