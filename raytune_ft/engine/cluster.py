"""Ray start-up and what a cluster can hold: shared by a search and a single fine-tune."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from raytune_ft.errors import UserError


def default_cpus_per_worker(cpus_per_worker: float | None, workers: int, address: str | None,
                            demo: bool, reserved: float = 0.0) -> float:
    """1 CPU per worker, except that the demo on a local Ray gives its one worker the machine
    (less `reserved`, e.g. what a Tune trial's driver holds)."""
    if cpus_per_worker is not None:
        return cpus_per_worker
    if demo and address is None and workers == 1:
        return max(1.0, (os.cpu_count() or 1) - reserved)
    return 1.0


TOKEN_HELP = ("Set RAY_AUTH_TOKEN to the cluster's token (or RAY_AUTH_TOKEN_PATH to a file "
              "holding it; default ~/.ray/auth_token, what `ray get-auth-token --generate` "
              "wrote before `ray up cluster.yaml`) and RAY_AUTH_MODE=token.")


def default_token_file() -> Path:
    """~/.ray/auth_token: where Ray looks last (and `ray get-auth-token --generate` writes)."""
    return Path.home() / ".ray" / "auth_token"


def _token_source() -> tuple[str, Path | None] | None:
    """Where Ray takes this process's token from, in Ray's order: RAY_AUTH_TOKEN, the file
    RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token; (what, file) or None when none is set."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN", None
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        file = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
        return f"the file RAY_AUTH_TOKEN_PATH={file}", file
    if default_token_file().is_file():
        return str(default_token_file()), default_token_file()
    return None


def check_auth_token() -> None:
    """The token the environment names is there: a RAY_AUTH_TOKEN_PATH file that exists and
    is not empty, and with RAY_AUTH_MODE=token some token at all (Ray itself would fail later,
    in a background thread, with a less clear message)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"RAY_AUTH_TOKEN_PATH names '{file}', which does not exist: no "
                            f"token to authenticate with the Ray cluster. {TOKEN_HELP}")
        if not file.read_text().strip():
            raise UserError(f"RAY_AUTH_TOKEN_PATH names '{file}', which is empty: no token to "
                            f"authenticate with the Ray cluster. {TOKEN_HELP}")
    source = _token_source()
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" and not path and (
            source is None or (source[1] is not None and not source[1].read_text().strip())):
        raise UserError(f"RAY_AUTH_MODE=token but no token was found (RAY_AUTH_TOKEN is "
                        f"unset, RAY_AUTH_TOKEN_PATH is unset and '{default_token_file()}' "
                        f"is missing or empty). {TOKEN_HELP}")


def auth_status() -> str:
    """Where this process's Ray token comes from, in words (`doctor` prints it)."""
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    source = _token_source()
    where = source[0] if source else None
    if mode == "token":
        return f"Ray token authentication on (RAY_AUTH_MODE=token), token from {where}"
    return (f"RAY_AUTH_MODE is {mode or 'unset'}: --address of a cluster.yaml cluster (token "
            "authentication) needs RAY_AUTH_MODE=token" + (f"; a token is in {where}"
                                                           if where else " and its token"))


def _refused_token(err: BaseException) -> str | None:
    """Why the cluster refused this driver's token, when that is what `err` is about (Ray
    raises "Failed to connect to Ray cluster" from a GCS error whose text carries the
    AuthenticationError), else None."""
    from ray.exceptions import AuthenticationError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, AuthenticationError):
            return err.message
        if "InvalidAuthToken" in str(err):
            return "authentication token is missing or incorrect (InvalidAuthToken)"
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def ray_logs_dir() -> str:
    """Where this node's Ray processes log (the session's logs folder)."""
    try:
        import ray

        return ray._private.worker._global_node.get_logs_dir_path()
    except Exception:  # noqa: BLE001 - Ray not started here, or its internals moved
        return "/tmp/ray/session_latest/logs"


def init_ray(address: str | None, quiet: bool = True,
             log_file: str | os.PathLike | None = None) -> list[dict[str, float]]:
    """Connect to a cluster or start a local Ray; return each alive node's total resources.
    A cluster that refuses this driver's token is a UserError naming RAY_AUTH_TOKEN.

    `log_file` (a run without --verbose): Ray's and Optuna's records of this driver go there
    instead of the console, and the actors' output stays in each node's Ray session logs (the
    console is the driver's own lines: raytune_ft.tuning.progress, EpochFollower)."""
    import ray

    from raytune_ft.console import log_libraries_to, route_ray_messages_to

    if log_file is not None:
        log_libraries_to(log_file)
    if not ray.is_initialized():
        check_auth_token()
        os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
        if not address:
            # Ray starts workers at niceness 15, so on a small machine its own daemons and any
            # other process take CPU from training (measured: bench/overhead.py). Training is the
            # point of this Ray instance: run it at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs: dict[str, Any] = {"log_to_driver": log_file is None}
        if quiet:
            kwargs["logging_level"] = "WARNING"
        try:
            ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised unless a refused token is its cause
            refused = _refused_token(err)
            if refused is None:
                raise
            raise UserError(f"the Ray cluster at --address {address} refused this driver: "
                            f"{refused.split('. Ensure')[0]}. {TOKEN_HELP}") from None
    if log_file is not None:
        log_libraries_to(log_file)  # ray.init set the ray logger up again
        route_ray_messages_to(log_file)
    return [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n["Alive"]]
