"""Confirmation over seeds: the statistics and the winner's choice on known values (no Ray);
the session's tiny search run from the command line (its outputs without a confirmation, the
default: the test score, TensorBoard, report, a short console of raytune_ft's own lines); then
`python -m raytune_ft.confirm` on a copy of it: the recipe and the best config re-run with fresh
seeds, summary/results/best config/checkpoint follow the confirmed winner, a confirmation that
fails changes nothing, bad requests exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from helpers import (REPO, assert_checkpoint_is_from, ray_default_auth_env,
                     read_results)
from raytune_ft.experiment.confirmation import Confirmation, paired_interval, pick_candidates, score
from raytune_ft.errors import UserError
from raytune_ft.experiment.results import TrialRow


# Ray's and Optuna's lines that must stay off the console (their records are in the
# experiment's driver.log and Ray's session logs)
NOISE = ("core_worker.cc", "Failed to fetch metrics", "PlacementGroupCleaner", "Trial status:",
         "Configuration for experiment", "View detailed results", "Requesting resources",
         "Started training worker group", "Setting up process group", "max_concurrent_trials",
         "A new study created", "Token authentication", "(TrainController", "(RayTrainWorker",
         "Traceback", "WARNING", "UserWarning")


def console_bound(trials: int, epochs: int, runs: int, candidates: int, minutes: float) -> int:
    """README "Console": 15 + (epochs + 4) per trial + (epochs + 3) per confirmation run + 1
    per confirmed config + 9 for the confirmation's block + a progress line per 5 minutes."""
    return (15 + trials * (epochs + 4) + runs * (epochs + 3) + candidates + (9 if runs else 0)
            + int(minutes / 5))


def check_console(console: str, rows: list[dict], seconds: float, candidates: int = 0) -> None:
    """A console a person reads: raytune_ft's own lines only, each trial's (or confirmation
    run's) start and end once and each of its 2 epochs once, the progress line of all of them,
    at most the README's bound of lines for the minutes it ran."""
    for noise in NOISE:
        assert noise not in console, noise
    for row in rows:
        tid = row["trial_id"]
        assert console.count(f"[raytune_ft] trial {tid} started: ") == 1, tid
        assert console.count(f"[raytune_ft] trial {tid} ended: finished, best ") == 1, tid
        for epoch in (1, 2):
            assert console.count(f"[raytune_ft] trial_{tid}  epoch {epoch}/2") == 1, tid
    assert f"[{len(rows)}/{len(rows)} trials] best " in console, console
    runs = len(rows) if candidates else 0
    bound = console_bound(trials=len(rows) - runs, epochs=2, runs=runs, candidates=candidates,
                          minutes=seconds / 60)
    assert len(console.strip().splitlines()) <= bound, console


def row(trial_id: str, order: int, value: float | None, status: str = "finished",
        phase: str = "search", seed: int | None = None, source: str | None = None) -> TrialRow:
    return TrialRow(trial_id, order, {"lr": 0.01 * (order + 1)}, {"lr": 0.01 * (order + 1)},
                    status, "", 4, 4, value, 4, value, 10.0, 0.0, phase, seed, source)


SEARCH = [row("rec", 0, 0.070), row("lucky", 1, 0.120), row("solid", 2, 0.110),
          row("cut", 3, 0.130, status="stopped"), row("nan", 4, 0.2, status="diverged")]


def test_paired_interval_is_a_t_interval():
    d = paired_interval([0.02, 0.04])
    assert d["mean"] == pytest.approx(0.03) and d["n"] == 2
    half = 12.7062047 * 0.0141421356 / 2 ** 0.5  # t(0.975, 1 df) x sd / sqrt(n)
    assert d["ci95"] == pytest.approx([0.03 - half, 0.03 + half], rel=1e-6)
    assert paired_interval([0.05])["ci95"] is None  # one seed: no interval


def test_candidates_are_the_best_finished_trials_and_the_recipe():
    picked = pick_candidates(SEARCH, 2, "max")
    assert [(c.source_trial, c.role) for c in picked] == [
        ("lucky", "best #1"), ("solid", "best #2"), ("rec", "recipe")]  # stopped/diverged never
    with pytest.raises(UserError, match="--confirm 4 asks for more configs than the 3"):
        pick_candidates(SEARCH, 4, "max")
    recipe_best = [row("rec", 0, 0.2), row("b", 1, 0.1)]
    assert [c.role for c in pick_candidates(recipe_best, 1, "max")] == ["best #1 (recipe)"]


def test_a_lucky_single_run_loses_its_confirmation():
    conf = Confirmation([1, 2], pick_candidates(SEARCH, 2, "max"), "max")
    seeds = {"lucky": (0.080, 0.090), "solid": (0.100, 0.106), "rec": (0.070, 0.075)}
    for c in conf.candidates:
        c.rows = [row(f"{c.source_trial}{s}", 0, v, phase="confirm", seed=s,
                      source=c.source_trial) for s, v in zip((1, 2), seeds[c.source_trial])]
    score(conf)
    assert conf.winner.source_trial == "solid"  # not the search's best single run
    solid = conf.winner
    assert solid.mean == pytest.approx(0.103) and solid.values == {1: 0.100, 2: 0.106}
    assert solid.diff["mean"] == pytest.approx(0.0305)
    assert conf.beats_recipe(solid)  # +0.030 and +0.031: the interval excludes 0
    lucky = next(c for c in conf.candidates if c.source_trial == "lucky")
    assert not conf.beats_recipe(lucky)  # +0.010 and +0.015... with 2 seeds t(1) is wide
    data = conf.record().to_json()
    assert data["winner_trial"] == "solid" and data["winner_beats_recipe_beyond_noise"]
    assert data["candidates"][1]["values"] == {"1": 0.100, "2": 0.106}


def test_a_config_missing_a_seed_cannot_win():
    conf = Confirmation([1, 2], pick_candidates(SEARCH, 1, "max"), "max")
    lucky, recipe = conf.candidates
    lucky.rows = [row("l1", 0, 0.3, phase="confirm", seed=1, source="lucky"),
                  row("l2", 1, None, status="errored", phase="confirm", seed=2, source="lucky")]
    recipe.rows = [row(f"r{s}", 2, 0.07, phase="confirm", seed=s, source="rec") for s in (1, 2)]
    score(conf)
    assert conf.winner is recipe


def test_mode_min_ranks_picks_and_compares_the_other_way():
    """--mode min (a loss): the lowest values are the best candidates, the lowest confirmed
    mean wins, its lowest run is the one kept, and beating the recipe means below it."""
    search = [row("rec", 0, 0.50), row("low", 1, 0.20), row("mid", 2, 0.30), row("hi", 3, 0.90)]
    picked = pick_candidates(search, 2, "min")
    assert [(c.source_trial, c.role) for c in picked] == [
        ("low", "best #1"), ("mid", "best #2"), ("rec", "recipe")]
    conf = Confirmation([1, 2], picked, "min")
    seeds = {"low": (0.25, 0.27), "mid": (0.23, 0.22), "rec": (0.50, 0.52)}
    for c in conf.candidates:
        c.rows = [row(f"{c.source_trial}{s}", 0, v, phase="confirm", seed=s,
                      source=c.source_trial) for s, v in zip((1, 2), seeds[c.source_trial])]
    score(conf)
    assert conf.winner.source_trial == "mid"
    assert conf.best_run(conf.winner).trial_id == "mid2"  # 0.22, the lower of its two runs
    assert conf.beats_recipe(conf.winner)  # -0.27 and -0.30: the interval lies below 0
    assert not Confirmation(conf.seeds, conf.candidates, "max").beats_recipe(conf.winner)




@pytest.mark.slow
def test_a_search_from_the_command_line_writes_its_outputs_and_a_short_console(finished_search):
    """The session's search (2 trials, no confirmation: the default). The held-out test set is
    scored all the same: picked on val, scored on test - here test holds the val images, so
    each test score is exactly the val score of the checkpoint scored."""
    exp = finished_search.exp
    summary = json.loads((exp / "summary.json").read_text())
    rows = read_results(exp)
    assert [r["phase"] for r in rows] == ["search", "search"]
    assert all(r["status"] == "finished" and r["epochs_run"] == "2" for r in rows), rows
    assert "confirmation" not in summary and "winner_trial" not in summary
    assert not (exp / "confirm").exists()
    recipe = rows[0]
    assert float(recipe["lr"]) == pytest.approx(0.01) and float(rows[1]["lr"]) == 0.02
    best = max(rows, key=lambda r: float(r["best coco/bbox_mAP"]))
    assert summary["best_trial"] == best["trial_id"]
    test = summary["test_score"]
    assert test["test_annotation"].endswith("annotations/test.json")
    assert test["winner"] == pytest.approx(float(best["best coco/bbox_mAP"]), abs=1e-4)
    assert test["recipe"] == pytest.approx(float(recipe["best coco/bbox_mAP"]), abs=1e-4)
    # TensorBoard HParams once per trial, although results were rewritten after the test score
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for r in rows:
        tb = exp / "trials" / f"trial_{r['trial_id']}" / "tensorboard"
        with_hparams = 0
        for events in tb.glob("events.out.tfevents.*"):
            acc = EventAccumulator(str(events))
            acc.Reload()
            try:
                with_hparams += bool(acc.PluginTagToContent("hparams"))
            except KeyError:  # an event file without HParams (the curves)
                pass
        assert with_hparams == 1, (r["trial_id"], sorted(p.name for p in tb.iterdir()))
    page = (exp / "report.html").read_text()  # written at the end of the search
    assert f"Best single run: {summary['best_metric']:.4f} (trial {best['trial_id']}" in page
    assert (f"Picked on val, scored on test: winner {test['winner']:.4f}, recipe "
            f"{test['recipe']:.4f}.") in page
    assert "not confirmed" in page
    check_console(finished_search.console, rows, finished_search.seconds)
    assert f"picked on val, scored on test ({test['test_annotation']})" in finished_search.console
    driver_log = (exp / "driver.log").read_text()
    assert "Token authentication" in driver_log  # Ray's record kept, off the console


def confirm_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raytune_ft.confirm", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900,
                          env=ray_default_auth_env())


RESULT_FILES = ("results.csv", "trials.json", "summary.json", "best_config.py",
                "best_checkpoint.pth")


@pytest.mark.slow
def test_confirm_cli_reruns_the_winner_and_the_recipe_over_seeds(finished_search, tmp_path):
    """`python -m raytune_ft.confirm EXP --confirm 1 --seeds 2` on a copy of the finished
    search: a confirmation that fails first (its folder cannot be written) leaves every result
    file as it was; then the real one: 2 fresh seeds per config, summary/results/best config/
    checkpoint/report follow the confirmed winner."""
    exp = finished_search.copy(tmp_path)
    before = {name: (exp / name).read_bytes() for name in RESULT_FILES}
    (exp / "confirm").write_text("in the way")  # the confirmation's folder is a file
    failed = confirm_cli(str(exp), "--confirm", "1", "--seeds", "2")
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "the confirmation failed" in failed.stderr and "search's results are kept" in \
        failed.stderr, failed.stderr[-3000:]
    assert {name: (exp / name).read_bytes() for name in RESULT_FILES} == before
    assert "Confirmed over seeds" not in (exp / "report.html").read_text()  # redrawn as it was
    (exp / "confirm").unlink()

    started = time.time()
    proc = confirm_cli(str(exp), "--confirm", "1", "--seeds", "2")
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    conf = summary["confirmation"]
    assert conf["seeds"] == [1, 2]
    roles = {c["trial"]: c["role"] for c in conf["candidates"]}
    rows = read_results(exp)
    searched = [r for r in rows if r["phase"] == "search"]
    assert [r["trial_id"] for r in searched] == [r["trial_id"] for r in
                                                 read_results(finished_search.exp)]
    recipe = searched[0]["trial_id"]
    assert recipe in roles and "recipe" in roles[recipe]
    for cand in conf["candidates"]:
        assert set(cand["values"]) == {"1", "2"} and None not in cand["values"].values()
        assert cand["mean"] == pytest.approx(sum(cand["values"].values()) / 2)
    confirm = [r for r in rows if r["phase"] == "confirm"]
    assert len(confirm) == 2 * len(conf["candidates"])
    assert sorted({r["seed"] for r in confirm}) == ["1", "2"]
    assert all(r["status"] == "finished" and r["epochs_run"] == "2" for r in confirm)
    # each run used its seed: mmengine's dumped config of the run says so
    for r in confirm:
        dumped = list((exp / "confirm" / "trials" / f"trial_{r['trial_id']}" / "mmengine")
                      .glob("*/vis_data/config.py"))
        assert dumped and f"seed={r['seed']}" in dumped[0].read_text().replace(" ", "")
    winner = summary["winner_trial"]
    assert winner == conf["winner_trial"] == max(conf["candidates"],
                                                 key=lambda c: c["mean"])["trial"]
    # best_config.py holds the winner's schedule, best_checkpoint.pth is its best seed run's
    from mmengine.config import Config

    from raytune_ft.mmconfig.hparams import find_scheduler

    best_cfg = Config.fromfile(str(exp / "best_config.py"))
    hparams = summary["winner_hparams"]
    assert best_cfg.optim_wrapper.optimizer.lr == pytest.approx(hparams["lr"])
    assert find_scheduler(best_cfg, "MultiStepLR").milestones == hparams["milestones"]
    assert "confirmed winner: trial " + winner in (exp / "best_config.py").read_text()
    trials = json.loads((exp / "trials.json").read_text())
    winner_runs = [t for t in trials if t["phase"] == "confirm" and t["source_trial"] == winner]
    best_run = max(winner_runs, key=lambda t: t["best_metric"])
    assert_checkpoint_is_from(exp / "best_checkpoint.pth",
                              exp / "confirm" / "trials" / f"trial_{best_run['trial_id']}",
                              best_run["best_metric"])
    # picked on val, scored on test (test = val here): the winner's best seed run, and the
    # recipe's own best confirmation run
    test = summary["test_score"]
    assert test["winner"] == pytest.approx(best_run["best_metric"], abs=1e-4)
    recipe_runs = [t for t in trials if t["phase"] == "confirm" and t["source_trial"] == recipe]
    assert test["recipe"] == pytest.approx(max(t["best_metric"] for t in recipe_runs), abs=1e-4)
    page = (exp / "report.html").read_text()  # rewritten with the confirmation
    assert "<h2 id='confirmation'>" in page
    assert f"Confirmed over seeds [1, 2]: winner trial {winner} " in page
    assert f"Picked on val, scored on test: winner {test['winner']:.4f}" in page
    check_console(console, confirm, time.time() - started, candidates=len(conf["candidates"]))

    # bad requests exit 2 naming what is wrong
    too_many = confirm_cli(str(exp), "--confirm", "5")
    assert too_many.returncode == 2 and "--confirm 5" in too_many.stderr, too_many.stderr
    no_seeds = confirm_cli(str(exp), "--seeds", "0")
    assert no_seeds.returncode == 2 and "--seeds" in no_seeds.stderr, no_seeds.stderr
    not_exp = confirm_cli(str(tmp_path))
    assert not_exp.returncode == 2 and "is not a raytune_ft experiment" in not_exp.stderr
