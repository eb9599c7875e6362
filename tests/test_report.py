"""report.html: every section with non-empty plots from a finished experiment, a report of an
interrupted one from what exists, plotly inlined (opens offline), bad folders exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from helpers import REPO, write_table_experiment
from raytune_ft.experiment.record import experiment_at
from raytune_ft.experiment.report import write_report

SECTIONS = ["header", "summary", "curves", "confirmation", "slice", "importance", "parallel",
            "history", "cost"]


class Page(HTMLParser):
    """The ids, the scripts and the text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.scripts: list[str] = []
        self.external: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "script":
            self._in_script = True
            self.scripts.append("")
            if attrs.get("src"):
                self.external.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(path) -> tuple[Page, str]:
    text = open(path, encoding="utf-8").read()
    page = Page()
    page.feed(text)
    return page, text


def plotted_traces(page: Page) -> list[list[dict]]:
    """The trace lists of every Plotly.newPlot call."""
    out = []
    for script in page.scripts:
        for match in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", script,
                                 re.S):
            out.append(json.loads(match.group(1)))
    return out


@pytest.mark.parametrize("n_trials", [3, 40])
def test_report_of_a_finished_experiment_has_every_section(tmp_path, n_trials):
    exp = write_table_experiment(tmp_path, n_trials, seed=n_trials)
    where = write_report(experiment_at(str(exp)))
    assert where == str(exp / "report.html")
    page, text = parse(exp / "report.html")
    for section in SECTIONS:
        assert section in page.ids, section
    assert not page.external, "plotly.js must be inlined, not fetched"
    assert any(len(s) > 1_000_000 for s in page.scripts), "plotly.js inlined once"
    traces = plotted_traces(page)
    finished = sum(r["status"] == "finished" for r in json.loads((exp / "trials.json").read_text()))
    assert len(traces) == len(SECTIONS) - 2 - (finished < 3)  # importance needs 3 finished
    if finished < 3:
        assert "Parameter importance needs at least 3 finished trials" in text
    for plot in traces:
        assert plot and any(t.get("x") or t.get("y") or t.get("dimensions") for t in plot)
    curves = traces[0]
    assert sum(1 for t in curves if t.get("mode") == "lines") == n_trials
    summary = json.loads((exp / "summary.json").read_text())
    assert f"{summary['best_metric']:.4f}" in text and "0.0975 +- 0.0050" in text
    assert "does not beat the recipe beyond noise" in text
    assert "no held-out test set" in text


def test_report_of_an_interrupted_experiment_uses_what_exists(tmp_path):
    exp = write_table_experiment(tmp_path, 4, finished=False)
    write_report(experiment_at(str(exp)))
    page, text = parse(exp / "report.html")
    assert "curves" in page.ids and "interrupted" in text
    assert sum(1 for t in plotted_traces(page)[0] if t.get("mode") == "lines") == 4


def test_report_cli_refuses_a_folder_that_is_not_an_experiment(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raytune_ft.report", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not a raytune_ft experiment" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_learning_curves_mark_each_lr_step_probe_and_stop(tmp_path):
    """The curves plot marks what a reader judges the search by: a diamond at every trial's
    LR step (where the step lies inside the epochs it ran), the probe's values where it ranked
    a trial, a cross at the epoch each early-stopped trial was stopped - each exactly there."""
    exp = write_table_experiment(tmp_path, 12, seed=5)
    rows = json.loads((exp / "trials.json").read_text())
    metric = "coco/bbox_mAP"
    records = {}
    for row in rows:
        path = exp / "trials" / f"trial_{row['trial_id']}" / "metrics.jsonl"
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        if row["order"] == 0:  # trial 0 probed before its step too, as step-probe does
            for r in recs:
                if r["epoch"] < r["lr_step_epoch"]:
                    r[f"probe/{metric}"] = round(r[metric] + 0.0125, 4)
            path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        records[row["order"]] = recs
    stopped = {r["order"] for r in rows if r["status"] == "stopped"}
    assert stopped and len(stopped) < len(rows), "the fixture has stopped and full trials"
    write_report(experiment_at(str(exp)))
    page, _ = parse(exp / "report.html")
    curves = plotted_traces(page)[0]

    def marks(name: str) -> dict[int, tuple[list, list]]:
        out = {}
        for t in curves:
            if t.get("legendgroup") == name and t.get("mode") == "markers":
                order = int(re.match(r"trial (\d+) ", t["hovertemplate"]).group(1))
                out[order] = (t["x"], t["y"])
        return out

    step_marks = marks("LR step")
    expected_steps = {o: recs[0]["lr_step_epoch"] for o, recs in records.items()
                      if recs[0]["lr_step_epoch"] <= recs[-1]["epoch"]
                      and recs[0]["lr_step_epoch"] < recs[0]["max_epochs"]}
    assert expected_steps and {o: x for o, (x, _) in step_marks.items()} == {
        o: [s] for o, s in expected_steps.items()}
    for order, (_, y) in step_marks.items():
        step = expected_steps[order]
        assert y == [next(r[metric] for r in records[order] if r["epoch"] == step)]
    probed = {o: [r for r in recs if f"probe/{metric}" in r] for o, recs in records.items()}
    expected_probes = {o: ([r["epoch"] for r in recs], [r[f"probe/{metric}"] for r in recs])
                       for o, recs in probed.items() if recs}
    assert 0 in expected_probes and marks("probe") == expected_probes
    stops = marks("judged")
    assert set(stops) == stopped
    for order in stopped:
        assert stops[order] == ([records[order][-1]["epoch"]], [records[order][-1][metric]])
