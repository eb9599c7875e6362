"""Search spaces: malformed files are refused by name; sampled points always make valid schedules."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import yaml
from mmengine.config import Config

from helpers import REPO
from raytune_ft.mmconfig.hparams import apply_hparams, find_scheduler
from raytune_ft.tuning.space import SpaceError, TrialShape, load_space, recipe_point, to_hparams

RECIPE = {"lr": 0.02, "max_epochs": 12, "milestones": [8], "warmup_iters": 500,
          "warmup_ratio": 0.001, "momentum": 0.9, "weight_decay": 1e-4}


def recipe_cfg() -> Config:
    return Config(dict(
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=12),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
            dict(type="MultiStepLR", by_epoch=True, begin=0, end=12, milestones=[8]),
        ]))


@pytest.mark.parametrize("text, needle", [
    ("params:\n  lr: {type: loguniform, low: 0.1, high: 0.01}\n", "key 'lr'"),
    ("params:\n  lr: {type: loguniform, low: 0.1, high: 0.01}\n", "must be below high"),
    ("params:\n  max_epochs: {type: choice, values: []}\n", "non-empty 'values'"),
    ("params:\n  learning_rate: {type: uniform, low: 0, high: 1}\n", "'learning_rate'"),
    ("params:\n  lr: {type: gaussian, low: 0, high: 1}\n", "unknown type 'gaussian'"),
    ("params:\n  lr: {type: loguniform, low: 0, high: 1}\n", "low > 0"),
    ("params:\n  lr: {type: uniform, low: 0, high: 1, values: [1]}\n", "['values']"),
    ("params:\n  lr: {type: uniform, low: a, high: 1}\n", "'low' must be a number"),
    ("params:\n  lr: [type, uniform\n", "not valid YAML at line"),
    ("params: {}\n", "non-empty 'params:'"),
    ("base_batch_size: -4\nparams:\n  lr: {type: uniform, low: 0.1, high: 1}\n",
     "base_batch_size"),
    ("params:\n  step_frac: {type: uniform, low: 0.5, high: 0.9}\n"
     "  milestones: {type: choice, values: [[3]]}\n", "keep one"),
])
def test_malformed_space_names_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert "bad.yaml" in str(err.value) and needle in str(err.value)


def test_flat_space_gets_the_fix_with_its_own_keys(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text("base_batch_size: 16\nlr: {type: loguniform, low: 0.001, high: 0.05}\n"
                    "step_frac: {type: uniform, low: 0.6, high: 0.9}\n")
    with pytest.raises(SpaceError) as err:
        load_space(path)
    text = str(err.value)
    assert "lists lr, step_frac at the top level" in text and "'params:'" in text
    fixed = yaml.safe_load(text.split("Write it as:\n", 1)[1])
    assert load_space_text(tmp_path, fixed).params.keys() == {"lr", "step_frac"}


def load_space_text(tmp_path, raw):
    path = tmp_path / "fixed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_space(path)


def test_cli_refuses_a_broken_space_with_exit_2_before_ray(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("params:\n  lr: {type: loguniform, low: 1, high: 0.1}\n")
    storage = tmp_path / "exp"
    proc = subprocess.run([sys.executable, "-m", "raytune_ft.search", "--space", str(path),
                           "--storage-path", str(storage), "--check-only"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "broken.yaml" in proc.stderr and "'lr'" in proc.stderr
    assert "Traceback" not in proc.stderr
    # refused in preflight: no OK line, and Ray never started (it would write driver.log)
    assert "preflight OK" not in proc.stdout and not storage.exists(), proc.stdout


def tune_samples(space, n: int, seed: int = 0) -> list[dict]:
    """`n` points drawn as a random search draws them: from the space's Ray Tune
    distributions (`SearchSpace.to_tune`)."""
    import numpy as np

    domains = space.to_tune("tpe")
    state = np.random.RandomState(seed)
    return [{k: d.sample(random_state=state) for k, d in domains.items()} for _ in range(n)]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml")))
def test_shipped_spaces_load(name):
    """Every shipped space names engine hyper-parameters and samples inside its own bounds."""
    from raytune_ft.mmconfig.hparams import HPARAMS

    space = load_space(REPO / "search_spaces" / name)
    assert space.params and set(space.params) <= set(HPARAMS) | {"step_frac"}
    for point in tune_samples(space, 20):
        assert set(point) == set(space.params)
        for key, param in space.params.items():
            if param.type == "choice":
                assert point[key] in param.values, (key, point[key])
            else:
                assert param.low <= point[key] <= param.high, (key, point[key])


def test_constraints_hold_for_1000_sampled_points():
    """Property: every sample of the default space becomes a valid schedule on any batch size."""
    space = load_space(REPO / "search_spaces" / "default.yaml")
    rng = random.Random(0)
    for i, sample in enumerate(tune_samples(space, 1000)):
        shape = TrialShape(total_batch=rng.choice([2, 4, 8, 16, 64]),
                           iters_per_epoch=rng.randint(1, 400))
        hp = to_hparams(sample, space, RECIPE, shape)
        cfg = apply_hparams(recipe_cfg(), hp)  # raises on any invalid schedule
        max_epochs = cfg.train_cfg.max_epochs
        step = find_scheduler(cfg, "MultiStepLR").milestones
        assert all(0 < m < max_epochs for m in step), (i, sample, hp)
        assert hp["warmup_iters"] <= space.max_warmup_fraction * max_epochs * shape.iters_per_epoch
        # lr is declared per 16 images and scaled to the trial's real batch
        assert hp["lr"] == pytest.approx(sample["lr"] * shape.total_batch / 16)


def test_recipe_point_round_trips_to_the_config_values():
    space = load_space(REPO / "search_spaces" / "default.yaml")
    shape = TrialShape(total_batch=8, iters_per_epoch=100)
    point = recipe_point(space, RECIPE, shape)
    hp = to_hparams(point, space, RECIPE, shape)
    assert hp["lr"] == pytest.approx(RECIPE["lr"])
    assert hp["milestones"] == RECIPE["milestones"] and hp["max_epochs"] == 12
    assert hp["warmup_iters"] == 300  # the recipe's 500 capped at 25% of 12 x 100 iterations
