"""The argument every command over an existing experiment takes (`confirm`, `report`)."""

from __future__ import annotations

import argparse


def experiment_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the experiment positional: the folder or URI a search wrote."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="the search's folder or URI (<storage-path>/<name>)")
    return parser
