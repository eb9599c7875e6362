"""The Python API and the command lines are one definition: the same defaults, the same checks
with the same words, a console script over all commands. No Ray needed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import raytune_ft
from helpers import REPO
from raytune_ft.cli.search import build_parser as search_parser
from raytune_ft.cli.train import build_parser as train_parser
from raytune_ft.errors import UserError
from raytune_ft.options import SearchConfig, TrainConfig, config_from_args


def test_public_api_is_exported():
    for name in raytune_ft.__all__:
        assert getattr(raytune_ft, name) is not None, name
    assert raytune_ft.SearchConfig is SearchConfig
    import inspect

    assert list(inspect.signature(raytune_ft.run_search).parameters) == ["config"]
    assert list(inspect.signature(raytune_ft.run_train).parameters) == ["config"]
    assert "Example" in raytune_ft.run_search.__doc__ and "Args" in raytune_ft.run_search.__doc__


@pytest.mark.parametrize("cls, parser", [(SearchConfig, search_parser),
                                         (TrainConfig, train_parser)])
def test_cli_defaults_are_the_api_defaults(cls, parser):
    from_cli = config_from_args(cls, parser().parse_args([]))
    assert from_cli == cls()
    flags = {a.dest for a in parser()._actions} - {"help"}
    assert flags == {f.name for f in dataclasses.fields(cls)}


def test_cli_values_reach_the_config():
    args = search_parser().parse_args([
        "--num-samples", "5", "--workers-per-trial", "2", "--grace", "0.5", "--points",
        '[{"lr": 0.01}]', "--cfg-options", "train_cfg.max_epochs=4", "--resume", "--name", "x",
        "--mlflow"])
    config = config_from_args(SearchConfig, args)
    assert (config.num_samples, config.workers_per_trial, config.grace) == (5, 2, 0.5)
    assert config.points == [{"lr": 0.01}] and config.cfg_options == {"train_cfg.max_epochs": 4}
    assert config.resume and config.mlflow == "auto"
    train = config_from_args(TrainConfig, train_parser().parse_args(
        ["--hparams", '{"lr": 0.02}', "--probe-epochs", "3,1"]))
    assert train.hparams == {"lr": 0.02} and train.probe_epochs == (1, 3)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SearchConfig().num_samples = 3  # type: ignore[misc]


@pytest.mark.parametrize("field, value, needle", [
    ("num_samples", 0, "--num-samples (num_samples) must be >= 1, got 0"),
    ("num_samples", -3, "--num-samples (num_samples) must be >= 1, got -3"),
    ("max_concurrent", 0, "--max-concurrent"),
    ("workers_per_trial", 0, "--workers-per-trial"),
    ("startup_trials", 0, "--startup-trials"),
    ("num_to_keep", 0, "--num-to-keep"),
    ("max_failures", -1, "--max-failures"),
    ("grid_points", 1, "--grid-points"),
    ("cpus_per_worker", 0.0, "--cpus-per-worker"),
    ("gpus_per_worker", -1.0, "--gpus-per-worker"),
    ("grace", 1.5, "--grace (grace) is the first rung"),
    ("reduction_factor", 1.0, "--reduction-factor"),
    ("probe_length", 0.0, "--probe-length"),
    ("scheduler", "hyperband", "--scheduler (scheduler) must be one of"),
    ("mode", "best", "--mode"),
    ("resume", True, "--name (name)"),
    ("seeds", 0, "--seeds (seeds) must be >= 1, got 0"),
    ("confirm", -1, "--confirm (confirm) must be >= 0"),
    ("points", "lr=0.1", "--points"),
])
def test_bad_field_raises_the_cli_message(field, value, needle, capsys):
    with pytest.raises(UserError) as err:
        SearchConfig(**{field: value})
    assert needle in str(err.value)
    flag = "--" + field.replace("_", "-")
    argv = [flag] if value is True else ([flag, str(value)] if field != "points" else
                                         [flag, '"lr=0.1"'])
    from raytune_ft.cli.search import main

    if field in ("scheduler", "mode"):  # argparse's choices refuse it first, also exit 2
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2 and flag in capsys.readouterr().err
        return
    assert main(argv) == 2
    printed = capsys.readouterr().err
    if field != "points":
        assert f"error: {err.value}" in printed  # word for word what the API raised
    else:
        assert "--points must be a JSON list" in printed


def test_confirm_cannot_exceed_the_trials():
    with pytest.raises(UserError, match="--confirm \\(confirm\\) 5 asks to confirm more"):
        SearchConfig(num_samples=4, confirm=5)


def test_grace_is_not_checked_without_a_scheduler():
    assert SearchConfig(scheduler="fifo", grace=5.0).scheduler == "fifo"


def test_train_config_checks():
    with pytest.raises(UserError, match="--workers \\(workers\\) must be >= 1"):
        TrainConfig(workers=0)
    with pytest.raises(UserError, match="--probe-epochs"):
        TrainConfig(probe_epochs=(0,))


def test_console_script_dispatches():
    exe = Path(sys.executable).parent / "raytune-ft"  # the console script of the running venv
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "raytune_ft.cli"]
    listing = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "search" in listing.stdout and "train" in listing.stdout
    bad = subprocess.run(cmd + ["serch"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown command 'serch'" in bad.stderr
    search = subprocess.run(cmd + ["search", "--num-samples", "0"], capture_output=True,
                            text=True, timeout=120)
    assert search.returncode == 2 and "--num-samples" in search.stderr
    assert "Traceback" not in search.stderr
    helped = subprocess.run(cmd + ["train", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "raytune-ft train" in helped.stdout


@pytest.mark.parametrize("module", ["raytune_ft.search", "raytune_ft.train", "raytune_ft.confirm",
                                    "raytune_ft.report"])
def test_every_command_prints_its_help(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
