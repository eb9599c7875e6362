"""--time-budget without training: the duration parser, the rule, the searcher that applies it
(on a fake clock), and the sampler settings a search builds."""

from __future__ import annotations

import json

import pytest

from raytune_ft import SearchConfig
from raytune_ft.durations import format_duration, parse_duration
from raytune_ft.errors import UserError
from raytune_ft.tuning.budget import TimeBudget
from raytune_ft.tuning.space import parse_space

METRIC = "coco/bbox_mAP"
SPACE = parse_space({"params": {"lr": {"type": "loguniform", "low": 0.001, "high": 0.1}}})


@pytest.mark.parametrize("text, seconds", [
    ("5h", 18000), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("120", 120), ("1.5h", 5400),
    ("2d", 172800)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0", "-5m", "abc", "5x", "", "0m", "5h foo", "nan"])
def test_a_bad_duration_names_the_flag(text):
    with pytest.raises(UserError, match="--time-budget"):
        parse_duration(text)


@pytest.mark.parametrize("bad", ["0", "-5m", "abc"])
def test_search_config_refuses_a_bad_time_budget(bad):
    with pytest.raises(UserError, match=r"--time-budget \(time_budget\)|--time-budget must"):
        SearchConfig(time_budget=bad)


def test_a_grid_search_cannot_take_a_time_budget():
    with pytest.raises(UserError, match="--time-budget.*grid"):
        SearchConfig(time_budget="1h", searcher="grid")


def test_durations_format():
    assert [format_duration(s) for s in (45, 95, 3725)] == ["45s", "1m35s", "1h02m"]


def test_the_rule_stops_when_an_average_trial_and_the_confirmation_no_longer_fit():
    budget = TimeBudget(total=100, slots=1, confirm_runs=2)
    assert budget.can_start(0, running=0)  # nothing known yet: the first trial starts
    budget.trial_ended(20, full_schedule=True)
    budget.trial_ended(10, full_schedule=False)  # an early-stopped trial
    assert budget.average_trial == 15 and budget.reserve == 2 * 20  # full runs only
    assert budget.can_start(45, running=0)  # 45 + 15 + 40 = 100
    assert not budget.can_start(46, running=0)
    assert "time budget" in budget.stopped_because and "confirmation" in budget.stopped_because
    # the confirmation may overrun by one average trial, as the running trials may
    assert budget.confirmation_fits(60 + 15) and not budget.confirmation_fits(61 + 15)


def test_the_reserve_spreads_the_confirmation_over_the_slots():
    budget = TimeBudget(total=100, slots=4, confirm_runs=6)
    budget.trial_ended(10, full_schedule=True)
    assert budget.reserve == 2 * 10  # 6 runs on 4 slots: 2 waves


def test_without_lengths_only_the_first_wave_starts():
    budget = TimeBudget(total=100, slots=2)
    assert budget.can_start(0, running=0) and budget.can_start(0, running=1)
    assert not budget.can_start(0, running=2)


def test_the_searcher_stops_suggesting_when_the_budget_is_spent(tmp_path, monkeypatch):
    from ray.tune.search import Searcher

    import raytune_ft.tuning.searcher as searcher_mod
    from raytune_ft.tuning.searcher import build_optuna_searcher

    now = [1000.0]
    monkeypatch.setattr(searcher_mod.time, "time", lambda: now[0])
    searcher = build_optuna_searcher("random", 0, 1, METRIC, "max", [])
    searcher.set_search_properties(METRIC, "max", SPACE.to_tune())
    record = tmp_path / "budget.json"
    searcher.set_time_budget(TimeBudget(total=150), started_at=1000.0, record=record)
    assert isinstance(searcher.suggest("t0"), dict)
    now[0] = 1100.0  # t0 took 100 s and ran its whole schedule
    searcher.on_trial_complete("t0", result={METRIC: 0.1, "epoch": 2, "max_epochs": 2})
    assert searcher.suggest("t1") == Searcher.FINISHED  # 100 + 100 > 150
    state = json.loads(record.read_text())
    assert state["trial_lengths_s"] == [100.0] and state["trials_started"] == 1
    assert state["stopped_because"].startswith("time budget: 50s of 2m30s left")


def test_the_search_builds_tpe_with_the_chosen_switches_and_its_budget(tmp_path):
    from raytune_ft.options import TPE_CONSTANT_LIAR, TPE_MULTIVARIATE
    from raytune_ft.storage import ExperimentStorage
    from raytune_ft.tuning.searcher import build_search_algorithm

    config = SearchConfig(num_samples=4, max_concurrent=2, time_budget="1h", confirm=1,
                          seeds=2, name="b")
    searcher = build_search_algorithm(config, [{"lr": 0.01}], METRIC, "max",
                                      ExperimentStorage.create(str(tmp_path), "b"), started_at=5.0)
    sampler = searcher._sampler
    assert sampler._constant_liar is TPE_CONSTANT_LIAR is True
    assert sampler._multivariate is TPE_MULTIVARIATE
    assert sampler._n_startup_trials == config.startup_trials
    budget = searcher.time_budget
    assert (budget.total, budget.slots, budget.confirm_runs) == (3600, 2, 4)


@pytest.mark.parametrize("finished_before, random_start_up", [(0, True), (3, False)])
def test_an_extension_tells_the_same_study_and_tpe_does_not_start_at_random_again(
        tmp_path, finished_before, random_start_up):
    """`--resume --num-samples N` builds its searcher afresh (no points: the recipe ran) on the
    experiment's optuna.db: with the study's 3 finished trials past --startup-trials 2, its
    first suggestion is TPE's, not the random start-up's (a new study, or a sampler that
    counted only its own trials, would draw at random again). 0 trials: the control."""
    import optuna

    from raytune_ft.storage import OPTUNA_DB, ExperimentStorage
    from raytune_ft.tuning.searcher import build_search_algorithm

    exp = ExperimentStorage.create(str(tmp_path), "ext")
    storage = f"sqlite:///{exp.local_path(OPTUNA_DB)}"
    study = optuna.create_study(study_name="ext", storage=storage, direction="maximize")
    lr = optuna.distributions.FloatDistribution(0.001, 0.1, log=True)
    for i in range(finished_before):
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.002 * 3 ** i},
                                                  distributions={"lr": lr}, value=0.1 * i))
    config = SearchConfig(num_samples=5, startup_trials=2, name="ext")
    searcher = build_search_algorithm(config, [], METRIC, "max", exp)
    searcher.set_search_properties(METRIC, "max", SPACE.to_tune())
    drawn_at_random = []
    random_sampler = searcher._sampler._random_sampler
    original = random_sampler.sample_independent

    def spy(*args, **kwargs):
        drawn_at_random.append(args[2] if len(args) > 2 else kwargs.get("param_name"))
        return original(*args, **kwargs)

    random_sampler.sample_independent = spy
    assert "lr" in searcher.suggest("t_new")
    assert bool(drawn_at_random) is random_start_up, drawn_at_random
    assert len(optuna.load_study(study_name="ext", storage=storage).trials) == \
        finished_before + 1  # told to the one study in optuna.db
