"""`python -m raytune_ft.cli` = the `raytune-ft` console script."""

import sys

from raytune_ft.cli import main

sys.exit(main())
