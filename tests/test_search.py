"""End-to-end searches on the tiny config: outputs agree, ASHA stops a bad trial, divergence is
recorded with a finite value, TensorBoard files hold per-epoch curves and HParams."""

from __future__ import annotations

import csv
import json

import optuna
from optuna.trial import TrialState
import pytest
from mmengine.config import Config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from helpers import assert_checkpoint_is_from, read_results, write_tiny_config
from raytune_ft import SearchConfig, run_search
from raytune_ft.mmconfig.hparams import find_scheduler
from raytune_ft.cli.search import main as search_main

pytestmark = pytest.mark.slow  # Ray searches / training runs (make test-fast skips)

SPACE = """
params:
  lr:         {type: loguniform, low: 1.0e-7, high: 20.0}
  max_epochs: {type: choice, values: [2, 3]}
  step_frac:  {type: uniform, low: 0.5, high: 0.9}
"""


@pytest.fixture()
def tiny_search(tmp_path, tiny_data, tiny_pretrained):
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=3)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return cfg, space, tmp_path / "exp"


def test_search_outputs_agree_and_best_config_retrains(ray_session, tiny_search, monkeypatch):
    """Through the Python API, with both experiment trackers on (W&B offline)."""
    cfg, space, storage = tiny_search
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = run_search(SearchConfig(
        config=str(cfg), space=str(space), num_samples=2, storage_path=str(storage),
        name="s3", scheduler="fifo", seed=1, confirm=0, mlflow="auto", wandb="raytune-ft-test"))
    assert result.status == "finished" and result.experiment == str(storage / "s3")
    assert result.best_config == str(storage / "s3" / "best_config.py")
    assert len(result.rows) == 2 and result.config.num_samples == 2
    exp = storage / "s3"
    rows = read_results(exp)
    with open(exp / "results.csv") as f:
        header = next(csv.reader(f))
    assert len(header) == len(set(header)), header  # every column name once
    summary = json.loads((exp / "summary.json").read_text())
    assert len(rows) == 2 and summary["trials"] == 2
    assert summary["by_status"] == {"finished": 2} == {"finished": len(result.rows)}
    assert summary["best_hparams"] == result.best_hparams
    # trial 0 is the config's own recipe: lr 0.01, 3 epochs, step at epoch 2
    trial0 = rows[0]
    assert trial0["trial"] == "0" and trial0["trial_id"] == summary["trial0_trial"]
    assert float(trial0["lr"]) == pytest.approx(0.01)
    assert trial0["max_epochs"] == "3" and json.loads(trial0["milestones"]) == [2]
    # summary's best is the best row of results.csv
    best = max(rows, key=lambda r: float(r["best coco/bbox_mAP"]))
    assert float(best["best coco/bbox_mAP"]) == pytest.approx(summary["best_metric"], abs=1e-4)
    assert summary["gain_over_trial0"] == pytest.approx(
        summary["best_metric"] - summary["trial0_metric"])
    for r in rows:
        assert int(r["epochs_run"]) == int(r["epochs_planned"]) and float(r["cpu_seconds"]) > 0
    # best_config.py is standalone and holds the best values
    best_cfg = Config.fromfile(str(exp / "best_config.py"))
    hp = summary["best_hparams"]
    assert best_cfg.optim_wrapper.optimizer.lr == pytest.approx(hp["lr"])
    assert best_cfg.train_cfg.max_epochs == hp["max_epochs"]
    assert find_scheduler(best_cfg, "MultiStepLR").milestones == hp["milestones"]
    assert "_base_" not in (exp / "best_config.py").read_text()
    # best_checkpoint.pth is, tensor for tensor, a kept checkpoint of the best trial from an
    # epoch that scored its best value
    assert_checkpoint_is_from(exp / "best_checkpoint.pth",
                              exp / "trials" / f"trial_{summary['best_trial']}",
                              summary["best_metric"])
    # and best_config.py retrains as it is: its own schedule, lr and classes
    from raytune_ft import TrainConfig, run_train

    retrained = run_train(TrainConfig(config=str(exp / "best_config.py"),
                                      work_dir=str(storage / "retrain"), name="again"))
    assert [r["epoch"] for r in retrained.records] == list(range(1, hp["max_epochs"] + 1))
    assert all("coco/bbox_mAP" in r for r in retrained.records)
    assert retrained.checkpoint is not None
    # the Optuna study is persisted and readable with Optuna's own tools
    study = optuna.load_study(study_name="s3", storage=f"sqlite:///{exp}/optuna.db")
    assert len(study.trials) == 2
    # TensorBoard: per-trial curves keyed by epoch, and the HParams summary
    tb_dir = exp / "trials" / f"trial_{trial0['trial_id']}" / "tensorboard"
    acc = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("coco/bbox_mAP")] == [1, 2, 3]
    assert [e.step for e in acc.Scalars("train/train_loss")] == [1, 2, 3]
    assert [e.step for e in acc.Scalars("train/lr")] == [1, 2, 3]
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.01)
    assert start.hparams["milestones"].string_value == "[2]"
    assert [e.step for e in acc.Scalars("hparams/best_coco/bbox_mAP")]
    # MLflow (its SQLite store in the experiment): a run per trial, params and epoch curves
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{exp}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("s3").experiment_id])
    assert len(runs) == 2
    assert sorted(float(r.data.params["lr"]) for r in runs) == \
        pytest.approx(sorted(float(r["lr"]) for r in rows))
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "coco/bbox_mAP")
        epochs = int(run.data.params["max_epochs"])
        assert [m.step for m in history] == list(range(1, epochs + 1))
    # Weights & Biases, offline: a run per trial, ready for `wandb sync`
    assert len(list((exp / "wandb").glob("wandb/offline-run-*/*.wandb"))) == 2


def test_asha_stops_a_bad_trial_and_divergence_gets_a_finite_value(ray_session, tiny_search):
    cfg, space, storage = tiny_search
    points = json.dumps([{"lr": 1e-7}, {"lr": 20.0}])
    rc = search_main(["--config", str(cfg), "--space", str(space), "--num-samples", "3",
                      "--storage-path", str(storage), "--name", "asha", "--points", points, "--confirm", "0",
                      "--metric", "train_loss", "--mode", "min", "--grace", "0.3",
                      "--reduction-factor", "2", "--max-failures", "0",
                      "--scheduler", "progress-asha"])
    assert rc == 0
    exp = storage / "asha"
    rows = read_results(exp)
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01, 1e-7, 20.0])
    good, slow, diverged = rows
    assert good["status"] == "finished"
    assert slow["status"] == "stopped" and int(slow["epochs_run"]) < int(slow["epochs_planned"])
    assert diverged["status"] == "diverged" and int(diverged["epochs_run"]) < 3
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["best_trial"] == good["trial_id"]
    assert summary["device_seconds_saved_by_early_stopping"] > 0
    # Optuna: the finished trial COMPLETE with its value, the diverged one COMPLETE with the
    # finite worst value, the early-stopped one PRUNED (its truncated value is never a result)
    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{exp}/optuna.db")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE], states
    assert study.trials[0].value == pytest.approx(float(good["last train_loss"]), abs=1e-3)
    assert study.trials[1].value is None
    assert study.trials[2].value == pytest.approx(1.0e9)


def test_step_probe_scores_trials_before_their_step_and_optuna_learns_probe_values(
        ray_session, tiny_search):
    cfg, space, storage = tiny_search
    rc = search_main(["--config", str(cfg), "--space", str(space), "--num-samples", "2",
                      "--storage-path", str(storage), "--name", "probe", "--seed", "3",
                      "--confirm", "0", "--scheduler", "step-probe"])
    assert rc == 0
    exp = storage / "probe"
    rows = read_results(exp)
    trial0 = rows[0]  # the recipe: 3 epochs, LR step after epoch 2; rungs at 1/3, 2/3
    epochs = [json.loads(line) for line in
              (exp / "trials" / f"trial_{trial0['trial_id']}" / "metrics.jsonl").open()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and trial0["status"] == "finished"
    assert ["probe/coco/bbox_mAP" in e for e in epochs] == [True, True, False]
    assert all(e["lr_step_epoch"] == 2 for e in epochs)
    # what Optuna learned of trial 0: probe values at the pre-step rungs, never the raw pre-step
    # metric, and the final (post-step) metric as its result
    study = optuna.load_study(study_name="probe", storage=f"sqlite:///{exp}/optuna.db")
    first = study.trials[0]
    assert first.intermediate_values == pytest.approx(
        {1: epochs[0]["probe/coco/bbox_mAP"], 2: epochs[1]["probe/coco/bbox_mAP"]})
    assert first.state == TrialState.COMPLETE
    assert first.value == pytest.approx(epochs[2]["coco/bbox_mAP"])
    for row, trial in zip(rows, study.trials):
        assert (trial.state == TrialState.PRUNED) == (row["status"] == "stopped"), (row, trial)


def test_a_time_budget_stops_starting_trials_and_says_why(ray_session, tiny_search, capsys):
    """--time-budget 2s: the first trial starts (nothing is known yet) and finishes; it takes
    longer than what is left, so no second trial starts although --num-samples asks for 3;
    the confirmation no longer fits and is skipped; the search is finished, not interrupted."""
    cfg, space, storage = tiny_search
    result = run_search(SearchConfig(
        config=str(cfg), space=str(space), num_samples=3, storage_path=str(storage),
        name="budget", scheduler="fifo", time_budget="2s", confirm=1, seeds=1))
    out = capsys.readouterr().out
    assert result.status == "finished" and len(result.rows) == 1
    assert result.rows[0].status == "finished"  # the running trial was not cut
    budget = json.loads((storage / "budget" / "summary.json").read_text())["time_budget"]
    assert budget["time_budget"] == "2s" and budget["trials_run"] == 1
    assert budget["stopped_because"].startswith("time budget: ")
    assert budget["used_s"] > budget["time_budget_s"]  # ended one trial after the budget
    assert len(budget["trial_lengths_s"]) == 1 and budget["trial_lengths_s"][0] > 2
    assert "search stopped after 1 trial(s): time budget" in out
    assert "the confirmation (about" in out and "skipped" in out
    assert "confirmation" not in json.loads((storage / "budget" / "summary.json").read_text())
