"""`python -m raytune_ft.report`: the command is raytune_ft.cli.report (`raytune-ft report`)."""

import sys

from raytune_ft.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
