"""The embedded demo: real tiles with real boxes, spatially disjoint splits, and a shortened
demo search end to end (the same code path `python -m raytune_ft.search` runs with no flags)."""

from __future__ import annotations

import csv
import json
import re

import pytest
from PIL import Image

from raytune_ft.data.demo import DEMO_IMAGES, build_demo, deepforest_data_dir, read_voc_boxes
from raytune_ft.cli.search import main as search_main

TILE = re.compile(r"(?P<stem>.+)_r(?P<row>\d+)_c(?P<col>\d+)\.png")


def test_two_searches_starting_at_once_on_a_fresh_machine_build_one_whole_demo(tmp_path):
    """`make test` on two workers, or a user's two first searches: both build the demo at the
    same moment. The demo folder appears whole or not at all (a search that finds it never
    reads a half-written annotation file), both builds end with the whole demo and its
    checkpoint, and no staging folder or partial checkpoint is left beside it."""
    import subprocess
    import sys
    import time

    out = tmp_path / "data" / "demo"
    build = ("import sys; from pathlib import Path; from raytune_ft.data.demo import "
             "ensure_demo; from raytune_ft.data.weights import is_current_checkpoint; "
             "d = ensure_demo(Path(sys.argv[1])); "
             "assert is_current_checkpoint(d / 'mobilenet_v2_imagenet_mmdet.pth')")
    procs = [subprocess.Popen([sys.executable, "-c", build, str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    seen_partial = []
    while any(p.poll() is None for p in procs):  # what a third search would find meanwhile
        if out.exists() and not (out / "READY").exists():
            seen_partial.append(sorted(p.name for p in out.iterdir()))
        time.sleep(0.01)
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert not seen_partial, seen_partial[0]
    assert json.loads((out / "READY").read_text())["train_images"] == len(
        json.loads((out / "annotations" / "train.json").read_text())["images"])
    assert [p.name for p in out.parent.iterdir()] == ["demo"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_demo_data_is_real_tiles_with_disjoint_train_and_val(tmp_path):
    counts = build_demo(tmp_path, tile=200)
    sets = {s: json.loads((tmp_path / "annotations" / f"{s}.json").read_text())
            for s in ("train", "val")}
    for split, coco in sets.items():
        files = sorted(p.name for p in (tmp_path / split).glob("*.png"))
        assert files == sorted(i["file_name"] for i in coco["images"])
        assert counts[f"{split}_images"] == len(files)
        sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height
        with Image.open(tmp_path / split / files[0]) as img:
            assert img.size == (200, 200)
    # Enough real objects for a mAP that means something.
    assert len(sets["train"]["annotations"]) >= 400 and len(sets["val"]["annotations"]) >= 250
    # Spatially disjoint: in every source image all val tiles lie right of all train tiles.
    columns: dict[str, dict[str, set[int]]] = {}
    for split, coco in sets.items():
        for image in coco["images"]:
            m = TILE.fullmatch(image["file_name"])
            columns.setdefault(m["stem"], {}).setdefault(split, set()).add(int(m["col"]))
    assert sorted(columns) == sorted(DEMO_IMAGES)
    for stem, by_split in columns.items():
        assert max(by_split["train"]) < min(by_split["val"]), stem
    # Every full 200 px tile of every source image is used, once.
    expected_tiles = 0
    for stem in DEMO_IMAGES:
        with Image.open(deepforest_data_dir() / f"{stem}.png") as img:
            expected_tiles += (img.size[0] // 200) * (img.size[1] // 200)
    assert counts["train_images"] + counts["val_images"] == expected_tiles
    # The boxes are deepforest's real annotations (not drawn by us): a tile's box count never
    # exceeds what the source XML holds.
    assert len(sets["val"]["annotations"]) < sum(
        len(read_voc_boxes(deepforest_data_dir() / f"{stem}.xml")) for stem in DEMO_IMAGES)


@pytest.mark.slow
def test_shortened_demo_search_end_to_end(ray_session, tmp_path, capsys):
    space = tmp_path / "demo_short.yaml"
    space.write_text("base_batch_size: 4\nparams:\n"
                     "  lr: {type: choice, values: [0.03]}\n")
    # --searcher grid: the recipe and the grid's one point, 2 trials (Tune's grid counts a
    # fixed point as a sample: with num_samples 1 it once ran the recipe alone and the progress
    # line said "[1/1 trials]"). It also guards a fixed deadlock: the grid's generator once
    # ignored max_concurrent, so both trial drivers started and their CPU slivers left too
    # little of the demo's all-CPU worker for either trial to run. (TPE's path: test_search.py.)
    rc = search_main([
        "--space", str(space), "--scheduler", "fifo", "--confirm", "0",
        "--searcher", "grid", "--max-concurrent", "1",
        "--cfg-options", "train_cfg.max_epochs=2", "param_scheduler.1.end=2",
        "param_scheduler.1.milestones=[1]", "train_dataloader.dataset.indices=24",
        "--storage-path", str(tmp_path / "exp"), "--name", "demo"])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    exp = tmp_path / "exp" / "demo"
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}
    assert float(rows[1]["space.lr"]) == pytest.approx(0.03)  # the grid's point after the recipe
    assert "[2/2 trials] best " in out and "/1 trials]" not in out, out
    assert all(0.0 <= float(r["best coco/bbox_mAP"]) <= 1.0 for r in rows)
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["best_metric"] == max(float(r["best coco/bbox_mAP"]) for r in rows)
    assert summary["trials"] == 2 and summary["device"] == "CPU"
    from mmengine.config import Config
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    best_cfg = Config.fromfile(str(exp / "best_config.py"))
    assert best_cfg.optim_wrapper.optimizer.lr == pytest.approx(summary["best_hparams"]["lr"])
    import torch

    ckpt = torch.load(exp / "best_checkpoint.pth", map_location="cpu", weights_only=False)
    assert any(k.startswith("roi_head.bbox_head") for k in ckpt["state_dict"])
    for r in rows:  # per-trial TensorBoard curves, keyed by epoch
        acc = EventAccumulator(str(exp / "trials" / f"trial_{r['trial_id']}" / "tensorboard"))
        acc.Reload()
        assert [e.step for e in acc.Scalars("coco/bbox_mAP")] == [1, 2], r["trial_id"]
    assert "tensorboard --logdir" in out and "best_config.py" in out
