# raytune_ft developer commands. Each target sets up the venv first (idempotent, seconds when
# done). Another Python: `PYTHON=python3.12 make demo`; a second venv beside: VENV=.venv-py313.
VENV ?= .venv
export VENV
PY := $(VENV)/bin/python

.PHONY: setup test test-fast demo demo-short train-demo doctor bench replay gpu-wheelhouse gpu-check-dry-run

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q --durations=25 tests

# Everything that needs neither a Ray search nor a training run (under 3 min on 2 cores).
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

demo: setup
	$(PY) -m raytune_ft.search

# One short trial of the demo search (the recipe, 2 epochs on 24 images): what CI runs on its
# second Python to show the whole path works there.
DEMO_SHORT := --cfg-options train_cfg.max_epochs=2 param_scheduler.1.end=2 \
	"param_scheduler.1.milestones=[1]" train_dataloader.dataset.indices=24
demo-short: setup
	rm -rf .demo-short
	$(PY) -m raytune_ft.search --space search_spaces/demo_short.yaml --num-samples 1 --confirm 0 \
	  $(DEMO_SHORT) \
	  --storage-path .demo-short --name demo
	$(PY) -c "import csv, sys; rows = list(csv.DictReader(open('.demo-short/demo/results.csv'))); \
	  sys.exit(0 if [r['status'] for r in rows] == ['finished'] else f'demo-short: {rows}')"

train-demo: setup
	$(PY) -m raytune_ft.train

doctor: setup
	$(PY) -m raytune_ft.doctor

bench: setup
	$(PY) bench/overhead.py

replay: setup
	$(PY) bench/replay.py

# The GPU check (README "The GPU check"): the wheels a borrowed GPU machine lacks, and the same
# sequence on this machine's CPU. On the GPU machine itself: bash scripts/gpu_check.sh
gpu-wheelhouse: setup
	bash scripts/gpu_wheelhouse.sh

gpu-check-dry-run: setup
	$(PY) scripts/gpu_check.py --dry-run --out gpu_check_dry_run.json
