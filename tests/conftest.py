"""Shared fixtures: a tiny COCO data set, a COCO-shaped tiny checkpoint, one Ray instance.
The helpers that build them are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_tiny_coco, write_tiny_config


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
