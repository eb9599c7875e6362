"""Command lines: `doctor` passes on the installed stack; bad input exits 2 with a named cause."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from helpers import REPO


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python -m ARGS` as a user runs it: without the RAY_AUTH_* an in-process ray.init of
    another test may have set in this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_doctor_passes_on_the_installed_stack():
    proc = run("raytune_ft.doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mmcv compiled ops load" in proc.stdout and "stack OK" in proc.stdout
    for name in ("torch", "mmcv", "mmengine", "mmdet", "ray", "optuna"):
        assert name in proc.stdout


def test_mmdets_onedl_import_lines_are_held_back():
    """onedl-mmdetection prints "Could not import OneDL ..." twice when mmdet.datasets is
    imported (mmengine's print_log prints whatever the level): a user's console never shows it,
    and what else a module prints at import still comes through."""
    code = ("from raytune_ft.console import silence_known_noise\n"
            "silence_known_noise()\n"
            "import mmdet.datasets\n"
            "print('after import')\n")
    plain = subprocess.run([sys.executable, "-c", "import mmdet.datasets"], capture_output=True,
                           text=True, timeout=120)
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "Could not import OneDL" in plain.stdout  # the line exists without the filter
    assert quiet.stdout == "after import\n"
    # only the listed lines are held back: with none listed, the module's prints come through
    unlisted = subprocess.run([sys.executable, "-c", "import raytune_ft.console as c\n"
                               "c.KNOWN_IMPORT_PRINTS['mmdet.datasets'] = ()\n" + code],
                              capture_output=True, text=True, timeout=120)
    assert unlisted.returncode == 0, unlisted.stderr
    assert unlisted.stdout == plain.stdout + "after import\n"


@pytest.mark.parametrize("args, needle", [
    (["--config", "configs/nope.py"], "configs/nope.py"),
    (["--hparams", "{lr: 1}"], "--hparams is not valid JSON"),
    (["--hparams", '{"milestones": [40]}'], "milestone(s) [40]"),
    (["--hparams", '{"learnrate": 0.1}'], "learnrate"),
    (["--workers", "0"], "--workers"),
    (["--probe-epochs", "two"], "--probe-epochs must be comma-separated"),
    (["--probe-epochs", "5"], "--probe-epochs [5] are not before this run's LR step"),
    (["--probe-epochs", "1", "--probe-length", "3"], "--probe-length"),
])
def test_train_bad_input_exits_2_naming_it(args, needle):
    proc = run("raytune_ft.train", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_impossible_resources_exit_2_before_training(tmp_path):
    """More GPUs than any machine has: refused before training, naming the totals (0 GPU here,
    however many on a GPU machine); more than one GPU per worker is refused with the fix."""
    proc = run("raytune_ft.train", "--workers", "1000", "--gpus-per-worker", "1",
               "--work-dir", str(tmp_path), timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(r"a trial needs 1000 worker\(s\) x \([\d.]+ CPU, 1 GPU\).* \d+ GPU in "
                     r"total", proc.stderr), proc.stderr
    proc = run("raytune_ft.train", "--gpus-per-worker", "1000", "--work-dir", str(tmp_path),
               timeout=300)
    assert proc.returncode == 2 and "--workers 1000 --gpus-per-worker 1" in proc.stderr, \
        proc.stderr


@pytest.mark.slow
def test_train_console_is_short_and_the_full_logs_are_in_files(tmp_path, tiny_data,
                                                              tiny_pretrained, no_shared_ray):
    from helpers import write_tiny_config

    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=2)
    proc = run("raytune_ft.train", "--config", str(cfg), "--work-dir", str(tmp_path / "runs"),
               "--name", "quiet", "--cpus-per-worker", "1", timeout=400)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    for noise in ("pkg_resources is deprecated", "Average Precision", "Reporting training result",
                  "Epoch(train)", "Config:", "core_worker.cc", "PlacementGroupCleaner",
                  "Requesting resources", "Started training worker group",
                  "Setting up process group", "Token authentication", "(TrainController"):
        assert noise not in console, noise
    assert console.count("[raytune_ft] quiet  epoch 1/2") == 1
    assert console.count("[raytune_ft] quiet  epoch 2/2") == 1
    assert "[raytune_ft] quiet: fresh start from load_from=" in console
    assert "full logs: its mmengine/ folder" in console
    assert len(console.strip().splitlines()) <= 12  # the train lines of README "Console"
    assert "Token authentication" in (tmp_path / "runs" / "quiet" / "driver.log").read_text()
    mmengine = tmp_path / "runs" / "quiet" / "mmengine"
    assert "Average Precision" in (mmengine / "stdout.log").read_text()
    logs = list(mmengine.glob("*/*.log"))
    assert logs and "Epoch(train)" in logs[0].read_text()
