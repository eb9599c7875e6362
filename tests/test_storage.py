"""Remote storage against a real S3 server (moto's, on 127.0.0.1): the storage owner's paths and
checks, and a whole search on s3:// whose driver is SIGKILLed and resumed from the bucket alone
(the driver's local staging folder deleted, as after losing the head node)."""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port, write_tiny_config
from raytune_ft.errors import UserError
from raytune_ft.storage import ExperimentStorage, Storage

BUCKET = "raytune-ft-test"
SPACE = """
params:
  lr:         {type: loguniform, low: 1.0e-3, high: 2.0e-2}
  max_epochs: {type: choice, values: [3]}
"""


@pytest.fixture(scope="module")
def s3_server():
    """A real S3-compatible HTTP server; the AWS SDKs (pyarrow, boto3) find it through
    AWS_ENDPOINT_URL, as a user's MinIO would be found."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@functools.lru_cache(maxsize=None)
def s3_client(endpoint: str):
    """One boto3 client per server: making one costs ~0.1 s of CPU, which the search the
    driver-kill test polls needs on a 2-core machine."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


def bucket_keys(prefix: str) -> list[str]:
    client = s3_client(os.environ["AWS_ENDPOINT_URL"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def bucket_bytes(key: str) -> bytes:
    client = s3_client(os.environ["AWS_ENDPOINT_URL"])
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_local_storage_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = ExperimentStorage.create("experiments", "s1")
    assert exp.path == str(tmp_path / "experiments" / "s1")
    assert exp.trial_path("abc") == str(tmp_path / "experiments" / "s1" / "trials" / "trial_abc")
    assert exp.tune_run_kwargs() == {"name": "s1", "storage_path": str(tmp_path / "experiments")}
    assert exp.local_dir == Path(exp.path)  # local outputs are written in place
    exp.local_path("summary.json").write_text("{}")
    exp.publish("summary.json")  # nothing to upload
    assert Storage.resolve("file://" + str(tmp_path)).root == str(tmp_path)


def test_uri_paths_keep_the_query(s3_server):
    storage = Storage.resolve(f"s3://{BUCKET}/exp?region=us-east-1")
    assert storage.is_remote
    assert storage.join("s1", "trials") == f"s3://{BUCKET}/exp/s1/trials?region=us-east-1"
    assert storage.fs_path("s1") == f"{BUCKET}/exp/s1"
    kwargs = storage.ray_kwargs("s1")
    assert kwargs["storage_path"] == f"{BUCKET}/exp/s1"
    assert type(kwargs["storage_filesystem"]).__name__ == "S3FileSystem"


def test_publish_and_fetch_through_the_bucket(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTUNE_FT_CACHE", str(tmp_path / "cache"))
    exp = ExperimentStorage.create(f"s3://{BUCKET}/unit", "e1")
    assert str(exp.local_dir).startswith(str(tmp_path / "cache"))
    exp.local_path("optuna.db").write_bytes(b"db")
    exp.publish("optuna.db")
    assert bucket_bytes("unit/e1/optuna.db") == b"db"
    (exp.local_dir / "optuna.db").unlink()  # another machine resumes
    assert exp.fetch("optuna.db") and (exp.local_dir / "optuna.db").read_bytes() == b"db"
    assert exp.storage.exists("e1", "optuna.db") and not exp.storage.exists("e1", "nope")


def test_storage_checks_name_the_uri(s3_server):
    Storage.resolve(f"s3://{BUCKET}/ok").check_writable()
    with pytest.raises(UserError, match="s3://no-such-bucket/x.*is not writable"):
        Storage.resolve("s3://no-such-bucket/x").check_writable()
    with pytest.raises(UserError, match="cannot be opened"):
        Storage.resolve("nosuchscheme://bucket/x").check_writable()


@pytest.mark.slow
def test_unreachable_storage_is_a_preflight_error(tmp_path, tiny_data, tiny_pretrained):
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained))
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    proc = subprocess.run([sys.executable, "-m", "raytune_ft.search", "--config", str(cfg),
                           "--storage-path", "s3://bucket/exp", "--check-only"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "storage path 's3://bucket/exp'" in proc.stderr and "Traceback" not in proc.stderr
    # refused in preflight: no OK line, and Ray never started (it would write driver.log)
    assert "preflight OK" not in proc.stdout, proc.stdout
    assert not list(tmp_path.rglob("driver.log"))


def search_cmd(cfg: Path, space: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "raytune_ft.search", "--config", str(cfg), "--space",
            str(space), "--num-samples", "2", "--storage-path", f"s3://{BUCKET}/exps",
            "--name", "r", "--scheduler", "fifo", "--confirm", "0", *extra]


def bucket_records(trial_prefix: str) -> list[dict]:
    keys = bucket_keys(f"{trial_prefix}/metrics.jsonl")
    if not keys:
        return []
    return [json.loads(line) for line in bucket_bytes(keys[0]).decode().splitlines() if line]


@pytest.mark.slow
def test_search_on_s3_survives_a_driver_kill(s3_server, tmp_path, tiny_data, tiny_pretrained,
                                             no_shared_ray):
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=3)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {**os.environ, **s3_server, "RAYTUNE_FT_CACHE": str(tmp_path / "cache")}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(search_cmd(cfg, space), cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    trials = "exps/r/trials"
    deadline = time.time() + 400
    done_before: dict[str, list] = {}
    interrupted = None
    while time.time() < deadline and proc.poll() is None:  # one trial done, one under way
        # one listing per poll, then each trial's metrics.jsonl (its committed epochs)
        metrics = [k for k in bucket_keys(trials + "/") if k.endswith("/metrics.jsonl")
                   and k.count("/") == 4]
        records = {k.split("/")[3]: [json.loads(line) for line in
                                     bucket_bytes(k).decode().splitlines() if line]
                   for k in metrics}
        finished = {r: m for r, m in records.items() if m and m[-1]["epoch"] == 3}
        running = [r for r, m in records.items() if m and m[-1]["epoch"] < 3]
        if finished and running:
            done_before, interrupted = finished, running[0]
            break
        time.sleep(1)
    # killed mid-search: a trial finished, another with committed epochs still running
    assert interrupted and proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    shutil.rmtree(tmp_path / "cache")  # resume as on another machine: only the bucket is left

    resumed = subprocess.run(search_cmd(cfg, space, "--resume"), cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(bucket_bytes("exps/r/results.csv").decode())))
    assert len({r["trial_id"] for r in rows}) == 2
    assert [r["status"] for r in rows] == ["finished"] * 2, rows
    assert all(r["epochs_run"] == "3" and r["best coco/bbox_mAP"] != "" for r in rows), rows
    for row in rows:  # every epoch once, in the bucket
        prefix = f"{trials}/trial_{row['trial_id']}"
        assert [m["epoch"] for m in bucket_records(prefix)] == [1, 2, 3]
        assert any("/tensorboard/events.out.tfevents" in k for k in bucket_keys(prefix))
    for run, records in done_before.items():  # finished trials were not re-run
        assert bucket_records(f"{trials}/{run}") == records, run
    after = bucket_records(f"{trials}/{interrupted}")  # the interrupted one resumed, not redone
    killed_run = [m for m in after if m["resumed"] == 0]
    continued = after[len(killed_run):]
    assert killed_run and continued and all(
        m["resumed"] == 1 and m["start_epoch"] == len(killed_run) + 1 for m in continued), after
    summary = json.loads(bucket_bytes("exps/r/summary.json"))
    assert summary["by_status"] == {"finished": 2}
    assert summary["best_config"] == f"s3://{BUCKET}/exps/r/best_config.py"
    assert summary["best_checkpoint"] == f"s3://{BUCKET}/exps/r/best_checkpoint.pth"
    assert b"raytune_ft best config" in bucket_bytes("exps/r/best_config.py")
    assert len(bucket_bytes("exps/r/best_checkpoint.pth")) > 100_000
    db = tmp_path / "optuna.db"
    db.write_bytes(bucket_bytes("exps/r/optuna.db"))
    import optuna

    study = optuna.load_study(study_name="r", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    assert not any(p.name.startswith("s3") for p in workdir.iterdir()), list(workdir.iterdir())
