"""raytune_ft: tune the schedule of MMDetection fine-tunes with Ray Train, Ray Tune and Optuna."""

__version__ = "0.1.0"
