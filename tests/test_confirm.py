"""Confirmation over seeds: the statistics and the winner's choice on known values (no Ray),
and a real confirmation after a tiny search run from the command line: the recipe and the best
config re-run with fresh seeds, summary/results/best config follow the confirmed winner, bad
requests exit 2, and the console is short and holds raytune_ft's own lines only."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, write_tiny_config
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


def ray_default_auth_env() -> dict[str, str]:
    """This environment without RAY_AUTH_* (an in-process ray.init of another test sets
    RAY_AUTH_MODE): a local Ray then logs its token-authentication WARNING, as on a user's
    machine."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}


def console_bound(trials: int, epochs: int, runs: int, candidates: int, minutes: float) -> int:
    """README "Console": 15 + (epochs + 3) per trial and per confirmation run + 1 per
    confirmed config + 9 for the confirmation's block + a progress line per 5 minutes."""
    return 15 + (trials + runs) * (epochs + 3) + candidates + (9 if runs else 0) + int(minutes / 5)


def check_console(console: str, exp: Path, rows: list[dict], n_candidates: int) -> None:
    """A console a person reads: raytune_ft's own lines only, each trial's and run's start and
    end once and each epoch once, progress lines, at most the README's bound of lines."""
    for noise in NOISE:
        assert noise not in console, noise
    for row in rows:
        tid = row["trial_id"]
        assert console.count(f"[raytune_ft] trial {tid} started: ") == 1, tid
        assert console.count(f"[raytune_ft] trial {tid} ended: finished, best ") == 1, tid
        for epoch in (1, 2):
            assert console.count(f"[raytune_ft] trial_{tid}  epoch {epoch}/2") == 1, tid
    runs = 2 * n_candidates
    assert "[2/2 trials] best " in console and f"[{runs}/{runs} trials] best " in console
    lines = console.strip().splitlines()
    assert len(lines) <= console_bound(trials=2, epochs=2, runs=runs, candidates=n_candidates,
                                       minutes=15), console
    driver_log = (exp / "driver.log").read_text()
    assert "Token authentication" in driver_log  # Ray's record kept, off the console


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
    data = conf.to_json()
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


SPACE = """
params:
  lr:         {type: loguniform, low: 1.0e-3, high: 2.0e-2}
  max_epochs: {type: choice, values: [2]}
"""


@pytest.mark.slow
def test_search_then_confirmation_over_seeds(tmp_path, tiny_data, tiny_pretrained, no_shared_ray):
    """From the command line, as a user runs it (its console is checked too: a subprocess
    with its own local Ray prints what a person sees, workers included)."""
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))  # + a held-out "test" split
    shutil.copy(data / "annotations" / "val.json", data / "annotations" / "test.json")
    held_out = ("test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, "
                "metainfo=metainfo, ann_file='annotations/test.json'))\n"
                "test_evaluator = dict(ann_file=data_root + 'annotations/test.json')\n")
    cfg = write_tiny_config(tmp_path / "tiny.py", data, str(tiny_pretrained), max_epochs=2,
                            extra=held_out)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    proc = subprocess.run(
        [sys.executable, "-m", "raytune_ft.search", "--config", str(cfg), "--space", str(space),
         "--num-samples", "2", "--storage-path", str(tmp_path / "exp"), "--name", "c",
         "--scheduler", "fifo", "--points", json.dumps([{"lr": 0.02}]), "--confirm", "1",
         "--seeds", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=ray_default_auth_env())
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    exp = tmp_path / "exp" / "c"
    summary = json.loads((exp / "summary.json").read_text())
    conf = summary["confirmation"]
    assert conf["seeds"] == [1, 2]
    roles = {c["trial"]: c["role"] for c in conf["candidates"]}
    with open(exp / "results.csv") as f:
        rows = list(csv.DictReader(f))
    searched = [r for r in rows if r["phase"] == "search"]
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
    assert winner == conf["winner_trial"]
    best = max(conf["candidates"], key=lambda c: c["mean"])
    assert winner == best["trial"]
    assert "confirmed winner: trial " + winner in (exp / "best_config.py").read_text()
    assert (exp / "best_checkpoint.pth").stat().st_size > 0
    # picked on val, scored on test: here test holds the val images, so the winner's test score
    # is exactly the val score of the run whose checkpoint it is
    trials = json.loads((exp / "trials.json").read_text())
    winner_runs = [t for t in trials if t["phase"] == "confirm" and t["source_trial"] == winner]
    test = summary["test_score"]
    assert test["test_annotation"].endswith("annotations/test.json")
    assert test["winner"] == pytest.approx(max(t["best_metric"] for t in winner_runs), abs=1e-4)
    # the recipe's test score is the test value of its own best confirmation run (test = val)
    recipe_runs = [t for t in trials if t["phase"] == "confirm" and t["source_trial"] == recipe]
    assert test["recipe"] == pytest.approx(max(t["best_metric"] for t in recipe_runs), abs=1e-4)
    # TensorBoard HParams once per search trial, although results were rewritten after the
    # confirmation and the test score
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for r in searched:
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
    assert (exp / "report.html").stat().st_size > 1_000_000  # written at the end of the search
    check_console(console, exp, rows, n_candidates=len(conf["candidates"]))

    # later, from the command line: bad requests exit 2 naming what is wrong
    def confirm_cli(*args: str):
        return subprocess.run([sys.executable, "-m", "raytune_ft.confirm", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    too_many = confirm_cli(str(exp), "--confirm", "5")
    assert too_many.returncode == 2 and "--confirm 5" in too_many.stderr, too_many.stderr
    no_seeds = confirm_cli(str(exp), "--seeds", "0")
    assert no_seeds.returncode == 2 and "--seeds" in no_seeds.stderr, no_seeds.stderr
    not_exp = confirm_cli(str(tmp_path))
    assert not_exp.returncode == 2 and "is not a raytune_ft experiment" in not_exp.stderr
