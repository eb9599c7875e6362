"""Cityscapes (gtFine) -> COCO instance JSON, by MMDetection's own converter.

mmdet ships `tools/dataset_converters/cityscapes.py` in its wheel (`mmdet/.mim/`); it reads the
`*_gtFine_instanceIds.png` images. The official gtFine download has them, but many copies (and
every hand-made subset) carry only the `*_gtFine_polygons.json`: for those this module first
draws the instance images with cityscapesscripts' `createInstanceImage` into a staging folder
(the source tree is never written to), then calls mmdet's converter and checks what it wrote.
Output names are mmdet's (`instancesonly_filtered_gtFine_<split>.json`), which mmdet's
`cityscapes_instance.py` base config reads.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from raytune_ft.errors import UserError

IMAGE_SUFFIX = "_leftImg8bit.png"
CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def annotation_name(split: str) -> str:
    return f"instancesonly_filtered_gtFine_{split}.json"


def mmdet_converter() -> ModuleType:
    """mmdet's shipped `cityscapes.py` converter, imported from the installed wheel."""
    try:
        import cityscapesscripts.helpers.labels  # noqa: F401  (the converter needs it)
        import pyquaternion  # noqa: F401  (cityscapesscripts' annotation module imports it)
    except ImportError as err:
        raise UserError(f"the cityscapes converter needs cityscapesscripts ({err}): `pip "
                        "install --no-deps cityscapesscripts==2.3.0 pyquaternion` (scripts/"
                        "setup.sh does; --no-deps because it pins the obsolete `typing`).") from err
    name = "mmdet_cityscapes_converter"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("mmdet")
    path = Path(list(spec.submodule_search_locations)[0]) / ".mim" / "tools" / \
        "dataset_converters" / "cityscapes.py"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # --nproc > 1 pickles its functions by module name
    module_spec.loader.exec_module(module)
    return module


def _check_polygons(path: Path) -> None:
    """Catch what would make json2instanceImg exit the process: bad JSON, unknown labels."""
    from cityscapesscripts.helpers.labels import name2label

    try:
        document = json.loads(path.read_text())
        objects = document["objects"]
        int(document["imgWidth"]), int(document["imgHeight"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a Cityscapes polygon file (needs imgWidth, imgHeight and "
                        f"objects): {err}") from err
    for number, obj in enumerate(objects, start=1):
        label = str(obj.get("label", ""))
        base = label[:-len("group")] if label.endswith("group") else label
        if label not in name2label and base not in name2label:
            raise UserError(f"{path}, object {number}: unknown Cityscapes label {label!r}.")
        polygon = obj.get("polygon")
        if not isinstance(polygon, list) or len(polygon) < 3:
            raise UserError(f"{path}, object {number} ({label}): a polygon needs at least three "
                            "[x, y] points.")


def _draw_instance_image(polygons: Path, target: Path) -> None:
    """cityscapesscripts' `json2instanceImg`, saved as the 16-bit PNG Cityscapes ships.

    (Its own `save` of a 32-bit "I" image fails on Pillow >= 11: "cannot write mode I as PNG".)
    """
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    annotation = Annotation()
    annotation.fromJsonFile(str(polygons))
    ids = np.asarray(createInstanceImage(annotation, "ids"), dtype=np.int64)
    Image.fromarray(ids.astype(np.uint16)).save(target)  # ids < 34 * 1000 + 999 fit 16 bits


def _stage_instance_images(src: Path, split: str, staging: Path) -> tuple[Path, Path, int]:
    """Image dir and a staged gtFine dir holding an instanceIds PNG for every image."""
    img_dir, gt_dir = src / "leftImg8bit" / split, src / "gtFine" / split
    for folder in (img_dir, gt_dir):
        if not folder.is_dir():
            raise UserError(f"{folder} does not exist: the cityscapes converter expects "
                            f"SRC/leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX} and "
                            f"SRC/gtFine/{split}/<city>/*_gtFine_polygons.json (or "
                            "*_gtFine_instanceIds.png).")
    images = sorted(img_dir.glob("*/*.png"))
    if not images:
        raise UserError(f"no images in {img_dir}/<city>/.")
    stems = set()
    for image in images:
        if not image.name.endswith(IMAGE_SUFFIX):
            raise UserError(f"{image}: Cityscapes image names end with {IMAGE_SUFFIX}.")
        stems.add(str(image.relative_to(img_dir))[:-len(IMAGE_SUFFIX)])
    for label in sorted(gt_dir.glob("*/*_gtFine_polygons.json")):
        stem = str(label.relative_to(gt_dir))[:-len("_gtFine_polygons.json")]
        if stem not in stems:
            raise UserError(f"{label} has no image: {img_dir / (stem + IMAGE_SUFFIX)} is missing.")
    staged = staging / "gtFine" / split
    drawn = 0
    for stem in sorted(stems):
        instance = gt_dir / f"{stem}_gtFine_instanceIds.png"
        polygons = gt_dir / f"{stem}_gtFine_polygons.json"
        target = staged / f"{stem}_gtFine_instanceIds.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if instance.is_file():
            target.symlink_to(instance.resolve())
        elif polygons.is_file():
            _check_polygons(polygons)
            _draw_instance_image(polygons, target)
            drawn += 1
        else:
            raise UserError(f"{img_dir / (stem + IMAGE_SUFFIX)} has no annotation: neither "
                            f"{polygons} nor {instance} exists.")
    return img_dir, staged, drawn


def _check_output(document: dict[str, Any], n_images: int, where: str) -> None:
    names = tuple(c["name"] for c in document["categories"])
    if names != CLASSES:
        raise RuntimeError(f"mmdet's converter wrote categories {names} to {where}, "
                           f"expected {CLASSES}")
    if len(document["images"]) != n_images:
        raise RuntimeError(f"mmdet's converter wrote {len(document['images'])} images to "
                           f"{where}, expected {n_images}")
    for ann in document.get("annotations", []):
        if ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0 or "counts" not in ann["segmentation"]:
            raise RuntimeError(f"mmdet's converter wrote a malformed annotation to {where}: {ann}")


def convert(src: Path, splits: Sequence[str] = ("train", "val"),
            nproc: int = 1) -> tuple[dict[str, dict], dict[str, int]]:
    """COCO documents `{annotation_name(split): ...}` and counts for the summary."""
    converter = mmdet_converter()
    documents, counts = {}, {"instance images drawn from polygons": 0}
    staging = Path(tempfile.mkdtemp(prefix="raytune_ft-cityscapes-"))
    try:
        for split in splits:
            img_dir, gt_dir, drawn = _stage_instance_images(src, split, staging)
            counts["instance images drawn from polygons"] += drawn
            files = converter.collect_files(str(img_dir), str(gt_dir))
            infos = converter.collect_annotations(files, nproc=nproc)
            out_file = staging / annotation_name(split)
            document = converter.cvt_annotations(infos, str(out_file))
            document.setdefault("annotations", [])  # mmdet drops the key when there are none
            _check_output(document, len(files), str(out_file))
            documents[annotation_name(split)] = document
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return documents, counts
