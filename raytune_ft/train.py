"""`python -m raytune_ft.train`: one fine-tune of an MMDetection config as a Ray Train run.

Also how a search's exported `best_config.py` is retrained.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from raytune_ft.cli_common import (add_config_args, add_resource_args, check_cluster_fits,
                                   check_resources, default_cpus_per_worker, init_ray,
                                   parse_hparams)
from raytune_ft.errors import user_errors_exit_2



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raytune_ft.train", description=__doc__)
    add_config_args(parser, required=False)
    add_resource_args(parser)
    parser.add_argument("--hparams", default=None,
                        help="JSON object of hyper-parameters, e.g. '{\"lr\": 0.02, "
                             "\"max_epochs\": 6, \"milestones\": [4]}'")
    parser.add_argument("--work-dir", default=None,
                        help="where the run's checkpoints, logs and metrics go "
                             "(default work_dirs/<config name>)")
    parser.add_argument("--name", default=None,
                        help="run name; re-running with the same name resumes it")
    parser.add_argument("--metric", default=None,
                        help="metric shown per epoch and used to keep the best checkpoints "
                             "(default coco/bbox_mAP, or the val evaluator's first metric)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="worker-group restarts before the run fails (default 2)")
    return parser


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from raytune_ft.callbacks import read_metrics
    from raytune_ft.config import load_config
    from raytune_ft.preflight import default_metric
    from raytune_ft.trial import TrialResources, TrialSpec, run_trial

    config = args.config or _default_config()
    args.cpus_per_worker = default_cpus_per_worker(args, demo=args.config is None)
    check_resources(args.workers, args.cpus_per_worker, args.gpus_per_worker)
    cfg = load_config(config, args.cfg_options, parse_hparams(args.hparams))
    args.metric = args.metric or default_metric(cfg)
    work_dir = Path(args.work_dir or Path("work_dirs") / Path(config).stem).resolve()
    name = args.name or time.strftime("train_%Y%m%d_%H%M%S")
    spec = TrialSpec(
        name=name, storage_path=str(work_dir),
        resources=TrialResources(args.workers, args.cpus_per_worker, args.gpus_per_worker,
                                 args.placement),
        max_failures=args.max_failures, metric=args.metric,
    )
    cluster = init_ray(args.address)
    check_cluster_fits(cluster, args.workers, args.cpus_per_worker, args.gpus_per_worker,
                       args.placement)
    print(f"[raytune_ft] training {config} with {args.workers} worker(s); run folder "
          f"{spec.run_dir}", flush=True)
    started = time.time()
    result = run_trial(cfg, spec)
    epochs = read_metrics(spec.record_dir())
    print(format_epochs(epochs, metric=args.metric))
    print(f"[raytune_ft] {len(epochs)} epoch(s) in {time.time() - started:.0f}s; metrics: "
          f"{spec.record_dir()}/metrics.jsonl; TensorBoard: tensorboard --logdir {spec.run_dir}")
    if result.checkpoint is not None:
        print(f"[raytune_ft] last checkpoint: {result.checkpoint.path}/checkpoint.pth")
    return 0


def format_epochs(epochs: list[dict], metric: str) -> str:
    """One line per committed epoch: the metric, train loss, lr and speed."""
    lines = [f"{'epoch':>5}  {metric:>14}  {'train_loss':>10}  {'lr':>9}  {'it/s':>6}"]
    for e in epochs:
        lines.append(f"{e['epoch']:>5}  {e.get(metric, float('nan')):>14.4f}  "
                     f"{e.get('train_loss', float('nan')):>10.4f}  {e.get('lr', 0):>9.2e}  "
                     f"{e.get('iters_per_s', 0):>6.2f}")
    return "\n".join(lines)


def _default_config() -> str:
    from raytune_ft.demo import DEMO_CONFIG, ensure_demo

    ensure_demo()
    return str(DEMO_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
