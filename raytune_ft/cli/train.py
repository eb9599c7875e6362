"""`python -m raytune_ft.train` / `raytune-ft train`: one fine-tune of an MMDetection config as a
Ray Train run (also how a search's best_config.py is retrained).
"""

from __future__ import annotations

import argparse
import sys

from raytune_ft.errors import user_errors_exit_2
from raytune_ft.options import TrainConfig, add_arguments, config_from_args


def build_parser(prog: str = "python -m raytune_ft.train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_arguments(parser, TrainConfig)
    return parser


@user_errors_exit_2
def main(argv: list[str] | None = None, prog: str = "python -m raytune_ft.train") -> int:
    from raytune_ft.pipeline.train import run_train

    run_train(config_from_args(TrainConfig, build_parser(prog).parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
