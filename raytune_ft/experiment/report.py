"""One self-contained report.html of a search, for people (`python -m raytune_ft.report EXP`).

What a detection engineer needs to believe and show a result: the recipe against the best run,
the confirmed mean and the held-out test score; every trial's learning curve with its LR step and
where early stopping judged it; the metric against each hyper-parameter, their importance,
parallel coordinates, the optimisation history and what each trial cost. Charts are Optuna's
own (`optuna.visualization`) and plotly's; plotly.js is inlined once, so the file opens offline.

Works on an interrupted experiment too: whatever epochs were committed are shown.
"""

from __future__ import annotations

import html
import json
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

from raytune_ft.console import metric_text
from raytune_ft.epoch_report import epoch_of, is_diverged, max_epochs_of, probe_value
from raytune_ft.errors import UserError
from raytune_ft.experiment.summary import Summary, read_summary
from raytune_ft.storage import ExperimentStorage

REPORT_FILE = "report.html"
STATUS_COLOURS = {"finished": "#2a9d8f", "stopped": "#e9a23b", "diverged": "#d1495b",
                  "errored": "#6c757d", "unfinished": "#4361ee", "confirm": "#7b2cbf"}


@dataclass
class ReportData:
    """Everything the report shows, read from the experiment's files."""

    experiment: ExperimentStorage
    metric: str
    mode: str
    summary: Summary | None  # None before the search wrote one (interrupted)
    rows: list  # TrialRow, search and confirm phases
    records: dict[str, list[dict[str, Any]]]  # trial id -> committed epochs
    interrupted: bool


def load(experiment: ExperimentStorage) -> ReportData:
    """Read summary.json, trials.json and every trial's records; an interrupted experiment
    (no results yet) is read from the trials' records alone."""
    from raytune_ft.experiment.record import confirm_experiment, load_config_of
    from raytune_ft.experiment.results import TrialRow, read_rows

    summary = read_summary(experiment)
    trial_ids = experiment.trial_ids()
    if not summary and not trial_ids:
        load_config_of(experiment)  # raises "not a raytune_ft experiment" without search_config
    try:
        config = load_config_of(experiment)
        metric, mode = config.metric, config.mode
    except UserError:  # written before search_config.json existed
        metric, mode = None, "max"
    if summary is not None:
        metric, mode = summary.metric or metric, summary.mode or mode
    metric = metric or "coco/bbox_mAP"
    rows = read_rows(experiment)
    records = {tid: experiment.records(tid) for tid in trial_ids}
    confirmation = summary.confirmation if summary is not None else None
    confirm = confirm_experiment(experiment, confirmation.folder if confirmation else None)
    for row in rows:
        if row.phase == "confirm":
            records[row.trial_id] = confirm.records(row.trial_id)
    interrupted = not rows
    if interrupted:  # no results.csv yet: rows from the records (status unknown: unfinished)
        for order, (tid, recs) in enumerate(sorted(
                records.items(), key=lambda kv: kv[1][0].get("reported_at", 0) if kv[1] else 0)):
            values = [r[metric] for r in recs if metric in r]
            best = (max if mode == "max" else min)(values) if values else None
            rows.append(TrialRow(tid, order, {}, {}, "unfinished", "", len(recs),
                                 max_epochs_of(recs[-1]) if recs else 0, best, None,
                                 values[-1] if values else None, 0.0))
    return ReportData(experiment, metric, mode, summary, rows, records, interrupted)


# -- figures ------------------------------------------------------------------------------------
def curves_figure(data: ReportData):
    """Metric vs epoch of every trial, coloured by status; a diamond at each trial's LR step,
    a cross where early stopping ended it, open circles for the LR-step probe's values."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shown: set[str] = set()
    many = len(data.rows) > 30
    for row in data.rows:
        every = data.records.get(row.trial_id, [])
        # a diverged epoch carries a finite stand-in (-1 or 1e9), not a score: never plot it
        recs = [r for r in every if data.metric in r and not is_diverged(r)]
        if not recs:
            continue
        kind = "confirm" if row.phase == "confirm" else row.status
        colour = STATUS_COLOURS.get(kind, "#333")
        label = (f"trial {row.order} ({row.trial_id})" if row.phase == "search"
                 else f"confirm {row.source_trial} seed {row.seed}")
        epochs = [epoch_of(r) for r in recs]
        values = [r[data.metric] for r in recs]
        fig.add_trace(go.Scatter(
            x=epochs, y=values, mode="lines", name=kind, legendgroup=kind,
            showlegend=kind not in shown, line=dict(color=colour, width=1 if many else 2),
            opacity=0.55 if many else 0.9, hovertemplate=f"{label}<br>{_hp(row)}<br>epoch "
            "%{x}: %{y:.4f}<extra></extra>"))
        shown.add(kind)
        step = recs[0].get("lr_step_epoch")
        at_step = [r for r in recs if epoch_of(r) == step]
        if step and at_step and step < recs[-1].get("max_epochs", step + 1):
            fig.add_trace(go.Scatter(
                x=[step], y=[at_step[0][data.metric]], mode="markers", legendgroup="LR step",
                name="LR step", showlegend="LR step" not in shown,
                marker=dict(symbol="diamond", size=7, color=colour,
                            line=dict(color="black", width=1)),
                hovertemplate=f"{label}: LR step after epoch {step}<extra></extra>"))
            shown.add("LR step")
        probes = [(epoch_of(r), probe_value(r, data.metric)) for r in recs
                  if probe_value(r, data.metric) is not None]
        if probes:
            fig.add_trace(go.Scatter(
                x=[p[0] for p in probes], y=[p[1] for p in probes], mode="markers",
                legendgroup="probe", name="LR-step probe (what ranked it)",
                showlegend="probe" not in shown,
                marker=dict(symbol="circle-open", size=8, color=colour),
                hovertemplate=f"{label}: probe %{{y:.4f}} after epoch %{{x}}<extra></extra>"))
            shown.add("probe")
        if any(is_diverged(r) for r in every):
            fig.add_trace(go.Scatter(
                x=[epochs[-1]], y=[values[-1]], mode="markers", legendgroup="diverged",
                name="diverged after this epoch", showlegend="diverged" not in shown,
                marker=dict(symbol="x", size=10, color=STATUS_COLOURS["diverged"]),
                hovertemplate=f"{label}: loss became NaN/inf after epoch %{{x}}"
                              "<extra></extra>"))
            shown.add("diverged")
        if row.status == "stopped":
            fig.add_trace(go.Scatter(
                x=[epochs[-1]], y=[values[-1]], mode="markers", legendgroup="judged",
                name="stopped here", showlegend="judged" not in shown,
                marker=dict(symbol="x", size=9, color=colour),
                hovertemplate=f"{label}: stopped at epoch %{{x}}<extra></extra>"))
            shown.add("judged")
    fig.update_layout(title=f"Learning curves: {data.metric} per epoch", xaxis_title="epoch",
                      yaxis_title=data.metric, height=480, legend=dict(groupclick="togglegroup"),
                      xaxis=dict(dtick=1))
    return fig


def study_of(data: ReportData):
    """An in-memory Optuna study of the search trials: their sampled values and best metric;
    finished trials COMPLETE, early-stopped ones PRUNED (so importance uses complete ones only)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    rows = [r for r in data.rows if r.phase == "search" and r.config]
    keys = sorted({k for r in rows for k in r.config})
    dists = {}
    for key in keys:
        values = [r.config[key] for r in rows if key in r.config]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            low, high = float(min(values)), float(max(values))
            log = low > 0 and high / low > 20
            dists[key] = FloatDistribution(low, high if high > low else low + 1e-12, log=log)
        else:
            dists[key] = CategoricalDistribution(sorted({json.dumps(v) for v in values}))
    study = optuna.create_study(direction="maximize" if data.mode == "max" else "minimize")
    for r in rows:
        params = {k: (float(r.config[k]) if isinstance(dists[k], FloatDistribution)
                      else json.dumps(r.config[k])) for k in keys if k in r.config}
        ok = r.status == "finished" and r.best_metric is not None
        study.add_trial(create_trial(
            params=params, distributions={k: dists[k] for k in params},
            value=r.best_metric if ok else None,
            state=TrialState.COMPLETE if ok else TrialState.PRUNED,
            user_attrs={"trial_id": r.trial_id, "status": r.status}))
    return study


def cost_figure(data: ReportData):
    """Device-hours per trial in creation order (confirmation runs last), coloured by status."""
    import plotly.graph_objects as go

    device = ((data.summary.device if data.summary else None) or "device").upper()
    rows = sorted(data.rows, key=lambda r: (r.phase != "search", r.order))
    labels = [f"{r.order}:{r.trial_id}" if r.phase == "search"
              else f"confirm {r.source_trial} s{r.seed}" for r in rows]
    fig = go.Figure()
    for kind in STATUS_COLOURS:
        pick = [i for i, r in enumerate(rows)
                if (r.phase == "confirm") == (kind == "confirm")
                and (kind == "confirm" or r.status == kind)]
        if pick:
            fig.add_trace(go.Bar(
                x=[labels[i] for i in pick], y=[rows[i].device_seconds / 3600 for i in pick],
                name=kind, marker_color=STATUS_COLOURS[kind],
                customdata=[[rows[i].epochs_run, rows[i].max_epochs] for i in pick],
                hovertemplate="%{x}: %{y:.3f} h, %{customdata[0]}/%{customdata[1]} epochs"
                              "<extra></extra>"))
    fig.update_layout(title=f"Cost per trial ({device}-hours; hover for epochs run)",
                      yaxis_title=f"{device}-hours", height=360,
                      xaxis=dict(type="category", categoryorder="array", categoryarray=labels,
                                 showticklabels=len(rows) <= 40))
    return fig


def confirmation_figure(data: ReportData):
    """Each confirmed config: its seeds' values, their mean +- std, and (a star) the single
    value the search saw, which selection biases upwards."""
    import plotly.graph_objects as go

    conf = data.summary.confirmation if data.summary else None
    if not conf:
        return None
    fig = go.Figure()
    labels = [f"{c.role} ({c.trial})" for c in conf.candidates]
    for label, cand in zip(labels, conf.candidates):
        seeds = [(s, v) for s, v in cand.values.items() if v is not None]
        fig.add_trace(go.Scatter(
            x=[label] * len(seeds), y=[v for _, v in seeds], mode="markers", name="a seed",
            legendgroup="seed", showlegend=label == labels[0],
            marker=dict(size=9, color=STATUS_COLOURS["confirm"], opacity=0.7),
            text=[f"seed {s}" for s, _ in seeds], hovertemplate="%{text}: %{y:.4f}<extra></extra>"))
        if cand.mean is not None:
            fig.add_trace(go.Scatter(
                x=[label], y=[cand.mean], mode="markers", name="mean +- std",
                legendgroup="mean", showlegend=label == labels[0],
                error_y=dict(type="data", array=[cand.std or 0], width=14),
                marker=dict(symbol="line-ew-open", size=26, color="black"),
                hovertemplate=f"mean {cand.mean:.4f} +- {cand.std or 0:.4f}"
                              "<extra></extra>"))
        if cand.search_value is not None:
            fig.add_trace(go.Scatter(
                x=[label], y=[cand.search_value], mode="markers",
                name="its single search run", legendgroup="search",
                showlegend=label == labels[0],
                marker=dict(symbol="star", size=13, color=STATUS_COLOURS["stopped"]),
                hovertemplate="search run: %{y:.4f}<extra></extra>"))
    fig.update_layout(title=f"Confirmation over fresh seeds {conf.seeds}",
                      yaxis_title=data.metric, height=380)
    return fig


def figures(data: ReportData) -> list[tuple[str, str, Any]]:
    """(section id, title, figure or a sentence why there is none), in report order."""
    from optuna import visualization as vis

    out: list[tuple[str, str, Any]] = [("curves", "Learning curves", curves_figure(data))]
    conf = confirmation_figure(data)
    if conf is not None:
        out.append(("confirmation", "Confirmation over seeds", conf))
    study = study_of(data)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if complete and study.trials[0].params:
        out.append(("slice", "Metric vs each hyper-parameter", vis.plot_slice(study)))
        try:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                importance = vis.plot_param_importances(study)
            if said:  # e.g. "importances will be equal": the page says it, not the console
                importance = (f"Parameter importances cannot be told apart here: "
                              f"{said[0].message}")
        except (RuntimeError, ValueError, ZeroDivisionError) as err:
            importance = f"Not enough finished trials to rank parameters ({err})."
        if len(complete) < 3:
            importance = (f"Parameter importance needs at least 3 finished trials; "
                          f"{len(complete)} finished.")
        out.append(("importance", "Parameter importance (finished trials only)", importance))
        out.append(("parallel", "Parallel coordinates", vis.plot_parallel_coordinate(study)))
        out.append(("history", "Optimisation history", vis.plot_optimization_history(study)))
    else:
        for sid, title in (("slice", "Metric vs each hyper-parameter"),
                           ("importance", "Parameter importance (finished trials only)"),
                           ("parallel", "Parallel coordinates"),
                           ("history", "Optimisation history")):
            out.append((sid, title, "No finished trial yet."))
    out.append(("cost", "Cost per trial", cost_figure(data)))
    return out


# -- text -------------------------------------------------------------------------------------
def headline(data: ReportData) -> list[tuple[str, str]]:
    """The header's numbers: (label, value)."""
    s, metric = data.summary, data.metric
    conf = s.confirmation if s else None
    winner = conf.winner if conf else None
    recipe = conf.recipe if conf else None
    hours = (s.total_device_seconds if s and s.total_device_seconds is not None
             else sum(r.device_seconds for r in data.rows)) / 3600
    saved = ((s.device_seconds_saved_by_early_stopping if s else None) or 0.0) / 3600
    device = (s.device if s else None) or "device"
    test = s.test_score if s else None
    items = [
        ("recipe (trial 0)", _v(s.trial0_metric if s else None)),
        ("best single run", _v(s.best_metric if s else None)
         + (f" (trial {s.best_trial})" if s and s.best_trial else "")),
        ("confirmed winner", f"{winner.mean:.4f} +- {winner.std:.4f} (trial "
                             f"{winner.trial}, seeds {conf.seeds})" if winner else
         "not confirmed"),
        ("confirmed recipe", f"{recipe.mean:.4f} +- {recipe.std:.4f}" if recipe and
         recipe.confirmed else "not confirmed"),
        ("test score (picked on val, scored on test)",
         f"winner {_v(test.winner)}, recipe {_v(test.recipe)}" if test else test_note(data)),
        (f"{device}-hours used", f"{hours:.2f}"),
        ("saved by early stopping", f"{saved:.2f} {device}-hours"),
        ("metric", f"{metric} ({'higher' if data.mode == 'max' else 'lower'} is better)"),
    ]
    return items


def test_note(data: ReportData) -> str:
    note = data.summary.test_note if data.summary else None
    return note or "no held-out test set (val only)"


def text_summary(data: ReportData) -> str:
    """A few plain lines to paste into a ticket."""
    s = data.summary
    rows = [r for r in data.rows if r.phase == "search"]
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    lines = [f"raytune_ft search {data.experiment.name}: {len(rows)} trials "
             f"({', '.join(f'{n} {k}' for k, n in sorted(by_status.items()))}), metric "
             f"{data.metric}."]
    if data.interrupted:
        lines.append("The search was interrupted; this report shows the epochs committed so "
                     "far (resume it with python -m raytune_ft.search --resume).")
    if s is not None and s.best_trial:
        lines.append(f"Recipe: {_v(s.trial0_metric)}. Best single run: "
                     f"{_v(s.best_metric)} (trial {s.best_trial}, "
                     f"{json.dumps(s.best_hparams)}).")
    conf = s.confirmation if s else None
    win = conf.winner if conf else None
    if win is not None:
        diff = win.diff_to_recipe or {}
        ci = diff.get("ci95")
        verdict = ("beats the recipe beyond noise" if conf.winner_beats_recipe_beyond_noise
                   else "does not beat the recipe beyond noise")
        lines.append(f"Confirmed over seeds {conf.seeds}: winner trial {win.trial} "
                     f"{win.mean:.4f} +- {win.std:.4f}"
                     + (f", vs recipe {diff['mean']:+.4f} (95% CI {ci[0]:+.4f} to {ci[1]:+.4f})"
                        if ci else "") + f": it {verdict}.")
    test = s.test_score if s else None
    if test:
        lines.append(f"Picked on val, scored on test: winner {_v(test.winner)}, recipe "
                     f"{_v(test.recipe)}.")
    else:
        lines.append(f"Test score: {test_note(data)}.")
    hours = ((s.total_device_seconds if s else None) or 0.0) / 3600
    saved = ((s.device_seconds_saved_by_early_stopping if s else None) or 0.0) / 3600
    device = (s.device if s else None) or "device"
    lines.append(f"Cost: {hours:.2f} {device}-hours, {saved:.2f} saved by early stopping.")
    return "\n".join(lines)


_v = partial(metric_text, missing="-")  # a metric in the report's prose: "-" when missing


def _hp(row) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in row.hparams.items())


# -- the page ---------------------------------------------------------------------------------
CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1200px;padding:16px 24px;color:#222}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid
#ddd;padding-bottom:4px}.sub{color:#666;font-size:13px}
table.head{border-collapse:collapse;margin:10px 0}table.head td{padding:4px 14px 4px 0;
font-size:14px}table.head td:first-child{color:#555}table.head td:last-child{font-weight:600}
pre{background:#f6f7f9;border:1px solid #e3e5e8;padding:10px 12px;white-space:pre-wrap;
font-size:13px}p.note{color:#666;font-style:italic}nav a{margin-right:12px;font-size:13px}
"""


def render(data: ReportData) -> str:
    figs = figures(data)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>raytune_ft report: "
             f"{html.escape(data.experiment.name)}</title><style>{CSS}</style></head><body>",
             f"<h1>raytune_ft report: {html.escape(data.experiment.name)}</h1>",
             f"<div class='sub'>{html.escape(data.experiment.path)}</div>",
             "<table class='head' id='header'>"]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
              for k, v in headline(data)]
    parts.append("</table>")
    parts.append("<h2 id='summary'>Summary (paste into a ticket)</h2><pre>"
                 + html.escape(text_summary(data)) + "</pre>")
    parts.append("<nav>" + "".join(f"<a href='#{sid}'>{html.escape(t)}</a>"
                                   for sid, t, _ in figs) + "</nav>")
    first = True
    for sid, title, fig in figs:
        parts.append(f"<h2 id='{sid}'>{html.escape(title)}</h2>")
        if isinstance(fig, str):
            parts.append(f"<p class='note'>{html.escape(fig)}</p>")
            continue
        fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50))
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first,
                                 config={"displaylogo": False, "responsive": True}))
        first = False
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(experiment: ExperimentStorage) -> str:
    """Write EXP/report.html (published to remote storage); return where it is."""
    page = render(load(experiment))
    experiment.local_path(REPORT_FILE).write_text(page, encoding="utf-8")
    experiment.publish(REPORT_FILE)
    return experiment.join(REPORT_FILE)


def write_report_or_say(experiment: ExperimentStorage) -> str | None:
    """report.html at the end of a search or confirmation: a failure to draw never fails the
    run that wrote the results; it is said, with the command that retries it."""
    import sys

    try:
        where = write_report(experiment)
    except Exception as err:  # noqa: BLE001 - the results are written; the report is extra
        print(f"[raytune_ft] report.html could not be written ({type(err).__name__}: {err}); "
              f"python -m raytune_ft.report {experiment.path} retries it.", file=sys.stderr)
        return None
    print(f"[raytune_ft] report:          {where}")
    return where


__all__ = ["REPORT_FILE", "write_report", "write_report_or_say"]
