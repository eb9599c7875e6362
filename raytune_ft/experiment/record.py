"""Where a search's record lives and how to open it again: the experiment folder (or URI), the
resolved options it ran with (`search_config.json`), and the confirmation's sub-experiment.

`confirm`, `report` and `search --resume` open an experiment through here, never through the
pipeline that wrote it.
"""

from __future__ import annotations

import dataclasses
import json

from raytune_ft.errors import UserError
from raytune_ft.options import SearchConfig
from raytune_ft.storage import ExperimentStorage, Storage, is_uri

SEARCH_CONFIG = "search_config.json"  # the resolved SearchConfig, for confirm and report
CONFIRM_DIR = "confirm"  # <experiment>/confirm/: the confirmation's own Tune experiment


def save_config(config: SearchConfig, experiment: ExperimentStorage) -> None:
    """Write (and publish) the options a search runs with, every default resolved."""
    experiment.local_path(SEARCH_CONFIG).write_text(
        json.dumps(dataclasses.asdict(config), indent=1, default=list))
    experiment.publish(SEARCH_CONFIG)


def load_config_of(experiment: ExperimentStorage) -> SearchConfig:
    """The SearchConfig an experiment was run with; UserError when it is not an experiment."""
    data = experiment.storage.read_bytes(experiment.name, SEARCH_CONFIG)
    if data is None:
        raise UserError(f"'{experiment.path}' is not a raytune_ft experiment (no "
                        f"{SEARCH_CONFIG}): pass the folder a search wrote, "
                        "<storage-path>/<name>.")
    return SearchConfig(**json.loads(data))


def experiment_at(path: str) -> ExperimentStorage:
    """An experiment from its folder or URI (`<storage-path>/<name>`)."""
    if not is_uri(path):
        from pathlib import Path

        folder = Path(path).expanduser().resolve()
        return ExperimentStorage.create(folder.parent, folder.name)
    base, _, query = path.partition("?")
    parent, _, name = base.rstrip("/").rpartition("/")
    return ExperimentStorage.create(parent + (f"?{query}" if query else ""), name)


def confirm_experiment(experiment: ExperimentStorage) -> ExperimentStorage:
    """The confirmation's own Tune experiment, inside the search's folder."""
    return ExperimentStorage(Storage.resolve(experiment.path), CONFIRM_DIR)


__all__ = ["CONFIRM_DIR", "SEARCH_CONFIG", "confirm_experiment", "experiment_at",
           "load_config_of", "save_config"]
