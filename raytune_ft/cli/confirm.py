"""`python -m raytune_ft.confirm EXP` / `raytune-ft confirm EXP`: is a finished search's winner
better than the recipe, or was it a lucky seed?

Re-runs the search's top --confirm configs and the recipe at their full schedules with --seeds
fresh seeds each, compares each with the recipe seed by seed (a paired t interval), names the
best confirmed mean as winner and rewrites results.csv, summary.json, best_config.py,
best_checkpoint.pth and report.html. Run again, it finishes an interrupted confirmation.
"""

from __future__ import annotations

import sys

from raytune_ft.cli.experiment_args import experiment_parser
from raytune_ft.errors import user_errors_exit_2
from raytune_ft.options import CONFIRM_CLI_DEFAULT, DEFAULT_SEEDS


@user_errors_exit_2
def main(argv: list[str] | None = None, prog: str = "python -m raytune_ft.confirm") -> int:
    parser = experiment_parser(prog, __doc__)
    parser.add_argument("--confirm", type=int, default=CONFIRM_CLI_DEFAULT,
                        help=f"best configs to confirm, besides the recipe (default "
                             f"{CONFIRM_CLI_DEFAULT})")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"fresh seeds per config (default {DEFAULT_SEEDS})")
    parser.add_argument("--address", default=None, help="join a running Ray cluster")
    args = parser.parse_args(argv)
    from raytune_ft.pipeline.confirm import confirm_experiment_at

    ok = confirm_experiment_at(args.experiment, args.confirm, args.seeds, args.address)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
