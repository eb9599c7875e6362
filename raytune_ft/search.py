"""`python -m raytune_ft.search`: the command is raytune_ft.cli.search (`raytune-ft search`); the
library is raytune_ft.pipeline.search."""

import sys

from raytune_ft._moved import forwarded
from raytune_ft.cli.search import main

__getattr__ = forwarded(__name__, "raytune_ft.pipeline.search", ("SearchResult", "run_search"))  # the pre-2026-12 path

if __name__ == "__main__":
    sys.exit(main())
