"""Test helpers: a tiny COCO data set, a tiny fine-tune config, the testing hooks' config lines.

Imported by tests as `from helpers import ...` (tests/ is on sys.path under pytest's rootdir
conftest); fixtures live in conftest.py.
"""

from __future__ import annotations

import contextlib
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


def write_table_experiment(root: Path, n_trials: int, name: str = "table", seed: int = 0,
                           confirm: bool = True, finished: bool = True) -> Path:
    """An experiment folder in raytune_ft's own format whose trials are the demo's *measured*
    curves (bench/curves/demo.json), drawn at random and early-stopped at epoch 2 for some:
    a report fixture of any size without hours of training. Returns the experiment folder."""
    import dataclasses
    import random

    from raytune_ft.options import SearchConfig
    from raytune_ft.experiment.results import TrialRow

    table = json.loads((REPO / "bench" / "curves" / "demo.json").read_text())["configs"]
    keys = sorted(table)
    rng = random.Random(seed)
    exp = root / name
    (exp / "trials").mkdir(parents=True)
    metric = "coco/bbox_mAP"
    rows = []
    for order in range(n_trials):
        run = table[keys[0 if order == 0 else rng.randrange(len(keys))]]
        trial_id = f"{order:04x}{rng.randrange(16 ** 4):04x}"
        stop = order > 0 and rng.random() < 0.6 and finished
        epochs = [dict(e, lr_step_epoch=run["step"], max_epochs=run["max_epochs"])
                  for e in run["epochs"]][: 2 if stop else None]
        if not finished and order == n_trials - 1:
            epochs = epochs[:1]
        (exp / "trials" / f"trial_{trial_id}").mkdir()
        (exp / "trials" / f"trial_{trial_id}" / "metrics.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in epochs))
        values = [e[metric] for e in epochs if not e.get("diverged")] or [0.0]
        status = "stopped" if stop else ("finished" if finished or order < n_trials - 1
                                         else "unfinished")
        if any(e.get("diverged") for e in epochs):
            status = "diverged"
        rows.append(TrialRow(trial_id, order, {"lr": run["lr"], "max_epochs": run["max_epochs"],
                                               "step_frac": run["step"] / run["max_epochs"]},
                             {"lr": run["lr"], "max_epochs": run["max_epochs"],
                              "milestones": [run["step"]]}, status, "", len(epochs),
                             run["max_epochs"], max(values), values.index(max(values)) + 1,
                             values[-1], 20.0 * len(epochs)))
    config = SearchConfig(config="configs/demo/faster_rcnn_mnv2_trees.py", name=name,
                          storage_path=str(root))
    (exp / "search_config.json").write_text(json.dumps(dataclasses.asdict(config), default=list))
    if not finished:
        return exp
    best = max(rows, key=lambda r: r.best_metric if r.status == "finished" else -1)
    summary = {"metric": metric, "mode": "max", "trials": n_trials,
               "best_trial": best.trial_id, "best_metric": best.best_metric,
               "best_hparams": best.hparams, "trial0_trial": rows[0].trial_id,
               "trial0_metric": rows[0].best_metric, "device": "CPU",
               "total_device_seconds": sum(r.device_seconds for r in rows),
               "device_seconds_saved_by_early_stopping": 400.0}
    if confirm:
        candidates = [{"trial": best.trial_id, "role": "best #1", "hparams": best.hparams,
                       "search_value": best.best_metric, "values": {"1": 0.101, "2": 0.094},
                       "mean": 0.0975, "std": 0.005,
                       "diff_to_recipe": {"mean": 0.025, "ci95": [-0.05, 0.1], "n": 2}},
                      {"trial": rows[0].trial_id, "role": "recipe", "hparams": rows[0].hparams,
                       "search_value": rows[0].best_metric, "values": {"1": 0.072, "2": 0.073},
                       "mean": 0.0725, "std": 0.0007, "diff_to_recipe": None}]
        summary["confirmation"] = {"seeds": [1, 2], "winner_trial": best.trial_id,
                                   "winner_beats_recipe_beyond_noise": False,
                                   "candidates": candidates}
    (exp / "summary.json").write_text(json.dumps(summary))
    (exp / "trials.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    return exp


def read_metrics(run_dir) -> list[dict]:
    """The committed epoch reports (metrics.jsonl) of the run at `run_dir` (folder or URI)."""
    from raytune_ft.storage import Storage, read_records

    return read_records(Storage.resolve(str(run_dir)))


class FakeInstanceMetadata:
    """EC2's instance metadata service on 127.0.0.1 (the one cloud API the tests stand in
    for): IMDSv2 token, then 404 on the spot notice path until `notice(in_s)` arms it."""

    def __init__(self) -> None:
        import http.server
        import threading

        fake = self
        self.body: bytes | None = None
        self.tokens_issued = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_PUT(self) -> None:
                fake.tokens_issued += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"test-token")

            def do_GET(self) -> None:
                ok = (self.path == "/latest/meta-data/spot/instance-action" and fake.body
                      and self.headers.get("X-aws-ec2-metadata-token") == "test-token")
                self.send_response(200 if ok else 404)
                self.end_headers()
                if ok:
                    self.wfile.write(fake.body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notice(self, in_s: float, action: str = "terminate") -> None:
        import time

        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + in_s))
        self.body = json.dumps({"action": action, "time": when}).encode()

    def close(self) -> None:
        self.server.shutdown()


def free_port() -> int:
    """A TCP port nothing listens on now (for a Ray head the test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """A `ray start --head` of a test in its own short temp folder (Unix socket paths are
    limited to ~107 characters). Its address file lands there, not in /tmp/ray, so a plain
    `ray.init()` elsewhere (another test, a developer's shell) never joins it; `stop()` ends
    only its processes (their command lines name the folder), where `ray stop --force` ends
    every Ray of the machine's user. Its dashboard agent (the job API) listens on a free port:
    Ray's default, 52365, is taken by any other Ray of the machine, and a head whose agent
    could not bind it has no job API."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import subprocess
        import sys
        import tempfile

        self.temp_dir = tempfile.mkdtemp(prefix="rt_head_", dir="/tmp")
        ray_cli = str(Path(sys.executable).parent / "ray")
        subprocess.run([ray_cli, "start", "--head", f"--temp-dir={self.temp_dir}",
                        f"--dashboard-agent-listen-port={free_port()}", *args],
                       env=env, check=True, capture_output=True, timeout=180)

    def processes(self) -> list:
        """This head's processes (psutil, as the autoscaling test finds a raylet)."""
        import psutil

        return [p for p in psutil.process_iter(["cmdline"])
                if any(self.temp_dir in arg for arg in p.info["cmdline"] or [])]

    def stop(self) -> None:
        import shutil

        import psutil

        for end in (psutil.Process.terminate, psutil.Process.kill):
            running = self.processes()  # again: a worker may have started meanwhile
            for process in running:
                with contextlib.suppress(psutil.NoSuchProcess):
                    end(process)
            psutil.wait_procs(running, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def ray_default_auth_env() -> dict[str, str]:
    """This environment without RAY_AUTH_* (an in-process ray.init of another test sets
    RAY_AUTH_MODE): a local Ray then logs its token-authentication WARNING, as on a user's
    machine."""
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}


# A driver that writes the class paths of the flat package (before 2026-12) into the
# experiment, as every older experiment has them: Ray pickles the scheduler and the searcher
# (tuner.pkl) by module path. Otherwise it is `python -m raytune_ft.search` itself.
OLD_PATHS_DRIVER = """
import sys
import raytune_ft.scheduler, raytune_ft.searcher  # the old names, answered by raytune_ft._moved
from raytune_ft.tuning.scheduler import StepFairASHA
from raytune_ft.tuning.searcher import StepFairOptunaSearch
StepFairASHA.__module__ = "raytune_ft.scheduler"
StepFairOptunaSearch.__module__ = "raytune_ft.searcher"
from raytune_ft.cli.search import main
sys.exit(main(sys.argv[1:]))
"""

FINISHED_SPACE = """
params:
  lr:         {type: loguniform, low: 1.0e-3, high: 2.0e-2}
  max_epochs: {type: choice, values: [2]}
"""


class FinishedSearch:
    """The session's tiny finished search (conftest `finished_search`): 2 trials of 2 epochs
    (the recipe, lr 0.01, and --points lr 0.02; LR step after epoch 1, so step-after, the
    default rule, never stops one), no confirmation (the default), a
    held-out test split holding the val images, run from the command line with the flat
    package's class paths in its tuner.pkl. Tests copy it; nobody writes into it."""

    name = "s"

    def __init__(self, root: Path, cfg: Path, space: Path) -> None:
        self.root, self.cfg, self.space = root, cfg, space
        self.console, self.seconds = "", 0.0  # what the search printed, how long it ran

    @property
    def exp(self) -> Path:
        return self.root / "exp" / self.name

    def flags(self, storage: Path) -> list[str]:
        """The search's flags, with its experiment under `storage` (a copy's)."""
        import json as _json

        return ["--config", str(self.cfg), "--space", str(self.space), "--num-samples", "2",
                "--storage-path", str(storage), "--name", self.name,
                "--scheduler", "step-after",
                "--points", _json.dumps([{"lr": 0.02}]), "--startup-trials", "1"]

    def copy(self, to: Path) -> Path:
        """A copy of the experiment under `to` (its storage path); returns the copy's folder."""
        import shutil

        shutil.copytree(self.exp, to / self.name, symlinks=True)
        return to / self.name


def run_search_cli(args: list[str], old_paths: bool = False, timeout: float = 900,
                   env: dict | None = None):
    """`python -m raytune_ft.search ARGS` from the repository, as a user runs it."""
    import subprocess
    import sys

    command = ["-c", OLD_PATHS_DRIVER] if old_paths else ["-m", "raytune_ft.search"]
    return subprocess.run([sys.executable, *command, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


def read_results(exp: Path) -> list[dict]:
    """The rows of an experiment's results.csv."""
    import csv

    with open(exp / "results.csv") as f:
        return list(csv.DictReader(f))


def assert_checkpoint_is_from(exported_path: Path, trial_dir: Path, best_value: float) -> None:
    """`exported_path` (a best_checkpoint.pth) is, tensor for tensor, a kept checkpoint of the
    run in `trial_dir` from an epoch that scored `best_value` (the tiny model may tie across
    epochs)."""
    import pytest
    import torch

    value = {m["epoch"]: m["coco/bbox_mAP"] for m in read_metrics(str(trial_dir))}
    best_epochs = [d for d in trial_dir.glob("checkpoint_*") if d.is_dir() and value[
        json.loads((d / "meta.json").read_text())["epoch"]] == pytest.approx(best_value,
                                                                              abs=1e-4)]
    assert best_epochs, list(trial_dir.glob("checkpoint_*"))
    exported = torch.load(exported_path, map_location="cpu", weights_only=False)

    def same(path) -> bool:
        original = torch.load(path / "checkpoint.pth", map_location="cpu", weights_only=False)
        return exported["state_dict"].keys() == original["state_dict"].keys() and all(
            torch.equal(exported["state_dict"][k], v) for k, v in original["state_dict"].items())

    assert any(same(d) for d in best_epochs)
