"""Loading configs: the tutorial's 2.x keys, num_classes from the classes, and clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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

# The MMDetection 2.x fine-tune tutorial's snippets, verbatim.
TUTORIAL_2X = '''
model = dict(
    pretrained=None,
    roi_head=dict(
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=8,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=8,
            loss_mask=dict(
                type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))))

# optimizer
# lr is set for a batch size of 8
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=None)
# learning policy
lr_config = dict(
    policy='step',
    warmup='linear',
    warmup_iters=500,
    warmup_ratio=0.001,
    # [7] yields higher performance than [6]
    step=[7])
runner = dict(
    type='EpochBasedRunner', max_epochs=8)  # actual epoch = 8 * 8 = 64
log_config = dict(interval=100)
# For better, more stable performance initialize from COCO
load_from = 'https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r50_caffe_fpn_mstrain-poly_3x_coco/mask_rcnn_r50_caffe_fpn_mstrain-poly_3x_coco_bbox_mAP-0.408__segm_mAP-0.37_20200504_163245-42aa3d00.pth'  # noqa
'''

SAME_IN_3X = '''
model = dict(backbone=dict(init_cfg=None))
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=8, milestones=[7], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=8, val_interval=1)
default_hooks = dict(logger=dict(interval=100))
'''


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_tutorial_2x_config_translates_to_the_3x_form(tmp_path):
    old = load_config(write(tmp_path, "old.py", BASES_3X + TUTORIAL_2X))
    new = load_config(write(tmp_path, "new.py", BASES_3X + SAME_IN_3X))
    for key in ("optimizer", "optimizer_config", "lr_config", "runner", "log_config"):
        assert key not in old
    assert "pretrained" not in old.model and old.model.backbone.init_cfg is None
    assert old.optim_wrapper == new.optim_wrapper
    assert old.optim_wrapper.optimizer.lr == 0.01
    assert old.param_scheduler == new.param_scheduler
    assert find_scheduler(old, "MultiStepLR").milestones == [7]
    assert find_scheduler(old, "LinearLR").end == 500
    assert old.train_cfg == new.train_cfg and old.train_cfg.max_epochs == 8
    assert old.default_hooks.logger.interval == 100
    # Cityscapes has 8 classes: every class head follows them, the RPN stays class-agnostic.
    assert old.model.roi_head.bbox_head.num_classes == 8
    assert old.model.roi_head.mask_head.num_classes == 8
    assert new.model.roi_head.bbox_head.num_classes == 8  # inherited 80 was overwritten
    assert old.model.rpn_head.get("num_classes", 1) == 1


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


def test_hparams_and_cfg_options_apply(tmp_path):
    cfg = load_config(write(tmp_path, "new.py", BASES_3X + SAME_IN_3X),
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
