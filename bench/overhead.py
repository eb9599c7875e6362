"""Overhead of running a fine-tune through raytune_ft (Ray Train, 1 worker) against plain mmengine.

Both run the same config (the demo's Faster R-CNN on the demo tiles) with the same threads, side
by side in one process, alternating A/B/A/B to cancel drift. Prints iterations/s of each once
warm (first epoch excluded), their ratio, and the fixed start-up seconds of each path.

    .venv/bin/python bench/overhead.py [--epochs 3] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402


@HOOKS.register_module()
class BenchIterTimer(Hook):
    """Times iterations the same way RayTrainReportHook does (before -> after train_iter)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, float]] = []
        self.first_iter_at: float | None = None

    def before_train_epoch(self, runner) -> None:
        self._n, self._s = 0, 0.0

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._t = time.perf_counter()
        if self.first_iter_at is None:
            self.first_iter_at = time.time()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._n += 1
        self._s += time.perf_counter() - self._t

    def after_train_epoch(self, runner) -> None:
        self.epochs.append((self._n, self._s))


CONFIG: str | None = None  # --config: another fine-tune config than the demo's
GPU = False  # --gpu: both paths train on the GPU (the Ray trial asks for 1 GPU)


def demo_cfg(epochs: int):
    from raytune_ft.mmconfig.config import load_config

    path = CONFIG
    if path is None:
        from raytune_ft.data.demo import DEMO_CONFIG, ensure_demo

        ensure_demo()
        path = DEMO_CONFIG
    return load_config(path, hparams={"max_epochs": epochs, "milestones": [max(1, epochs - 1)]})


def plain(epochs: int, threads: int) -> tuple[float, float]:
    import torch
    from mmengine.runner import Runner

    torch.set_num_threads(threads)
    cfg = demo_cfg(epochs)
    cfg.custom_hooks = [dict(type="BenchIterTimer")]
    with tempfile.TemporaryDirectory(prefix="bench_plain_") as work_dir:  # its checkpoints
        cfg.work_dir = work_dir
        t0 = time.time()
        runner = Runner.from_cfg(cfg)
        timer = next(h for h in runner.hooks if isinstance(h, BenchIterTimer))
        runner.train()
    warm = timer.epochs[1:]
    return sum(n for n, _ in warm) / sum(s for _, s in warm), timer.first_iter_at - t0


def through_ray(epochs: int, threads: int) -> tuple[float, float]:
    from raytune_ft.storage import Storage, read_records
    from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial

    cfg = demo_cfg(epochs)
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as storage:  # its checkpoints
        spec = TrialSpec(name=f"bench_{time.time_ns()}", storage_path=storage,
                         resources=TrialResources(workers=1, cpus_per_worker=threads,
                                                  gpus_per_worker=1.0 if GPU else 0.0))
        t0 = time.time()
        run_trial(cfg, spec)
        records = read_records(Storage.resolve(spec.record_dir()))
    # iters_per_s is per epoch; weight by equal epoch lengths (same data every epoch)
    iters = [r["iters_per_s"] for r in records[1:]]
    startup = records[0]["train_started_at"] - t0
    return statistics.fmean(iters), startup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--config", default=None, help="a fine-tune config (default: the demo's)")
    ap.add_argument("--gpu", action="store_true", help="train on the GPU on both paths")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    global CONFIG, GPU
    CONFIG, GPU = args.config, args.gpu
    if not GPU:  # both paths on the CPU, even on a machine with a GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from raytune_ft.engine.cluster import init_ray

    init_ray(None)  # the same local Ray the train and search commands start
    rows = []
    for rep in range(args.repeats):
        p_ips, p_start = plain(args.epochs, args.threads)
        r_ips, r_start = through_ray(args.epochs, args.threads)
        rows.append((p_ips, r_ips, p_start, r_start))
        print(f"repeat {rep + 1}: plain {p_ips:.3f} it/s, ray {r_ips:.3f} it/s, "
              f"ratio {r_ips / p_ips:.3f}; start-up plain {p_start:.1f}s, ray {r_start:.1f}s",
              flush=True)
    p = statistics.fmean(r[0] for r in rows)
    r = statistics.fmean(r[1] for r in rows)
    print(f"\nwarm iterations/s (epochs 2..{args.epochs}, {args.threads} threads, "
          f"{args.repeats} A/B repeats):")
    print(f"  plain mmengine Runner.train(): {p:.3f} it/s")
    print(f"  raytune_ft (Ray Train, 1 worker): {r:.3f} it/s")
    print(f"  ratio raytune_ft / plain: {r / p:.3f}   (target >= 0.97)")
    print(f"  start-up to first iteration: plain {statistics.fmean(x[2] for x in rows):.1f}s, "
          f"raytune_ft {statistics.fmean(x[3] for x in rows):.1f}s "
          f"(+{statistics.fmean(x[3] - x[2] for x in rows):.1f}s fixed cost of the Ray path)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": "GPU" if GPU else "CPU", "config": CONFIG or "demo",
            "plain_iters_per_s": p, "raytune_ft_iters_per_s": r, "ratio": r / p,
            "plain_startup_s": statistics.fmean(x[2] for x in rows),
            "raytune_ft_startup_s": statistics.fmean(x[3] for x in rows)}, indent=2))


if __name__ == "__main__":
    main()
