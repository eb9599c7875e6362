"""Step-fair early stopping on replayed curves (seconds, no training): Ray Tune's real ASHA and
Optuna searcher, fed through `raytune_ft.simulate` exactly as Tune's controller calls them."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from raytune_ft.simulate import Curve, CurveTable, Design, replay
from raytune_ft.tuning.scheduler import StepFairASHA, ranked_value, rung_fractions
from raytune_ft.tuning.space import parse_space

METRIC = "coco/bbox_mAP"
SPACE = parse_space({"params": {
    "lr": {"type": "loguniform", "low": 0.005, "high": 0.08},
    "max_epochs": {"type": "choice", "values": [4]},
    "step_frac": {"type": "uniform", "low": 0.7, "high": 0.8},  # the step after epoch 3 of 4
}})
LOW, HIGH = 0.01, 0.04
# Low lr leads before the step; high lr overtakes after it (as detection mAP does at the step).
TABLE = CurveTable.of(
    [Curve(LOW, 4, 3, (0.02, 0.05, 0.06, 0.07)), Curve(HIGH, 4, 3, (0.01, 0.03, 0.04, 0.12))],
    probes={(LOW, 2): 0.055, (LOW, 3): 0.065, (HIGH, 2): 0.07, (HIGH, 3): 0.10},
    start_cost=0.5, probe_cost=0.5, metric=METRIC)
POINTS = [{"lr": LOW, "max_epochs": 4, "step_frac": 0.75},
          {"lr": HIGH, "max_epochs": 4, "step_frac": 0.75}]
TWO_TRIALS = 2 * (0.5 + 4 + 2 * 0.5)  # both trials run to the end with two probes each


def fates(design: Design, budget: float = TWO_TRIALS):
    run = replay(design, TABLE, SPACE, budget, seed=0, points=POINTS)
    return run, {t.key[0]: t for t in reversed(run.trials[:2])}  # the two points, in order


def test_step_probe_promotes_the_trial_that_overtakes_after_its_step():
    run, trials = fates(Design.of("default", scheduler="step-probe", searcher="tpe", confirm=0))
    assert trials[HIGH].finished and trials[HIGH].probes == 2
    assert run.best == pytest.approx(0.12)


def test_the_old_progress_rule_stops_it_before_its_step():
    run, trials = fates(Design.of("old", scheduler="progress-asha", searcher="tpe",
                                  stock_optuna=True, confirm=0))
    assert trials[LOW].finished
    assert not trials[HIGH].finished and trials[HIGH].epochs_run == 2
    assert run.best == pytest.approx(0.07)


def test_step_after_judges_only_post_step_values():
    # both trials step after epoch 3 of 4, so no rung is after a step: nothing is stopped
    _, trials = fates(Design.of("after", scheduler="step-after", searcher="tpe", confirm=0))
    assert trials[LOW].finished and trials[HIGH].finished and trials[HIGH].probes == 0


def test_a_stopped_trial_is_pruned_in_the_study_never_complete():
    """What the replay's own searcher told Optuna: the finished trial COMPLETE with its final
    value, the trial stopped before its step PRUNED, its pre-step 0.03 never a result."""
    design = Design.of("old_rule_new_searcher", scheduler="progress-asha", searcher="tpe",
                       confirm=0)
    run, trials = fates(design)
    assert trials[LOW].finished and not trials[HIGH].finished
    study: optuna.Study = run.study
    states = [t.state for t in study.trials[:2]]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED]
    assert study.trials[0].value == pytest.approx(0.07)
    assert study.trials[1].value is None
    assert 0.03 not in study.trials[1].intermediate_values.values()


def test_stock_optuna_search_learns_the_truncated_value_as_complete():
    """What the step-fair searcher fixes: Ray's OptunaSearch tells a stopped trial COMPLETE."""
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(metric=METRIC, mode="max", points_to_evaluate=[POINTS[1]])
    searcher.set_search_properties(METRIC, "max", SPACE.to_tune("tpe"))
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", result={METRIC: 0.03, "epoch": 2, "max_epochs": 4,
                                             "lr_step_epoch": 3, "training_iteration": 2})
    trial = searcher._ot_study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.03)


def test_ranked_value_never_returns_a_pre_step_metric():
    pre = {METRIC: 0.03, "epoch": 2, "lr_step_epoch": 3}
    assert ranked_value(pre, METRIC) is None
    assert ranked_value({**pre, "probe/" + METRIC: 0.07}, METRIC) == pytest.approx(0.07)
    assert ranked_value({**pre, "epoch": 4}, METRIC) == pytest.approx(0.03)  # stepped
    assert ranked_value({**pre, "diverged": 1.0, METRIC: -1.0}, METRIC) == -1.0
    assert ranked_value({"epoch": 2}, METRIC) is None


def test_rungs_match_rays_asha():
    sched = StepFairASHA(metric=METRIC, grace_period=1 / 3, reduction_factor=2)
    assert sched.rungs == pytest.approx([1 / 3, 2 / 3])
    assert sorted(m for m, _ in sched._brackets[0]._rungs) == pytest.approx(sched.rungs)
    assert rung_fractions(0.25, 2) == pytest.approx([0.25, 0.5])


def test_the_committed_demo_curve_table_replays_with_every_design():
    """bench/replay.py's inputs stay usable: the measured table loads with its seeds, every
    design runs within its budget (plus at most one trial that was running) and returns a
    measured config; one that confirms does so on the table's seeds."""
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "bench"))
    import replay as bench

    table = CurveTable.from_json(repo / "bench" / "curves" / "demo.json")
    assert len(table.curves) >= 30 and 0 < table.start_cost < 5 and 0 < table.probe_cost < 2
    assert len(table.seeds) >= 3
    longest = table.start_cost + 6 * (1 + table.probe_cost)
    space = bench.table_space(repo / "search_spaces" / "demo.yaml", table)
    confirming = next(d for d in bench.VARIANTS if d.name == "confirm1_seeds2")
    for design in [*bench.DESIGNS, confirming]:
        run = replay(design, table, space, 60.0, seed=0, points=[bench.RECIPE])
        assert run.trials[0].key == (0.02, 6, 4)  # trial 0 is the recipe
        assert run.trace and run.device <= 60.0 + longest
        assert run.returned in table.curves and run.confirmed == bool(design.confirm)
        assert (design.scheduler == "step-probe") == any(t.probes for t in run.trials)


@pytest.mark.slow
@pytest.mark.parametrize("design, high_epochs", [
    (Design.of("default", scheduler="step-probe", searcher="tpe", confirm=0), 4),
    (Design.of("old", scheduler="progress-asha", searcher="tpe", stock_optuna=True,
               confirm=0), 2),
])
def test_the_replay_decides_as_a_real_tune_run_does(ray_session, tmp_path, design, high_epochs):
    """The replay's loop stands in for Tune's controller: a real `tune.Tuner` over the same
    curves, scheduler and searcher stops the same trials at the same epochs."""
    from ray import tune

    from raytune_ft.engine.probe import probe_epochs
    from raytune_ft.simulate import curve_results
    from raytune_ft.simulate.design import make_scheduler, make_searcher, probe_rungs

    def table_trainable(config: dict, table, rungs: list[float]) -> None:
        """Reports a measured curve (seed `table.seeds[0]`) instead of training, as the replay
        feeds it to the scheduler (nested: Ray's workers get it by value, not by module)."""
        curve = table.curves[table.key_for(config)][table.seeds[0]]
        for result in curve_results(table, curve,
                                    set(probe_epochs(rungs, curve.max_epochs, curve.step))):
            tune.report(result)

    scheduler = make_scheduler(design, METRIC)
    rungs = probe_rungs(scheduler)
    tuner = tune.Tuner(
        tune.with_parameters(table_trainable, table=TABLE, rungs=rungs),
        param_space=SPACE.to_tune("tpe"),
        tune_config=tune.TuneConfig(search_alg=make_searcher(design, METRIC, 0, POINTS),
                                    scheduler=scheduler, num_samples=2,
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(name=design.name, storage_path=str(tmp_path), verbose=0))
    live = {r.config["lr"]: r.metrics["epoch"] for r in tuner.fit()}
    _, replayed = fates(design)
    assert live == {LOW: 4, HIGH: high_epochs}
    assert {lr: t.epochs_run for lr, t in replayed.items()} == live
