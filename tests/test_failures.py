"""Failures during a search: a trial whose data pipeline raises is recorded as errored with the
exception's message after a bounded number of retries; checkpoint retention keeps the best.
(Ctrl-C and --resume: test_resume.py.)"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from helpers import read_metrics, write_tiny_config
from raytune_ft.cli.search import main as search_main

pytestmark = pytest.mark.slow  # Ray searches / training runs (make test-fast skips)

SPACE = "params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n"


def test_pipeline_error_is_recorded_with_bounded_retries(ray_session, tmp_path, tiny_data,
                                                          tiny_pretrained):
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    (data / "train" / "train_005.png").write_bytes(b"not a png")  # exists, so preflight passes
    cfg = write_tiny_config(tmp_path / "cfg.py", data, str(tiny_pretrained), max_epochs=2)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    rc = search_main(["--config", str(cfg), "--space", str(space), "--num-samples", "1",
                      "--storage-path", str(tmp_path / "exp"), "--name", "err",
                      "--max-failures", "1", "--scheduler", "fifo", "--confirm", "0"])
    assert rc == 0, "an errored trial does not fail the search"
    with open(tmp_path / "exp" / "err" / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "errored"
    assert "train_005.png" in row["reason"] or "cannot identify image" in row["reason"], \
        row["reason"]
    run = next((tmp_path / "exp" / "err" / "trials").glob("trial_*"))
    attempts = [d for d in (run / "mmengine").iterdir() if d.is_dir() and d.name[:2] == "20"]
    assert len(attempts) == 2, "1 try + max_failures=1 retry, then the trial is given up"
    summary = json.loads((tmp_path / "exp" / "err" / "summary.json").read_text())
    assert summary["by_status"] == {"errored": 1}


def test_checkpoint_retention_keeps_the_best(ray_session, tmp_path, tiny_data, tiny_pretrained):
    """Ranked by --metric, not by recency: with --mode max on train_loss the "best" epoch is an
    early one (the loss falls), so keeping the latest checkpoint instead would fail here."""
    cfg = write_tiny_config(tmp_path / "cfg.py", tiny_data, str(tiny_pretrained), max_epochs=3)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    rc = search_main(["--config", str(cfg), "--space", str(space), "--num-samples", "1",
                      "--storage-path", str(tmp_path / "exp"), "--name", "keep",
                      "--num-to-keep", "1", "--metric", "train_loss", "--mode", "max",
                      "--scheduler", "fifo", "--confirm", "0"])
    assert rc == 0
    run = next((tmp_path / "exp" / "keep" / "trials").glob("trial_*"))
    kept = sorted(d for d in run.glob("checkpoint_*") if d.is_dir())
    epochs = read_metrics(str(run))
    best = max(epochs, key=lambda e: e["train_loss"])
    assert best["epoch"] != epochs[-1]["epoch"], epochs  # the test can tell best from last
    # the best by --metric, plus the latest (Ray Train always keeps it to resume from); the
    # middle epoch, neither best nor latest, is deleted
    kept_epochs = {json.loads((d / "meta.json").read_text())["epoch"] for d in kept}
    assert kept_epochs == {best["epoch"], epochs[-1]["epoch"]}, kept_epochs
