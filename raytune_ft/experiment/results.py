"""Turn a finished (or interrupted) search into files a user reads: results.csv, summary.json,
best_config.py and the best checkpoint."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmengine.config import Config

from raytune_ft.console import columns, metric_text
from raytune_ft.experiment.confirmation import returned_config
from raytune_ft.experiment.rows import TrialRow, best_row
from raytune_ft.experiment.summary import Summary, write_summary
from raytune_ft.epoch_report import epoch_of, is_diverged
from raytune_ft.mmconfig.hparams import apply_hparams
from raytune_ft.storage import TB_DIR, TRIALS_DIR
from raytune_ft.tuning.trainable import SearchJob, sampled_point, trial_hparams

if TYPE_CHECKING:
    from raytune_ft.experiment.confirmation import Confirmation
    from raytune_ft.experiment.summary import TestNote, TestScore

__all__ = ["TrialRow", "best_row", "collect", "format_table", "read_rows", "trial_row",
           "write_best_config", "write_csv", "write_hparams", "write_results"]


def collect(results, job: SearchJob, statuses: dict[str, str] | None = None) -> list[TrialRow]:
    """A row per Tune trial, read from Tune's ResultGrid and each trial's committed epochs.

    `statuses` (Tune's trial status by id) tells an interrupted trial from an early-stopped one.
    """
    rows = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or _trial_id_from_path(result.path, statuses or {})
        phases = job.experiment.phases(trial_id)
        rows.append(trial_row(
            job, trial_id, order=_creation_number(result.path, trial_id),
            config=dict(result.config or {}), records=job.experiment.records(trial_id),
            seconds=(phases.running_s if phases is not None
                     else float(metrics.get("time_total_s", 0.0))),
            wait_seconds=phases.waiting_s if phases is not None else 0.0,
            error=_first_line(result.error) if result.error is not None else None,
            tune_status=(statuses or {}).get(trial_id, "TERMINATED")))
    rows.sort(key=lambda r: r.order)
    for order, row in enumerate(rows):  # 0 = the first trial created: the config's recipe
        row.order = order
    return rows


def device_seconds(job: SearchJob, wall_seconds: float) -> float:
    """What a trial occupied: GPU-seconds on a GPU trial (its CPUs only feed the GPUs),
    CPU-seconds on a CPU trial; `job.resources.device` says which. `wall_seconds` is the time
    its worker groups ran (raytune_ft.phases), not the time it waited for them."""
    res = job.resources
    per_worker = res.gpus_per_worker if res.use_gpu else res.cpus_per_worker
    return wall_seconds * res.workers * per_worker


def trial_row(job: SearchJob, trial_id: str, order: int, config: dict[str, Any],
              records: list[dict[str, Any]], seconds: float, error: str | None = None,
              tune_status: str = "TERMINATED", wait_seconds: float = 0.0) -> TrialRow:
    """One trial's outcome from its committed epoch records and what Tune knows of it.

    Args:
        records: the trial's committed epoch reports (metrics.jsonl), in order.
        seconds: the time the trial's worker groups ran, summed over attempts (its phases;
            Tune's time_total_s for a run that recorded none).
        wait_seconds: the time it waited for resources (reported, not charged).
        error: the trial's error, if Tune marked it errored.
        tune_status: Tune's saved status (PENDING for a trial an interruption cut short).
    """
    hparams = trial_hparams(config, job)
    values = [e[job.metric] for e in records if job.metric in e]
    pick = max if job.mode == "max" else min
    best = pick(values) if values else None
    best_epoch = next((epoch_of(e) for e in records if e.get(job.metric) == best), None)
    max_epochs = int(hparams.get("max_epochs", job.recipe.get("max_epochs", 0)))
    epochs_run = max((epoch_of(e) for e in records), default=0)
    diverged = any(is_diverged(e) for e in records)
    device_s = device_seconds(job, seconds)
    if error is not None:
        status, reason = "errored", error
    elif diverged:
        status, reason = "diverged", "train loss became NaN/inf"
    elif epochs_run >= max_epochs > 0:
        status, reason = "finished", ""
    elif tune_status != "TERMINATED":
        status, reason = "unfinished", f"interrupted after epoch {epochs_run}; --resume continues"
    else:
        status, reason = "stopped", f"early-stopped by the scheduler after epoch {epochs_run}"
    saved = 0.0
    if status == "stopped" and epochs_run:
        saved = device_s / epochs_run * (max_epochs - epochs_run)
    restarts = len({e.get("start_epoch") for e in records if e.get("resumed")})
    return TrialRow(trial_id, order, config, hparams, status, reason, epochs_run, max_epochs,
                    best, best_epoch, values[-1] if values else None, device_s, saved,
                    restarts=restarts, wait_seconds=wait_seconds)


def _trial_id_from_path(path: str, known: dict[str, str]) -> str:
    """A trial that reported nothing yet has no metrics: take its id from its folder name."""
    name = Path(path).name
    return next((t for t in known if f"_{t}_" in name), name)


def _creation_number(path: str, trial_id: str) -> int:
    """Tune names trial folders `<trainable>_<id>_<n>_<params>`: n is the creation order."""
    tail = Path(path).name.split(f"_{trial_id}_", 1)[-1]
    head = tail.split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    useful = [line for line in text if "Error" in line or "error" in line]
    return (useful[-1] if useful else (text[0] if text else type(error).__name__))[:300]


def write_results(rows: list[TrialRow], job: SearchJob, confirmation: Confirmation | None = None,
                  test: TestScore | TestNote | None = None) -> Summary:
    """Write results.csv, trials.json, summary.json, best_config.py and best_checkpoint.pth into
    the experiment (its folder, or the staging mirror published to its URI); return the summary.

    With a `confirmation` its runs are extra rows, the summary gains its statistics, and
    best_config.py / best_checkpoint.pth follow `returned_config`. `test`
    (raytune_ft.pipeline.testscore.test_score) adds the held-out test scores, or the note why
    there are none.
    """
    exp = job.experiment
    every = rows + (confirmation.rows if confirmation else [])
    write_csv(every, job, exp.local_path("results.csv"))
    exp.local_path("trials.json").write_text(
        json.dumps([dataclasses.asdict(r) for r in every], indent=1, default=str))
    best = best_row(rows, job.mode)
    trial0 = rows[0] if rows else None
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    returned = returned_config(rows, job.mode, confirmation, job)
    confirmed = returned.confirmed if returned is not None else None
    best_config = best_checkpoint = None
    if returned is not None:
        run = returned.run
        header = (f"confirmed winner: trial {confirmed.source_trial}, {job.metric} mean "
                  f"{confirmed.mean:.4f} +- {confirmed.std:.4f} over seeds {confirmation.seeds}"
                  if confirmed is not None else
                  f"best trial {run.trial_id}, {job.metric}={run.best_metric:.4f} at epoch "
                  f"{run.best_epoch} (one run, not confirmed over seeds)")
        write_best_config(job, returned.hparams, header, exp.local_path("best_config.py"))
        ckpt = copy_best_checkpoint(returned.job, run, exp.local_path("best_checkpoint.pth"))
        best_config = exp.join("best_config.py")
        best_checkpoint = exp.join("best_checkpoint.pth") if ckpt else None
    for name in ("results.csv", "trials.json", "best_config.py", "best_checkpoint.pth"):
        exp.publish(name)
    return write_summary(exp, Summary(
        metric=job.metric, mode=job.mode, trials=len(rows), by_status=counts,
        best_trial=best.trial_id if best else None,
        best_metric=best.best_metric if best else None,
        best_hparams=best.hparams if best else None,
        trial0_trial=trial0.trial_id if trial0 else None,
        trial0_metric=trial0.best_metric if trial0 else None,
        gain_over_trial0=(best.best_metric - trial0.best_metric)
        if best and trial0 and trial0.best_metric is not None else None,
        total_device_seconds=sum(r.device_seconds for r in every),
        device_seconds_saved_by_early_stopping=sum(r.saved_device_seconds for r in rows),
        total_wait_seconds=sum(r.wait_seconds for r in every),
        device=job.resources.device, experiment=exp.path, test=test,
        confirmation=confirmation.record() if confirmation is not None else None,
        winner_trial=confirmed.source_trial if confirmed else None,
        winner_hparams=confirmed.hparams if confirmed else None,
        best_config=best_config, best_checkpoint=best_checkpoint))


def write_csv(rows: list[TrialRow], job: SearchJob, path: Path) -> None:
    """results.csv: a row per search trial, then a row per confirmation run. Column names are
    unique: `space.<k>` is the sampled value, a bare hyper-parameter name (`lr`, `max_epochs`,
    `milestones`) the value applied to the config, `epochs_planned` the trial's schedule."""
    device = job.resources.device.lower()
    hp_keys = sorted({k for r in rows for k in r.hparams})
    cfg_keys = sorted({k for r in rows if r.phase == "search" for k in r.config})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "trial_id", "phase", "seed", "source_trial", "status", "reason",
                         *[f"space.{k}" for k in cfg_keys], *hp_keys, f"best {job.metric}",
                         "best_epoch", f"last {job.metric}", "epochs_run", "epochs_planned",
                         f"{device}_seconds", "wait_seconds", "restarts"])
        for r in rows:
            point = sampled_point(r.config)
            writer.writerow([r.order, r.trial_id, r.phase, "" if r.seed is None else r.seed,
                             r.source_trial or "", r.status, r.reason,
                             *[point.get(k, "") for k in cfg_keys],
                             *[json.dumps(r.hparams[k]) if k in r.hparams else "" for k in hp_keys],
                             metric_text(r.best_metric), r.best_epoch or "", metric_text(r.last_metric),
                             r.epochs_run, r.max_epochs, f"{r.device_seconds:.1f}",
                             f"{r.wait_seconds:.1f}", r.restarts])


def read_rows(experiment) -> list[TrialRow]:
    """The rows a finished (or interrupted) search wrote to trials.json."""
    data = experiment.storage.read_bytes(experiment.name, "trials.json")
    if data is None:
        return []
    return [TrialRow(**row) for row in json.loads(data)]


def write_hparams(rows: list[TrialRow], job: SearchJob) -> None:
    """TensorBoard HParams: each trial's hyper-parameters with its best metric, written into the
    trial's own TensorBoard run so the HParams tab lines them up with its curves. Called once,
    when the search ends (every call adds an event file, so a second one would list each trial
    twice)."""
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams

    tag = f"hparams/best_{job.metric}"
    for r in rows:
        if r.best_metric is None:
            continue
        values = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v))
                  for k, v in r.hparams.items()}
        values["status"] = r.status
        run = (TRIALS_DIR, job.experiment.trial_name(r.trial_id), TB_DIR)
        writer = SummaryWriter(str(job.experiment.local_path(*run)))
        for summary in hparams(values, {tag: r.best_metric}):
            writer.file_writer.add_summary(summary)
        writer.add_scalar(tag, r.best_metric, global_step=r.best_epoch or 0)
        writer.close()
        job.experiment.publish(*run)


def write_best_config(job: SearchJob, hparams: dict[str, Any], what: str, path: Path) -> Path:
    """A complete, standalone MMDetection config with the best hyper-parameters folded in."""
    cfg = apply_hparams(Config(job.cfg), hparams)
    cfg.dump(str(path))
    header = (f"# raytune_ft best config: {what}\n"
              f"# hyper-parameters: {json.dumps(hparams)}\n"
              f"# retrain: python -m raytune_ft.train --config {path.name}\n")
    path.write_text(header + path.read_text())
    return path


def copy_best_checkpoint(job: SearchJob, best: TrialRow, dest: Path) -> Path | None:
    import ray.train

    exp = job.experiment
    where = exp.storage.ray_kwargs(exp.name, TRIALS_DIR, exp.trial_name(best.trial_id))
    try:
        ckpt = ray.train.Result.from_path(
            where["storage_path"], storage_filesystem=where.get("storage_filesystem")
        ).get_best_checkpoint(job.metric, job.mode)
    except (RuntimeError, ValueError, FileNotFoundError):
        return None
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        shutil.copyfile(Path(d) / "checkpoint.pth", dest)
    return dest


def format_table(rows: list[TrialRow], metric: str) -> str:
    """The final results table printed at the end of a search."""
    keys = sorted({k for r in rows for k in r.hparams})
    head = ["#", "trial", "status", *keys, f"best {metric}", "epochs"]
    body = [[str(r.order), r.trial_id, r.status,
             *[_short(r.hparams.get(k)) for k in keys], metric_text(r.best_metric),
             f"{r.epochs_run}/{r.max_epochs}"] for r in rows]
    return columns(head, body)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if value is not None else ""
