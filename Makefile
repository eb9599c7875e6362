# raytune_ft developer commands. Each target sets up .venv first (idempotent, seconds when done).
PY := .venv/bin/python

.PHONY: setup test test-fast demo train-demo doctor bench replay

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q tests

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
