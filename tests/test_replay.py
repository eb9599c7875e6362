"""Replay v2 on hand-made curve tables (milliseconds, no training): K trials at once in
simulated time, the confirmation replayed, true quality from seed means, the time-budget rule."""

from __future__ import annotations

import json

import pytest

from raytune_ft.errors import UserError
from raytune_ft.simulate import Curve, CurveTable, Design, replay, summarize
from test_scheduler import METRIC, SPACE  # 4 epochs, the LR step after epoch 3

STEADY, LUCKY = 0.01, 0.04
POINTS = [{"lr": STEADY, "max_epochs": 4, "step_frac": 0.75},  # trial 0, "the recipe"
          {"lr": LUCKY, "max_epochs": 4, "step_frac": 0.75}]


def curve(lr: float, seed: int, final: float) -> Curve:
    return Curve(lr, 4, 3, (0.01, 0.02, 0.03, final), seed=seed)


# STEADY is 0.12 on every seed; LUCKY is 0.20 on seed 0 and 0.05 on seeds 1 and 2 (mean 0.10).
TABLE = CurveTable.of([curve(STEADY, s, 0.12) for s in range(3)]
                      + [curve(LUCKY, s, v) for s, v in enumerate((0.20, 0.05, 0.05))],
                      start_cost=0.5, probe_cost=0.5, metric=METRIC)
FIFO = Design.of("fifo", scheduler="fifo", searcher="tpe", confirm=0)


def run_where_lucky_seed_was_seen(design: Design, budget: float = 9.0, slots: int = 1):
    """A replay (over replay seeds) whose LUCKY trial drew its lucky seed 0."""
    for seed in range(60):
        run = replay(design, TABLE, SPACE, budget, seed, points=POINTS, slots=slots)
        lucky = [t for t in run.trials if t.key[0] == LUCKY]
        if lucky and lucky[0].seed == 0:
            return run
    pytest.fail("no replay seed drew LUCKY's lucky seed")


def test_true_quality_is_the_seed_mean_not_the_value_seen():
    run = run_where_lucky_seed_was_seen(FIFO)
    assert run.best == pytest.approx(0.20)  # what the search saw
    assert run.returned == (LUCKY, 4, 3)  # without a confirmation the lucky run wins
    s = summarize([run], TABLE, recipe=(STEADY, 4, 3))
    assert TABLE.true_mean((LUCKY, 4, 3)) == pytest.approx(0.10)
    assert s["true_quality"]["median"] == pytest.approx(0.10)
    assert s["true_quality"]["ratio_to_best"] == pytest.approx(0.10 / 0.12)
    assert s["true_quality"]["p_beats_recipe"] == 0.0  # the recipe is truly better


def test_the_confirmation_replays_on_unseen_seeds_and_returns_the_steady_config():
    design = Design.of("confirmed", scheduler="fifo", searcher="tpe", confirm=1, seeds=2)
    budget = 2 * 4.5 + 4 * 4.5  # two search trials, then the 4 confirmation runs (reserved)
    run = run_where_lucky_seed_was_seen(design, budget)
    assert run.confirmed and run.returned == (STEADY, 4, 3)  # 0.05, 0.05 vs 0.12, 0.12
    assert run.device == pytest.approx(len(run.trials) * 4.5 + 4 * 4.5)
    assert run.wall == pytest.approx(run.device)  # one slot


def test_a_confirmation_that_no_longer_fits_is_skipped_as_live():
    design = Design.of("confirmed", scheduler="fifo", searcher="tpe", confirm=1, seeds=2)
    # two slots, 4.5 of wall-clock: the first wave (both trials) starts before any length is
    # known; then the 4 confirmation runs (2 waves, 9.0) no longer fit, even with the slack of
    # one average trial (4.5 + 9.0 > 4.5 + 4.5)
    run = run_where_lucky_seed_was_seen(design, budget=9.0, slots=2)
    assert not run.confirmed and run.returned == (LUCKY, 4, 3)
    assert run.device == pytest.approx(9.0) and run.wall == pytest.approx(4.5)


def test_two_slots_suggest_while_a_trial_runs_and_interleave_results_by_time():
    table = CurveTable.of([Curve(LUCKY, 4, 3, (0.01, 0.02, 0.03, 0.2)), Curve(STEADY, 4, 3, (0.01, 0.02, 0.03, 0.12))],
                          start_cost=0.5, metric=METRIC)
    run = replay(FIFO, table, SPACE, budget=2 * 4.5, seed=0, points=POINTS, slots=2)
    calls = [(c, t) for _, c, t in run.events]
    first, second = run.trials[0], run.trials[1]
    assert calls[:2] == [("suggest", "replay_0_0000"), ("suggest", "replay_0_0001")]
    results = [(w, t) for w, c, t in run.events if c == "result"]
    assert [w for w, _ in results] == sorted(w for w, _ in results)  # by simulated time
    assert [t[-1] for _, t in results[:4]] == ["0", "1", "0", "1"]  # interleaved
    assert first.epochs_run == second.epochs_run == 4
    assert run.wall == pytest.approx(4.5) and run.device == pytest.approx(9.0)


def test_no_trial_starts_once_an_average_trial_no_longer_fits():
    # 4.5 per trial: at 13 slot-epochs two trials fit (9.0), a third would end at 13.5
    run = replay(FIFO, TABLE, SPACE, budget=13.0, seed=0, points=POINTS)
    assert len(run.trials) == 2 and run.stopped_because.startswith("time budget")
    run = replay(FIFO, TABLE, SPACE, budget=13.5, seed=0, points=POINTS)
    assert len(run.trials) == 3


def test_same_device_budget_with_more_slots_is_less_wall_clock():
    k1 = replay(FIFO, TABLE, SPACE, budget=18.0, seed=0, points=POINTS, slots=1)
    k2 = replay(FIFO, TABLE, SPACE, budget=18.0, seed=0, points=POINTS, slots=2)
    assert len(k1.trials) == len(k2.trials) == 4
    assert k2.wall == pytest.approx(k1.wall / 2)


def test_a_table_without_seeds_for_the_confirmation_is_named(tmp_path):
    one_seed = CurveTable.of([curve(STEADY, 0, 0.1), curve(LUCKY, 0, 0.2)], metric=METRIC,
                             source="bench/curves/one_seed.json")
    with pytest.raises(UserError, match=r"one_seed\.json has 1 seed.*--seeds"):
        replay(Design.of("d", scheduler="fifo", searcher="tpe", confirm=1, seeds=2), one_seed,
               SPACE, 20.0, seed=0, points=POINTS)


def test_the_table_reads_every_seed_and_drops_a_seed_still_being_measured(tmp_path):
    def run(final: float) -> dict:
        return {"started_at": 0.0, "wall_s": 1.0, "epochs": [
            {"epoch": e, METRIC: v, "reported_at": 10.0 + e, "train_started_at": 5.0}
            for e, v in enumerate((0.01, 0.02, 0.03, final), start=1)]}

    configs = {}
    for lr, finals in ((STEADY, (0.12, 0.11, 0.13)), (LUCKY, (0.2, 0.05, None))):
        config = {"lr": lr, "max_epochs": 4, "step": 3, **run(finals[0]), "seed_runs": {
            str(s): run(v) for s, v in enumerate(finals) if s and v is not None}}
        configs[f"lr{lr}"] = config
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"configs": configs}))
    table = CurveTable.from_json(path)
    assert table.seeds == [0, 1]  # seed 2 has not been measured for LUCKY yet
    assert table.true_mean((STEADY, 4, 3)) == pytest.approx(0.115)
    assert table.true_best() == (pytest.approx(0.125), (LUCKY, 4, 3))


def test_the_replay_bench_writes_its_json_and_plot_where_asked(tmp_path):
    """`bench/replay.py --json --seeds 2 --out DIR/x.json`, as the README runs it: stdout is
    the JSON alone, x.json (its missing folder created) holds the same keys, x.png is beside."""
    import subprocess
    import sys

    from helpers import REPO

    out = tmp_path / "new" / "x.json"
    proc = subprocess.run([sys.executable, "bench/replay.py", "--json", "--seeds", "2",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    written = json.loads(out.read_text())
    assert printed == written
    assert {"table_best", "designs", "concurrency", "replays", "recipe_true_mean",
            "best_true_mean"} <= set(written) and written["replays"] == 2
    assert "default" in written["designs"] and set(written["concurrency"]) == {"1", "4", "8"}
    assert "median" in written["designs"]["default"]["true_quality"]
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_design_is_the_search_options_plus_what_only_a_replay_varies():
    """Grace, start-up trials, the confirmation and its seeds come from SearchConfig under
    their flag names: the replayed default is what `python -m raytune_ft.search` runs, and a
    rule's own default grace (progress-asha's 0.34) needs no copy in bench/."""
    from raytune_ft import SearchConfig
    from raytune_ft.options import OLD_GRACE

    assert Design("default").options == SearchConfig()
    old = Design.of("old", scheduler="progress-asha", stock_optuna=True, startup_trials=10)
    assert old.options.resolved_grace == OLD_GRACE and old.stock_optuna
    assert old.options.startup_trials == 10 and old.sampler == "tpe"
    assert Design.of("gp", searcher="gp").sampler == "gp"  # a sampler the CLI does not offer
    quiet = Design.of("c", confirm=1, seeds=2).with_options(confirm=0)
    assert (quiet.confirm, quiet.seeds, quiet.confirm_runs) == (0, 2, 0)
    with pytest.raises(UserError, match="--grace"):
        Design.of("bad", grace=1.5)  # options are validated as the CLI validates them
