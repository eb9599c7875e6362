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
from raytune_ft.errors import UserError, user_errors_exit_2



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
    parser.add_argument("--probe-epochs", default=None,
                        help="comma-separated epochs (before the LR step) after which to run the "
                             "LR-step probe: a short run at lr x gamma from that epoch's state, "
                             "scored on val and then discarded (e.g. 1,2,3)")
    parser.add_argument("--probe-length", type=float, default=0.5,
                        help="probe length as a fraction of an epoch (default 0.5)")
    return parser


def parse_probe(epochs: str | None, length: float, cfg) -> dict | None:
    """`--probe-epochs 1,2,3 --probe-length 0.5` as the trial's probe spec; every epoch must
    come before the config's LR step (after it there is no step left to probe)."""
    from raytune_ft.probe import check_probe_length, lr_step

    if not epochs:
        return None
    try:
        values = sorted({int(e) for e in epochs.split(",") if e.strip()})
    except ValueError as err:
        raise UserError(f"--probe-epochs must be comma-separated whole epochs, e.g. 1,2,3; "
                        f"got {epochs!r}.") from err
    if not values or values[0] < 1:
        raise UserError(f"--probe-epochs must list epochs >= 1, got {epochs!r}.")
    check_probe_length(length)
    step, _ = lr_step(cfg)
    max_epochs = int(cfg.train_cfg.max_epochs)
    late = [e for e in values if e > step or e >= max_epochs]
    if late:
        raise UserError(f"--probe-epochs {late} are not before this run's LR step (after epoch "
                        f"{step} of {max_epochs}): a probe asks what a step at that epoch "
                        f"would give. Use epochs 1..{min(step, max_epochs - 1)}.")
    return {"epochs": values, "epoch_fraction": length}


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
    probe = parse_probe(args.probe_epochs, args.probe_length, cfg)
    work_dir = Path(args.work_dir or Path("work_dirs") / Path(config).stem).resolve()
    name = args.name or time.strftime("train_%Y%m%d_%H%M%S")
    spec = TrialSpec(
        name=name, storage_path=str(work_dir),
        resources=TrialResources(args.workers, args.cpus_per_worker, args.gpus_per_worker,
                                 args.placement),
        max_failures=args.max_failures, metric=args.metric,
        probe=probe,
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
    probe = f"probe/{metric}"
    lines = [f"{'epoch':>5}  {metric:>14}  {'train_loss':>10}  {'lr':>9}  {'it/s':>6}"
             + (f"  {'LR-step probe':>13}" if any(probe in e for e in epochs) else "")]
    for e in epochs:
        lines.append(f"{e['epoch']:>5}  {e.get(metric, float('nan')):>14.4f}  "
                     f"{e.get('train_loss', float('nan')):>10.4f}  {e.get('lr', 0):>9.2e}  "
                     f"{e.get('iters_per_s', 0):>6.2f}"
                     + (f"  {e[probe]:>13.4f}" if probe in e else ""))
    return "\n".join(lines)


def _default_config() -> str:
    from raytune_ft.demo import DEMO_CONFIG, ensure_demo

    ensure_demo()
    return str(DEMO_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
