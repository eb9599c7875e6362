"""Loading configs: 2.x keys that cannot be translated, num_classes from the classes, and clear
errors. (The tutorial's whole 2.x config against its 3.x form: tests/test_configs.py.)"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import REPO
from raytune_ft.mmconfig.config import ConfigError, load_config
from raytune_ft.errors import UserError
from raytune_ft.mmconfig.hparams import find_scheduler
from raytune_ft.mmconfig.legacy import LegacyConfigError

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


TUTORIAL_BASES = """_base_ = [
    '../_base_/models/mask_rcnn_r50_fpn.py',
    '../_base_/datasets/cityscapes_instance.py', '../_base_/default_runtime.py'
]
"""


def tutorial_config(folder: Path) -> Path:
    """The fine-tuning tutorial's config as published for MMDetection 2.x: its _base_ lines
    and, verbatim, its model/optimizer/lr_config/runner/log_config/load_from snippets (the body
    of the shipped 2.x-style config)."""
    shipped = (REPO / "configs/cityscapes/mask_rcnn_r50_fpn_finetune_2x_style.py").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mask_rcnn_r50_fpn_cityscapes.py"
    path.write_text(TUTORIAL_BASES + shipped[shipped.index("model = dict("):])
    return path


def test_tutorial_config_pasted_verbatim_reaches_the_data_check(tmp_path, capsys, monkeypatch,
                                                             empty_tempdir):
    from raytune_ft.cli.search import main as search_main

    monkeypatch.chdir(tmp_path)  # its data_root data/cityscapes/ does not exist here
    cfg = tutorial_config(tmp_path / "my_configs")
    rc = search_main(["--config", str(cfg), "--check-only", "--storage-path",
                      str(tmp_path / "exp")])
    out, err = capsys.readouterr()
    assert rc == 2
    for old, new in (("models/mask_rcnn_r50_fpn.py", "models/mask-rcnn_r50_fpn.py"),
                     ("datasets/cityscapes_instance.py", "datasets/cityscapes_instance.py"),
                     ("default_runtime.py", "default_runtime.py")):
        assert f"_base_ '../_base_/{old}' -> 'mmdet::_base_/{new}'" in out
    assert "instancesonly_filtered_gtFine_train.json" in err and "does not exist" in err, err
    assert "_base_" not in err
    cfg_loaded = load_config(cfg)  # the 2.x keys are translated as for the shipped config
    # where the rewritten copy of the config was made (by the check above and this load)
    assert not list(empty_tempdir.iterdir()), "the rewritten copy of the config was left behind"
    assert cfg_loaded.train_cfg.max_epochs == 8
    assert find_scheduler(cfg_loaded, "MultiStepLR").milestones == [7]


def test_a_local_base_wins_and_an_unknown_one_names_the_closest(tmp_path):
    local = tmp_path / "_base_"
    local.mkdir()
    (local / "default_runtime.py").write_text(
        "_base_ = ['mmdet::_base_/default_runtime.py']\nmarker = 'mine'\n")
    cfg = tutorial_config(tmp_path / "cfgs")
    assert load_config(cfg).marker == "mine"  # ../_base_/default_runtime.py exists here
    typo = tmp_path / "cfgs" / "typo.py"
    typo.write_text("_base_ = ['../_base_/models/mask_rcnn_r50_fpnn.py']\n")
    with pytest.raises(UserError) as err:
        load_config(typo)
    text = str(err.value)
    assert "'../_base_/models/mask_rcnn_r50_fpnn.py' does not exist" in text
    assert "closest shipped: mmdet::_base_/models/mask-rcnn_r50_fpn.py" in text
