"""The embedded demo's data: real aerial tree-crown images with real boxes, tiled into COCO sets.

Images and VOC annotations come from the `deepforest` wheel (MIT, installed `--no-deps`, located
without importing it). Each image is cut into square tiles on a grid; the rightmost grid columns
of every image become the val set, so train and val tiles never overlap in space.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from raytune_ft.data.voc import parse_voc_xml
from raytune_ft.errors import UserError
from raytune_ft.storage import shipped

DEMO_ROOT = shipped("data", "demo")
DEMO_CONFIG = shipped("configs", "demo", "faster_rcnn_mnv2_trees.py")
DEMO_SPACE = shipped("search_spaces", "demo.yaml")
CLASSES = ("tree",)
DEMO_IMAGES = ("OSBS_029", "SOAP_061", "2019_YELL_2_541000_4977000_image_crop",
               "2019_YELL_2_528000_4978000_image_crop2")


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float


def deepforest_data_dir() -> Path:
    spec = importlib.util.find_spec("deepforest")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the demo needs the 'deepforest' package for its images (install it with "
                        "`pip install --no-deps deepforest==2.1.0`, or run scripts/setup.sh).")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def read_voc_boxes(xml_path: Path) -> list[Box]:
    """deepforest's boxes (VOC XML, 0-based pixel corners as its tools write them)."""
    return [Box(*obj.box) for obj in parse_voc_xml(xml_path).objects]


def _clip(box: Box, x0: int, y0: int, size: int, min_keep: float) -> list[float] | None:
    """The box in tile coordinates as COCO [x, y, w, h], if enough of it lies in the tile."""
    cx1, cy1 = max(box.x1, x0), max(box.y1, y0)
    cx2, cy2 = min(box.x2, x0 + size), min(box.y2, y0 + size)
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    area = (box.x2 - box.x1) * (box.y2 - box.y1)
    if (cx2 - cx1) * (cy2 - cy1) < min_keep * area:
        return None
    return [cx1 - x0, cy1 - y0, cx2 - cx1, cy2 - cy1]


def build_demo(out: Path = DEMO_ROOT, images: tuple[str, ...] = DEMO_IMAGES, tile: int = 200,
               val_fraction: float = 0.25, min_keep: float = 0.5) -> dict[str, int]:
    """Write `out/{train,val}/*.png` tiles and `out/annotations/{train,val}.json` (COCO)."""
    src = deepforest_data_dir()
    sets = {s: {"images": [], "annotations": [],
                "categories": [{"id": 1, "name": CLASSES[0]}]} for s in ("train", "val")}
    for split in sets:
        (out / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    next_img, next_ann = 1, 1
    for stem in images:
        picture = np.asarray(Image.open(src / f"{stem}.png").convert("RGB"))
        boxes = read_voc_boxes(src / f"{stem}.xml")
        rows, cols = picture.shape[0] // tile, picture.shape[1] // tile
        val_cols = max(1, math.floor(val_fraction * cols + 0.5))
        for r in range(rows):
            for c in range(cols):
                split = "val" if c >= cols - val_cols else "train"
                x0, y0 = c * tile, r * tile
                name = f"{stem}_r{r}_c{c}.png"
                Image.fromarray(picture[y0:y0 + tile, x0:x0 + tile]).save(out / split / name)
                sets[split]["images"].append(
                    {"id": next_img, "file_name": name, "width": tile, "height": tile})
                for box in boxes:
                    bbox = _clip(box, x0, y0, tile, min_keep)
                    if bbox is not None:
                        sets[split]["annotations"].append(
                            {"id": next_ann, "image_id": next_img, "category_id": 1,
                             "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
                        next_ann += 1
                next_img += 1
    for split, coco in sets.items():
        (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    counts = {f"{s}_{k}": len(v[k]) for s, v in sets.items() for k in ("images", "annotations")}
    (out / "READY").write_text(json.dumps({"images": list(images), "tile": tile, **counts}))
    return counts


BACKBONE_CHECKPOINT = "mobilenet_v2_imagenet_mmdet.pth"


def is_demo_config(path: str | Path | None) -> bool:
    """Whether a run fine-tunes the embedded demo: its config, or no config (the default)."""
    return path is None or Path(path).resolve() == DEMO_CONFIG.resolve()


def _build_demo_atomically(out: Path) -> None:
    """Build the tiles in a staging folder and rename it to `out` in one step: two searches
    started at once on a fresh machine (or a run killed mid-build) never leave or read a half
    written demo. The first rename wins; the other build is dropped."""
    import os
    import shutil

    from raytune_ft.data.coco import staging_beside

    with staging_beside(out) as staging:
        counts = build_demo(staging)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the demo from the machine's others
        if out.exists() and not (out / "READY").exists():
            shutil.rmtree(out, ignore_errors=True)  # an older version's unfinished build
        try:
            os.rename(staging, out)
        except OSError:
            if not (out / "READY").exists():
                raise
        else:
            print(f"[raytune_ft] demo data written to {out}: {counts}", flush=True)


def ensure_demo(out: Path = DEMO_ROOT) -> Path:
    """Build the demo data set and its pretrained checkpoint once; later calls reuse them."""
    from raytune_ft.data.weights import is_current_checkpoint, write_backbone_checkpoint

    if not (out / "READY").exists():
        _build_demo_atomically(out)
    if not is_current_checkpoint(out / BACKBONE_CHECKPOINT):
        write_backbone_checkpoint(out / BACKBONE_CHECKPOINT)
        print(f"[raytune_ft] ImageNet MobileNetV2 weights converted to "
              f"{out / BACKBONE_CHECKPOINT}", flush=True)
    return out


DEMO_PREDICTIONS = shipped("bench", "curves", "demo_predictions.json")


def replay_prediction(trials: int) -> str | None:
    """One sentence: what the demo's curve replay (`bench/replay.py --predict`) says about a
    default search that ran `trials` trials one at a time: how often the config it returns is
    truly better than the recipe (on seeds it never saw). None without that file."""
    if not DEMO_PREDICTIONS.exists():
        return None
    by_trials = json.loads(DEMO_PREDICTIONS.read_text())["by_trials"]
    if not by_trials:
        return None
    nearest = min(by_trials, key=lambda k: abs(int(k) - trials))
    p = by_trials[nearest]
    return (f"the demo's curve replay predicts that a default search of {nearest} trials "
            f"returns a config truly better than the recipe in {p['p_beats_recipe']:.0%} of "
            f"searches (true mean {p['median_true_quality']:.3f} vs the recipe's "
            f"{p['recipe_true_mean']:.3f}, {p['replays']} replays; bench/replay.py --predict)")
