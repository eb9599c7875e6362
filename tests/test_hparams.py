"""Hyper-parameters are written into the 3.x keys by name, and impossible schedules are refused."""

from __future__ import annotations

import pytest
from mmengine.config import Config

from raytune_ft.hparams import HParamError, apply_hparams, find_scheduler, read_hparams


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
