"""Pascal VOC XML -> COCO JSON, for users who want COCO metrics on VOC-style data.

Layout read: `SRC/Annotations/<id>.xml`, `SRC/JPEGImages/<file>` (the XML's `<filename>`, else
`<id>.jpg`) and, if present, `SRC/ImageSets/Main/<split>.txt` (one id per line) for the splits;
without them a seeded val split is drawn. VOC's 1-based pixel corners become 0-based (as mmdet's
own `pascal_voc.py` does). `difficult` objects become `iscrowd=1`: mmdet's CocoDataset marks
them ignored in training and COCO evaluation neither rewards nor penalises detecting them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raytune_ft.data.coco import CocoSet, carve_test, image_size, seeded_split
from raytune_ft.errors import UserError


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written in the XML
    difficult: bool
    truncated: bool


@dataclass(frozen=True)
class VocImage:
    filename: str | None
    objects: list[VocObject]


def parse_voc_xml(path: Path) -> VocImage:
    """One VOC annotation; a malformed file raises a UserError naming the file and the object."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        line, column = err.position
        raise UserError(f"{path}, line {line}, column {column}: not well-formed XML "
                        f"({err}).") from err
    objects = []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        where = f"{path}, object {number} ({name or 'no <name>'})"
        box = obj.find("bndbox")
        if not name or box is None:
            raise UserError(f"{where}: every <object> needs a <name> and a <bndbox>.")
        try:
            coords = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as err:
            raise UserError(f"{where}: <bndbox> needs numeric xmin, ymin, xmax and ymax "
                            f"({err}).") from err
        if not (coords[2] > coords[0] and coords[3] > coords[1]):
            raise UserError(f"{where}: the box {coords} is empty or inverted.")
        objects.append(VocObject(name, coords,  # type: ignore[arg-type]
                                 difficult=(obj.findtext("difficult") or "0").strip() == "1",
                                 truncated=(obj.findtext("truncated") or "0").strip() == "1"))
    return VocImage(root.findtext("filename"), objects)


def read_ids(path: Path) -> list[str]:
    """The image ids of a VOC list file (`ImageSets/Main/<split>.txt`: an id first on each line)."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def convert(src: Path, splits: Sequence[str] = ("train", "val"), classes: Sequence[str] = (),
            val_fraction: float = 0.2, seed: int = 0,
            test_fraction: float = 0.0) -> tuple[dict[str, dict], dict[str, int]]:
    """COCO documents `{"<split>.json": ...}` and counts for the summary."""
    ann_dir, img_dir = src / "Annotations", src / "JPEGImages"
    for folder in (ann_dir, img_dir):
        if not folder.is_dir():
            raise UserError(f"{folder} does not exist: the voc converter expects a VOC folder "
                            "(e.g. VOCdevkit/VOC2012) with Annotations/*.xml and JPEGImages/.")
    xml_files = {p.stem: p for p in sorted(ann_dir.glob("*.xml"))}
    if not xml_files:
        raise UserError(f"no annotation files (*.xml) in {ann_dir}.")
    set_dir = src / "ImageSets" / "Main"
    if all((set_dir / f"{s}.txt").is_file() for s in splits):
        split_ids = {s: read_ids(set_dir / f"{s}.txt") for s in splits}
    else:
        print(f"[raytune_ft.data] no {set_dir}/{{{','.join(splits)}}}.txt: drawing a val split "
              f"of {val_fraction:.0%} with seed {seed}", flush=True)
        split_ids = seeded_split(list(xml_files), val_fraction, seed)
    if test_fraction:
        if "train" not in split_ids or "test" in split_ids:
            raise UserError("--test-fraction draws a test split out of train: it needs 'train' "
                            "among --splits and no 'test' list of your own.")
        split_ids = carve_test(split_ids, test_fraction, seed)
    parsed: dict[str, VocImage] = {}
    for name, ids in split_ids.items():
        for image_id in ids:
            if image_id not in xml_files:
                raise UserError(f"{set_dir / (name + '.txt')} lists {image_id!r} but "
                                f"{ann_dir / (image_id + '.xml')} does not exist.")
            parsed[image_id] = parse_voc_xml(xml_files[image_id])
    found = sorted({o.name for image in parsed.values() for o in image.objects})
    categories = tuple(classes) or tuple(found)
    missing = [n for n in found if n not in categories]
    if missing:
        raise UserError(f"the annotations contain classes not in --classes: {', '.join(missing)}."
                        f" Add them to --classes (the order there is the label order).")
    documents, counts = {}, {"difficult as iscrowd": 0}
    for name, ids in split_ids.items():
        coco = CocoSet(categories=categories)
        for image_id in ids:
            image = parsed[image_id]
            file_name = image.filename or f"{image_id}.jpg"
            path = img_dir / file_name
            if not path.is_file():
                raise UserError(f"{xml_files[image_id]} has no image: {path} is missing.")
            width, height = image_size(path)  # the file, not <size>: tools often get it wrong
            index = coco.add_image(f"JPEGImages/{file_name}", width, height)
            for obj in image.objects:
                x1, y1, x2, y2 = obj.box
                coco.add_box(index, obj.name, (x1 - 1, y1 - 1, x2 - 1, y2 - 1),
                             iscrowd=obj.difficult, truncated=int(obj.truncated))
                counts["difficult as iscrowd"] += int(obj.difficult)
        documents[f"{name}.json"] = coco.to_json()
    return documents, counts
