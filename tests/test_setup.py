"""scripts/setup.sh refuses an interpreter it cannot use before it creates or builds anything.

The interpreters here are small stand-ins that answer setup.sh's probes (version, venv, headers)
the way a real Python 3.10 or a 3.12 without its -dev package answers them: the check under test
is setup.sh's own logic, which runs unchanged.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import REPO


def fake_python(path: Path, version: str, headers: bool = True) -> Path:
    path.write_text(f"""#!/usr/bin/env bash
case "$2" in
  *version_info*) echo {version};;
  *ensurepip*) exit 0;;
  *Python.h*) exit {0 if headers else 1};;
  *) exit 3;;
esac
""")
    path.chmod(0o755)
    return path


def run_setup(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=python, VENV=str(tmp_path / "venv"))
    return subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_an_unsupported_python_is_refused_before_anything_is_made(tmp_path):
    result = run_setup(tmp_path, str(fake_python(tmp_path / "python3.10", "3.10")))
    assert result.returncode == 2, result.stderr
    assert "is Python 3.10, which raytune_ft does not support" in result.stderr
    assert "PYTHON=python3.12 make demo" in result.stderr  # the command that picks another
    assert not (tmp_path / "venv").exists()


def test_a_python_without_headers_is_refused_naming_the_package(tmp_path):
    result = run_setup(tmp_path, str(fake_python(tmp_path / "python3.12", "3.12", headers=False)))
    assert result.returncode == 2, result.stderr
    assert "has no C headers (Python.h)" in result.stderr and "python3.12-dev" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_a_python_that_does_not_exist_is_refused(tmp_path):
    result = run_setup(tmp_path, "python3.99-nonexistent")
    assert result.returncode == 2
    assert "PYTHON=python3.99-nonexistent is not a command on PATH" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_a_finished_venv_is_recognised_without_work(tmp_path):
    """A second run stays seconds: the stamp of this script, pyproject.toml and the Python
    version answers before any pip call."""
    import hashlib
    import sys

    version = "%d.%d" % sys.version_info[:2]
    digest = hashlib.sha1((REPO / "scripts" / "setup.sh").read_bytes()
                          + (REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / f".raytune_ft-setup-py{version}-{digest}").touch()
    result = run_setup(tmp_path, sys.executable)
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout and "creating" not in result.stdout
