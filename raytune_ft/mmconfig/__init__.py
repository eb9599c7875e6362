"""MMDetection configs: load with `mmdet::` bases (config.py, bases.py), translate 2.x keys
(legacy.py), the hyper-parameter table that maps a search's names onto a config (hparams.py),
the metrics a config's evaluator yields (metrics.py) and the preflight checks (preflight.py).
No Ray."""
