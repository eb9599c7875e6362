"""Loading configs: 2.x keys that cannot be translated, num_classes from the classes, and clear
errors. (The tutorial's whole 2.x config against its 3.x form: tests/test_configs.py.)"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import REPO
from raytune_ft.config import ConfigError, load_config
from raytune_ft.hparams import find_scheduler
from raytune_ft.legacy import LegacyConfigError

BASES_3X = """
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/cityscapes_instance.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::_base_/schedules/schedule_1x.py',
]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_unsupported_2x_policy_is_named(tmp_path):
    path = write(tmp_path, "cos.py", BASES_3X + """
runner = dict(type='EpochBasedRunner', max_epochs=8)
lr_config = dict(policy='CosineAnnealing', min_lr=0)
""")
    with pytest.raises(LegacyConfigError, match="CosineAnnealing"):
        load_config(path)


def test_num_classes_contradicting_classes_names_both_numbers(tmp_path):
    path = write(tmp_path, "bad.py", BASES_3X + """
metainfo = dict(classes=('car', 'truck', 'bus'))
train_dataloader = dict(dataset=dict(metainfo=metainfo))
model = dict(roi_head=dict(bbox_head=dict(num_classes=5), mask_head=dict(num_classes=3)))
""")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "num_classes=5" in str(err.value) and "3 classes" in str(err.value)


def test_cascade_heads_and_single_stage_heads_follow_the_classes(tmp_path):
    cascade = load_config(write(tmp_path, "cascade.py", """
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py']
metainfo = dict(classes=('a', 'b', 'c'))
train_dataloader = dict(dataset=dict(metainfo=metainfo))
"""))
    assert [h.num_classes for h in cascade.model.roi_head.bbox_head] == [3, 3, 3]
    assert cascade.model.roi_head.mask_head.num_classes == 3
    retina = load_config(write(tmp_path, "retina.py", """
_base_ = ['mmdet::retinanet/retinanet_r18_fpn_1x_coco.py']
metainfo = dict(classes=('a', 'b'))
train_dataloader = dict(dataset=dict(metainfo=metainfo))
"""))
    assert retina.model.bbox_head.num_classes == 2


def test_hparams_and_cfg_options_apply():
    cfg = load_config(REPO / "configs/cityscapes/mask_rcnn_r50_fpn_finetune.py",
                      cfg_options={"train_cfg.val_interval": 2},
                      hparams={"lr": 0.02, "max_epochs": 6, "milestones": [4]})
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.train_cfg.max_epochs == 6 and cfg.train_cfg.val_interval == 2
    assert find_scheduler(cfg, "MultiStepLR").end == 6


@pytest.mark.parametrize("text, needle", [
    ("_base_ = ['mmdet::_base_/models/no_such_model.py']\n", "no_such_model"),
    ("model = dict(\n    type='FasterRCNN'\n", "line"),
])
def test_broken_configs_are_named(tmp_path, text, needle):
    path = write(tmp_path, "broken.py", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "broken.py" in str(err.value) and needle in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")
