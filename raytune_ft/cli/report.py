"""`python -m raytune_ft.report EXP` / `raytune-ft report EXP`: write (or rewrite) the
experiment's self-contained report.html: recipe vs best, confirmation and test score, every
trial's learning curve, the metric against each hyper-parameter, what each trial cost. Works on
an interrupted experiment too.
"""

from __future__ import annotations

import sys

from raytune_ft.cli.experiment_args import experiment_parser
from raytune_ft.errors import user_errors_exit_2


@user_errors_exit_2
def main(argv: list[str] | None = None, prog: str = "python -m raytune_ft.report") -> int:
    args = experiment_parser(prog, __doc__).parse_args(argv)
    from raytune_ft.experiment.record import experiment_at
    from raytune_ft.experiment.report import write_report

    print(f"[raytune_ft] report: {write_report(experiment_at(args.experiment))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
