"""`python -m raytune_ft.doctor`: check the installed stack and explain known-bad combinations.

Exit status 0 when the stack can run raytune_ft, 1 when it is broken.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import sys
import warnings
from dataclasses import dataclass

from packaging.version import Version


@dataclass
class Finding:
    ok: bool
    what: str
    advice: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


# The OpenMMLab packages by import name: the distributions raytune_ft installs (OneDL's maintained
# successors) and the original ones, which provide the same modules and must not sit beside them.
OPENMMLAB = {"mmcv": ("onedl-mmcv", "mmcv"), "mmengine": ("onedl-mmengine", "mmengine"),
             "mmdet": ("onedl-mmdetection", "mmdet")}
REBUILD_MMCV = ("MMCV_WITH_OPS=1 pip install --no-build-isolation --force-reinstall "
                "--no-deps onedl-mmcv==2.3.6")


def check_stack() -> tuple[dict[str, str | None], list[Finding]]:
    versions = {name: _version(name) for name in
                ("torch", "ray", "optuna", "tensorboard", "setuptools", "pycocotools")}
    findings: list[Finding] = []
    for module, (successor, original) in OPENMMLAB.items():
        ours, theirs = _version(successor), _version(original)
        versions[module] = f"{ours} ({successor})" if ours else theirs
        if ours and theirs:
            findings.append(Finding(False, f"{successor} {ours} and {original} {theirs} are both "
                                           f"installed (both provide the `{module}` module)",
                                    f"pip uninstall -y {original}, then run scripts/setup.sh"))
        elif theirs:
            findings.append(Finding(False, f"{original} {theirs} is installed, not {successor}",
                                    "raytune_ft runs on OneDL's maintained successors (README "
                                    "\"Set-up\"): run scripts/setup.sh, which replaces it"))
    versions["python"] = platform.python_version()
    for name in ("torch", "mmcv", "mmengine", "mmdet", "ray", "optuna"):
        if versions[name] is None:
            findings.append(Finding(False, f"{name} is not installed",
                                    "run scripts/setup.sh (or `make setup`)"))
    mmcv, mmdet, torch_v = versions["mmcv"], versions["mmdet"], versions["torch"]
    if torch_v and Version(torch_v).release >= (2, 14):
        findings.append(Finding(False, f"torch {torch_v}",
                                "mmcv's build forces -std=c++17 but torch >= 2.14 headers need "
                                "C++20: use torch 2.13.0 (scripts/setup.sh pins it)"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pkg_resources  # noqa: F401
    except ImportError:
        findings.append(Finding(False, f"setuptools {versions['setuptools']} has no pkg_resources",
                                "mmcv's setup.py and mmengine's mmdet:: base resolution import it: "
                                "pip install 'setuptools>=77,<81'"))
    if versions["ray"] is not None:
        if importlib.util.find_spec("ray.dashboard") is None or _version("aiohttp") is None:
            findings.append(Finding(False, "ray is installed without the [default] extra",
                                    "Train V2 needs the dashboard/State API to clean up stopped "
                                    "trials: pip install 'ray[default,tune,train]==2.60.0'"))
        from raytune_ft.engine.cluster import auth_status, check_auth_token
        from raytune_ft.errors import UserError

        try:
            check_auth_token()
            findings.append(Finding(True, auth_status()))
        except UserError as err:
            findings.append(Finding(False, str(err)))
    if mmcv is not None:
        try:
            import torch
            from mmcv.ops import nms

            boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
            nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
            findings.append(Finding(True, "mmcv compiled ops load (nms ran)"))
        except Exception as err:  # noqa: BLE001 - any failure here means the ops are unusable
            findings.append(Finding(False, f"mmcv compiled ops do not load: {err}",
                                    f"rebuild: {REBUILD_MMCV}"))
    if mmcv is not None and not any(not f.ok and "mmcv" in f.what for f in findings):
        findings.extend(check_cuda())
    if mmdet is not None and not any(not f.ok and "mmcv" in f.what for f in findings):
        try:
            importlib.import_module("mmdet.models")
            findings.append(Finding(True, "mmdet models import"))
        except Exception as err:  # noqa: BLE001
            findings.append(Finding(False, f"mmdet does not import: {err}"))
    return versions, findings


def check_cuda() -> list[Finding]:
    """On a machine with a GPU: mmcv's compiled ops run on it. Catches an mmcv built without
    CUDA ops (a CPU wheel in a GPU image), one built for other GPU archs ("no kernel image is
    available for execution on the device"), and a CUDA version mismatch with torch. Nothing
    to check (and no finding) on a machine without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return []
    findings = []
    major, minor = torch.cuda.get_device_capability(0)
    name = torch.cuda.get_device_name(0)
    try:
        from mmcv.ops import get_compiling_cuda_version

        built = get_compiling_cuda_version()
    except Exception:  # noqa: BLE001 - an old mmcv without the helper
        built = "unknown"
    if built in ("not available", "unknown") or built.split(".")[0] != str(
            torch.version.cuda).split(".")[0]:
        findings.append(Finding(False, f"mmcv ops built for CUDA {built}, torch uses CUDA "
                                       f"{torch.version.cuda}",
                                f"rebuild mmcv on this image: FORCE_CUDA=1 {REBUILD_MMCV}"))
    try:
        from mmcv.ops import nms, roi_align

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]], device="cuda")
        nms(boxes, torch.tensor([0.9, 0.8], device="cuda"), 0.5)
        feats = torch.rand(1, 4, 16, 16, device="cuda")
        rois = torch.tensor([[0.0, 1.0, 1.0, 9.0, 9.0]], device="cuda")
        out = roi_align(feats, rois, (2, 2), 1.0, 0, "avg", True)
        torch.cuda.synchronize()
        assert out.shape == (1, 4, 2, 2), out.shape
        findings.append(Finding(True, f"mmcv CUDA ops run on {name} (sm_{major}{minor}; nms, "
                                      f"roi_align; mmcv built with CUDA {built})"))
    except Exception as err:  # noqa: BLE001 - any failure means trials would fail on this GPU
        findings.append(Finding(False, f"mmcv CUDA ops fail on {name} (sm_{major}{minor}): "
                                       f"{str(err).splitlines()[0][:200]}",
                                f"rebuild mmcv with TORCH_CUDA_ARCH_LIST including "
                                f"{major}.{minor}: FORCE_CUDA=1 {REBUILD_MMCV}"))
    return findings


def main() -> int:
    versions, findings = check_stack()
    for name, version in versions.items():
        print(f"{name:12s} {version or 'MISSING'}")
    try:
        import torch

        print(f"{'cuda':12s} {torch.cuda.is_available()} ({torch.cuda.device_count()} GPU)")
    except ImportError:
        pass
    for f in findings:
        print(("ok    " if f.ok else "BROKEN ") + f.what + (f": {f.advice}" if f.advice else ""))
    broken = [f for f in findings if not f.ok]
    print("stack OK" if not broken else f"stack BROKEN ({len(broken)} problem(s))")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
