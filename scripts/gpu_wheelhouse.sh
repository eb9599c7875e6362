#!/usr/bin/env bash
# Collect, on this machine (which reaches PyPI), the wheels the borrowed GPU machine lacks, for
# its Python 3.12 on x86_64, into .whl/ (git-ignored; `run` carries it: 64 MiB per command).
#
# The GPU machine (see /work/.library/device/KINDS.md) already has torch 2.11+cu130,
# torchvision, numpy, scipy, matplotlib, pyyaml, rich, grpcio, aiohttp, pandas, psutil,
# protobuf, requests, tensorboard, opencv-python-headless, ...: only what is missing travels,
# each pinned to what pyproject.toml / setup.sh install here. onedl-mmcv travels as its sdist: its
# CUDA ops are built there, for that GPU's arch only (scripts/gpu_check.sh). onedl-mmdetection is
# only an sdist on PyPI: it is built here into a pure-Python wheel (configs included); its `imaug`
# requirement (scikit-image, ...) is left out: nothing mmdet imports on our path needs it.
#
# Ray's wheel is 79 MB, 32 MB of it ray/jars/ (Java workers, never loaded by a Python-only
# cluster): it is repacked without them (and their RECORD lines), which keeps it an installable
# wheel of 47 MB. The dashboard's web client stays: the dashboard refuses to start without it,
# and Train V2 needs the dashboard's State API.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${WHEELHOUSE:-.whl}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
binary() {
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp "${platforms[@]}" -d "$OUT" "$@"
}
# The stack (pins as in pyproject.toml / scripts/setup.sh) and what it needs that the GPU
# machine lacks.
binary "ray==2.60.0" "onedl-mmengine==0.10.12" "optuna==5.1.0" "pycocotools==2.0.10" \
  "tensorboardX==2.6.4" "addict==2.4.0" "yapf==0.43.0" "termcolor==3.1.0" \
  "terminaltables==3.1.10" "shapely==2.1.2" "colorlog==6.10.1" "alembic==1.17.2" \
  "sqlalchemy==2.0.44" "mako==1.3.10" "jsonschema==4.25.1" \
  "jsonschema-specifications==2025.9.1" "referencing==0.37.0" "rpds-py==0.30.0" \
  "aiohttp-cors==0.8.1" "colorful==0.5.8" "opencensus==0.11.4" "opencensus-context==0.1.3" \
  "smart-open==7.5.0" \
  "pydantic==2.12.5" "pydantic-core==2.41.5" "annotated-types==0.7.0" \
  "typing-inspection==0.4.2" "setuptools==80.9.0" "google-api-core==2.28.1" \
  "googleapis-common-protos==1.72.0" "google-auth==2.43.0" "proto-plus==1.26.1" \
  "cachetools==6.2.2" "pyasn1-modules==0.4.2" "pyasn1==0.6.1" "rsa==4.9.1"
# Left out on purpose (64 MiB is tight and nothing here uses them): virtualenv (+distlib,
# platformdirs: runtime_env pip/venv) and py-spy (dashboard profiling), which ray[default]
# lists; greenlet and watchfiles (optional for sqlalchemy and uvicorn).
# pip's metadata step runs mmcv's setup.py, which imports torch and pkg_resources: use the
# project's venv (scripts/setup.sh), not an isolated build env.
"${VENV:-.venv}/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
  --no-binary=:all: --no-build-isolation -d "$OUT" "onedl-mmcv==2.3.6"
ls "$OUT"/onedl_mmdetection-3.5.1-*.whl >/dev/null 2>&1 || \
  "${VENV:-.venv}/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps \
    --no-build-isolation -w "$OUT" "onedl-mmdetection==3.5.1"
# Ray without its Java jar.
ray_whl=$(ls "$OUT"/ray-2.60.0-*.whl)
"$PY" - "$ray_whl" <<'EOF'
import sys, zipfile, os
src = sys.argv[1]
tmp = src + ".tmp"
with zipfile.ZipFile(src) as zin:
    if not any(n.startswith("ray/jars/") for n in zin.namelist()):
        sys.exit(0)  # repacked already
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if item.filename.startswith("ray/jars/"):
            continue
        data = zin.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"\n".join(l for l in data.split(b"\n") if not l.startswith(b"ray/jars/"))
        zout.writestr(item, data)
os.replace(tmp, src)
EOF
du -sh "$OUT"
ls -la "$OUT" | awk '{print $5, $9}' | sort -n | tail -8
