"""`python -m raytune_ft.data {cityscapes,kitti,voc} SRC OUT`: a data set -> COCO JSON in OUT.

OUT becomes the `data_root` of a config: `OUT/annotations/*.json`, plus a link to the source's
image folder when OUT is not SRC (images are never copied). The shipped configs expect
`data/cityscapes/` and `data/kitti/`; see the README for the custom-data templates.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from raytune_ft.data import coco
from raytune_ft.errors import UserError, user_errors_exit_2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raytune_ft.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dataset", required=True)

    cityscapes = sub.add_parser("cityscapes", help="Cityscapes gtFine instances (Mask R-CNN)")
    cityscapes.add_argument("--splits", nargs="+", default=["train", "val"],
                            help="splits to convert (default: train val)")
    cityscapes.add_argument("--nproc", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                            help="processes for mmdet's converter")

    kitti = sub.add_parser("kitti", help="KITTI 2D object detection (training/label_2)")
    kitti.add_argument("--classes", nargs="+", default=None,
                       help="KITTI types to keep, in label order (default: all 8)")
    kitti.add_argument("--val-ids", type=Path, default=None,
                       help="file of frame ids (one per line) to use as val instead of a drawn "
                            "split, e.g. a sequence-aware split")

    voc = sub.add_parser("voc", help="Pascal VOC XML (Annotations/, JPEGImages/)")
    voc.add_argument("--splits", nargs="+", default=["train", "val"],
                     help="ImageSets/Main/<split>.txt lists to convert (default: train val)")
    voc.add_argument("--classes", nargs="+", default=None,
                     help="class names in label order (default: every name found, sorted)")

    for each in (cityscapes, kitti, voc):
        each.add_argument("src", type=Path, help="the data set's root folder")
        each.add_argument("out", type=Path, help="output data root (may equal SRC)")
    for each in (kitti, voc):
        each.add_argument("--val-fraction", type=float, default=0.2,
                          help="val share of a drawn split (default 0.2)")
        each.add_argument("--seed", type=int, default=0,
                          help="seed of the drawn split (default 0)")
        each.add_argument("--test-fraction", type=float, default=0.0,
                          help="also hold out this share of all images as a test split "
                               "(annotations/test.json), drawn from train; the search never "
                               "sees it and the winner is scored on it once (default 0: none)")
    return parser


def _convert(args: argparse.Namespace) -> tuple[dict[str, dict], dict[str, int], dict[str, Path]]:
    src: Path = args.src
    if not src.is_dir():
        raise UserError(f"SRC {src} is not a folder: give the {args.dataset} data set's root.")
    if args.dataset == "cityscapes":
        from raytune_ft.data import cityscapes
        documents, counts = cityscapes.convert(src, args.splits, args.nproc)
        return documents, counts, {"leftImg8bit": src / "leftImg8bit"}
    if args.dataset == "kitti":
        from raytune_ft.data import kitti
        documents, counts = kitti.convert(src, args.val_fraction, args.seed,
                                          args.classes or kitti.CLASSES, args.val_ids,
                                          args.test_fraction)
        return documents, counts, {"training/image_2": src / kitti.IMAGE_DIR}
    from raytune_ft.data import voc
    documents, counts = voc.convert(src, args.splits, args.classes or (), args.val_fraction,
                                    args.seed, args.test_fraction)
    return documents, counts, {"JPEGImages": src / "JPEGImages"}


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    documents, counts, links = _convert(args)
    same = args.out.resolve() == args.src.resolve()
    written = coco.write_dataset(args.out, documents, {} if same else links)
    for name, document in documents.items():
        print(f"[raytune_ft.data] {coco.summary_line(name, document)}")
    for what, n in counts.items():
        print(f"[raytune_ft.data] {what}: {n}")
    print(f"[raytune_ft.data] wrote {', '.join(str(p) for p in written)} in "
          f"{time.monotonic() - start:.1f} s; use {args.out}/ as the config's data_root.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
