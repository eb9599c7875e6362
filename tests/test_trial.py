"""One trial under Ray Train: DDP across 2 workers, reports + checkpoints, recovery from a kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import RANK_AUDIT, read_metrics, with_testing_hooks, write_tiny_config
from raytune_ft.mmconfig.config import load_config
from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial
from raytune_ft.phases import PHASES_FILE, parse_phases, phase_times

pytestmark = pytest.mark.slow  # Ray searches / training runs (make test-fast skips)

TWO_WORKERS = TrialResources(workers=2, cpus_per_worker=1)


def rank_lines(run_dir: Path) -> dict[int, list[dict]]:
    out = {}
    for path in sorted((run_dir / "mmengine" / "ranks").glob("rank*.jsonl")):
        out[int(path.stem[4:])] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_two_workers_two_epochs_report_and_checkpoint(ray_session, tiny_data, tiny_pretrained,
                                                      tmp_path):
    # the config's own DDP options (mmdet's yolov3_mobilenetv2 configs need
    # find_unused_parameters) must reach the wrapper raytune_ft builds
    ddp = ("find_unused_parameters = True\n"
           "model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=True)\n")
    cfg_path = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained),
                                 max_epochs=2, extra=ddp + with_testing_hooks(RANK_AUDIT))
    spec = TrialSpec(name="ddp2", storage_path=str(tmp_path / "runs"), resources=TWO_WORKERS)
    result = run_trial(load_config(cfg_path), spec)

    reports = read_metrics(spec.run_dir)
    assert [r["epoch"] for r in reports] == [1, 2]
    assert all(0.0 <= r["coco/bbox_mAP"] <= 1.0 for r in reports)
    # the keys the curve replay builds are the keys a live trial reports (one schema)
    from raytune_ft.simulate import Curve, CurveTable, curve_results

    table = CurveTable.of([Curve(0.02, 2, 1, (0.1, 0.2))])
    for live, replayed in zip(reports, curve_results(table, table.curves[(0.02, 2, 1)][0], set())):
        assert set(replayed) <= set(live), set(replayed) - set(live)
        assert {k: live[k] for k in ("epoch", "max_epochs", "progress", "diverged")} == {
            "epoch": replayed["epoch"], "max_epochs": 2, "progress": replayed["progress"],
            "diverged": 0.0}
    assert all(r["resumed"] == 0 and r["init_from"] == str(tiny_pretrained) for r in reports)
    assert len(result.best_checkpoints) == 2
    for checkpoint, _ in result.best_checkpoints:
        assert (Path(checkpoint.path) / "checkpoint.pth").stat().st_size > 0
    assert sorted(m["epoch"] for _, m in result.best_checkpoints) == [1, 2]

    ranks = rank_lines(Path(spec.run_dir))
    assert sorted(ranks) == [0, 1]
    for epoch in (0, 1):
        seen0, seen1 = set(ranks[0][epoch]["samples"]), set(ranks[1][epoch]["samples"])
        assert seen0 and seen1 and not seen0 & seen1, "DDP ranks must see disjoint samples"
        assert seen0 | seen1 == set(range(1, 9)), "together the ranks cover the train set"
    # DDP averaged gradients: both ranks end with the same parameters.
    assert ranks[0][-1]["param_digest"] == pytest.approx(ranks[1][-1]["param_digest"], rel=1e-9)
    for line in ranks[0] + ranks[1]:
        assert line["find_unused_parameters"] is True and line["broadcast_buffers"] is True
        # a CPU trial's workers see no GPU, whatever the node's CUDA_VISIBLE_DEVICES
        assert line["cuda_visible_devices"] == "" and line["device"] == "cpu"
    # its cost is the time its workers ran, its wait is apart: both from the controller
    times = phase_times(parse_phases((Path(spec.run_dir) / PHASES_FILE).read_text()))
    assert times.schedulings == 1 and times.running_s > 0 and times.waiting_since is None


def test_killed_worker_resumes_from_its_checkpoint(ray_session, tiny_data, tiny_pretrained,
                                                   tmp_path):
    marker = tmp_path / "killed.txt"
    hook = with_testing_hooks(RANK_AUDIT, f"dict(type='FaultInjectionHook', rank=1, epoch=2, "
                                     f"at_iter=1, marker={str(marker)!r})")
    cfg_path = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained),
                                 max_epochs=3, extra=hook)
    spec = TrialSpec(name="killed", storage_path=str(tmp_path / "runs"), resources=TWO_WORKERS,
                     max_failures=1)
    result = run_trial(load_config(cfg_path), spec)

    assert marker.exists(), "the fault was injected"
    reports = read_metrics(spec.run_dir)
    assert [r["epoch"] for r in reports] == [1, 2, 3], "each epoch committed once, none lost"
    first, *after = reports
    assert first["resumed"] == 0 and first["init_from"] == str(tiny_pretrained)
    for report in after:  # the restarted attempt: resumed at epoch 2 from the trial's checkpoint
        assert report["resumed"] == 1 and report["start_epoch"] == 2
        assert report["init_from"] != str(tiny_pretrained)
    assert result.metrics["epoch"] == 3
    ranks = rank_lines(Path(spec.run_dir))
    assert [line["epoch"] for line in ranks[0]] == [1, 2, 3]
    assert [line["resumed"] for line in ranks[1]] == [0, 1, 1]
    states = [r["state"] for r in parse_phases((Path(spec.run_dir) / PHASES_FILE).read_text())]
    assert states.count("RUNNING") == 2 and states.count("SCHEDULING") == 2, states
    assert states[-1] == "FINISHED", states


def test_train_runs_the_declared_lr_at_its_batch_and_mmengine_does_not_scale_again(
        ray_session, tiny_data, tiny_pretrained, tmp_path, capsys):
    """lr 0.01 "for 16 images" with auto_scale_lr.enable=True (what --auto-scale-lr sets), run
    at 1 worker x 2 images: 0.00125 once, not 0.00125 x 2/16 by mmengine again."""
    from raytune_ft import TrainConfig, run_train

    cfg = write_tiny_config(tmp_path / "tiny.py", tiny_data, str(tiny_pretrained), max_epochs=3,
                            extra="auto_scale_lr = dict(enable=True, base_batch_size=16)\n")
    run = run_train(TrainConfig(config=str(cfg), work_dir=str(tmp_path / "runs"), name="lr",
                                cpus_per_worker=1))
    out = capsys.readouterr().out
    assert "lr 0.00125 at a total batch of 2: the config's lr 0.01 is for 16 images" in out
    # after epoch 1 the 4-iteration warmup is over and the LR step (after epoch 2) not yet due
    assert run.records[0]["lr"] == pytest.approx(0.00125)
