"""The console of a search a person reads: raytune_ft's own lines, a bounded number of them,
and nothing that looks like a failure when nothing failed (Ray's and Optuna's records are in
the experiment's driver.log and Ray's session logs)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from helpers import REPO, write_tiny_config

# a Ray search in a subprocess (make test-fast skips); the shared in-process Ray is shut down first
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_shared_ray")]

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


def test_a_search_and_its_confirmation_print_a_short_console(tmp_path, tiny_data,
                                                              tiny_pretrained):
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=2)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "raytune_ft.search", "--config", str(cfg), "--space", str(space),
         "--num-samples", "2", "--storage-path", str(tmp_path / "exp"), "--name", "c",
         "--scheduler", "fifo", "--confirm", "1", "--seeds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=ray_default_auth_env())
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    for noise in NOISE:
        assert noise not in console, noise
    exp = tmp_path / "exp" / "c"
    rows = list(csv.DictReader(open(exp / "results.csv")))
    assert len(rows) == 3  # 2 search trials, 1 confirmation run
    for row in rows:  # every trial and run has its start and end line, and each epoch once
        tid = row["trial_id"]
        assert console.count(f"[raytune_ft] trial {tid} started: ") == 1, tid
        assert console.count(f"[raytune_ft] trial {tid} ended: finished, best ") == 1, tid
        for epoch in (1, 2):
            assert console.count(f"[raytune_ft] trial_{tid}  epoch {epoch}/2") == 1, tid
    assert "[2/2 trials] best " in console and "[1/1 trials] best " in console
    lines = console.strip().splitlines()
    assert len(lines) <= console_bound(trials=2, epochs=2, runs=1, candidates=1, minutes=15)
    driver_log = (exp / "driver.log").read_text()
    assert "Token authentication" in driver_log  # Ray's record kept, off the console
