"""The GPU check (scripts/gpu_check.py) runs its whole sequence on the CPU here (--dry-run), so
it cannot rot while no GPU machine is lent; without a GPU or a wheelhouse it stops at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO


@pytest.mark.slow
def test_the_gpu_check_sequence_runs_on_the_cpu(tmp_path, no_shared_ray):
    out = tmp_path / "gpu_check.json"
    ran = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert ran.returncode == 0, (ran.stdout[-4000:], {n: s.get("error") for n, s in steps.items()})
    assert list(steps) == ["doctor", "kill", "share", "amp", "probe", "bench"]
    assert all(s["ok"] for s in steps.values())
    assert steps["kill"]["epochs"] == [1, 2] and steps["kill"]["resumed_at"] == [2]
    assert steps["kill"]["devices"] == ["cpu"] and steps["kill"]["cuda_visible_devices"] == [""]
    assert len(steps["share"]["statuses"]) == 2 and "errored" not in steps["share"]["statuses"]
    assert steps["probe"]["relative_difference"] == 0.0  # bitwise on the CPU
    assert steps["bench"]["ratio"] > 0 and steps["bench"]["device"] == "CPU"
    assert set(report["memory_mib"]) >= {f"after_{n}" for n in steps}
    # every step passed: its runs and checkpoints (~400 MB) are not left in /tmp
    assert report["workdir"] and not Path(report["workdir"]).exists()


def test_without_a_gpu_the_check_stops_at_once_naming_it(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    ran = subprocess.run([sys.executable, "scripts/gpu_check.py", "--out",
                          str(tmp_path / "x.json")], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 2 and "no GPU that torch can use" in ran.stderr
    assert "--dry-run" in ran.stderr and not (tmp_path / "x.json").exists()
    shell = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, capture_output=True,
                           text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert shell.returncode == 2 and "no GPU here" in shell.stderr
    bad = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--only", "nope",
                          "--out", str(tmp_path / "y.json")], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "nope" in bad.stderr and "doctor, kill" in bad.stderr
