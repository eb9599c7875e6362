"""Shared fixtures: a tiny COCO data set, a COCO-shaped tiny checkpoint, one Ray instance.
The helpers that build them are in helpers.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from helpers import (FINISHED_SPACE, FinishedSearch, ray_default_auth_env, run_search_cli,
                     write_tiny_coco, write_tiny_config)

# Ray Train's controller polls its workers every 2 s by default (a report or a trial's end
# waits for the next poll); 0.5 s cuts ~13% off a 2-epoch trial here and changes nothing else.
# Set before any Ray starts, so every local Ray, cluster and subprocess search inherits it.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

# Fixtures whose tests start Ray outside this process (their own local Ray, a cluster): the
# shared in-process Ray must be down for them, so they run after every test that uses it.
STOPS_SHARED_RAY = {"no_shared_ray", "finished_search", "three_node_cluster", "token_head",
                    "autoscaling_cluster"}


def pytest_collection_modifyitems(session, config, items) -> None:
    """The tests on the shared in-process Ray first, then those that stop it: it starts once
    (each start costs seconds and ~1 GB) instead of after every test that stopped it."""
    items.sort(key=lambda item: bool(STOPS_SHARED_RAY & set(item.fixturenames)))


@pytest.fixture()
def empty_tempdir(tmp_path, monkeypatch) -> Path:
    """This process's temp folder (tempfile's), empty at the start: what a check or a config
    load leaves in it stays visible to the test."""
    import tempfile

    folder = tmp_path / "tempdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_coco(tmp_path_factory.mktemp("tiny_coco"))


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory, tiny_data) -> Path:
    """A COCO-shaped (80-class) checkpoint of the tiny model, made once per session."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    import torch

    register_all_modules()
    cfg_path = write_tiny_config(tmp_path_factory.mktemp("cfg") / "coco80.py", tiny_data)
    cfg = Config.fromfile(str(cfg_path))
    cfg.model.roi_head.bbox_head.num_classes = 80
    torch.manual_seed(1)
    model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp("pretrained") / "coco80_tiny.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 12, "iter": 90000}}, path)
    return path


@pytest.fixture()
def ray_session(request):
    """One local Ray shared by the tests (starting Ray costs seconds and ~1 GB); started on
    first use, again only if a test (the multi-node one) shut it down."""
    import ray

    from raytune_ft.engine.cluster import init_ray

    if not ray.is_initialized():
        init_ray(None)
        request.session.addfinalizer(ray.shutdown)
    return ray


@pytest.fixture()
def no_shared_ray():
    """For a test whose subprocess starts its own local Ray: the shared in-process one is shut
    down first (`ray_session` starts it again for the next test that wants it). Two local Rays
    on one 2-core machine disturb each other: a CI run had a trial of a subprocess search
    error beside the idle shared Ray, a run without it did not."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory, tiny_data, tiny_pretrained) -> FinishedSearch:
    """One tiny finished search made once from the command line (see FinishedSearch); the
    tests that only read it, confirm it or extend it work on copies. Its console is kept."""
    import shutil

    import ray

    if ray.is_initialized():  # the search starts its own local Ray
        ray.shutdown()
    root = tmp_path_factory.mktemp("finished_search")
    data = Path(shutil.copytree(tiny_data, root / "data"))  # + a held-out "test" split
    shutil.copy(data / "annotations" / "val.json", data / "annotations" / "test.json")
    held_out = ("test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, "
                "metainfo=metainfo, ann_file='annotations/test.json'))\n"
                "test_evaluator = dict(ann_file=data_root + 'annotations/test.json')\n")
    cfg = write_tiny_config(root / "tiny.py", data, str(tiny_pretrained), max_epochs=2,
                            extra=held_out)
    space = root / "space.yaml"
    space.write_text(FINISHED_SPACE)
    search = FinishedSearch(root, cfg, space)
    started = time.time()
    proc = run_search_cli(search.flags(root / "exp"), old_paths=True,
                          env=ray_default_auth_env())
    search.console, search.seconds = proc.stdout + proc.stderr, time.time() - started
    assert proc.returncode == 0, search.console[-4000:]
    return search
