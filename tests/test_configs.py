"""Every shipped config loads and builds its model and pipelines (downloading nothing); the
Cityscapes fine-tune in 2.x keys equals its 3.x form; converter output feeds the configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mmengine.dataset import Compose

from helpers import REPO
from raytune_ft.mmconfig.config import dataset_classes, innermost_dataset, load_config
from raytune_ft.data.__main__ import main as data_main
from raytune_ft.mmconfig.metrics import default_metric
from raytune_ft.mmconfig.preflight import check_annotations
from test_data import write_cityscapes, write_kitti, write_voc

SHIPPED = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.py")
                 if "_base_" not in p.parts)
CITYSCAPES = REPO / "configs/cityscapes/mask_rcnn_r50_fpn_finetune.py"
CITYSCAPES_2X = REPO / "configs/cityscapes/mask_rcnn_r50_fpn_finetune_2x_style.py"
KITTI = REPO / "configs/kitti/faster_rcnn_r50_fpn_finetune.py"


@pytest.fixture
def no_downloads(monkeypatch):
    """Fail the test if anything tries to fetch weights."""
    import mmengine.runner.checkpoint as mm_checkpoint
    import torch.hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(mm_checkpoint, "load_from_http", refuse)


def class_head_sizes(model: torch.nn.Module) -> dict[str, int]:
    return {name: m.num_classes for name, m in model.named_modules()
            if hasattr(m, "num_classes") and "rpn_head" not in name and name}


def test_the_shipped_configs_are_the_expected_ones():
    assert {"configs/cityscapes/mask_rcnn_r50_fpn_finetune.py",
            "configs/cityscapes/mask_rcnn_r50_fpn_finetune_2x_style.py",
            "configs/kitti/faster_rcnn_r50_fpn_finetune.py",
            "configs/custom/faster_rcnn_r50_fpn_coco_template.py",
            "configs/custom/faster_rcnn_r50_fpn_voc_template.py",
            "configs/demo/faster_rcnn_mnv2_trees.py"} <= set(SHIPPED)


@pytest.mark.parametrize("relpath", SHIPPED)
def test_shipped_config_builds_model_and_pipelines(relpath, no_downloads):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    cfg = load_config(REPO / relpath)
    classes = dataset_classes(cfg)
    assert classes, "every shipped config names its classes"
    model = MODELS.build(cfg.model)
    heads = class_head_sizes(model)
    assert heads and set(heads.values()) == {len(classes)}, heads
    for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset, _ = innermost_dataset(cfg[split])
        pipeline = Compose(dataset["pipeline"])
        assert len(pipeline.transforms) == len(dataset["pipeline"]) >= 3
    assert cfg.train_cfg.max_epochs >= 1 and cfg.optim_wrapper.optimizer.lr > 0
    load_from = str(cfg.load_from)
    assert load_from.startswith("https://download.openmmlab.com/") or \
        load_from.endswith("mobilenet_v2_imagenet_mmdet.pth")


def test_cityscapes_2x_style_resolves_to_the_3x_config():
    new, old = load_config(CITYSCAPES), load_config(CITYSCAPES_2X)
    for key in ("optimizer", "optimizer_config", "lr_config", "runner", "log_config"):
        assert key not in old
    assert old.model == new.model  # heads: Shared2FCBBoxHead + FCNMaskHead, 8 classes, SmoothL1
    assert old.model.roi_head.bbox_head.num_classes == old.model.roi_head.mask_head.num_classes == 8
    assert old.model.roi_head.bbox_head.loss_bbox.type == "SmoothL1Loss"
    assert old.model.backbone.init_cfg is None  # model.pretrained=None
    assert old.model.rpn_head.get("num_classes", 1) == 1  # the RPN stays class-agnostic
    assert old.optim_wrapper == new.optim_wrapper
    assert old.optim_wrapper.optimizer == dict(type="SGD", lr=0.01, momentum=0.9,
                                               weight_decay=0.0001)
    assert old.param_scheduler == new.param_scheduler == [
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type="MultiStepLR", by_epoch=True, begin=0, end=8, milestones=[7], gamma=0.1)]
    assert old.train_cfg == new.train_cfg
    assert (old.train_cfg.type, old.train_cfg.max_epochs, old.train_cfg.val_interval) == \
        ("EpochBasedTrainLoop", 8, 1)
    assert old.default_hooks.logger.interval == new.default_hooks.logger.interval == 100
    assert old.load_from == new.load_from
    assert old.train_dataloader == new.train_dataloader
    assert old.val_evaluator == new.val_evaluator


def _point_at(cfg, root: Path) -> None:
    for split in ("train_dataloader", "val_dataloader"):
        dataset, _ = innermost_dataset(cfg[split])
        dataset["data_root"] = str(root) + "/"
    cfg.val_evaluator["ann_file"] = str(root / innermost_dataset(cfg.val_dataloader)[0]["ann_file"])


def _first_sample(cfg, split: str = "train_dataloader"):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    dataset = DATASETS.build(innermost_dataset(cfg[split])[0])
    return dataset, dataset[0]


def test_converted_kitti_feeds_the_kitti_config(tmp_path):
    out = tmp_path / "data" / "kitti"
    assert data_main(["kitti", str(write_kitti(tmp_path / "kitti")), str(out)]) == 0
    cfg = load_config(KITTI)
    _point_at(cfg, out)
    assert check_annotations(cfg, "train_dataloader")["images"] == 4
    assert check_annotations(cfg, "val_dataloader")["images"] == 1
    dataset, sample = _first_sample(cfg)
    assert len(dataset) == 4
    train = json.loads((out / "annotations/train.json").read_text())
    first = train["images"][0]
    expected = [a["category_id"] - 1 for a in train["annotations"] if a["image_id"] == first["id"]]
    gt = sample["data_samples"].gt_instances
    assert gt.labels.tolist() == expected and len(gt.bboxes) == len(expected)
    assert sample["data_samples"].ori_shape == (first["height"], first["width"])


def test_converted_cityscapes_feeds_the_cityscapes_config_with_masks(tmp_path):
    out = tmp_path / "data" / "cityscapes"
    src = write_cityscapes(tmp_path / "cityscapes")
    assert data_main(["cityscapes", str(src), str(out), "--nproc", "1"]) == 0
    cfg = load_config(CITYSCAPES)
    _point_at(cfg, out)
    assert check_annotations(cfg, "train_dataloader")["images"] == 2 * 8  # RepeatDataset x8
    dataset, sample = _first_sample(cfg)
    gt = sample["data_samples"].gt_instances
    assert len(gt.masks) == len(gt.bboxes) == len(gt.labels) > 0
    assert set(gt.labels.tolist()) <= set(range(8))
    assert default_metric(cfg) == "coco/bbox_mAP"


def test_voc_template_reads_voc_xml_and_is_scored_with_voc_map(tmp_path):
    voc_root = tmp_path / "my_voc"
    write_voc(voc_root / "VOC2012")
    cfg = load_config(REPO / "configs/custom/faster_rcnn_r50_fpn_voc_template.py",
                      {"train_dataloader.dataset.metainfo.classes": ("cat", "dog", "person")})
    _point_at(cfg, voc_root)
    assert check_annotations(cfg, "train_dataloader")["images"] == 2
    assert default_metric(cfg) == "pascal_voc/mAP"
    cfg.train_dataloader.dataset.filter_cfg = dict(filter_empty_gt=True, min_size=8)
    _, sample = _first_sample(cfg)
    assert sample["data_samples"].gt_instances.labels.tolist() == [1]  # the dog; person ignored
