"""The GPU cluster as users run it, reproduced with Ray's local autoscaling cluster.

`ray up cluster.yaml` starts a CPU head and GPU workers at `min_workers: 0`: when a search
starts, the nodes its trials need are not up. Ray's fake multi-node provider
(`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=FILE`) runs the real autoscaler and
starts nodes as local processes, so here: preflight judges a trial against the node types,
trials wait for nodes the autoscaler boots without spending their crash budget, a preempted
node costs the preemption budget, and a CPU trial's workers do not see the machine's GPUs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import (RANK_AUDIT, REPO, FakeInstanceMetadata, RayHead, free_port,
                     read_metrics, with_testing_hooks, write_tiny_config)

pytestmark = pytest.mark.slow

FAKE_CLUSTER = {
    "cluster_name": "raytune-ft-autoscaling-test",
    "max_workers": 4,
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 5,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                 "disable_node_updaters": True, "disable_launch_config_check": True},
    "auth": {"ssh_user": "ubuntu"},
    "head_node_type": "ray.head.default",  # the name the fake provider gives its head
    "available_node_types": {
        # like cluster.yaml's head: no CPU for training, the trials' drivers live here
        "ray.head.default": {"resources": {"CPU": 0, "trial_driver": 100}, "node_config": {},
                 "max_workers": 0},
        "cpu2": {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0,
                 "max_workers": 3},
        "gpu8": {"resources": {"CPU": 8, "GPU": 8}, "node_config": {}, "min_workers": 0,
                 "max_workers": 2},
    },
    **{key: [] for key in ("initialization_commands", "setup_commands", "head_setup_commands",
                           "worker_setup_commands", "head_start_ray_commands",
                           "worker_start_ray_commands", "cluster_synced_files",
                           "rsync_exclude", "rsync_filter")},
    "file_mounts": {},
    "file_mounts_sync_continuously": False,
}


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory):
    """A head of 0 CPUs (+ `trial_driver`) and two worker node types at min_workers 0, nodes
    started by Ray's real autoscaler. The machine's CUDA_VISIBLE_DEVICES=0 is what a GPU
    machine's environment holds (no GPU is detected here, so Ray counts none)."""
    import ray

    if ray.is_initialized():  # a second local Ray beside the shared one disturbs both
        ray.shutdown()
    import secrets

    from ray._private.services import get_node_ip_address

    root = tmp_path_factory.mktemp("autoscaling")
    port, dashboard = free_port(), free_port()
    address = f"{get_node_ip_address()}:{port}"
    config = root / "autoscaling.yaml"  # the nodes it starts join the head at `address`
    config.write_text(yaml.safe_dump({**FAKE_CLUSTER, "provider": {
        **FAKE_CLUSTER["provider"], "gcs_address": address}}))
    token = root / "auth_token"  # token authentication, as cluster.yaml starts every node
    token.write_text(secrets.token_hex(32))
    (root / "home").mkdir()  # no ~/.ray of the machine's user leaks in
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env = {**clean, "HOME": str(root / "home"), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token), "RAY_FAKE_CLUSTER": "1",
           "AUTOSCALER_UPDATE_INTERVAL_S": "1", "CUDA_VISIBLE_DEVICES": "0"}
    head = RayHead([f"--port={port}", "--num-cpus=0", '--resources={"trial_driver": 100}',
                    f"--autoscaling-config={config}", f"--dashboard-port={dashboard}",
                    "--include-dashboard=true", "--disable-usage-stats"], env)
    yield {"address": address, "env": env}
    head.stop()


def _search(cluster: dict, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raytune_ft.search", "--address",
                           cluster["address"], *args], cwd=REPO, env=cluster["env"],
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture()
def tiny_search_files(tiny_data, tiny_pretrained, tmp_path):
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=4,
                            extra=with_testing_hooks(RANK_AUDIT))
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n")
    return ["--config", str(cfg), "--space", str(space)]


def test_check_only_passes_on_a_cluster_whose_gpu_nodes_are_not_up_yet(
        autoscaling_cluster, tiny_search_files, tmp_path):
    ran = _search(autoscaling_cluster, [*tiny_search_files, "--check-only",
                                        "--workers-per-trial", "8", "--gpus-per-worker", "1",
                                        "--storage-path", str(tmp_path / "exp")])
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "1 node(s) up with 0 CPU and 0 GPU" in ran.stdout, ran.stdout
    assert "the autoscaler will add gpu8 (8 CPU, 8 GPU; up to 2)" in ran.stdout, ran.stdout
    assert "check-only: all checks passed" in ran.stdout
    assert "cpu2" not in ran.stdout.split("will add", 1)[1].splitlines()[0]  # no GPUs there


def test_check_only_refuses_a_trial_no_node_type_can_ever_hold(autoscaling_cluster,
                                                               tiny_search_files, tmp_path):
    ran = _search(autoscaling_cluster, [*tiny_search_files, "--check-only",
                                        "--workers-per-trial", "3", "--gpus-per-worker", "1",
                                        "--placement", "STRICT_SPREAD",
                                        "--storage-path", str(tmp_path / "exp")])
    assert ran.returncode == 2, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "gpu8 (8 CPU, 8 GPU; up to 2)" in ran.stderr and "STRICT_SPREAD" in ran.stderr
    assert "autoscaling.yaml" in ran.stderr and "Traceback" not in ran.stderr


def _wait_for(predicate, timeout: float, what: str, process=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the search ended (rc {process.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_node(node_id: str) -> None:
    """What a reclaimed instance does at its deadline: the node's raylet (and with it its
    workers) is gone."""
    import psutil

    raylets = [p for p in psutil.process_iter(["cmdline"])
               if f"--node_id={node_id}" in " ".join(p.info["cmdline"] or [])]
    assert raylets, f"no raylet of node {node_id}"
    for process in raylets:
        process.kill()


def test_trials_wait_for_autoscaled_nodes_and_a_preemption_costs_no_crash_budget(
        autoscaling_cluster, tiny_search_files, tmp_path):
    """Two trials need CPUs only a worker node has (the head has none): the autoscaler boots
    one while Ray Train's worker-group start timeout (2 s here) fires, which must not error the
    trials. After a committed epoch the node is drained as preempted (what a spot reclaim
    notice does, through raytune_ft.spot_watch and a stand-in of EC2's instance metadata
    service): the trials there resume on a node the autoscaler starts anew, charged to
    --max-preemptions, with --max-failures 0. Their workers never see the machine's GPU."""
    from raytune_ft.phases import PHASES_FILE, parse_phases, phase_times

    cluster = autoscaling_cluster
    exp = tmp_path / "exp" / "scaled"
    imds = FakeInstanceMetadata()
    log = open(tmp_path / "search.log", "w")
    env = {**cluster["env"], "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "2"}
    search = subprocess.Popen(
        [sys.executable, "-m", "raytune_ft.search", *tiny_search_files, "--num-samples", "2",
         "--max-concurrent", "2", "--storage-path", str(tmp_path / "exp"), "--name", "scaled",
         "--address", cluster["address"], "--scheduler", "fifo", "--max-failures", "0",
         "--resource-wait", "10m"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def both_committed_an_epoch():
            runs = [d for d in (exp / "trials").glob("trial_*") if read_metrics(d)]
            return runs if len(runs) == 2 else None

        runs = _wait_for(both_committed_an_epoch, 400, "both trials to commit an epoch", search)
        audit = (runs[0] / "mmengine" / "ranks" / "rank0.jsonl").read_text().splitlines()
        node = json.loads(audit[-1])["node_id"]
        # the spot watcher of that node reads a reclaim notice from the (stand-in) instance
        # metadata service and drains the node as preempted, as it does on EC2
        imds.notice(in_s=2)
        watcher = subprocess.run(
            [sys.executable, "-m", "raytune_ft.spot_watch", "--address", cluster["address"],
             "--node-id", node, "--imds", imds.url, "--every", "0.5"],
            cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=120)
        assert watcher.returncode == 0, watcher.stderr[-3000:]
        assert f"node {node} drained as preempted" in watcher.stdout, watcher.stdout
        time.sleep(2)  # the notice's deadline: then the instance is gone
        _kill_node(node)
        assert search.wait(timeout=600) == 0, (tmp_path / "search.log").read_text()[-5000:]
    finally:
        if search.poll() is None:
            search.kill()
        log.close()
        imds.close()

    console = (tmp_path / "search.log").read_text()
    assert "the autoscaler will add cpu2" in console, console[-3000:]
    # Ray's raylet messages (worker-pool warnings, the lost node's last log lines) go to
    # driver.log; the console says once that a node was lost
    assert "(raylet)" not in console and "Ray reports a node lost" in console, console[-3000:]
    assert "Raylet is terminated" in (exp / "driver.log").read_text()
    with open(exp / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["finished", "finished"], rows  # --max-failures 0
    def audit_of(run: Path) -> list[dict]:
        return [json.loads(x) for x in
                (run / "mmengine" / "ranks" / "rank0.jsonl").read_text().splitlines()]

    victims = [run for run in runs if any(r["resumed"] for r in read_metrics(run))]
    assert victims, "a trial was running on the preempted node and resumed elsewhere"
    retried_before_start = []
    for run in runs:
        records = read_metrics(run)
        assert [r["epoch"] for r in records] == [1, 2, 3, 4], "each epoch once, none lost"
        phases = parse_phases((run / PHASES_FILE).read_text())
        times = phase_times(phases)
        states = [p["state"] for p in phases]
        first_run = states.index("RUNNING")
        retried_before_start.append(states[:first_run].count("SCHEDULING") - 1)
        if run in victims:  # placed once more after the preemption
            assert "SCHEDULING" in states[states.index("PREEMPTING"):], states
        assert times.waiting_s > 2.0 and times.running_s > 0, times
        lines = audit_of(run)
        assert all(x["cuda_visible_devices"] == "" and x["device"] == "cpu" for x in lines)
        row = next(r for r in rows if r["trial_id"] == run.name.removeprefix("trial_"))
        if run in victims:
            assert lines[0]["node_id"] == node and lines[-1]["node_id"] != node, lines
            assert row["restarts"] == "1", row
        # the wait is reported apart, not charged as CPU-seconds
        assert float(row["wait_seconds"]) > 2.0 and float(row["cpu_seconds"]) > 0, row
    # a first placement outlasted Ray's 2 s start timeout (the node was booting): retried, not
    # errored (--max-failures 0). The second trial may find the node the first one woke up.
    assert max(retried_before_start) >= 1, retried_before_start
