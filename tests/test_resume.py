"""Resuming and extending searches from the command line. A search stopped with Ctrl-C mid-run
is finished by `--resume`: every trial once, finished trials not re-run, the interrupted one
continued from its checkpoint, the time budget's first deadline kept. A finished search whose
tuner.pkl holds the flat package's class paths is extended and re-confirmed."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from helpers import REPO, read_metrics, run_search_cli, write_tiny_config

# Ray searches in subprocesses (make test-fast skips them); the shared in-process Ray is shut
# down first
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_shared_ray")]

SPACE = """
params:
  lr:         {type: loguniform, low: 1.0e-3, high: 2.0e-2}
  max_epochs: {type: choice, values: [3]}
"""


def search_cmd(cfg: Path, space: Path, storage: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "raytune_ft.search", "--config", str(cfg), "--space",
            str(space), "--num-samples", "2", "--storage-path", str(storage), "--name", "r",
            "--scheduler", "fifo", "--confirm", "0", "--time-budget", "2h", *extra]


def finished_trials(trials_dir: Path) -> list[Path]:
    return [d for d in trials_dir.glob("trial_*")
            if any(m["epoch"] == 3 for m in read_metrics(str(d)))]


def test_ctrl_c_stops_cleanly_and_resume_finishes_every_trial_once(tmp_path, tiny_data,
                                                                    tiny_pretrained):
    """A 2-trial search, Ctrl-C once the first trial has finished and the second has committed an epoch: exit
    130 with the --resume line, partial results (summary.json, results.csv with the unfinished
    trial), Tune's state. Then --resume: the finished trial is not re-run, the interrupted one
    continues after its last committed epoch, the study is continued, the
    time budget still counts from the first start, and the confirmation that fits it runs."""
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=3)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    storage = tmp_path / "exp"
    exp = storage / "r"
    trials_dir = exp / "trials"
    first_start = time.time()
    proc = subprocess.Popen(search_cmd(cfg, space, storage), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 400
    running: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        done = finished_trials(trials_dir)
        running = [d for d in trials_dir.glob("trial_*") if d not in done and read_metrics(str(d))]
        if done and running:
            break
        time.sleep(0.5)
    assert proc.poll() is None and running, "the search ended before the window"
    done_before = {d.name: read_metrics(str(d)) for d in finished_trials(trials_dir)}
    interrupted = running[0].name
    committed = read_metrics(str(running[0]))
    assert committed and committed[-1]["epoch"] < 3  # an epoch committed before the signal
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "--resume --name r" in err
    assert (exp / "tuner.pkl").exists()
    with open(exp / "results.csv") as f:
        statuses = {r["trial_id"]: r["status"] for r in csv.DictReader(f)}
    assert statuses[interrupted.removeprefix("trial_")] == "unfinished", statuses
    partial = json.loads((exp / "summary.json").read_text())
    first_deadline_from = partial["time_budget"]["started_at"]
    assert first_start <= first_deadline_from <= first_start + 120

    records_before = read_metrics(str(running[0]))  # as the stopped run left them
    resume_start = time.time()
    # resumed with a confirmation (1 seed), which fits the 2h budget and so runs
    resumed = subprocess.run(search_cmd(cfg, space, storage, "--resume", "--confirm", "1",
                                        "--seeds", "1"), cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    with open(exp / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["phase"] == "search"]
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert all(r["status"] == "finished" for r in rows), rows
    for name, metrics in done_before.items():  # finished trials were not re-run
        assert read_metrics(str(trials_dir / name)) == metrics
    after = read_metrics(str(trials_dir / interrupted))
    assert [m["epoch"] for m in after] == [1, 2, 3]  # no epoch lost or repeated
    # the stopped run's epochs are kept as they were; the resumed attempt starts right after
    stopped_run = [m for m in after if m["resumed"] == 0]
    continued = after[len(stopped_run):]
    assert after[:len(records_before)] == records_before, after
    assert continued and all(m["resumed"] == 1 and m["start_epoch"] == len(stopped_run) + 1
                             for m in continued), after
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials"] == 2
    assert "no longer fits" not in resumed.stdout
    confirmed = summary["confirmation"]["candidates"]
    assert confirmed and all(c["values"]["1"] is not None for c in confirmed)
    # --time-budget counts from the search's first start, not from the resume
    assert summary["time_budget"]["started_at"] == pytest.approx(first_deadline_from)
    assert summary["time_budget"]["started_at"] < resume_start
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{exp}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2  # the study was continued


def test_a_finished_search_made_with_the_old_module_paths_is_extended_and_reconfirmed(
        finished_search, tmp_path):
    """A copy of the session's finished search (its tuner.pkl holds the flat package's class
    paths, as every experiment before 2026-12), `--resume --num-samples 3 --confirm 1 --seeds 1`
    in a fresh process: the old run is restored (its pickles unpickle through
    raytune_ft._moved), 1 more trial is told to the same Optuna study (the recipe is not run
    again), the enlarged pool is confirmed in confirm_1/, results and report cover all 3."""
    exp = finished_search.copy(tmp_path)
    flags = finished_search.flags(tmp_path)
    at = flags.index("--num-samples")  # each resume below says its own count, or none
    flags = flags[:at] + flags[at + 2:]

    def search(*extra: str) -> subprocess.CompletedProcess:
        return run_search_cli([*flags, *extra])

    pickled = (exp / "tuner.pkl").read_bytes()
    assert b"raytune_ft.scheduler" in pickled and b"raytune_ft.searcher" in pickled
    assert b"raytune_ft.tuning.scheduler" not in pickled
    assert b"raytune_ft.tuning.searcher" not in pickled
    before = {r["trial_id"]: r for r in csv.DictReader(open(exp / "results.csv"))}
    shrink = search("--resume", "--num-samples", "1")
    assert shrink.returncode == 2 and "--num-samples 1" in shrink.stderr, shrink.stderr

    extended = search("--resume", "--num-samples", "3", "--confirm", "1", "--seeds", "1")
    assert extended.returncode == 0, extended.stdout[-3000:] + extended.stderr[-3000:]
    assert "extending the search: 1 more trial(s) to 3" in extended.stdout
    rows = list(csv.DictReader(open(exp / "results.csv")))
    searched = [r for r in rows if r["phase"] == "search"]
    assert [int(r["trial"]) for r in searched] == [0, 1, 2]
    assert len({r["trial_id"] for r in searched}) == 3
    assert all(r["status"] == "finished" for r in searched), searched
    for r in searched[:2]:  # the first two are the same trials, not re-run
        assert before[r["trial_id"]]["best coco/bbox_mAP"] == r["best coco/bbox_mAP"]
    recipe_lr = searched[0]["space.lr"]
    assert [r["space.lr"] for r in searched].count(recipe_lr) == 1, "the recipe ran once"
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # the enlarged pool is confirmed in its own folder (one seed each: best and recipe)
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials"] == 3 and summary["confirmation"]["seeds"] == [1]
    confirmed = [r for r in rows if r["phase"] == "confirm"]
    assert confirmed and len(confirmed) == len(summary["confirmation"]["candidates"])
    assert {p.name for p in (exp / "confirm_1" / "trials").glob("trial_*")} == {
        f"trial_{r['trial_id']}" for r in confirmed}
    assert not (exp / "confirm").exists()
    page = (exp / "report.html").read_text()
    assert all(r["trial_id"] in page for r in searched)
    saved = json.loads((exp / "search_config.json").read_text())
    assert saved["num_samples"] == 3  # a later --resume restores all 3
    again = search("--resume")
    assert again.returncode == 0 and "extending" not in again.stdout, again.stderr[-3000:]
    assert len([r for r in csv.DictReader(open(exp / "results.csv"))
                if r["phase"] == "search"]) == 3
