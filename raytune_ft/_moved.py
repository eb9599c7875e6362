"""Old module paths of the flat package (before 2026-12), importable as aliases of their new
places.

Ray pickles class and function paths into an experiment (`tuner.pkl`: the scheduler, the
search algorithm, the callbacks; `searcher-state-*.pkl`), so `--resume` of an experiment made
before the package moved to layers imports e.g. `raytune_ft.scheduler`. A meta-path finder
answers those names with the module at its new place (the same module object, so pickled
classes are the current ones); nothing is imported until an old name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

MOVED: dict[str, str] = {
    # tuning components (pickled into tuner.pkl / searcher state)
    "raytune_ft.scheduler": "raytune_ft.tuning.scheduler",
    "raytune_ft.searcher": "raytune_ft.tuning.searcher",
    "raytune_ft.trackers": "raytune_ft.tuning.trackers",
    "raytune_ft.trainable": "raytune_ft.tuning.trainable",
    "raytune_ft.space": "raytune_ft.tuning.space",
    # the trial engine
    "raytune_ft.callbacks": "raytune_ft.engine.callbacks",
    "raytune_ft.cluster": "raytune_ft.engine.cluster",
    "raytune_ft.hooks": "raytune_ft.engine.hooks",
    "raytune_ft.probe": "raytune_ft.engine.probe",
    "raytune_ft.trial": "raytune_ft.engine.trial",
    "raytune_ft.worker": "raytune_ft.engine.worker",
    # mmdet configs
    "raytune_ft.bases": "raytune_ft.mmconfig.bases",
    "raytune_ft.config": "raytune_ft.mmconfig.config",
    "raytune_ft.hparams": "raytune_ft.mmconfig.hparams",
    "raytune_ft.legacy": "raytune_ft.mmconfig.legacy",
    "raytune_ft.metrics": "raytune_ft.mmconfig.metrics",
    "raytune_ft.preflight": "raytune_ft.mmconfig.preflight",
    # the experiment record, the pipeline, data
    "raytune_ft.results": "raytune_ft.experiment.results",
    # moved later: the time budget's policy (pickled with the searcher into tuner.pkl)
    "raytune_ft.budget": "raytune_ft.tuning.budget",
    "raytune_ft.testscore": "raytune_ft.pipeline.testscore",
    "raytune_ft.demo": "raytune_ft.data.demo",
    "raytune_ft.weights": "raytune_ft.data.weights",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new place (which keeps its own __spec__)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec = None

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec: undo that


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds `MOVED`'s old names; every other name is left to the normal finders."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(MOVED[fullname]))


def install() -> None:
    """Put the finder on sys.meta_path once (called by `import raytune_ft`)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


def forwarded(module: str, target: str, names: tuple[str, ...]):
    """A module `__getattr__` for a command module that kept library names (`from
    raytune_ft.search import run_search`): each loads from `target` on first use, so the
    command stays cheap to import."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(target), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
