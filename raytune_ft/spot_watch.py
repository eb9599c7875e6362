"""`python -m raytune_ft.spot_watch`: the command is raytune_ft.cli.spot_watch."""

import sys

from raytune_ft.cli.spot_watch import main

if __name__ == "__main__":
    sys.exit(main())
