"""Preflight: each check refuses a real broken input with exit 2 and a paragraph naming it,
before any trial starts; valid input (the demo included) passes."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import write_tiny_config
from raytune_ft.cli.search import main as search_main
from raytune_ft.errors import UserError

SPACE = "params:\n  lr: {type: loguniform, low: 1.0e-3, high: 5.0e-2}\n"


@pytest.fixture()
def setup(tmp_path, tiny_data, tiny_pretrained, empty_tempdir):
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)

    def check(extra_cfg: str = "", *flags: str, load_from: str | None = str(tiny_pretrained),
              cfg_text: str | None = None) -> tuple[int, str]:
        cfg = tmp_path / "cfg.py"
        if cfg_text is None:
            write_tiny_config(cfg, data, load_from, extra=extra_cfg)
        else:
            cfg.write_text(cfg_text)
        args = ["--config", str(cfg), "--space", str(space), "--storage-path",
                str(tmp_path / "exp"), "--check-only", *flags]
        return search_main(args), ""

    return check, data, tmp_path


def run_check(setup, capsys, *args, **kwargs) -> tuple[int, str]:
    check = setup[0]
    rc, _ = check(*args, **kwargs)
    return rc, capsys.readouterr().err


def assert_passed_and_wrote_nothing(out: str, images: int, storage: Path) -> None:
    """A --check-only that passed: the preflight line with the train images counted, the
    check-only line, and no experiment written (the storage root the write check made stays
    empty) and nothing left in the temp folder (no scratch log, no --smoke run)."""
    assert f", {images} train images, trial 0 = recipe " in out, out
    assert "[raytune_ft] check-only: all checks passed in " in out, out
    assert "no trial was started" in out, out
    assert not storage.exists() or not list(storage.iterdir()), list(storage.rglob("*"))
    # the tests point it at an empty folder (fixture empty_tempdir); torch's caches may stay
    left = list(Path(tempfile.gettempdir()).glob("raytune_ft_*"))
    assert not left, f"a check left a scratch folder: {left}"


@pytest.mark.slow
def test_valid_config_passes(ray_session, setup, capsys):
    check, _, tmp = setup
    rc, _ = check()
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert_passed_and_wrote_nothing(out, 8, tmp / "exp")


@pytest.mark.parametrize("cfg_text, needle", [
    ("model = dict(\n  type='FasterRCNN',\n", "line 1"),
    ("_base_ = ['mmdet::_base_/models/nothing_here.py']\n", "nothing_here"),
])
def test_config_unparseable_or_base_missing(setup, capsys, cfg_text, needle):
    rc, err = run_check(setup, capsys, cfg_text=cfg_text)
    assert rc == 2 and needle in err and "cfg.py" in err, err


def test_held_out_test_annotations_are_checked_too(setup, capsys):
    held_out = ("test_dataloader = dict(dataset=dict(data_root=data_root, "
                "ann_file='annotations/test.json'))\n")
    rc, err = run_check(setup, capsys, held_out)
    assert rc == 2 and "test.json' does not exist" in err, err


def test_annotation_problems(setup, capsys):
    _, data, _ = setup
    ann = data / "annotations" / "train.json"
    original = ann.read_text()
    ann.unlink()
    rc, err = run_check(setup, capsys)
    assert rc == 2 and "train.json' does not exist" in err, err
    ann.write_text("{not json")
    rc, err = run_check(setup, capsys)
    assert rc == 2 and "is not JSON" in err, err
    ann.write_text(json.dumps({"images": [], "annotations": []}))
    rc, err = run_check(setup, capsys)
    assert rc == 2 and "no 'images'" in err, err
    ann.write_text(original)
    (data / "train" / "train_000.png").unlink()
    rc, err = run_check(setup, capsys)
    assert rc == 2 and "train_000.png" in err and "does not exist" in err, err


def test_classes_disagree_with_categories_or_num_classes(setup, capsys):
    rc, err = run_check(setup, capsys, "metainfo = dict(classes=('tree', 'car'))\n"
                        "train_dataloader = dict(dataset=dict(metainfo=metainfo))")
    assert rc == 2 and "'car'" in err and "missing" in err, err
    rc, err = run_check(setup, capsys, "model = dict(roi_head=dict(bbox_head=dict(num_classes=5)))")
    assert rc == 2 and "num_classes=5" in err and "2 classes" in err, err


def test_load_from_missing_or_unfetchable(setup, capsys, monkeypatch, tmp_path):
    rc, err = run_check(setup, capsys, load_from=str(tmp_path / "nope.pth"))
    assert rc == 2 and "nope.pth' does not exist" in err, err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # port 9 (discard) on this host refuses the connection at once: an unreachable model zoo
    rc, err = run_check(setup, capsys, load_from="http://127.0.0.1:9/x/model.pth")
    assert rc == 2 and "cannot be fetched" in err and "torch_home/hub/checkpoints/model.pth" in err


def test_corrupt_load_from_is_named_without_unsafe_advice(setup, capsys, tmp_path,
                                                         tiny_pretrained):
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes(range(256)) * 20)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_pretrained.read_bytes()[:4096])
    for path, size in ((noise, "5120 bytes"), (truncated, "4096 bytes")):
        rc, err = run_check(setup, capsys, load_from=str(path))
        assert rc == 2 and f"'{path}' is not a readable checkpoint ({size})" in err, err
        assert "weights_only" not in err and "Traceback" not in err


def test_load_from_that_does_not_fit_the_backbone(setup, capsys, tiny_pretrained,
                                                  tmp_path):
    """The failure mode of a wrong key conversion: mmengine would only log it."""
    import torch

    checkpoint = torch.load(tiny_pretrained, map_location="cpu", weights_only=False)
    checkpoint["state_dict"] = {k.replace("depthwise_conv", "conv.1"): v
                                for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, tmp_path / "renamed.pth")
    rc, err = run_check(setup, capsys, load_from=str(tmp_path / "renamed.pth"))
    assert rc == 2 and "renamed.pth' fills only" in err and "depthwise_conv" in err, err


def test_space_names_a_hparam_the_config_cannot_take(setup, capsys):
    _, _, tmp = setup
    (tmp / "space.yaml").write_text("params:\n  warmup_iters: {type: int, low: 0, high: 10}\n")
    rc, err = run_check(setup, capsys, "param_scheduler = [dict(type='MultiStepLR', by_epoch=True,"
                        " begin=0, end=2, milestones=[1])]")
    assert rc == 2 and "warmup_iters" in err and "LinearLR" in err, err


@pytest.mark.parametrize("extra_cfg, flags, needles", [
    ("param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, "
     "end=4)]", ["--scheduler", "step-probe"], ["--scheduler step-probe", "no MultiStepLR"]),
    ("param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, "
     "end=4)]", [], ["--scheduler step-after", "no MultiStepLR"]),  # the default
    ("", ["--grace", "1.5"], ["--grace", "(0, 1)"]),
    ("", ["--reduction-factor", "1"], ["--reduction-factor", "> 1"]),
    ("", ["--metric", "train_loss", "--scheduler", "step-probe"],
     ["step-probe", "train_loss", "probe"]),
    ("", ["--probe-length", "0"], ["--probe-length"]),
    ("", ["--num-samples", "0"], ["--num-samples", "got 0"]),
    ("", ["--startup-trials", "0"], ["--startup-trials"]),
])
def test_search_flags_the_rule_cannot_honour(setup, capsys, extra_cfg, flags,
                                                needles):
    rc, err = run_check(setup, capsys, extra_cfg, *flags)
    assert rc == 2 and all(n in err for n in needles), err


@pytest.mark.slow
def test_impossible_resources_say_what_the_cluster_has(ray_session, setup, capsys):
    """Asks for one GPU / CPU more than this Ray cluster has (0 GPU here, N on a GPU machine)."""
    have = ray_session.cluster_resources()
    gpus, cpus = have.get("GPU", 0.0), have["CPU"]
    workers = int(gpus) + 1  # a rank drives one GPU: more GPUs per trial means more workers
    rc, err = run_check(setup, capsys, "", "--workers-per-trial", str(workers),
                        "--gpus-per-worker", "1")
    assert rc == 2 and f"{gpus:g} GPU in total" in err, err
    assert f"{workers} worker(s) x (" in err and " 1 GPU)" in err, err
    assert "no autoscaler to add more" in err, err
    rc, err = run_check(setup, capsys, "", "--cpus-per-worker", f"{cpus + 1:g}")
    assert rc == 2 and f"{cpus:g} CPU and {gpus:g} GPU in total" in err, err


def test_storage_not_writable(setup, capsys):
    tmp = setup[2]
    blocker = tmp / "a_file"
    blocker.write_text("")
    cfg_args = ["--storage-path", str(blocker / "exp")]
    rc, err = run_check(setup, capsys, "", *cfg_args)
    assert rc == 2 and "is not writable" in err, err


def test_metric_the_evaluator_does_not_produce(setup, capsys):
    rc, err = run_check(setup, capsys, "", "--metric", "coco/segm_mAP")
    assert rc == 2 and "coco/segm_mAP" in err and "coco/bbox_mAP_50" in err, err


@pytest.mark.slow
def test_smoke_runs_exactly_one_iteration_and_catches_a_broken_pipeline(ray_session, setup,
                                                                      capsys):
    from raytune_ft.mmconfig.config import load_config
    from raytune_ft.mmconfig.preflight import smoke

    rc, _ = setup[0]("", "--smoke")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "[raytune_ft] smoke test passed" in out, out
    assert_passed_and_wrote_nothing(out, 8, setup[2] / "exp")
    ran = smoke(load_config(str(setup[2] / "cfg.py"), {}))  # the config the check just passed
    assert ran.iterations == 1 and 0 < ran.iteration_seconds <= ran.seconds
    # a head that does not match the neck's channels: a shape error only a forward pass finds
    rc, err = run_check(setup, capsys, "model = dict(roi_head=dict(bbox_head=dict("
                        "in_channels=32)))", "--smoke")
    assert rc == 2 and "--smoke" in err and "RuntimeError" in err, err


@pytest.mark.slow
def test_the_demo_passes_preflight(ray_session, capsys, tmp_path, empty_tempdir):
    from raytune_ft.data.demo import DEMO_ROOT

    rc = search_main(["--check-only", "--storage-path", str(tmp_path / "exp")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    train = json.loads((Path(DEMO_ROOT) / "annotations" / "train.json").read_text())
    assert_passed_and_wrote_nothing(out, len(train["images"]), tmp_path / "exp")


@pytest.mark.slow
def test_a_time_budget_shorter_than_one_trial_is_refused_with_the_estimate(ray_session, setup,
                                                                          capsys):
    rc, err = run_check(setup, capsys, "", "--smoke", "--time-budget", "1s")
    assert rc == 2 and "--time-budget 1s is shorter than one trial" in err, err
    assert "iterations per epoch x 2 epochs" in err and "per iteration" in err, err
    rc, _ = setup[0]("", "--smoke", "--time-budget", "2h")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert_passed_and_wrote_nothing(out, 8, setup[2] / "exp")


@pytest.mark.parametrize("bad", ["0", "-5m", "abc"])
def test_a_bad_time_budget_exits_2_naming_the_flag(bad, capsys):
    rc = search_main(["--check-only", f"--time-budget={bad}"])  # = : "-5m" is not a flag
    assert rc == 2 and "--time-budget" in capsys.readouterr().err


def test_a_recipe_outside_the_space_runs_as_trial_0_and_preflight_says_so(setup, capsys):
    """The config's lr 0.01 lies above the space's range: one raytune_ft line names the value
    and the range (Optuna's 'Fixed parameter ... out of range' warning, with its site-packages
    path, is silenced); a max_epochs the space's choices lack is refused before Ray (Optuna
    would raise in the middle of the search)."""
    from raytune_ft.console import silence_known_noise
    from raytune_ft.options import SearchConfig
    from raytune_ft.pipeline.plan import prepare
    import warnings

    check, data, tmp = setup
    cfg = write_tiny_config(tmp / "cfg.py", data, None)
    space = tmp / "space.yaml"
    space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 5.0e-3}\n"
                     "  max_epochs: {type: choice, values: [2, 3]}\n")
    config = SearchConfig(config=str(cfg), space=str(space), storage_path=str(tmp / "exp"))
    plan = prepare(config)
    out = capsys.readouterr().out
    assert plan.points[0]["lr"] == pytest.approx(0.01)
    assert ("trial 0 (the config's recipe) runs as given although lr 0.01 lies outside "
            "[0.001, 0.005] of the search space") in out, out
    assert "max_epochs" not in out.split("runs as given")[1].splitlines()[0]  # 2 is listed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        silence_known_noise()
        import optuna

        study = optuna.create_study()
        study.enqueue_trial({"lr": 0.01})
        study.ask().suggest_float("lr", 1e-3, 5e-3, log=True)
    assert not [w for w in caught if "Fixed parameter" in str(w.message)]

    space.write_text("params:\n  max_epochs: {type: choice, values: [3, 4]}\n")
    with pytest.raises(UserError, match=r"trial 0 \(the config's recipe\) cannot run: "
                                        r"max_epochs 2 is not among \[3, 4\] of the search space"):
        prepare(config)
