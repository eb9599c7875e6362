# raytune_ft developer commands. Each target sets up .venv first (idempotent, seconds when done).
PY := .venv/bin/python

.PHONY: setup test test-fast demo train-demo doctor bench replay gpu-wheelhouse gpu-check-dry-run

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q --durations=25 tests

# Everything that needs neither a Ray search nor a training run (under 3 min on 2 cores).
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

demo: setup
	$(PY) -m raytune_ft.search

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
