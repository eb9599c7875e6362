"""Ray Tune callbacks of a search: Tune's own result files, publishing to remote storage, and
the experiment trackers (MLflow, Weights & Biases) through Ray's own logger callbacks.

Ray's automatic loggers are off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS): its TensorBoard logger
keys curves by training_iteration, while raytune_ft writes TensorBoard per epoch itself.
The trackers log from the driver: one run per trial, its sampled hyper-parameters as params
and every reported epoch as metrics (step = the trial's report number = its epoch).
"""

from __future__ import annotations

import os
from typing import Any

from ray.tune import Callback

from raytune_ft.errors import UserError
from raytune_ft.storage import ExperimentStorage

MLFLOW_DB = "mlflow.db"  # --mlflow auto: MLflow's SQLite store in the experiment


class PublishFiles(Callback):
    """Upload driver-side experiment files (optuna.db, mlflow.db) to remote storage whenever a
    trial starts or ends and at the end: a search resumed on another machine (the head node
    was lost) gets the study as of its last trial event."""

    def __init__(self, experiment: ExperimentStorage, names: list[str]) -> None:
        self.experiment, self.names = experiment, list(names)

    def _publish(self) -> None:
        for name in self.names:
            self.experiment.publish(name)

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._publish()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._publish()

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._publish()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._publish()


def mlflow_uri(value: str, experiment: ExperimentStorage) -> str:
    """`auto` -> MLflow's SQLite store in the experiment (staged locally for remote storage;
    MLflow 3 refuses its old ./mlruns file store by default)."""
    if value != "auto":
        return value
    return f"sqlite:///{experiment.local_path(MLFLOW_DB)}"


def check_trackers(config) -> None:
    """The requested trackers can log: their packages import, W&B has a key or runs offline."""
    import importlib.util

    if config.mlflow and importlib.util.find_spec("mlflow") is None:
        raise UserError("--mlflow needs the mlflow package: pip install mlflow-skinny "
                        "(or mlflow), or drop --mlflow.")
    if config.wandb:
        if importlib.util.find_spec("wandb") is None:
            raise UserError("--wandb needs the wandb package: pip install wandb, or drop "
                            "--wandb.")
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled")
        netrc = os.path.expanduser("~/.netrc")
        logged_in = os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()
        if not (offline or os.environ.get("WANDB_API_KEY") or logged_in):
            raise UserError("--wandb: no W&B credentials. Run `wandb login`, set WANDB_API_KEY, "
                            "or set WANDB_MODE=offline to log locally (then `wandb sync`).")


def result_loggers() -> list:
    """Tune's result.json/progress.csv per trial: what `Tuner.restore` and ExperimentAnalysis
    read back (without them they warn "Failed to fetch metrics")."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [JsonLoggerCallback(), CSVLoggerCallback()]


def tune_callbacks(config, experiment: ExperimentStorage, publish: list[str]) -> list:
    """The callbacks of a search's `RunConfig`."""
    callbacks: list = result_loggers()
    publish = list(publish)
    if config.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(
            tracking_uri=mlflow_uri(config.mlflow, experiment), experiment_name=config.name,
            tags={"raytune_ft.experiment": experiment.path}))
        if config.mlflow == "auto":
            publish.append(MLFLOW_DB)
    if config.wandb:
        from ray.air.integrations.wandb import WandbLoggerCallback

        extra = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
        callbacks.append(WandbLoggerCallback(  # Ray passes only WANDB_API_KEY to its actor
            project=config.wandb, group=config.name,
            dir=str(experiment.local_path("wandb", ".keep").parent), **extra))
        publish.append("wandb")
    if experiment.is_remote:
        callbacks.append(PublishFiles(experiment, publish))
    return callbacks
