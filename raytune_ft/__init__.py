"""raytune_ft: tune the schedule of MMDetection fine-tunes with Ray Train, Ray Tune and Optuna.

The Python API mirrors the command lines (`raytune-ft search|train ...`): a frozen options
object, and a function that runs it.

Example:
    >>> import raytune_ft
    >>> result = raytune_ft.run_search(raytune_ft.SearchConfig(num_samples=4))  # doctest: +SKIP
    >>> result.best_hparams, result.best_config  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raytune_ft import _moved

_moved.install()  # old module paths (pickled in older experiments) import their new modules

__version__ = "0.1.0"

__all__ = [
    "ExperimentStorage",
    "SearchConfig",
    "SearchResult",
    "Storage",
    "TrainConfig",
    "TrainResult",
    "TrialResources",
    "TrialSpec",
    "UserError",
    "run_search",
    "run_train",
    "run_trial",
]

# Imported on first use: `import raytune_ft` stays cheap (no torch, Ray or mmdet).
_WHERE = {
    "ExperimentStorage": "raytune_ft.storage",
    "Storage": "raytune_ft.storage",
    "SearchConfig": "raytune_ft.options",
    "TrainConfig": "raytune_ft.options",
    "SearchResult": "raytune_ft.pipeline.search",
    "run_search": "raytune_ft.pipeline.search",
    "TrainResult": "raytune_ft.pipeline.train",
    "run_train": "raytune_ft.pipeline.train",
    "TrialResources": "raytune_ft.engine.trial",
    "TrialSpec": "raytune_ft.engine.trial",
    "run_trial": "raytune_ft.engine.trial",
    "UserError": "raytune_ft.errors",
}

if TYPE_CHECKING:
    from raytune_ft.errors import UserError
    from raytune_ft.options import SearchConfig, TrainConfig
    from raytune_ft.pipeline.search import SearchResult, run_search
    from raytune_ft.storage import ExperimentStorage, Storage
    from raytune_ft.pipeline.train import TrainResult, run_train
    from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'raytune_ft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
