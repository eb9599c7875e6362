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
EXTEND_DIR = "extend_"  # <experiment>/extend_<k>/: the Tune run of the k-th extension


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


def extension_runs(experiment: ExperimentStorage) -> list[ExperimentStorage]:
    """The Tune runs that extended the search (`search --resume --num-samples N`), in order:
    <experiment>/extend_1, extend_2, ... Their trials' records live in the experiment's own
    trials/ folder like the first run's."""
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(experiment.storage.fs_path(experiment.name),
                                       allow_not_found=True)
    names = [i.base_name for i in experiment.storage.fs.get_file_info(selector)
             if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith(EXTEND_DIR)
             and i.base_name.removeprefix(EXTEND_DIR).isdigit()]
    names.sort(key=lambda n: int(n.removeprefix(EXTEND_DIR)))
    return [extension_run(experiment, int(n.removeprefix(EXTEND_DIR))) for n in names]


def extension_run(experiment: ExperimentStorage, k: int) -> ExperimentStorage:
    """Where the Tune run of the k-th extension keeps its state."""
    return ExperimentStorage(Storage.resolve(experiment.path), f"{EXTEND_DIR}{k}")


def confirm_experiment(experiment: ExperimentStorage,
                       folder: str | None = None) -> ExperimentStorage:
    """The confirmation's own Tune experiment, inside the search's folder: `confirm/` for the
    first pool of trials, `confirm_<k>/` once k extensions enlarged it (a confirmation of
    another pool is another run; the earlier one stays as it was). `folder` names one."""
    if folder is None:
        extensions = len(extension_runs(experiment))
        folder = CONFIRM_DIR if not extensions else f"{CONFIRM_DIR}_{extensions}"
    return ExperimentStorage(Storage.resolve(experiment.path), folder)


__all__ = ["CONFIRM_DIR", "EXTEND_DIR", "SEARCH_CONFIG", "confirm_experiment", "experiment_at",
           "extension_run", "extension_runs", "load_config_of", "save_config"]
