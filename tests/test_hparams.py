"""Hyper-parameters are written into the 3.x keys by name, and impossible schedules are refused."""

from __future__ import annotations

import pytest
from mmengine.config import Config

from helpers import REPO
from raytune_ft.mmconfig.hparams import HParamError, apply_hparams, find_scheduler, read_hparams


def schedule_cfg() -> Config:
    return Config(dict(
        optim_wrapper=dict(type="OptimWrapper",
                           optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=12, val_interval=1),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
            dict(type="MultiStepLR", by_epoch=True, begin=0, end=12, milestones=[8, 11], gamma=0.1),
        ],
    ))


def test_every_hparam_lands_in_its_3x_key():
    cfg = apply_hparams(schedule_cfg(), {
        "lr": 0.005, "weight_decay": 5e-4, "momentum": 0.8, "max_epochs": 8,
        "milestones": [6], "warmup_iters": 200, "warmup_ratio": 0.01})
    assert cfg.optim_wrapper.optimizer.lr == 0.005
    assert cfg.optim_wrapper.optimizer.weight_decay == 5e-4
    assert cfg.optim_wrapper.optimizer.momentum == 0.8
    assert cfg.train_cfg.max_epochs == 8
    step = find_scheduler(cfg, "MultiStepLR")
    assert step.milestones == [6] and step.end == 8
    warm = find_scheduler(cfg, "LinearLR")
    assert (warm.begin, warm.end, warm.start_factor, warm.by_epoch) == (0, 200, 0.01, False)
    assert read_hparams(cfg) == {"lr": 0.005, "weight_decay": 5e-4, "momentum": 0.8,
                                 "max_epochs": 8, "milestones": [6], "warmup_iters": 200,
                                 "warmup_ratio": 0.01}


def test_zero_warmup_removes_the_warmup_scheduler():
    cfg = apply_hparams(schedule_cfg(), {"warmup_iters": 0, "warmup_ratio": 0.1})
    assert find_scheduler(cfg, "LinearLR") is None
    assert read_hparams(cfg)["warmup_iters"] == 0


@pytest.mark.parametrize("hparams, needle", [
    ({"milestones": [12]}, "milestone(s) [12]"),
    ({"max_epochs": 6}, "max_epochs=6"),  # the config's step at 8 and 11 fall outside 6 epochs
    ({"max_epochs": 6, "milestones": [0]}, "milestone(s) [0]"),
    ({"warmup_iters": -5}, "warmup_iters"),
    ({"warmup_ratio": 1.5}, "warmup_ratio"),
    ({"max_epochs": 2.5}, "max_epochs"),
    ({"learning_rate": 0.1}, "learning_rate"),
])
def test_bad_values_name_the_hparam(hparams, needle):
    with pytest.raises(HParamError) as err:
        apply_hparams(schedule_cfg(), hparams)
    assert needle in str(err.value)


def test_warmup_without_a_warmup_scheduler_is_an_error():
    cfg = schedule_cfg()
    cfg.param_scheduler = [cfg.param_scheduler[1]]
    with pytest.raises(HParamError, match="warmup_iters.*LinearLR"):
        apply_hparams(cfg, {"warmup_iters": 100})


def test_recipe_lr_is_for_the_configs_declared_batch():
    """KITTI's config says lr 0.02 for 16 images (auto_scale_lr.base_batch_size=16): at 1 worker
    x 2 images trial 0 is 0.02 per 16 in the space's terms and runs lr 0.0025."""
    from raytune_ft.mmconfig.config import load_config
    from raytune_ft.mmconfig.hparams import read_hparams
    from raytune_ft.tuning.space import TrialShape, load_space, recipe_point, to_hparams

    cfg = load_config(REPO / "configs/kitti/faster_rcnn_r50_fpn_finetune.py")
    space = load_space(REPO / "search_spaces/kitti.yaml")
    recipe = read_hparams(cfg)
    assert recipe["lr"] == 0.02 and recipe["lr_base_batch"] == 16
    shape = TrialShape(total_batch=2, iters_per_epoch=100)
    point = recipe_point(space, recipe, shape)
    assert point["lr"] == pytest.approx(0.02)  # was 0.16: 8x the recipe, above the space's max
    assert to_hparams(point, space, recipe, shape)["lr"] == pytest.approx(0.0025)
    from raytune_ft.tuning.space import parse_space

    lr_free = parse_space({"params": {"max_epochs": {"type": "choice", "values": [8]}},
                           "base_batch_size": 16})
    assert to_hparams({"max_epochs": 8}, lr_free, recipe, shape)["lr"] == pytest.approx(0.0025)


def test_a_config_without_a_declared_batch_keeps_its_lr_at_the_trial_batch():
    from raytune_ft.mmconfig.hparams import read_hparams
    from raytune_ft.tuning.space import TrialShape, parse_space, recipe_point

    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.02)),
                      train_cfg=dict(max_epochs=4)))
    space = parse_space({"params": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1.0}},
                         "base_batch_size": 16})
    point = recipe_point(space, read_hparams(cfg), TrialShape(total_batch=2, iters_per_epoch=1))
    assert point["lr"] == pytest.approx(0.16)  # today's rule: 0.02 at batch 2 = 0.16 per 16
