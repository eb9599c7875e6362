"""Dataset converters on small fixture trees in each data set's real layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from raytune_ft.data.__main__ import main as data_main

# ---------------------------------------------------------------- KITTI


def kitti_line(kind: str, box: tuple[float, float, float, float], truncated: float = 0.0,
               occluded: int = 0) -> str:
    left, top, right, bottom = box
    return (f"{kind} {truncated:.2f} {occluded} -1.57 {left:.2f} {top:.2f} {right:.2f} "
            f"{bottom:.2f} 1.50 1.60 3.80 2.00 1.70 15.00 -1.55")


KITTI_FRAMES = {
    "000000": ((120, 40), [kitti_line("Car", (10, 5, 60, 30), 0.25, 1),
                           kitti_line("DontCare", (70, 2, 90, 12))]),
    "000001": ((100, 50), [kitti_line("Pedestrian", (20.5, 10, 30.5, 45)),
                           kitti_line("Cyclist", (40, 8, 55, 40), 0.0, 2)]),
    "000002": ((120, 40), [kitti_line("Van", (0, 0, 50, 39))]),
    "000003": ((120, 40), [kitti_line("Truck", (5, 5, 100, 35)),
                           kitti_line("Person_sitting", (1, 2, 9, 20))]),
    "000004": ((90, 60), [kitti_line("Tram", (3, 3, 80, 50)), kitti_line("Misc", (1, 1, 5, 5))]),
}


def write_kitti(root: Path, frames=KITTI_FRAMES) -> Path:
    (root / "training" / "label_2").mkdir(parents=True)
    (root / "training" / "image_2").mkdir(parents=True)
    for frame, ((w, h), lines) in frames.items():
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / "training" / "image_2" / f"{frame}.png")
        (root / "training" / "label_2" / f"{frame}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_kitti_converts_to_coco_with_a_seeded_split(tmp_path):
    src = write_kitti(tmp_path / "kitti")
    out = tmp_path / "data" / "kitti"
    assert data_main(["kitti", str(src), str(out)]) == 0

    train = json.loads((out / "annotations" / "train.json").read_text())
    val = json.loads((out / "annotations" / "val.json").read_text())
    assert len(train["images"]) == 4 and len(val["images"]) == 1  # round(5 * 0.2)
    names = [c["name"] for c in train["categories"]]
    assert names == ["Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram",
                     "Misc"]
    by_file = {}
    for doc in (train, val):
        cats = {c["id"]: c["name"] for c in doc["categories"]}
        for image in doc["images"]:
            anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
            by_file[image["file_name"]] = (image, [(cats[a["category_id"]], a) for a in anns])
    assert sorted(by_file) == [f"{f}.png" for f in KITTI_FRAMES]
    image, anns = by_file["000000.png"]
    assert (image["width"], image["height"]) == (120, 40)
    assert [name for name, _ in anns] == ["Car"]  # DontCare dropped
    car = anns[0][1]
    assert car["bbox"] == [10.0, 5.0, 50.0, 25.0] and car["area"] == 1250.0
    assert car["truncated"] == 0.25 and car["occluded"] == 1 and car["iscrowd"] == 0
    _, anns = by_file["000001.png"]
    assert [a["bbox"] for _, a in anns] == [[20.5, 10.0, 10.0, 35.0], [40.0, 8.0, 15.0, 32.0]]
    # Images are linked, not copied, into OUT so OUT is a data_root.
    linked = out / "training" / "image_2"
    assert linked.is_symlink() and linked.resolve() == (src / "training" / "image_2").resolve()
    assert (linked / "000004.png").is_file()

    # Same seed -> same split; the split is documented as seeded, not arbitrary.
    again = tmp_path / "again"
    assert data_main(["kitti", str(src), str(again), "--seed", "0"]) == 0
    assert json.loads((again / "annotations" / "val.json").read_text())["images"] == val["images"]


def test_kitti_class_subset_keeps_only_those_types(tmp_path):
    src = write_kitti(tmp_path / "kitti")
    out = tmp_path / "out"
    assert data_main(["kitti", str(src), str(out), "--classes", "Car", "Pedestrian",
                      "Cyclist"]) == 0
    docs = [json.loads((out / "annotations" / f"{s}.json").read_text()) for s in ("train", "val")]
    assert [c["name"] for c in docs[0]["categories"]] == ["Car", "Pedestrian", "Cyclist"]
    assert sum(len(d["annotations"]) for d in docs) == 3


def test_kitti_val_ids_file_sets_the_split(tmp_path, capsys):
    src = write_kitti(tmp_path / "kitti")
    ids = tmp_path / "val.txt"
    ids.write_text("000001\n000004.png\n")
    out = tmp_path / "out"
    assert data_main(["kitti", str(src), str(out), "--val-ids", str(ids)]) == 0
    val = json.loads((out / "annotations" / "val.json").read_text())
    assert [i["file_name"] for i in val["images"]] == ["000001.png", "000004.png"]
    ids.write_text("000001\n000009\n")
    assert data_main(["kitti", str(src), str(tmp_path / "out2"), "--val-ids", str(ids)]) == 2
    assert f"{ids}, line 2: frame '000009'" in capsys.readouterr().err


def test_kitti_test_fraction_holds_out_a_test_split_and_keeps_val(tmp_path, capsys):
    src = write_kitti(tmp_path / "kitti")
    assert data_main(["kitti", str(src), str(tmp_path / "a"), "--val-fraction", "0.2"]) == 0
    assert data_main(["kitti", str(src), str(tmp_path / "b"), "--val-fraction", "0.2",
                      "--test-fraction", "0.2"]) == 0
    names = {}
    for out in ("a", "b"):
        for split in ("train", "val", "test"):
            path = tmp_path / out / "annotations" / f"{split}.json"
            if path.exists():
                names[out, split] = {i["file_name"] for i in json.loads(path.read_text())["images"]}
    assert ("a", "test") not in names
    assert names["a", "val"] == names["b", "val"], "val does not move when a test split is cut"
    assert len(names["b", "test"]) == 1 and not names["b", "test"] & names["b", "train"]
    assert names["b", "train"] | names["b", "test"] == names["a", "train"]
    capsys.readouterr()
    assert data_main(["kitti", str(src), str(tmp_path / "c"), "--test-fraction", "0.9"]) == 2
    assert "--test-fraction 0.9" in capsys.readouterr().err


def test_voc_test_fraction_draws_test_out_of_the_train_list(tmp_path):
    src = write_voc(tmp_path / "VOC2012")
    out = tmp_path / "voc_coco"
    assert data_main(["voc", str(src), str(out), "--test-fraction", "0.3"]) == 0
    test = json.loads((out / "annotations" / "test.json").read_text())
    train = json.loads((out / "annotations" / "train.json").read_text())
    val = json.loads((out / "annotations" / "val.json").read_text())
    assert len(test["images"]) == 1 and len(train["images"]) == 1
    assert [i["file_name"] for i in val["images"]] == ["JPEGImages/2012_000002.jpg"]


def _break_line(src: Path) -> str:
    label = src / "training/label_2/000001.txt"
    label.write_text(kitti_line("Car", (1, 1, 9, 9)) + "\nCar 0.0 0 1 2 3\n")
    return f"{label}, line 2"


def _orphan_label(src: Path) -> str:
    (src / "training/image_2/000003.png").unlink()
    return "000003.txt has no image"


def _unreadable_image(src: Path) -> str:
    (src / "training/image_2/000002.png").write_bytes(b"not a png at all")
    return "cannot read the image"


def _missing_folder(src: Path) -> str:
    (src / "training/label_2").rename(src / "training/labels")
    return "label_2 does not exist"


def _inverted_box(src: Path) -> str:
    label = src / "training/label_2/000004.txt"
    label.write_text(kitti_line("Tram", (50, 3, 10, 50)) + "\n")
    return f"{label}, line 1"


@pytest.mark.parametrize("breakage", [_break_line, _orphan_label, _unreadable_image,
                                      _missing_folder, _inverted_box])
def test_kitti_bad_input_exits_2_naming_the_file_and_writes_nothing(tmp_path, capsys, breakage):
    src = write_kitti(tmp_path / "kitti")
    expected = breakage(src)
    out = tmp_path / "out"
    # An earlier, good conversion in OUT must survive a failed one untouched.
    (out / "annotations").mkdir(parents=True)
    (out / "annotations" / "train.json").write_text("previous")
    assert data_main(["kitti", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert sorted(p.name for p in out.rglob("*")) == ["annotations", "train.json"]
    assert (out / "annotations" / "train.json").read_text() == "previous"
    assert not list(tmp_path.glob(".out.staging-*"))


# ---------------------------------------------------------------- Pascal VOC


def voc_xml(filename: str, objects: list[tuple[str, tuple[int, int, int, int], int]],
            size: tuple[int, int] = (0, 0)) -> str:
    body = "".join(
        f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    return (f"<annotation><folder>VOC2012</folder><filename>{filename}</filename>"
            f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
            f"{body}</annotation>")


def write_voc(root: Path, xml_sizes: bool = True) -> Path:
    """A VOC folder; with `xml_sizes=False` the XML <size> says 0x0, as some labelling tools do."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    items = {
        "2012_000001": ((64, 48), [("dog", (1, 1, 30, 20), 0), ("person", (10, 5, 60, 47), 1)]),
        "2012_000002": ((50, 40), [("person", (5, 6, 25, 38), 0)]),
        "2012_000003": ((40, 40), [("cat", (2, 2, 39, 39), 0)]),
    }
    for stem, ((w, h), objects) in items.items():
        Image.new("RGB", (w, h), (10, 120, 10)).save(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objects, (w, h) if xml_sizes else (0, 0)))
    (root / "ImageSets/Main/train.txt").write_text("2012_000001\n2012_000003\n")
    (root / "ImageSets/Main/val.txt").write_text("2012_000002\n")
    return root


def test_voc_converts_to_coco_with_difficult_as_crowd(tmp_path):
    src = write_voc(tmp_path / "VOC2012", xml_sizes=False)
    out = tmp_path / "voc_coco"
    assert data_main(["voc", str(src), str(out)]) == 0
    train = json.loads((out / "annotations" / "train.json").read_text())
    val = json.loads((out / "annotations" / "val.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["cat", "dog", "person"]
    assert [i["file_name"] for i in train["images"]] == ["JPEGImages/2012_000001.jpg",
                                                         "JPEGImages/2012_000003.jpg"]
    assert (train["images"][0]["width"], train["images"][0]["height"]) == (64, 48)  # from the file
    first = [a for a in train["annotations"] if a["image_id"] == train["images"][0]["id"]]
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in first] == [
        (2, [0.0, 0.0, 29.0, 19.0], 0), (3, [9.0, 4.0, 50.0, 42.0], 1)]
    assert len(val["images"]) == 1 and val["annotations"][0]["category_id"] == 3
    assert (out / "JPEGImages").is_symlink()
    assert (out / "JPEGImages").resolve() == (src / "JPEGImages").resolve()
    assert (out / "JPEGImages" / "2012_000002.jpg").is_file()


def test_voc_explicit_classes_must_cover_the_annotations(tmp_path, capsys):
    src = write_voc(tmp_path / "VOC2012")
    assert data_main(["voc", str(src), str(tmp_path / "out"), "--classes", "dog", "cat"]) == 2
    assert "person" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_voc_malformed_xml_names_file_and_line(tmp_path, capsys):
    src = write_voc(tmp_path / "VOC2012")
    bad = src / "Annotations" / "2012_000002.xml"
    bad.write_text("<annotation>\n<object><name>dog</name>\n</annotation>\n")
    assert data_main(["voc", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line 3" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- Cityscapes


def cityscapes_polygons(objects: list[tuple[str, list[list[int]]]], w: int = 64,
                        h: int = 32) -> str:
    return json.dumps({"imgHeight": h, "imgWidth": w,
                       "objects": [{"label": n, "polygon": p} for n, p in objects]})


CITYSCAPES_FRAMES = {
    ("train", "aachen", "aachen_000000_000019"): [
        ("road", [[0, 20], [63, 20], [63, 31], [0, 31]]),          # stuff: not an instance
        ("car", [[4, 4], [24, 4], [24, 14], [4, 14]]),
        ("person", [[30, 2], [36, 2], [36, 20], [30, 20]]),
        ("cargroup", [[40, 4], [60, 4], [60, 12], [40, 12]]),       # a group: iscrowd
        ("caravan", [[44, 14], [60, 14], [60, 19], [44, 19]]),      # ignoreInEval: dropped
    ],
    ("train", "bochum", "bochum_000000_000313"): [
        ("bicycle", [[10, 10], [20, 10], [20, 20], [10, 20]]),
    ],
    ("val", "frankfurt", "frankfurt_000000_000294"): [
        ("bus", [[2, 2], [40, 2], [40, 30], [2, 30]]),
    ],
}


def write_cityscapes(root: Path, frames=CITYSCAPES_FRAMES) -> Path:
    for (split, city, stem), objects in frames.items():
        img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 32), (50, 60, 70)).save(img_dir / f"{stem}_leftImg8bit.png")
        (gt_dir / f"{stem}_gtFine_polygons.json").write_text(cityscapes_polygons(objects))
    return root


def test_cityscapes_runs_mmdets_converter_on_polygon_annotations(tmp_path):
    src = write_cityscapes(tmp_path / "cityscapes")
    out = tmp_path / "data" / "cityscapes"
    assert data_main(["cityscapes", str(src), str(out), "--nproc", "2"]) == 0  # mmdet's Pool
    train = json.loads((out / "annotations/instancesonly_filtered_gtFine_train.json").read_text())
    val = json.loads((out / "annotations/instancesonly_filtered_gtFine_val.json").read_text())
    assert [c["name"] for c in train["categories"]] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert sorted(i["file_name"] for i in train["images"]) == [
        "aachen/aachen_000000_000019_leftImg8bit.png", "bochum/bochum_000000_000313_leftImg8bit.png"]
    assert all((i["width"], i["height"]) == (64, 32) for i in train["images"] + val["images"])
    names = {c["id"]: c["name"] for c in train["categories"]}
    aachen = next(i["id"] for i in train["images"] if i["file_name"].startswith("aachen"))
    anns = sorted((names[a["category_id"]], a["iscrowd"], a) for a in train["annotations"]
                  if a["image_id"] == aachen)  # road (stuff) and caravan (ignored) are gone
    assert [(n, crowd) for n, crowd, _ in anns] == [("car", 0), ("car", 1), ("person", 0)]
    car = anns[0][2]
    mask = mask_utils.decode(car["segmentation"])
    assert mask.shape == (32, 64)
    ys, xs = np.nonzero(mask)  # PIL fills the polygon including its edges: x 4..24, y 4..14
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (4, 24, 4, 14)
    assert car["bbox"] == [4.0, 4.0, 21.0, 11.0] and car["area"] == 21 * 11
    assert [names[a["category_id"]] for a in val["annotations"]] == ["bus"]
    assert (out / "leftImg8bit" / "val" / "frankfurt").is_dir()
    assert not list((src / "gtFine").rglob("*instanceIds.png"))  # SRC is never written to


def test_cityscapes_unknown_label_exits_2_naming_file_and_object(tmp_path, capsys):
    frames = dict(CITYSCAPES_FRAMES)
    frames[("val", "frankfurt", "frankfurt_000000_000294")] = [
        ("bus", [[2, 2], [40, 2], [40, 30]]), ("hovercraft", [[1, 1], [5, 1], [5, 5]])]
    src = write_cityscapes(tmp_path / "cityscapes", frames)
    assert data_main(["cityscapes", str(src), str(tmp_path / "out"), "--nproc", "1"]) == 2
    err = capsys.readouterr().err
    assert "frankfurt_000000_000294_gtFine_polygons.json, object 2" in err
    assert "hovercraft" in err
    assert not (tmp_path / "out").exists()


def test_cityscapes_annotation_without_image_exits_2(tmp_path, capsys):
    src = write_cityscapes(tmp_path / "cityscapes")
    (src / "leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png").unlink()
    assert data_main(["cityscapes", str(src), str(tmp_path / "out"), "--nproc", "1"]) == 2
    assert "bochum_000000_000313_gtFine_polygons.json has no image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
