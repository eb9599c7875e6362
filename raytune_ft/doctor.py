"""`python -m raytune_ft.doctor`: the command is raytune_ft.cli.doctor (`raytune-ft doctor`)."""

import sys

from raytune_ft.cli.doctor import main

if __name__ == "__main__":
    sys.exit(main())
