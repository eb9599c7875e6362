"""Multi-node: cluster.yaml passes Ray's own checks offline; a trial's workers span two nodes of
a real multi-node Ray cluster on this machine; a search runs on that cluster."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from helpers import RANK_AUDIT, REPO, with_testing_hooks, write_tiny_config


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
    for package in ("mmcv", "mmengine", "mmdet"):
        pinned = re.search(rf'"{package}==([\d.]+)"', pyproject).group(1)
        assert f"{package}=={pinned}" in docker, package
    ray_pin = re.search(r'ray\[[^\]]+\]==([\d.]+)', pyproject).group(1)
    assert f'ray[default,tune,train]=={ray_pin}' in docker
    torch_max = re.search(r'"torch>=[\d.]+,<([\d.]+)"', pyproject).group(1)
    torch_in_docker = re.search(r"torch==([\d.]+)", docker).group(1)
    assert tuple(map(int, torch_in_docker.split("."))) < tuple(map(int, torch_max.split(".")))


@pytest.fixture()
def three_node_cluster():
    """A head without CPUs (it only drives) and two 1-CPU worker nodes, all on this machine."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "resources": {"trial_driver": 10}, "include_dashboard": True})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    yield cluster, {n.node_id for n in nodes}
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_trial_spans_nodes_and_a_search_runs_on_the_cluster(three_node_cluster, tiny_data,
                                                              tiny_pretrained, tmp_path):
    from helpers import read_metrics
    from raytune_ft.mmconfig.config import load_config
    from raytune_ft.cli.search import main as search_main
    from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial

    cluster, worker_nodes = three_node_cluster
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

    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n")
    rc = search_main(["--config", str(cfg_path), "--space", str(space), "--num-samples", "2",
                      "--storage-path", str(tmp_path / "exp"), "--name", "onc",
                      "--address", cluster.address, "--scheduler", "fifo", "--confirm", "0"])
    assert rc == 0
    summary = json.loads((tmp_path / "exp" / "onc" / "summary.json").read_text())
    assert summary["by_status"] == {"finished": 2}
