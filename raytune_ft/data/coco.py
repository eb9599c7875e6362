"""The COCO JSON the converters build, and how they write it without half-written output."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from raytune_ft.errors import UserError


@dataclass
class CocoSet:
    """One split of a COCO detection/instance data set, built image by image."""

    categories: Sequence[str]
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def add_image(self, file_name: str, width: int, height: int) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name,
                            "width": int(width), "height": int(height)})
        return image_id

    def add_box(self, image_id: int, category: str, xyxy: Sequence[float], iscrowd: bool = False,
                **attributes: Any) -> None:
        """Add a box given as left, top, right, bottom; COCO stores [x, y, w, h]."""
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        w, h = x2 - x1, y2 - y1
        self.annotations.append({
            "id": len(self.annotations) + 1, "image_id": image_id,
            "category_id": self.categories.index(category) + 1,
            "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": int(iscrowd), **attributes})

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "annotations": self.annotations,
                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.categories)]}


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, checked to be a readable image."""
    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()
        return size
    except Exception as err:  # PIL raises many types for broken files
        raise UserError(f"cannot read the image {path}: {err}. Replace or remove the file "
                        "(and its label) and run the converter again.") from err


def seeded_split(ids: Sequence[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Shuffle the sorted ids with `random.Random(seed)`; the first `round(n * f)` are val."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(order) * val_fraction)) if len(order) > 1 else 0
    return {"train": sorted(order[n_val:]), "val": sorted(order[:n_val])}


def carve_test(split: dict[str, list[str]], test_fraction: float,
               seed: int) -> dict[str, list[str]]:
    """Move a seeded `test_fraction` of all ids out of train into a held-out test split.

    Drawn from train only, so val (drawn or the user's) stays exactly as it was; the search
    never sees test, which scores the winner once at the end ("picked on val, scored on test").
    """
    if not test_fraction:
        return split
    total = sum(len(ids) for ids in split.values())
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"--test-fraction must be between 0 and 1 (exclusive), got "
                        f"{test_fraction}.")
    n_test = max(1, round(total * test_fraction))
    if n_test >= len(split["train"]):
        raise UserError(f"--test-fraction {test_fraction} asks for {n_test} test images but "
                        f"only {len(split['train'])} are left for training after val: lower it.")
    order = sorted(split["train"])
    random.Random(seed + 1).shuffle(order)  # not seed itself: independent of the val draw
    return {**split, "train": sorted(order[n_test:]), "test": sorted(order[:n_test])}


def check_links(out: Path, links: Mapping[str, Path]) -> None:
    """Refuse before writing anything if a link target name in OUT is taken by something else."""
    for name, target in links.items():
        place = out / name
        if (place.exists() or place.is_symlink()) and place.resolve() != target.resolve():
            raise UserError(f"{place} already exists and is not a link to {target}; choose "
                            "another output folder or remove it.")


@contextmanager
def staging_beside(out: Path) -> Iterator[Path]:
    """A scratch folder next to `out`, removed afterwards: on the same file system, so what is
    built there moves into `out` with one os.replace/os.rename, and a reader of `out` never
    sees it half-written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_dataset(out: Path, annotation_files: Mapping[str, Mapping[str, Any]],
                  links: Mapping[str, Path] | None = None) -> list[Path]:
    """Write `out/annotations/<name>` for each JSON document, and link image folders into `out`.

    The JSON is written to a staging folder beside `out` first and moved into place only when
    every file is complete, so an error (or Ctrl-C) never leaves a half-written data set.
    """
    links = dict(links or {})
    check_links(out, links)
    with staging_beside(out) as staging:
        for name, document in annotation_files.items():
            (staging / name).write_text(json.dumps(document))
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        written = []
        for name in annotation_files:
            os.replace(staging / name, out / "annotations" / name)
            written.append(out / "annotations" / name)
    for name, target in links.items():
        place = out / name
        if not place.exists():
            place.parent.mkdir(parents=True, exist_ok=True)
            place.symlink_to(target.resolve(), target_is_directory=True)
    return written


def summary_line(name: str, coco: Mapping[str, Any]) -> str:
    counts = {c["name"]: 0 for c in coco["categories"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        counts[names[ann["category_id"]]] += 1
    per_class = ", ".join(f"{k} {v}" for k, v in counts.items())
    return f"{name}: {len(coco['images'])} images, {len(coco['annotations'])} objects ({per_class})"
