"""The GPU-cluster rules that need no cluster: what an autoscaler's node types can hold, which
GPU shapes a rank can use, how long a trial may wait, the DDP options a config keeps, and how a
trial's time splits into waiting and running."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from helpers import REPO
from raytune_ft.engine.capacity import ClusterCapacity, NodeType, check_capacity, node_types_of
from raytune_ft.engine.trial import TrialResources
from raytune_ft.errors import UserError
from raytune_ft.options import SearchConfig, TrainConfig

HEAD = {"CPU": 8.0, "trial_driver": 1000.0}  # cluster.yaml's CPU head
GPU8 = NodeType("gpu_worker", {"CPU": 48.0, "GPU": 8.0}, max_workers=2)


def test_a_trial_that_fits_only_nodes_the_autoscaler_adds_passes_and_says_so():
    capacity = ClusterCapacity([HEAD], (GPU8,), max_workers=8, autoscaler="cluster.yaml")
    line = check_capacity(capacity, TrialResources(8, 6, 1, "PACK"))
    assert line is not None
    assert "1 node(s) up with 8 CPU and 0 GPU" in line
    assert "the autoscaler will add gpu_worker (48 CPU, 8 GPU; up to 2)" in line


@pytest.mark.parametrize("demand, why", [
    (TrialResources(17, 1, 1, "PACK"), "17 GPU"),  # 2 nodes x 8 GPUs at most
    (TrialResources(3, 1, 1, "STRICT_SPREAD"), "STRICT_SPREAD"),  # 3 nodes, 2 can exist
    (TrialResources(9, 1, 1, "STRICT_PACK"), "STRICT_PACK"),  # 9 GPUs on one 8-GPU node
    (TrialResources(1, 64, 1, "PACK"), "64 CPU"),  # no node type has 64 CPUs
])
def test_a_trial_no_node_type_can_ever_hold_is_refused_naming_the_types(demand, why):
    capacity = ClusterCapacity([HEAD], (GPU8,), max_workers=8, autoscaler="cluster.yaml")
    with pytest.raises(UserError) as err:
        check_capacity(capacity, demand)
    text = str(err.value)
    assert why in text and "gpu_worker (48 CPU, 8 GPU; up to 2)" in text
    assert "read from cluster.yaml" in text and "--workers-per-trial" in text


def test_the_cluster_wide_worker_cap_bounds_what_the_autoscaler_can_add():
    capacity = ClusterCapacity([HEAD], (GPU8,), max_workers=1, autoscaler="cluster.yaml")
    assert check_capacity(capacity, TrialResources(8, 1, 1)) is not None  # one node: fits
    with pytest.raises(UserError, match="at most 1 worker node"):
        check_capacity(capacity, TrialResources(9, 1, 1))


def test_an_autoscaler_whose_node_types_are_unknown_here_does_not_refuse():
    capacity = ClusterCapacity([HEAD], (), autoscaler="an autoscaler whose config ...")
    line = check_capacity(capacity, TrialResources(8, 6, 1))
    assert "cannot read" in line and "--resource-wait" in line


def test_cluster_yaml_node_types_are_read_without_the_head():
    types, cap = node_types_of(REPO / "cluster.yaml")
    assert [t.name for t in types] == ["gpu_worker"]
    assert types[0].resources["GPU"] == 8 and types[0].max_workers == 8 and cap == 8


@pytest.mark.parametrize("cls, workers_field", [(SearchConfig, "workers_per_trial"),
                                                (TrainConfig, "workers")])
def test_gpu_shapes_a_rank_cannot_use_are_refused(cls, workers_field):
    with pytest.raises(UserError) as err:
        cls(gpus_per_worker=2, **{workers_field: 4})
    assert "--gpus-per-worker (gpus_per_worker) 2" in str(err.value)
    assert f"--{workers_field.replace('_', '-')} 8 --gpus-per-worker 1" in str(err.value)
    with pytest.raises(UserError) as err:
        cls(gpus_per_worker=0.5, **{workers_field: 2})
    assert "Duplicate GPU detected" in str(err.value) and "--gpus-per-worker 1" in str(err.value)
    cls(gpus_per_worker=0.5, **{workers_field: 1})  # trials share a GPU: allowed
    cls(gpus_per_worker=1, **{workers_field: 8})


@pytest.mark.parametrize("value", ["soon", "-5m", "0"])
def test_a_bad_resource_wait_is_refused(value):
    with pytest.raises(UserError, match="--resource-wait"):
        SearchConfig(resource_wait=value)


def test_waiting_for_nodes_has_its_own_budget_apart_from_crashes_and_preemptions(tmp_path):
    """Ray Train charges a worker group not placed within its start timeout to
    controller_failure_limit: raytune_ft sizes that budget to --resource-wait and leaves
    max_failures to crashes and max_preemption_failures to preemptions."""
    from mmengine.config import Config

    from raytune_ft.engine.trial import TrialResources, TrialSpec, build_trainer

    cfg = Config({"env_cfg": {"dist_cfg": {"backend": "nccl", "timeout": 600}},
                  "train_cfg": {"max_epochs": 1}})
    spec = TrialSpec(name="t", storage_path=str(tmp_path), max_failures=2, max_preemptions=7,
                     resource_wait_s=1800, start_timeout_s=60)
    trainer = build_trainer(cfg, spec)
    failure = trainer.run_config.failure_config
    assert failure.max_failures == 2 and failure.max_preemption_failures == 7
    assert failure.controller_failure_limit == 30  # 30 start timeouts of 60 s = 30 min
    assert trainer.backend_config.timeout_s == 600  # the config's dist_cfg.timeout, not Ray's 1800
    # a CPU trial's workers see no GPU; a GPU trial's see what Ray assigned
    assert trainer.run_config.worker_runtime_env == {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
    gpu = TrialSpec(name="g", storage_path=str(tmp_path), resources=TrialResources(1, 4, 1),
                    resource_wait_s=100, start_timeout_s=30)
    assert gpu.startup_retries == math.ceil(100 / 30)
    assert not build_trainer(cfg, gpu).run_config.worker_runtime_env


def test_the_configs_ddp_options_are_merged_into_the_wrapper():
    from mmengine.config import Config

    from raytune_ft.engine.worker import ddp_wrapper_config

    top = ddp_wrapper_config(Config({"find_unused_parameters": True}), use_gpu=True,
                             local_device=3)
    assert top.find_unused_parameters is True and top.device_ids == [3]
    assert top.type == "MMDistributedDataParallel" and top.broadcast_buffers is False
    own = ddp_wrapper_config(Config({"model_wrapper_cfg": {
        "type": "MMDistributedDataParallel", "find_unused_parameters": True,
        "broadcast_buffers": True, "static_graph": False}}), use_gpu=False, local_device=0)
    assert own.find_unused_parameters is True and own.broadcast_buffers is True
    assert own.static_graph is False and own.device_ids is None


def test_a_trials_time_splits_into_waiting_and_running():
    from raytune_ft.phases import phase_times

    records = [{"state": s, "at": t} for s, t in [
        ("INITIALIZING", 0), ("SCHEDULING", 1), ("RESTARTING", 61), ("SCHEDULING", 62),
        ("RUNNING", 100), ("PREEMPTING", 400), ("RESTARTING", 430), ("SCHEDULING", 431),
        ("RUNNING", 500), ("FINISHED", 700)]]
    times = phase_times(records, now=10_000)
    assert times.running_s == 300 + 200  # two attempts' training
    assert times.waiting_s == 100 + 70  # node boot (with a start timeout) and the re-placement
    assert times.schedulings == 3 and times.waiting_since is None
    waiting = phase_times(records[:4], now=90)
    assert waiting.waiting_since == 0 and waiting.running_s == 0 and waiting.waiting_s == 90


class _Phases:
    """What the console reads of an experiment: each trial's phases (the real parser)."""

    def __init__(self, records: dict[str, list[dict]]) -> None:
        self.records = records

    def phases(self, trial_id: str):
        from raytune_ft.phases import parse_phases, phase_times

        text = "".join(json.dumps(r) + "\n" for r in self.records[trial_id])
        return phase_times(parse_phases(text))


def test_the_console_names_a_trial_that_waits_and_says_when_resources_arrive(capsys,
                                                                           monkeypatch):
    import time

    from raytune_ft.tuning import progress
    from raytune_ft.tuning.progress import ConsoleProgress

    class Trial:
        trial_id, config = "abc", {"lr": 0.01}

    now = time.time()
    exp = _Phases({"abc": [{"state": "INITIALIZING", "at": now - 130},
                           {"state": "SCHEDULING", "at": now - 129}]})
    console = ConsoleProgress("coco/bbox_mAP", "max", 4, experiment=exp,
                              demand="8 worker(s) x (6 CPU, 1 GPU)", resource_wait="30m")
    monkeypatch.setattr(progress, "WAIT_POLL_S", 0.0)
    console.on_trial_start(0, [], Trial())
    console.on_step(0, [])
    console.on_step(0, [])  # said once, not at every poll
    exp.records["abc"].append({"state": "RUNNING", "at": time.time()})
    console.on_step(0, [])
    out = capsys.readouterr().out.splitlines()
    waits = [line for line in out if "waiting " in line and "arrived" not in line]
    assert len(waits) == 1 and "trial abc waiting 2m1" in waits[0]
    assert "8 worker(s) x (6 CPU, 1 GPU)" in waits[0] and "--resource-wait 30m" in waits[0]
    assert any("trial abc: resources arrived after 2m1" in line for line in out)


def test_cluster_yaml_runs_the_cuda_doctor_on_gpu_nodes():
    import yaml

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert any("raytune_ft.doctor" in c for c in raw["worker_setup_commands"])
    assert "+PTX" in (REPO / "docker" / "Dockerfile").read_text()


def test_doctor_without_a_gpu_reports_no_cuda_finding():
    import torch

    from raytune_ft.cli.doctor import check_cuda

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: scripts/gpu_check.sh checks it")
    assert check_cuda() == []


def test_smoke_on_a_cpu_driver_for_gpu_trials_stands_in_and_says_so(tiny_data, tiny_pretrained,
                                                                    tmp_path, capsys):
    """--smoke runs in the driver; a GPU trial's AmpOptimWrapper would assert CUDA on a CPU
    head and its CPU timing would feed a false time-budget refusal."""
    from helpers import write_tiny_config
    from raytune_ft.pipeline.plan import prepare

    cfg = write_tiny_config(tmp_path / "amp.py", tiny_data, str(tiny_pretrained), max_epochs=2,
                            extra="optim_wrapper = dict(type='AmpOptimWrapper', "
                                  "loss_scale='dynamic')\n")
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n")
    prepare(SearchConfig(config=str(cfg), space=str(space), smoke=True, gpus_per_worker=1,
                         time_budget="1s", storage_path=str(tmp_path / "exp"), name="s"))
    out = capsys.readouterr().out
    assert "smoke test passed" in out and "on this driver's CPU" in out
    assert "mixed precision ran as a plain OptimWrapper" in out
    assert "--time-budget is not checked against it" in out
    assert not Path(tmp_path / "exp" / "s" / "driver.log").exists()


def test_a_spot_notice_is_read_from_the_instance_metadata_service():
    import time

    from helpers import FakeInstanceMetadata
    from raytune_ft.engine.spot import spot_notice

    imds = FakeInstanceMetadata()
    try:
        assert spot_notice(imds.url) is None  # no notice: 404
        imds.notice(in_s=120)
        notice = spot_notice(imds.url)
        assert notice.action == "terminate" and 110 < notice.at - time.time() <= 121
        assert imds.tokens_issued == 2  # IMDSv2: a session token with each poll
    finally:
        imds.close()
    assert spot_notice("http://127.0.0.1:9", timeout=0.5) is None  # nothing listening


def test_cluster_yaml_starts_the_spot_watch_on_gpu_nodes():
    import yaml

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    watch = [c for c in raw["worker_start_ray_commands"] if "raytune_ft.spot_watch" in c]
    assert watch and "--address=$RAY_HEAD_IP:6379" in watch[0] and "RAY_AUTH_MODE=token" in watch[0]
