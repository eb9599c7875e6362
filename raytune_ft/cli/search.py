"""`python -m raytune_ft.search` / `raytune-ft search`: tune an MMDetection fine-tune's schedule
with Ray Tune + Optuna.

With no arguments it runs the embedded demo (real tree-crown images, ImageNet MobileNetV2
weights) on a local Ray. Outputs land in <storage-path>/<name>/.
"""

from __future__ import annotations

import argparse
import sys

from raytune_ft.errors import user_errors_exit_2
from raytune_ft.options import SearchConfig, add_arguments, config_from_args

EXIT_INTERRUPTED = 130


def build_parser(prog: str = "python -m raytune_ft.search") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, SearchConfig)
    return parser


@user_errors_exit_2
def main(argv: list[str] | None = None, prog: str = "python -m raytune_ft.search") -> int:
    from raytune_ft.pipeline.search import run_search

    config = config_from_args(SearchConfig, build_parser(prog).parse_args(argv))
    result = run_search(config)
    if result.status == "interrupted":
        print("\n[raytune_ft] the search was interrupted; its state is saved. Resume it with:\n  "
              + result.resume_command, file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
