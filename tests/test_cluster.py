"""Multi-node: cluster.yaml passes Ray's own checks offline; a trial's workers span two nodes of
a real multi-node Ray cluster on this machine; a search runs on that cluster."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from helpers import (RANK_AUDIT, REPO, RayHead, free_port, with_testing_hooks,
                     write_tiny_config)


def ray_check(config: dict) -> dict:
    """What `ray up` checks before touching the cloud: the schema, then the prepared config."""
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def cluster_yaml() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_checks():
    prepared = ray_check(cluster_yaml())
    gpu = prepared["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["resources"]["GPU"] >= 1
    assert prepared["available_node_types"]["head"]["resources"].get("GPU", 0) == 0
    assert "2.60.0" in " ".join(prepared["setup_commands"])
    # token authentication on every node, the token mounted from the user's file, the
    # dashboard (job API) on the head's localhost only
    starts = prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]
    for command in (c for c in starts if "ray start" in c):
        assert "RAY_AUTH_MODE=token ray start" in command, command
    head = next(c for c in prepared["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def _drop(path: list[str]):
    def edit(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


def _schema_error():
    import jsonschema

    return jsonschema.ValidationError


@pytest.mark.parametrize("edit, error, message", [
    (lambda c: c["available_node_types"]["gpu_worker"].update(max_workers="eight"),
     _schema_error, "'eight' is not of type 'integer'"),
    (_drop(["available_node_types", "gpu_worker", "node_config"]),
     _schema_error, "'node_config' is a required property"),
    (_drop(["available_node_types", "gpu_worker", "resources"]),
     _schema_error, "'resources' is a required property"),
    (lambda c: c["provider"].update(type="no-such-cloud"),
     lambda: NotImplementedError, "Unsupported node provider: no-such-cloud"),
    (lambda c: c.update(head_node_type="not_a_node_type"),
     lambda: ValueError, "`head_node_type` must be one of `available_node_types`"),
    (lambda c: c.update(unknown_top_level_key=1),
     _schema_error, "'unknown_top_level_key' was unexpected"),
], ids=["wrong-type", "no-node-config", "no-resources", "unknown-provider", "bad-head-type",
        "unknown-key"])
def test_broken_cluster_yaml_is_rejected(edit, error, message):
    cfg = cluster_yaml()
    edit(cfg)
    with pytest.raises(error(), match=re.escape(message)):
        ray_check(cfg)


def test_dockerfile_pins_match_pyproject():
    docker = (REPO / "docker" / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    for package in ("onedl-mmcv", "onedl-mmengine", "onedl-mmdetection"):
        pinned = re.search(rf'"{package}==([\d.]+)"', pyproject).group(1)
        assert f"{package}=={pinned}" in docker, package
    ray_pin = re.search(r'ray\[[^\]]+\]==([\d.]+)', pyproject).group(1)
    assert f'ray[default,tune,train]=={ray_pin}' in docker
    torch_max = re.search(r'"torch>=[\d.]+,<([\d.]+)"', pyproject).group(1)
    torch_in_docker = re.search(r"torch==([\d.]+)", docker).group(1)
    assert tuple(map(int, torch_in_docker.split("."))) < tuple(map(int, torch_max.split(".")))
    python_in_docker = re.search(r"python(3\.\d+) -m venv", docker).group(1)
    supported = re.findall(r"Programming Language :: Python :: (3\.\d+)", pyproject)
    assert python_in_docker in supported, (python_in_docker, supported)


@pytest.fixture()
def token_head(tmp_path, no_shared_ray):
    """A local Ray head started the way cluster.yaml starts one: RAY_AUTH_MODE=token with a
    token file, the dashboard (job API) bound to 127.0.0.1."""
    import os
    import secrets

    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    home = tmp_path / "home"  # no ~/.ray/auth_token of the machine's user leaks in
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env = {**clean, "HOME": str(home), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token)}
    port, dashboard = free_port(), free_port()
    head = RayHead([f"--port={port}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dashboard}", "--include-dashboard=true",
                    "--disable-usage-stats"], env)
    yield {"address": f"127.0.0.1:{port}", "jobs": f"http://127.0.0.1:{dashboard}",
           "env": env, "no_token": {**clean, "HOME": str(home)}, "token": token}
    head.stop()


SUBMIT = """
import sys, time
from ray.job_submission import JobSubmissionClient, JobStatus
for attempt in range(60):  # the head's dashboard agent may still be starting
    try:
        client = JobSubmissionClient(sys.argv[1])
        job = client.submit_job(entrypoint="python -c 'print(6 * 7)'")
        break
    except Exception as err:
        if "No available agent" in str(err):
            time.sleep(1)
            continue
        print("REFUSED", type(err).__name__, err)
        sys.exit(3)
for _ in range(240):
    status = client.get_job_status(job)
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        break
    time.sleep(0.5)
print(status, client.get_job_logs(job).strip().splitlines()[-1])
"""


@pytest.mark.slow
def test_a_token_cluster_refuses_strangers_and_runs_a_search_with_the_token(
        token_head, tiny_data, tiny_pretrained, tmp_path):
    import subprocess
    import sys

    def submit(env: dict) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SUBMIT, token_head["jobs"]], env=env,
                              capture_output=True, text=True, timeout=240)

    stranger = submit(token_head["no_token"])
    assert stranger.returncode == 3 and "REFUSED" in stranger.stdout, stranger.stdout
    assert "401" in stranger.stdout or "Unauthorized" in stranger.stdout
    wrong_token = {**{k: v for k, v in token_head["env"].items()
                      if k != "RAY_AUTH_TOKEN_PATH"}, "RAY_AUTH_TOKEN": "0" * 64}
    wrong = submit(wrong_token)
    assert wrong.returncode == 3 and ("403" in wrong.stdout or "Forbidden" in wrong.stdout)
    holder = submit(token_head["env"])
    assert holder.returncode == 0 and "SUCCEEDED 42" in holder.stdout, holder.stdout

    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=1)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n")

    def search(env: dict, name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "raytune_ft.search", "--config", str(cfg), "--space",
             str(space), "--num-samples", "1", "--storage-path", str(tmp_path / "exp"),
             "--name", name, "--address", token_head["address"], "--scheduler", "fifo"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    refused = search(wrong_token, "wrong")
    assert refused.returncode == 2 and "RAY_AUTH_TOKEN" in refused.stderr, refused.stderr[-3000:]
    assert "refused this driver" in refused.stderr and "Traceback" not in refused.stderr
    nothing = search(token_head["no_token"], "none")  # no token and no RAY_AUTH_* at all
    assert nothing.returncode == 2 and "RAY_AUTH_TOKEN" in nothing.stderr, \
        nothing.stderr[-3000:]
    assert "Traceback" not in nothing.stderr
    missing = search({**token_head["env"],
                      "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no_such_token")}, "missing")
    assert missing.returncode == 2 and "no_such_token" in missing.stderr, missing.stderr[-3000:]
    ran = search(token_head["env"], "auth")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    summary = json.loads((tmp_path / "exp" / "auth" / "summary.json").read_text())
    assert summary["by_status"] == {"finished": 1}


def test_a_named_token_file_that_is_missing_or_empty_is_refused_before_ray(tmp_path,
                                                                          monkeypatch):
    from raytune_ft.engine.cluster import check_auth_token
    from raytune_ft.errors import UserError

    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    check_auth_token()  # no token auth asked for: nothing to check
    empty = tmp_path / "empty_token"
    empty.write_text("\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(empty))
    with pytest.raises(UserError, match="empty_token', which is empty.*RAY_AUTH_TOKEN"):
        check_auth_token()
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "gone"))
    with pytest.raises(UserError, match="gone', which does not exist"):
        check_auth_token()
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(UserError, match="RAY_AUTH_MODE=token but no token was found"):
        check_auth_token()
    monkeypatch.setenv("RAY_AUTH_TOKEN", "a" * 64)
    check_auth_token()


# The module's 3-node cluster lives from its first test to the module's end: the token
# tests above run before it exists (a second local Ray beside it left the token head's job
# agent unavailable).
@pytest.fixture(scope="module")
def three_node_cluster():
    """A head without CPUs (it only drives) and two 1-CPU worker nodes, all on this machine;
    one per module (starting it costs ~20 s): the spans test uses it as it is, the node-loss
    test after it replaces a node."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # a second local Ray beside the shared one disturbs both
        ray.shutdown()

    # the dashboard on a free port: Cluster asks for Ray's 8265 outright, and fails where
    # another Ray of the machine (a developer's) holds it
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "resources": {"trial_driver": 10}, "include_dashboard": True,
        "dashboard_port": free_port()})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    yield cluster, {n.node_id for n in nodes}
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_a_trial_spans_nodes(three_node_cluster, tiny_data, tiny_pretrained, tmp_path):
    from helpers import read_metrics
    from raytune_ft.mmconfig.config import load_config
    from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial

    _, worker_nodes = three_node_cluster
    cfg_path = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained),
                                 max_epochs=2, extra=with_testing_hooks(RANK_AUDIT))
    spec = TrialSpec(name="spread", storage_path=str(tmp_path / "runs"),
                     resources=TrialResources(workers=2, cpus_per_worker=1,
                                              placement_strategy="STRICT_SPREAD"))
    result = run_trial(load_config(cfg_path), spec)
    assert result.error is None
    assert [m["epoch"] for m in read_metrics(spec.run_dir)] == [1, 2]
    assert result.checkpoint is not None
    rank_files = sorted((Path(spec.run_dir) / "mmengine" / "ranks").glob("rank*.jsonl"))
    nodes = {json.loads(f.read_text().splitlines()[-1])["node_id"] for f in rank_files}
    assert len(nodes) == 2 and nodes == worker_nodes, "the two ranks ran on the two worker nodes"
    # (a whole search through --address on this cluster: the node-loss test below)


def _wait_for(predicate, timeout: float, what: str):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_trial_survives_losing_its_node(three_node_cluster, tiny_data, tiny_pretrained,
                                          tmp_path):
    """Two trials fill the two worker nodes; the node of the 3-epoch one (the recipe) is removed
    (raylet, object store, workers) after its first committed epoch and a fresh node joins:
    that trial resumes from its last checkpoint on the new node (the other, 8 epochs long,
    still holds the other node), the other goes on, the search finishes, results.csv counts
    the restart."""
    import csv
    import subprocess
    import sys

    from helpers import read_metrics

    cluster, _ = three_node_cluster
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=3,
                            extra=with_testing_hooks(RANK_AUDIT))
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n"
                     "  max_epochs: {type: choice, values: [3, 8]}\n")
    exp = tmp_path / "exp" / "lose"
    log = open(tmp_path / "search.log", "w")
    search = subprocess.Popen(
        [sys.executable, "-m", "raytune_ft.search", "--config", str(cfg), "--space", str(space),
         "--num-samples", "2", "--max-concurrent", "2", "--points", '[{"max_epochs": 8}]',
         "--storage-path", str(tmp_path / "exp"),
         "--name", "lose", "--address", cluster.address, "--scheduler", "fifo",
         "--max-failures", "2"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        def first_epoch_of_both():
            runs = [d for d in (exp / "trials").glob("trial_*") if read_metrics(d)]
            return runs if len(runs) == 2 else None

        runs = _wait_for(first_epoch_of_both, 300, "both trials to commit an epoch")
        victim = next(d for d in runs if read_metrics(d)[0]["max_epochs"] == 3)
        audit = (victim / "mmengine" / "ranks" / "rank0.jsonl").read_text().splitlines()
        lost_node_id = json.loads(audit[-1])["node_id"]
        committed = len(read_metrics(victim))
        node = next(n for n in cluster.worker_nodes if n.node_id == lost_node_id)
        cluster.remove_node(node, allow_graceful=False)
        fresh = cluster.add_node(num_cpus=1)
        assert search.wait(timeout=600) == 0, (tmp_path / "search.log").read_text()[-4000:]
    finally:
        if search.poll() is None:
            search.kill()
        log.close()

    records = read_metrics(victim)
    assert [r["epoch"] for r in records] == [1, 2, 3], "each epoch once, none lost or doubled"
    resumed = [r for r in records if r["resumed"]]
    assert resumed and all(r["start_epoch"] == resumed[0]["start_epoch"] for r in resumed)
    assert committed + 1 >= resumed[0]["start_epoch"] >= 2  # at most the epoch in flight redone
    after = [json.loads(line) for line in
             (victim / "mmengine" / "ranks" / "rank0.jsonl").read_text().splitlines()]
    assert after[-1]["node_id"] == fresh.node_id and after[-1]["resumed"] == 1
    with open(exp / "results.csv") as f:
        rows = {r["trial_id"]: r for r in csv.DictReader(f)}
    victim_id = victim.name.removeprefix("trial_")
    assert rows[victim_id]["status"] == "finished" and rows[victim_id]["restarts"] == "1"
    other = next(r for tid, r in rows.items() if tid != victim_id)
    assert other["status"] == "finished" and other["restarts"] == "0"
    summary = json.loads((exp / "summary.json").read_text())  # the search on the cluster ended
    assert summary["by_status"] == {"finished": 2}
