# raytune_ft developer commands. Each target sets up .venv first (idempotent, seconds when done).
PY := .venv/bin/python

.PHONY: setup test demo train-demo doctor bench replay

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q tests

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
