#!/usr/bin/env bash
# The GPU check, on a borrowed GPU machine (never in CI). It expects the wheelhouse made here by
# scripts/gpu_wheelhouse.sh in .whl/ (carried by the device tool: `carry: [".whl"]`) and that
# machine's own python3 with CUDA torch (2.11+cu130 on the H200 machine, Python 3.12).
#   1. installs the wheels into /tmp/site (nothing of the machine's own packages changes);
#   2. builds onedl-mmcv's CUDA ops from the sdist for this GPU's arch only (timed);
#   3. runs scripts/gpu_check.py, which writes $OUT/gpu_check.json (or GPU_CHECK_OUT).
# Stops at once, naming what is missing, when there is no GPU or no wheelhouse.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${GPU_CHECK_OUT:-${OUT:-.}/gpu_check.json}
py=${PYTHON:-python3}
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "gpu_check: no GPU here (nvidia-smi finds none): run it on a GPU machine, or" \
       "scripts/gpu_check.py --dry-run on the CPU" >&2; exit 2; }
ls .whl/ray-*.whl .whl/onedl_mmcv-*.tar.gz >/dev/null 2>&1 || {
  echo "gpu_check: the wheelhouse .whl/ lacks ray or the mmcv sdist: run" \
       "scripts/gpu_wheelhouse.sh on a machine with PyPI and carry .whl" >&2; exit 2; }
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
t0=$(date +%s)
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
t1=$(date +%s)
cap=$("$py" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
if ! "$py" -c "import mmcv.ops" 2>/dev/null; then
  FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST="$cap" MAX_JOBS=$(nproc) \
    "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
    --target /tmp/site .whl/onedl_mmcv-*.tar.gz
fi
t2=$(date +%s)
echo "[gpu_check.sh] wheels installed in $((t1 - t0))s; mmcv CUDA ops (sm_${cap/./}) built in $((t2 - t1))s"
export PATH=/tmp/site/bin:$PATH
"$py" scripts/gpu_check.py --out "$out" "$@"
