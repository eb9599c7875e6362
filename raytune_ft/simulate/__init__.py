"""The curve replay: the product's schedulers, searchers, confirmation and time-budget rule
driven by measured learning curves on a simulated clock (Syne Tune's simulated backend is the
model). A tool above the pipeline: it imports the pipeline's pieces, nothing in the package
imports it (`bench/replay.py` and the tests do).

- `table`: measured curves (`Curve`, `CurveTable`), read through the epoch-report schema
- `design`: a `Design` = the search's options (`SearchConfig`) + replay-only fields
- `replay`: one replayed search (`replay` -> `ReplayRun`)
- `scores`: what a design does over many seeds (`summarize`)
"""

from raytune_ft.simulate.design import Design
from raytune_ft.simulate.replay import ReplayRun, TrialLog, curve_results, replay
from raytune_ft.simulate.scores import summarize
from raytune_ft.simulate.table import ConfigKey, Curve, CurveTable

__all__ = ["ConfigKey", "Curve", "CurveTable", "Design", "ReplayRun", "TrialLog",
           "curve_results", "replay", "summarize"]
