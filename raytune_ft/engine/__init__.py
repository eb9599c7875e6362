"""One trial: the Ray Train TorchTrainer (trial.py), the mmengine Runner on each worker
(worker.py), the hooks that report epochs and checkpoints to Ray (hooks.py), the LR-step probe
(probe.py), the driver-side epoch records (callbacks.py) and the cluster's resources
(cluster.py). Knows nothing of searches."""
