"""Tune components and their builders: the search space (space.py), step-fair early stopping
(scheduler.py), the Optuna searcher with the time-budget gate (searcher.py), the Tune trainable
and the job its trials share (trainable.py), the one restore-or-create Tuner helper (tuner.py)
and the trackers (trackers.py)."""
