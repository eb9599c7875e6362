"""Search efficiency on the embedded demo: TPE + step-probe ASHA (the default) against random search
without early stopping, with the same number of trials, run one after the other in one process.

Prints each search's best metric, trial 0's (the recipe's) metric, total trial-epochs and
device-seconds, and the ratios. Results land in experiments/bench_<time>_{tpe_stepprobe,random_fifo}.

    .venv/bin/python bench/search_efficiency.py [--num-samples 6] [-- extra search flags]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from raytune_ft.cli.search import main as search_main  # noqa: E402


def run(name: str, searcher: str, scheduler: str, args, extra: list[str]) -> dict:
    started = time.time()
    rc = search_main(["--searcher", searcher, "--scheduler", scheduler, "--name", name,
                      "--num-samples", str(args.num_samples), "--seed", str(args.seed),
                      "--storage-path", args.storage_path, *extra])
    if rc != 0:
        raise SystemExit(f"search {name} failed with exit status {rc}")
    exp = Path(args.storage_path) / name
    summary = json.loads((exp / "summary.json").read_text())
    with open(exp / "results.csv") as f:
        rows = list(csv.DictReader(f))
    summary["trial_epochs"] = sum(int(r["epochs_run"]) for r in rows)
    summary["wall_s"] = time.time() - started
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-samples", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--storage-path", default=str(REPO / "experiments"))
    args, extra = ap.parse_known_args()
    stamp = time.strftime("%Y%m%d_%H%M%S")
    a = run(f"bench_{stamp}_tpe_stepprobe", "tpe", "step-probe", args, extra)
    b = run(f"bench_{stamp}_random_fifo", "random", "fifo", args, extra)
    metric = a["metric"]
    print(f"\n{'':28s}{'TPE+step-probe':>14s}{'random, no ES':>16s}{'ratio':>8s}")
    for label, key in [(f"best {metric}", "best_metric"), ("trial 0 (recipe) metric", "trial0_metric"),
                       ("trial-epochs", "trial_epochs"), ("device-seconds", "total_device_seconds"),
                       ("wall seconds", "wall_s")]:
        va, vb = a[key], b[key]
        ratio = f"{va / vb:.2f}" if isinstance(va, (int, float)) and vb else "-"
        print(f"{label:28s}{va:>14.4g}{vb:>16.4g}{ratio:>8s}")
    print(f"{'by status':28s}{json.dumps(a['by_status']):>14s}  {json.dumps(b['by_status'])}")


if __name__ == "__main__":
    main()
