"""`python -m raytune_ft.train`: the command is raytune_ft.cli.train (`raytune-ft train`); the
library is raytune_ft.pipeline.train."""

import sys

from raytune_ft._moved import forwarded
from raytune_ft.cli.train import main

__getattr__ = forwarded(__name__, "raytune_ft.pipeline.train", ("TrainResult", "run_train"))  # the pre-2026-12 path

if __name__ == "__main__":
    sys.exit(main())
