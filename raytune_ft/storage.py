"""Every path of an experiment, and the one place that tells a local folder from a URI.

In the spirit of Ray Train's `StorageContext`: the storage path a user gives (a folder, or
`s3://bucket/prefix`, `gs://...`, any URI pyarrow opens) is resolved once into a pyarrow
filesystem and a path on it. Ray gets that pair (`storage_filesystem`, `storage_path`), and
everything raytune_ft itself writes to an experiment goes through here:

- driver-side outputs (results.csv, summary.json, best_config.py, best_checkpoint.pth,
  optuna.db) are written to `local_path(...)` and `publish(...)`ed: the experiment folder itself
  for local storage, a staging mirror under `~/.cache/raytune_ft` uploaded to the URI otherwise;
- per-epoch records (metrics.jsonl, TensorBoard) are written on the Train controller's node and
  uploaded after each committed epoch;
- mmengine's work_dir is node-local scratch when the storage is remote (Ray persists the
  checkpoints).

S3-compatible servers (MinIO, Ceph, ...) are reached the way the AWS SDK is: set
`AWS_ENDPOINT_URL` (and credentials) in the environment of the driver and the cluster, or put
`?endpoint_override=host:port&scheme=http` on the URI.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from raytune_ft.errors import UserError

TRIALS_DIR = "trials"  # <experiment>/trials/trial_<id>/: one Ray Train run per Tune trial
METRICS_FILE = "metrics.jsonl"  # committed epoch reports of a run, one JSON object per line
TB_DIR = "tensorboard"
OPTUNA_DB = "optuna.db"  # <experiment>/optuna.db: the Optuna study (TPE's memory)
DRIVER_LOG = "driver.log"  # <experiment>/driver.log: Ray's and Optuna's driver-side log records
BUDGET_RECORD = "budget.json"  # <experiment>/budget.json: the time budget's state, why it stopped
CACHE_ENV = "RAYTUNE_FT_CACHE"  # where remote experiments are staged (default ~/.cache/raytune_ft)
CHECK_TIMEOUT_S = 30.0
SCRATCH_ROOT = "/tmp/raytune_ft"  # node-local work space of runs whose storage is remote
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # configs/, search_spaces/, data/demo/


def shipped(*parts: str) -> Path:
    """A file shipped with raytune_ft (`shipped("search_spaces", "default.yaml")`)."""
    return PROJECT_ROOT.joinpath(*parts)


def user_or_shipped(path: str | os.PathLike) -> str:
    """A user's relative path as given when it exists here, else the shipped file of that name
    (so `search_spaces/default.yaml` works from any working directory)."""
    text = str(path)
    if not os.path.isabs(text) and not os.path.exists(text) and shipped(text).exists():
        return str(shipped(text))
    return text


def is_uri(path: str) -> bool:
    """`s3://...`, `gs://...`, `file://...`: anything pyarrow opens by scheme."""
    return "://" in str(path)


@dataclass(frozen=True)
class Storage:
    """A storage root: an absolute local folder or a URI, opened once with pyarrow.

    Args:
        root: the folder (made absolute) or URI the user passed as storage path.

    Example:
        >>> Storage.resolve("experiments").join("search_1", "summary.json")  # doctest: +SKIP
        '/home/me/experiments/search_1/summary.json'
    """

    root: str

    @classmethod
    def resolve(cls, path: str | os.PathLike) -> Storage:
        text = str(path)
        if text.startswith("file://"):
            text = text[len("file://"):]
        return cls(text if is_uri(text) else str(Path(text).expanduser().resolve()))

    @property
    def is_remote(self) -> bool:
        return is_uri(self.root)

    @cached_property
    def _opened(self) -> tuple[Any, str]:
        import pyarrow.fs

        if not self.is_remote:
            return pyarrow.fs.LocalFileSystem(), self.root
        try:
            fs, path = pyarrow.fs.FileSystem.from_uri(self.root)
        except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
            raise UserError(f"storage path '{self.root}' cannot be opened: {err}. Use a local "
                            "folder or a URI pyarrow supports (s3://bucket/prefix, gs://..., "
                            "hdfs://...).") from err
        return fs, path.rstrip("/")

    @property
    def fs(self):
        """The pyarrow filesystem of this root (local or remote)."""
        return self._opened[0]

    def fs_path(self, *parts: str) -> str:
        """A path on `fs` (for a URI: without scheme and query)."""
        return "/".join([self._opened[1], *[p.strip("/") for p in parts if p]])

    def join(self, *parts: str) -> str:
        """The user-facing location of `parts` under the root (a path or a URI)."""
        if not self.is_remote:
            return os.path.join(self.root, *parts)
        base, _, query = self.root.partition("?")
        joined = "/".join([base.rstrip("/"), *[p.strip("/") for p in parts if p]])
        return f"{joined}?{query}" if query else joined

    def ray_kwargs(self, *parts: str) -> dict[str, Any]:
        """`storage_path` (+ `storage_filesystem` for a URI) for a Ray RunConfig under `parts`."""
        if not self.is_remote:
            return {"storage_path": self.join(*parts)}
        return {"storage_path": self.fs_path(*parts), "storage_filesystem": self.fs}

    def scratch_dir(self, *parts: str) -> str:
        """Node-local scratch for `parts` under a remote root (mmengine's work_dir, records
        before upload), unique per root; the folder itself under a local root."""
        if not self.is_remote:
            return self.join(*parts)
        return os.path.join(SCRATCH_ROOT, self.key, *parts)

    @property
    def key(self) -> str:
        """A short stable name for this root in local folders (scratch, staging)."""
        return hashlib.sha1(self.root.encode()).hexdigest()[:12]

    # -- files ---------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self.fs_path(*parts)).type != pyarrow.fs.FileType.NotFound

    def read_bytes(self, *parts: str) -> bytes | None:
        """The file's content, or None when it does not exist."""
        if not self.exists(*parts):
            return None
        with self.fs.open_input_stream(self.fs_path(*parts)) as f:
            return f.read()

    def upload(self, local: str | os.PathLike, *parts: str) -> None:
        """Copy a local file or folder to `parts` (files already there are overwritten)."""
        import pyarrow.fs

        local = str(local)
        if not self.is_remote and os.path.abspath(local) == self.fs_path(*parts):
            return
        dest = self.fs_path(*parts)
        if os.path.isdir(local):
            self.fs.create_dir(dest, recursive=True)
        elif not self.is_remote:
            self.fs.create_dir(os.path.dirname(dest), recursive=True)
        pyarrow.fs.copy_files(local, dest, source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=self.fs)

    def download(self, local: str | os.PathLike, *parts: str) -> bool:
        """Copy `parts` (file or folder) to a local path; False when it does not exist."""
        import pyarrow.fs

        if not self.exists(*parts):
            return False
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(self.fs_path(*parts), str(local), source_filesystem=self.fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
        return True

    def check_writable(self, timeout: float = CHECK_TIMEOUT_S) -> None:
        """Create the root, write and delete a small file: a clear error before any trial."""
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            try:
                probe = self.fs_path(".raytune_ft_write_check")
                self.fs.create_dir(self.fs_path(), recursive=True)
                with self.fs.open_output_stream(probe) as f:
                    f.write(b"ok")
                self.fs.delete_file(probe)
                outcome.append(None)
            except BaseException as err:  # noqa: BLE001 - reported below, with the path
                outcome.append(err)

        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise UserError(f"storage path '{self.root}' did not answer within {timeout:.0f}s. "
                            "Check the address (AWS_ENDPOINT_URL for S3-compatible servers), "
                            "the network and the credentials, or use a local --storage-path.")
        err = outcome[0]
        if err is not None:
            reason = getattr(err, "strerror", None) or str(err).strip().splitlines()[0]
            raise UserError(f"storage path '{self.root}' is not writable ({reason}). Pass "
                            "--storage-path with a folder you can write, or a bucket that "
                            "exists and that these credentials may write (s3://bucket/prefix)."
                            ) from err


@dataclass(frozen=True)
class ExperimentStorage:
    """Every path of one search: `<storage>/<name>/` and its trials.

    Args:
        storage: the storage root (`Storage.resolve(storage_path)`).
        name: the experiment's name, its folder under the root.
    """

    storage: Storage
    name: str

    @classmethod
    def create(cls, storage_path: str | os.PathLike, name: str) -> ExperimentStorage:
        return cls(Storage.resolve(storage_path), name)

    @property
    def is_remote(self) -> bool:
        return self.storage.is_remote

    @property
    def path(self) -> str:
        """The experiment folder or URI, as shown to the user."""
        return self.storage.join(self.name)

    def join(self, *parts: str) -> str:
        return self.storage.join(self.name, *parts)

    def tune_run_kwargs(self) -> dict[str, Any]:
        """name / storage_path / storage_filesystem for Tune's RunConfig."""
        return {"name": self.name, **self.storage.ray_kwargs()}

    def restore_kwargs(self) -> dict[str, Any]:
        """path (+ storage_filesystem) for Tuner.restore / can_restore / ExperimentAnalysis."""
        kwargs = self.storage.ray_kwargs(self.name)
        return {"path": kwargs["storage_path"],
                "storage_filesystem": kwargs.get("storage_filesystem")}

    # -- trials --------------------------------------------------------------------------
    @property
    def trials_root(self) -> str:
        """Where the trials' Ray Train runs live (a Train RunConfig's storage path)."""
        return self.join(TRIALS_DIR)

    @staticmethod
    def trial_name(trial_id: str) -> str:
        return f"trial_{trial_id}"

    def trial_path(self, trial_id: str) -> str:
        """A trial's folder or URI (its records, checkpoints, mmengine logs, TensorBoard)."""
        return self.join(TRIALS_DIR, self.trial_name(trial_id))

    def trial_ids(self) -> list[str]:
        """The ids of the trials that have a folder (ran at least briefly), in name order."""
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self.storage.fs_path(self.name, TRIALS_DIR),
                                           allow_not_found=True)
        infos = self.storage.fs.get_file_info(selector)
        names = sorted(i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory)
        return [n.removeprefix("trial_") for n in names if n.startswith("trial_")]

    def records(self, trial_id: str) -> list[dict[str, Any]]:
        """The committed epoch reports of a trial, in order (read from the storage)."""
        return read_records(self.storage, self.name, TRIALS_DIR, self.trial_name(trial_id))

    def phases(self, trial_id: str):
        """How long the trial's worker groups ran and waited (raytune_ft.phases), from the
        controller's phases.jsonl; None when the trial recorded none (older runs)."""
        from raytune_ft.phases import PHASES_FILE, parse_phases, phase_times

        data = self.storage.read_bytes(self.name, TRIALS_DIR, self.trial_name(trial_id),
                                       PHASES_FILE)
        return phase_times(parse_phases(data.decode())) if data else None

    # -- driver-side outputs ------------------------------------------------------------
    @cached_property
    def local_dir(self) -> Path:
        """Where the driver writes the experiment's own files before `publish`: the
        experiment folder itself, or a stable staging mirror for a URI (stable, so a resumed
        search finds optuna.db there)."""
        if not self.is_remote:
            return Path(self.path)
        cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "raytune_ft")
        return cache / "staging" / self.storage.key / self.name

    def local_path(self, *parts: str) -> Path:
        path = self.local_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, *parts: str) -> None:
        """Upload `local_path(*parts)` to the experiment (nothing to do for a local folder)."""
        if self.is_remote and self.local_dir.joinpath(*parts).exists():
            self.storage.upload(self.local_dir.joinpath(*parts), self.name, *parts)

    def fetch(self, *parts: str) -> bool:
        """Bring a published file back into the staging mirror when it is missing there
        (a resume on another machine); True when the local copy exists afterwards."""
        local = self.local_dir.joinpath(*parts)
        if local.exists() or not self.is_remote:
            return local.exists()
        return self.storage.download(local, self.name, *parts)


def read_records(storage: Storage, *run: str) -> list[dict[str, Any]]:
    """The committed epoch reports of the run at `run` under `storage`."""
    data = storage.read_bytes(*run, METRICS_FILE)
    if data is None:
        return []
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
