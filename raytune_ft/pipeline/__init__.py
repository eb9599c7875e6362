"""The pipeline: what a command does, end to end. `run_search` (search.py) owns preflight
(plan.py) -> the Tune run -> confirmation (confirm.py) -> test score (testscore.py) -> report;
`run_train` (train.py) runs one fine-tune; replay.py replays the same pipeline on recorded
curves. Imports only from the layers below (experiment, tuning, engine, mmconfig, data,
foundations); only raytune_ft.cli and the package's lazy API import it."""
