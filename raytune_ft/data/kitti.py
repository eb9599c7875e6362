"""KITTI 2D object detection -> COCO JSON (train and a seeded val split).

Layout read: `SRC/training/label_2/<id>.txt` and `SRC/training/image_2/<id>.png`. Each label
line has 15 fields: type, truncated, occluded, alpha, left, top, right, bottom, then the 3D box
(h, w, l, x, y, z, rotation_y); a 16th (score) appears only in result files and is ignored.
Boxes become COCO `[x, y, w, h]` from left/top/right/bottom. `DontCare` regions are dropped
(counted in the summary): COCO evaluation can only ignore a region for one class, and mmdet's
default assigners ignore nothing, so keeping them as crowd boxes would change nothing but the
class list. `truncated` and `occluded` are kept on each annotation as attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raytune_ft.data.coco import CocoSet, carve_test, image_size, seeded_split
from raytune_ft.errors import UserError

CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")
IGNORED = "DontCare"
LABEL_DIR = "training/label_2"
IMAGE_DIR = "training/image_2"


@dataclass(frozen=True)
class KittiObject:
    type: str
    truncated: float
    occluded: int
    box: tuple[float, float, float, float]  # left, top, right, bottom


def parse_label_file(path: Path) -> list[KittiObject]:
    """All objects of one label file; a malformed line raises a UserError naming file and line."""
    objects = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{path}, line {number}"
        if len(fields) not in (15, 16):
            raise UserError(f"{where}: a KITTI label line has 15 fields (type truncated occluded "
                            f"alpha left top right bottom h w l x y z rotation_y), this one has "
                            f"{len(fields)}: {line.strip()!r}")
        kind = fields[0]
        if kind not in CLASSES and kind != IGNORED:
            raise UserError(f"{where}: unknown object type {kind!r}; KITTI's types are "
                            f"{', '.join(CLASSES + (IGNORED,))}.")
        try:
            numbers = [float(v) for v in fields[1:15]]
        except ValueError as err:
            raise UserError(f"{where}: a field is not a number ({err}): {line.strip()!r}") from err
        truncated, occluded = numbers[0], int(numbers[1])
        left, top, right, bottom = numbers[3:7]
        if kind != IGNORED and not (right > left and bottom > top):
            raise UserError(f"{where}: the box left={left} top={top} right={right} "
                            f"bottom={bottom} is empty or inverted.")
        objects.append(KittiObject(kind, truncated, occluded, (left, top, right, bottom)))
    return objects


def read_val_ids(path: Path, frames: Sequence[str]) -> dict[str, list[str]]:
    """A user's own split: the frame ids listed in `path` are val, every other frame train."""
    if not path.is_file():
        raise UserError(f"--val-ids file {path} does not exist.")
    known = set(frames)
    val = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        frame = line.strip().removesuffix(".txt").removesuffix(".png")
        if frame and frame not in known:
            raise UserError(f"{path}, line {number}: frame {frame!r} has no label file.")
        if frame:
            val.append(frame)
    return {"train": sorted(known - set(val)), "val": sorted(set(val))}


def convert(src: Path, val_fraction: float = 0.2, seed: int = 0,
            classes: Sequence[str] = CLASSES,
            val_ids: Path | None = None,
            test_fraction: float = 0.0) -> tuple[dict[str, dict], dict[str, int]]:
    """COCO documents `{"train.json": ..., "val.json": ...[, "test.json": ...]}` and counts
    for the summary."""
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        raise UserError(f"--classes {', '.join(unknown)}: not KITTI object types; choose from "
                        f"{', '.join(CLASSES)}.")
    label_dir, image_dir = src / LABEL_DIR, src / IMAGE_DIR
    for folder in (label_dir, image_dir):
        if not folder.is_dir():
            raise UserError(f"{folder} does not exist: the kitti converter expects KITTI's "
                            f"object layout SRC/{LABEL_DIR}/*.txt and SRC/{IMAGE_DIR}/*.png "
                            "(from data_object_label_2.zip and data_object_image_2.zip).")
    labels = {p.stem: p for p in sorted(label_dir.glob("*.txt"))}
    if not labels:
        raise UserError(f"no label files (*.txt) in {label_dir}.")
    for frame, label in labels.items():
        if not (image_dir / f"{frame}.png").is_file():
            raise UserError(f"{label} has no image: {image_dir / (frame + '.png')} is missing.")
    split = read_val_ids(val_ids, list(labels)) if val_ids else \
        seeded_split(list(labels), val_fraction, seed)
    split = carve_test(split, test_fraction, seed)
    documents, counts = {}, {"DontCare dropped": 0}
    for name, frames in split.items():
        coco = CocoSet(categories=tuple(classes))
        for done, frame in enumerate(frames, start=1):
            width, height = image_size(image_dir / f"{frame}.png")
            image_id = coco.add_image(f"{frame}.png", width, height)
            for obj in parse_label_file(labels[frame]):
                if obj.type == IGNORED:
                    counts["DontCare dropped"] += 1
                    continue
                if obj.type in coco.categories:
                    coco.add_box(image_id, obj.type, obj.box, truncated=obj.truncated,
                                 occluded=obj.occluded)
            if done % 1000 == 0:
                print(f"[raytune_ft.data] kitti {name}: {done}/{len(frames)} frames", flush=True)
        documents[f"{name}.json"] = coco.to_json()
    return documents, counts
