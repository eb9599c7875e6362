"""Every config MMDetection ships (mmdet/.mim/configs, its bases excluded) goes through what a
search does with a user's config before any Ray or training: load, read the recipe, pick the
default metric, write a fine-tune schedule. Each ends accepted or refused with a UserError;
any other exception is a crash a user would see as a traceback."""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import pytest

import mmdet
from raytune_ft.errors import UserError
from raytune_ft.mmconfig.config import load_config
from raytune_ft.mmconfig.hparams import apply_hparams, read_hparams
from raytune_ft.mmconfig.metrics import default_metric

SHIPPED = Path(mmdet.__file__).parent / ".mim" / "configs"

# Why a shipped config is refused, by a phrase of its one-paragraph error.
REASONS = {
    "iteration-based loop": "iteration-based loops (IterBasedTrainLoop",
    "no training loop (tracking / TTA)": "has no training loop",
    "needs mmpretrain": "needs the Python package 'mmpretrain'",
    "a _base_ file MMDetection does not ship": "could not be loaded",
}


def fine_tune(path: Path) -> str:
    """What a search does with the config before Ray: 'accepted' or the refusal's reason."""
    try:
        cfg = load_config(path)
        recipe = read_hparams(cfg)
        default_metric(cfg)
        schedule = {"max_epochs": 4, "lr": recipe.get("lr", 0.02) / 2}
        if "milestones" in recipe:
            schedule["milestones"] = [3]
        apply_hparams(cfg, schedule)
        return "accepted"
    except UserError as err:
        text = str(err)
        reasons = [reason for reason, phrase in REASONS.items() if phrase in text]
        assert len(reasons) == 1, f"{path}: a refusal of no known kind: {text}"
        assert "\n" not in text.strip() and "sys.path" not in text, f"{path}: {text}"
        return reasons[0]


def test_every_shipped_config_is_accepted_or_refused_with_a_user_error(capsys):
    paths = sorted(p for p in SHIPPED.rglob("*.py") if "_base_" not in p.parts)
    assert len(paths) > 800, f"MMDetection's configs not found under {SHIPPED}"
    logging.disable(logging.INFO)  # the head resizing lines of 800 configs
    try:
        outcomes = {p.relative_to(SHIPPED).as_posix(): fine_tune(p) for p in paths}
    finally:
        logging.disable(logging.NOTSET)
    counts = collections.Counter(outcomes.values())
    with capsys.disabled():
        print(f"\nMMDetection's {len(paths)} shipped configs: "
              + ", ".join(f"{n} {what}" for what, n in counts.most_common()))
    # the detector configs users start from are among the accepted
    for accepted in ("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
                     "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
                     "retinanet/retinanet_r50_fpn_1x_coco.py",
                     "cityscapes/faster-rcnn_r50_fpn_1x_cityscapes.py",
                     "guided_anchoring/ga-fast-rcnn_r50-caffe_fpn_1x_coco.py"):
        assert outcomes[accepted] == "accepted", (accepted, outcomes[accepted])
    assert outcomes["sort/sort_faster-rcnn_r50_fpn_8xb2-4e_mot17halftrain_test-mot17halfval.py"] \
        == "no training loop (tracking / TTA)"
    assert outcomes["faster_rcnn/faster-rcnn_r50-caffe_fpn_90k_coco.py"] == "iteration-based loop"
    assert counts["accepted"] >= 740, counts


def test_a_tracking_config_without_a_training_loop_says_so():
    path = SHIPPED / "deepsort/deepsort_faster-rcnn_r50_fpn_8xb2-4e_mot17halftrain_test-mot17halfval.py"
    with pytest.raises(UserError, match=r"has no training loop \(train_cfg is None\).*"
                                        r"EpochBasedTrainLoop"):
        load_config(path)


def test_a_config_needing_a_missing_package_names_it_and_the_install():
    path = SHIPPED / "convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py"
    with pytest.raises(UserError) as err:
        load_config(path)
    text = str(err.value)
    assert "'mmpretrain'" in text and "pip install mmpretrain" in text, text
    assert "sys.path" not in text and "\n" not in text, text


def test_a_2x_optimizer_config_with_delete_translates_its_grad_clip():
    """`optimizer_config = dict(_delete_=True, grad_clip=...)` (MMDetection's own 2.x style):
    the clip lands on the optim wrapper, nothing else is refused."""
    cfg = load_config(SHIPPED / "guided_anchoring/ga-fast-rcnn_r50-caffe_fpn_1x_coco.py")
    assert "optimizer_config" not in cfg
    assert dict(cfg.optim_wrapper.clip_grad) == {"max_norm": 35, "norm_type": 2}
