"""Measure the demo's learning-curve table (bench/curves/demo.json) that bench/replay.py replays.

Every config of a grid over the demo space (lr x max_epochs x LR-step epoch, warmup fixed at the
recipe's) is fine-tuned once with `python -m raytune_ft.train` (the same Ray Train engine a search uses,
seeded), and its committed per-epoch reports are stored: val metrics, train loss, lr, and the
wall-clock cost of each epoch. The run of each lr with the latest LR step also runs the LR-step
probe after every epoch before its step, so the table holds a probe value for every
(lr, epoch) a scheduler could ask about; before its step a trial's training does not depend on
its step or length, so these probe values hold for every schedule of that lr (the table checks
that claim: the shared pre-step epochs of one lr's runs must be equal).

Seeds: the grid runs with mmengine's `randomness.seed` = 0 (stored in each config's top-level
fields, as the first table had them); `--seeds 1,2` runs every config again with those seeds
(same probes), stored under the config's `seed_runs` ({"1": run, "2": run}), and `summary` holds
the mean and std over all of a config's seeds of its final and its best value. Seeds run one
after the other over the whole grid (seed 1 for every config, then seed 2), so a cut-short
measurement still has complete seeds.

Nothing is interpolated: the replay only ever returns values measured here. The script writes
the file after every run and skips runs already in it, so it can be stopped and restarted.

    .venv/bin/python bench/measure_curves.py [--out bench/curves/demo.json] [--lrs ...]
    .venv/bin/python bench/measure_curves.py --seeds 1,2      # more seeds of the same grid
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The demo space's schedules: max_epochs in {4, 6}, step_frac in [0.6, 0.9] -> these LR steps.
SCHEDULES = [(6, 5), (6, 4), (4, 3), (4, 2)]
LRS = [0.02, 0.048, 0.011, 0.036, 0.015, 0.06, 0.027, 0.008]  # log-spaced 0.008..0.06, recipe first
WARMUP_ITERS = 50
PROBE_LENGTH = 0.5


def config_key(lr: float, max_epochs: int, step: int) -> str:
    return f"lr{lr:g}_e{max_epochs}_s{step}"


def load(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"about": {}, "configs": {}}


def save(path: Path, table: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1))
    os.replace(tmp, path)


def measure(lr: float, max_epochs: int, step: int, probe: list[int], work_dir: Path,
            seed: int = 0) -> dict:
    from raytune_ft import TrainConfig, run_train

    name = config_key(lr, max_epochs, step) + (f"_seed{seed}" if seed else "")
    shutil.rmtree(work_dir / name, ignore_errors=True)  # a cut-short run would resume, not restart
    started = time.time()
    run = run_train(TrainConfig(
        hparams={"lr": lr, "max_epochs": max_epochs, "milestones": [step],
                 "warmup_iters": WARMUP_ITERS},
        cfg_options={"randomness.seed": seed} if seed else {},
        name=name, work_dir=str(work_dir), probe_epochs=tuple(probe),
        probe_length=PROBE_LENGTH))
    epochs = run.records
    keep = ("epoch", "coco/bbox_mAP", "coco/bbox_mAP_50", "train_loss", "lr", "iters_per_s",
            "diverged", "probe/coco/bbox_mAP", "probe/coco/bbox_mAP_50", "probe_seconds",
            "probe_iters", "reported_at", "train_started_at")
    rows = [{k: e[k] for k in keep if k in e} for e in epochs]
    return {"lr": lr, "max_epochs": max_epochs, "step": step, "warmup_iters": WARMUP_ITERS,
            "probed": bool(probe), "started_at": started, "wall_s": time.time() - started,
            "epochs": rows}


def seed_runs(config: dict) -> dict[int, dict]:
    """A config's runs by seed: seed 0 is the config's own fields, more under `seed_runs`."""
    return {0: config, **{int(s): run for s, run in config.get("seed_runs", {}).items()}}


def summarize(config: dict, metric: str = "coco/bbox_mAP") -> dict:
    """Mean and (sample) std over a config's seeds of its final and its best value."""
    finals, bests = [], []
    for run in seed_runs(config).values():
        values = [float(e[metric]) for e in run["epochs"]]
        finals.append(values[-1])
        bests.append(max(values))
    std = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    return {"seeds": sorted(seed_runs(config)), "metric": metric,
            "final": {"mean": statistics.mean(finals), "std": std(finals)},
            "best": {"mean": statistics.mean(bests), "std": std(bests)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(REPO / "bench" / "curves" / "demo.json"))
    ap.add_argument("--work-dir", default=str(REPO / "work_dirs" / "curves"))
    ap.add_argument("--lrs", type=float, nargs="+", default=LRS)
    ap.add_argument("--schedules", default=None,
                    help="max_epochs:step pairs, e.g. 12:11,12:8 (default: the demo space's "
                         f"{SCHEDULES}); the first is the probed run")
    ap.add_argument("--probe-epochs", default=None,
                    help="epochs the first schedule's run probes after (default: every epoch "
                         "before its step)")
    ap.add_argument("--seeds", default="",
                    help="comma-separated seeds (besides 0) to run every config of the grid with, "
                         "e.g. 1,2 (mmengine randomness.seed)")
    args = ap.parse_args()
    extra_seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    schedules = SCHEDULES if not args.schedules else [
        tuple(int(v) for v in pair.split(":")) for pair in args.schedules.split(",")]
    out = Path(args.out)
    table = load(out)
    table["about"] = {
        "what": "per-epoch val curves of the embedded demo (Faster R-CNN MobileNetV2-FPN on "
                "deepforest tree tiles, 120 train / 50 val), one python -m raytune_ft.train run per config",
        "made_by": "bench/measure_curves.py",
        "grid": {"lr": sorted(args.lrs), "schedules (max_epochs, lr_step_epoch)": schedules,
                 "warmup_iters": WARMUP_ITERS},
        "seed": "randomness.seed=0 (the demo config) in each config's own fields; more seeds "
                "under seed_runs (bench/measure_curves.py --seeds), the same probes",
        "probe": f"LR-step probe ({PROBE_LENGTH} epoch at lr x 0.1) after "
                 + (f"epochs {args.probe_epochs}" if args.probe_epochs else "every pre-step epoch")
                 + f" of the step-{schedules[0][1]} run of each lr",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}, "
                   "1 Ray Train worker with all cores, no GPU",
    }
    total = time.time()
    for seed in [0, *extra_seeds]:
        for lr in args.lrs:
            for i, (max_epochs, step) in enumerate(schedules):
                key = config_key(lr, max_epochs, step)
                done = table["configs"].get(key)
                if (seed == 0 and done) or (seed and (not done or str(seed) in
                                                      done.get("seed_runs", {}))):
                    continue  # measured already (or seed 0 missing: run the grid first)
                print(f"[measure] {key} seed {seed} ({len(table['configs'])} configs done)",
                      flush=True)
                probe = ([int(e) for e in args.probe_epochs.split(",")] if args.probe_epochs
                         else list(range(1, step + 1))) if i == 0 else []
                run = measure(lr, max_epochs, step, probe=probe, work_dir=Path(args.work_dir),
                              seed=seed)
                if seed == 0:
                    table["configs"][key] = run
                else:
                    table["configs"][key].setdefault("seed_runs", {})[str(seed)] = {
                        k: run[k] for k in ("started_at", "wall_s", "epochs")}
                table["configs"][key]["summary"] = summarize(table["configs"][key])
                table["about"]["wall_s_total"] = sum(
                    r["wall_s"] for c in table["configs"].values() for r in seed_runs(c).values())
                save(out, table)
    print(f"[measure] done: {len(table['configs'])} configs in {out} "
          f"({time.time() - total:.0f}s this run)")


if __name__ == "__main__":
    main()
