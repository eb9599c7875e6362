"""`raytune-ft <command> ...`: one console script over the command lines.

    raytune-ft search ...   tune a fine-tune's schedule    (= python -m raytune_ft.search)
    raytune-ft train ...    one fine-tune as a Ray Train run (= python -m raytune_ft.train)
    raytune-ft confirm EXP  confirm a search's winner over seeds (= python -m raytune_ft.confirm)
    raytune-ft report EXP   report.html of an experiment    (= python -m raytune_ft.report)
    raytune-ft data ...     convert a data set to COCO JSON (= python -m raytune_ft.data)
    raytune-ft doctor       check the installed stack       (= python -m raytune_ft.doctor)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from raytune_ft.console import silence_known_noise

if "--verbose" not in sys.argv:  # before mmengine/mmdet are imported: they warn at import
    silence_known_noise()

COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("raytune_ft.cli.search", "tune the schedule of an MMDetection fine-tune"),
    "train": ("raytune_ft.cli.train", "run one fine-tune as a Ray Train run"),
    "confirm": ("raytune_ft.cli.confirm", "re-run a search's best configs and the recipe over seeds"),
    "report": ("raytune_ft.cli.report", "write report.html of an experiment"),
    "data": ("raytune_ft.data.__main__", "convert Cityscapes/KITTI/VOC to COCO JSON"),
    "doctor": ("raytune_ft.cli.doctor", "check the installed stack (torch, mmcv ops, mmdet, Ray)"),
}


def _entry(command: str) -> Callable[..., int]:
    import importlib

    return importlib.import_module(COMMANDS[command][0]).main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:8s} {what}" for name, (_, what) in COMMANDS.items()]
        print("usage: raytune-ft {" + ",".join(COMMANDS) + "} ...\n\ncommands:\n"
              + "\n".join(lines) + "\n\n`raytune-ft <command> --help` shows a command's flags.",
              file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    entry = _entry(command)
    if command in ("search", "train", "confirm", "report"):
        return entry(rest, prog=f"raytune-ft {command}")
    if command == "doctor":
        return entry()
    return entry(rest)


__all__ = ["main"]
