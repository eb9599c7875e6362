"""`python -m raytune_ft.confirm`: the command is raytune_ft.cli.confirm (`raytune-ft confirm`)."""

import sys

from raytune_ft.cli.confirm import main

if __name__ == "__main__":
    sys.exit(main())
