"""Result collection and cluster fitting without Ray: a trial's status and cost come from its
committed records and Tune's status; a trial that cannot be placed is refused up front."""

from __future__ import annotations

import pytest

from raytune_ft.engine.capacity import ClusterCapacity, check_capacity
from raytune_ft.errors import UserError
from raytune_ft.experiment.results import best_row, trial_row
from raytune_ft.tuning.space import TrialShape, parse_space
from raytune_ft.storage import ExperimentStorage
from raytune_ft.tuning.trainable import SearchJob
from raytune_ft.engine.trial import TrialResources

METRIC = "coco/bbox_mAP"


def job(resources: TrialResources, tmp_path) -> SearchJob:
    space = parse_space({"params": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1},
                                    "max_epochs": {"type": "choice", "values": [4, 6]}}})
    return SearchJob(cfg={}, space=space, recipe={"lr": 0.02, "max_epochs": 6, "milestones": [4]},
                     shape=TrialShape(total_batch=2, iters_per_epoch=10), resources=resources,
                     experiment=ExperimentStorage.create(tmp_path, "e"), metric=METRIC,
                     mode="max", max_failures=0, num_to_keep=1)


def epochs(*values: float, diverged_at: int | None = None) -> list[dict]:
    return [{"epoch": i + 1, METRIC: v, "diverged": float(diverged_at == i + 1)}
            for i, v in enumerate(values)]


CPU = TrialResources(workers=2, cpus_per_worker=3)
GPU = TrialResources(workers=2, cpus_per_worker=6, gpus_per_worker=1)


@pytest.mark.parametrize("records, tune_status, error, status, reason", [
    (epochs(0.1, 0.2, 0.3, 0.4), "TERMINATED", None, "finished", ""),
    (epochs(0.1, 0.2), "TERMINATED", None, "stopped", "early-stopped by the scheduler after "
                                                       "epoch 2"),
    (epochs(0.1, 0.2), "PENDING", None, "unfinished",
     "interrupted after epoch 2; --resume continues"),
    (epochs(0.1, -1.0, diverged_at=2), "TERMINATED", None, "diverged",
     "train loss became NaN/inf"),
    (epochs(0.1), "ERROR", "ValueError: bad png", "errored", "ValueError: bad png"),
    ([], "TERMINATED", "RuntimeError: no GPU", "errored", "RuntimeError: no GPU"),
])
def test_status_comes_from_records_and_tune(tmp_path, records, tune_status, error, status,
                                            reason):
    row = trial_row(job(CPU, tmp_path), "t1", 0, {"lr": 0.01, "max_epochs": 4}, records,
                    seconds=100.0, error=error, tune_status=tune_status)
    assert (row.status, row.reason) == (status, reason)
    assert row.epochs_run == len(records) and row.max_epochs == 4
    if records and status != "diverged":
        assert row.best_metric == max(r[METRIC] for r in records)


def test_device_seconds_are_gpu_seconds_on_gpu_trials(tmp_path):
    cpu = trial_row(job(CPU, tmp_path), "c", 0, {"lr": 0.01, "max_epochs": 4},
                    epochs(0.1, 0.2, 0.3, 0.4), seconds=100.0)
    gpu = trial_row(job(GPU, tmp_path), "g", 0, {"lr": 0.01, "max_epochs": 4},
                    epochs(0.1, 0.2, 0.3, 0.4), seconds=100.0)
    assert cpu.device_seconds == 100.0 * 2 * 3  # 2 workers x 3 CPUs
    assert gpu.device_seconds == 100.0 * 2 * 1  # 2 workers x 1 GPU; their 6 CPUs not counted
    assert (CPU.device, GPU.device) == ("CPU", "GPU")


def test_early_stopping_savings_are_the_epochs_not_run(tmp_path):
    row = trial_row(job(GPU, tmp_path), "s", 0, {"lr": 0.01, "max_epochs": 6}, epochs(0.1, 0.2),
                    seconds=60.0)
    assert row.status == "stopped"
    assert row.saved_device_seconds == pytest.approx(120.0 / 2 * 4)  # 4 of 6 epochs not run


def test_best_row_ignores_diverged_trials(tmp_path):
    j = job(CPU, tmp_path)
    ok = trial_row(j, "a", 0, {"lr": 0.01, "max_epochs": 4}, epochs(0.1, 0.2, 0.3, 0.3), 1.0)
    bad = trial_row(j, "b", 1, {"lr": 0.09, "max_epochs": 4}, epochs(0.5, diverged_at=2) +
                    [{"epoch": 2, METRIC: -1.0, "diverged": 1.0}], 1.0)
    assert bad.status == "diverged" and best_row([ok, bad], "max") is ok


NODE = {"CPU": 8.0, "GPU": 2.0}


FIX = ("and no autoscaler to add more. Lower --workers-per-trial / --cpus-per-worker / "
       "--gpus-per-worker, or join a bigger cluster with --address.")


@pytest.mark.parametrize("nodes, workers, cpus, gpus, placement, message", [
    ([NODE], 1, 1, 4, "PACK", "a trial needs 1 worker(s) x (1 CPU, 4 GPU) = 1.01 CPU and 4 GPU "
     "(PACK), but the Ray cluster has 1 node(s) up with 8 CPU and 2 GPU in total (largest "
     "node: 8 CPU, 2 GPU) "),
    ([NODE, NODE], 3, 4, 1, "STRICT_PACK", "a trial needs 3 worker(s) x (4 CPU, 1 GPU) = 12.01 "
     "CPU and 3 GPU (STRICT_PACK), but the Ray cluster has 2 node(s) up with 16 CPU and 4 GPU "
     "in total (largest node: 8 CPU, 2 GPU) "),
    ([NODE, NODE], 3, 1, 1, "STRICT_SPREAD", "a trial needs 3 worker(s) x (1 CPU, 1 GPU) = 3.01 "
     "CPU and 3 GPU (STRICT_SPREAD), but the Ray cluster has 2 node(s) up with 16 CPU and 4 GPU "
     "in total (largest node: 8 CPU, 2 GPU) "),
    # the trial's driver CPU (0.01) on top of the worker's 8 does not fit an 8-CPU node
    ([NODE], 1, 8, 0, "PACK", "a trial needs 1 worker(s) x (8 CPU, 0 GPU) = 8.01 CPU and 0 GPU "
     "(PACK), but the Ray cluster has 1 node(s) up with 8 CPU and 2 GPU in total (largest "
     "node: 8 CPU, 2 GPU) "),
])
def test_cluster_that_cannot_place_a_trial_is_refused(nodes, workers, cpus, gpus, placement,
                                                      message):
    with pytest.raises(UserError) as err:
        check_capacity(ClusterCapacity(nodes), TrialResources(workers, cpus, gpus, placement),
                       trial_cpus=0.01)
    assert str(err.value) == message + FIX


@pytest.mark.parametrize("nodes, workers, cpus, gpus, placement", [
    ([NODE, NODE], 4, 2, 1, "PACK"),
    ([NODE, NODE], 2, 4, 1, "STRICT_SPREAD"),
    ([NODE], 2, 4, 1, "STRICT_PACK"),
])
def test_cluster_that_can_place_a_trial_passes(nodes, workers, cpus, gpus, placement):
    assert check_capacity(ClusterCapacity(nodes),
                          TrialResources(workers, cpus, gpus, placement)) is None
