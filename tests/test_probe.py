"""The LR-step probe measures a stepped copy of the run and leaves the run itself untouched."""

from __future__ import annotations

import pytest
from mmengine.hooks import Hook

from helpers import write_tiny_config
from raytune_ft.engine.probe import PROBE_INFO, probe_epochs


def train(cfg_path, work_dir, name: str, probe_at: list[int]):
    """Train the tiny config in-process with mmengine's Runner; return the model and hub."""
    from mmengine.runner import Runner

    import raytune_ft.engine.probe  # noqa: F401  (registers StepProbeHook)
    from raytune_ft.mmconfig.config import load_config
    from raytune_ft.testing import param_digest

    cfg = load_config(str(cfg_path))
    cfg.work_dir = str(work_dir / name)
    cfg.experiment_name = name
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=100)
    cfg.custom_hooks = [dict(type="StepProbeHook", epochs=probe_at, epoch_fraction=0.5,
                             gamma=0.1)] if probe_at else []
    runner = Runner.from_cfg(cfg)
    seen = []
    runner.register_hook(_Spy(seen), priority="LOWEST")
    runner.train()
    return param_digest(runner.model), seen


class _Spy(Hook):
    """Collects each epoch's val metrics, lr and the probe info left in the message hub, and
    the lr of every training step taken after the epoch's validation began (the probe's)."""

    def __init__(self, seen: list) -> None:
        self.seen = seen
        self.validating = False
        self.probe_lrs: list[float] = []

    def before_train(self, runner):
        inner = runner.model.train_step

        def train_step(batch, optim_wrapper):
            if self.validating:
                self.probe_lrs.append(optim_wrapper.get_lr()["lr"][0])
            return inner(batch, optim_wrapper=optim_wrapper)

        runner.model.train_step = train_step

    def before_train_epoch(self, runner):
        self.validating = False

    def before_val_epoch(self, runner):
        self.validating, self.probe_lrs = True, []

    def after_val_epoch(self, runner, metrics=None):
        info = runner.message_hub.get_info(PROBE_INFO) or {}
        self.seen.append({"epoch": runner.epoch, "metrics": dict(metrics or {}),
                          "lr": runner.optim_wrapper.get_lr()["lr"][0],
                          "probe_lrs": list(self.probe_lrs),
                          "probe": dict(info) if info.get("probe_epoch") == runner.epoch
                          else None})


@pytest.mark.slow
def test_probe_leaves_persistent_loader_workers_as_they_were(tmp_path, tiny_data):
    """mmdet's configs keep their train loader's workers alive across epochs; their RandomFlip
    draws from the workers' own RNG, which the probe's batches must not advance."""
    # one train_dataloader dict: a second assignment in the file would replace the tiny data
    # set's (the demo's 50 images then, 4x slower)
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, None, max_epochs=2, extra=(
        "train_dataloader = dict(batch_size=2, num_workers=1, persistent_workers=True, "
        "dataset=dict(data_root=data_root, metainfo=metainfo))\n"
        "randomness = dict(seed=0)"))
    plain_digest, plain = train(cfg, tmp_path, "plain", [])
    probed_digest, probed = train(cfg, tmp_path, "probed", [1])
    assert probed[0]["probe"] is not None
    assert probed_digest == plain_digest
    assert [e["metrics"] for e in probed] == [e["metrics"] for e in plain]


@pytest.mark.slow
def test_probe_reports_a_stepped_score_and_leaves_the_run_unchanged(tmp_path, tiny_data):
    # score_thr 0: the tiny model's every box counts, so val (and the probe) detect something
    # and the probe's value is measured, not the 0.0 filled in when nothing is detected
    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, None, max_epochs=3,
                            extra="model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))")
    plain_digest, plain = train(cfg, tmp_path, "plain", [])
    probed_digest, probed = train(cfg, tmp_path, "probed", [1, 2])
    # the run continues exactly as without the probe: same weights, metrics and lr every epoch
    assert probed_digest == plain_digest
    assert [e["metrics"] for e in probed] == [e["metrics"] for e in plain]
    assert [e["lr"] for e in probed] == [e["lr"] for e in plain]
    # a probe ran after epochs 1 and 2 only, for half an epoch (4 iterations -> 2)
    assert [e["probe"] is not None for e in probed] == [True, True, False]
    for e in probed[:2]:
        assert e["probe"]["probe_iters"] == 2 and e["probe"]["probe_seconds"] > 0
        # it trained at the stepped lr (the epoch's lr x gamma 0.1), from the epoch's state
        assert e["probe_lrs"] == pytest.approx([e["lr"] * 0.1] * 2)
        assert "probe_empty_predictions" not in e["probe"]
        assert "coco/bbox_mAP" in e["metrics"]  # the run's own val detected something too
        assert 0.0 <= e["probe"]["probe/coco/bbox_mAP"] <= 1.0
    assert all(e["probe_lrs"] == [] for e in plain)  # no probe: no training during val


@pytest.mark.parametrize("max_epochs, step, expected", [
    (6, 4, [2, 4]),   # rungs 1/3, 2/3 -> epochs 2, 4, both before the step
    (6, 3, [2]),      # epoch 4 is after the step: ranked on its own metric
    (4, 2, [2]),      # 2/3 of 4 -> epoch 3, after the step
    (3, 2, [1, 2]),
    (2, 1, [1]),      # the last epoch never needs a probe
])
def test_probe_epochs_are_the_pre_step_rungs(max_epochs, step, expected):
    assert probe_epochs([1 / 3, 2 / 3], max_epochs, step) == expected
