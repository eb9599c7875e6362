"""Test helpers: a tiny COCO data set, a tiny fine-tune config, the testing hooks' config lines.

Imported by tests as `from helpers import ...` (tests/ is on sys.path under pytest's rootdir
conftest); fixtures live in conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("tree", "rock")


def write_tiny_coco(root: Path, n_train: int = 8, n_val: int = 4, size: int = 128,
                    classes: tuple[str, ...] = CLASSES, seed: int = 0) -> Path:
    """Noise images with bright squares (class 0) and dark discs (class 1), as COCO JSON."""
    rng = np.random.default_rng(seed)
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(classes)]
    for split, count in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(count):
            img = rng.integers(60, 120, size=(size, size, 3), dtype=np.uint8)
            image_id = i + 1
            for k in range(int(rng.integers(1, 4))):
                w, h = (int(v) for v in rng.integers(18, 40, size=2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                cls = k % len(classes)
                img[y:y + h, x:x + w] = (230, 220, 40) if cls == 0 else (20, 20, 160)
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cls + 1,
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            name = f"{split}_{i:03d}.png"
            Image.fromarray(img).save(root / split / name)
            images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def write_tiny_config(path: Path, data_root: Path, load_from: str | None = None,
                      max_epochs: int = 2, extra: str = "") -> Path:
    """A fine-tune config inheriting the demo's small Faster R-CNN, on the tiny data set."""
    step = (f"dict(type='MultiStepLR', by_epoch=True, begin=0, end={max_epochs}, "
            f"milestones=[{max_epochs - 1}], gamma=0.1)") if max_epochs > 1 else ""
    path.write_text(f"""
_base_ = [{str(REPO / 'configs/demo/faster_rcnn_mnv2_trees.py')!r}]
data_root = {str(data_root) + '/'!r}
metainfo = dict(classes={CLASSES!r})
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
    {step}
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1))
load_from = {load_from!r}
{extra}
""")
    return path


def with_testing_hooks(*hooks: str) -> str:
    """Config lines that load raytune_ft.testing and add `hooks` (dict(...) expressions)."""
    return ("custom_imports = dict(imports=['raytune_ft.testing'], allow_failed_imports=False)\n"
            f"custom_hooks = [{', '.join(hooks)}]\n")


RANK_AUDIT = "dict(type='RankAuditHook')"
