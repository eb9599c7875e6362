"""Pretrained and resume checkpoints load the way a fine-tune needs."""

from __future__ import annotations

import pickle

import pytest
import torch
from mmengine.runner import Runner

from helpers import write_tiny_config
from raytune_ft.checkpoints import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from raytune_ft.mmconfig.config import load_config

EIGHT = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


class Evil:
    """An arbitrary class: loading it must still be refused."""


HEAD_KEYS = {f"roi_head.bbox_head.{layer}.{p}" for layer in ("fc_cls", "fc_reg")
             for p in ("weight", "bias")}


def test_coco_checkpoint_loads_into_an_8_class_model(tiny_data, tiny_pretrained, tmp_path,
                                                     capsys):
    cfg_path = write_tiny_config(tmp_path / "eight.py", tiny_data, str(tiny_pretrained),
                                 extra=f"metainfo = dict(classes={EIGHT!r})\n"
                                       "train_dataloader = dict(dataset=dict(metainfo=metainfo))")
    cfg = load_config(cfg_path)
    assert cfg.model.roi_head.bbox_head.num_classes == 8
    cfg.work_dir = str(tmp_path / "work")
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()

    coco = torch.load(tiny_pretrained, map_location="cpu", weights_only=True)["state_dict"]
    ours = runner.model.state_dict()
    skipped = {k for k in coco if ours[k].shape != coco[k].shape}
    assert skipped == HEAD_KEYS
    for key, value in coco.items():
        if key not in skipped:
            assert torch.equal(ours[key], value), key
    assert ours["roi_head.bbox_head.fc_cls.weight"].shape[0] == 8 + 1
    assert ours["roi_head.bbox_head.fc_reg.weight"].shape[0] == 8 * 4
    log = capsys.readouterr()
    assert "size mismatch for roi_head.bbox_head.fc_cls.weight" in log.out + log.err


def test_mmengine_checkpoint_loads_with_weights_only_through_the_allow_list(tiny_data,
                                                                             tmp_path):
    """torch >= 2.6 refuses mmengine's resume checkpoints by default; our allow-list fixes it
    without disabling weights_only for other files."""
    allow_mmengine_checkpoints()  # as every raytune_ft worker does before its Runner starts
    cfg = load_config(write_tiny_config(tmp_path / "c.py", tiny_data, None, max_epochs=1))
    cfg.work_dir = str(tmp_path / "work")
    Runner.from_cfg(cfg).train()
    ckpt = tmp_path / "work" / "epoch_1.pth"
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt))
    assert unsafe == [], "every global in the file is default-safe or on the narrow allow-list"
    assert getattr not in mmengine_checkpoint_globals()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["meta"]["epoch"] == 1
    hub = state["message_hub"]["log_scalars"]["train/loss"]
    assert hub.statistics("mean") > 0, "history buffers keep working after loading"
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(tmp_path / "evil.pth", weights_only=True)  # the protection is still on
