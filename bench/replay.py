"""Judge early-stopping designs in seconds: replay the demo's measured learning curves
(bench/curves/demo.json) through Ray Tune's real schedulers and the real searchers, in simulated
time, over many seeds, at equal budgets of trial-epochs.

Designs: `default` (step-probe ASHA + TPE with 3 start-up trials, what
`python -m raytune_ft.search` runs), `step_after` (ASHA judging trials only after their LR step),
`asha_progress` (the rule as shipped before: ASHA on raw values at 0.34/0.68 of each schedule,
Ray's stock OptunaSearch, Optuna's default 10 start-up trials), `asha_progress_now` (the old
rule with today's searcher), `random_fifo` and `tpe_fifo` (no early stopping). Trial 0 is the
recipe in every design, as in a real search. Every trial start, epoch and probe is charged its
measured cost (the table's `start_cost`/`probe_cost`, in epochs).

    .venv/bin/python bench/replay.py                 # tables for B = 60, 30 and 200, PNG
    .venv/bin/python bench/replay.py --json          # the B = 60 numbers as JSON only
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from raytune_ft.replay import CurveTable, Design, replay, summarize  # noqa: E402
from raytune_ft.space import SearchSpace, load_space  # noqa: E402

DESIGNS = [
    Design("default", "step-probe", "tpe"),
    Design("step_after", "step-after", "tpe"),
    # the rule as shipped before step-fairness: raw values at 0.34/0.68, Ray's stock
    # OptunaSearch (truncated values told COMPLETE), Optuna's default 10 start-up trials
    Design("asha_progress", "progress-asha", "tpe", grace=0.34, stock_optuna=True,
           n_startup_trials=10),
    # `--scheduler progress-asha` today: the old rule with the current searcher
    Design("asha_progress_now", "progress-asha", "tpe", grace=0.34),
    Design("random_fifo", "fifo", "random"),
    Design("tpe_fifo", "fifo", "tpe"),
]
# How the defaults were chosen (`--designs NAME ...`); not in the main table.
VARIANTS = [
    *[Design(f"default_startup{n}", "step-probe", "tpe", n_startup_trials=n)
      for n in (2, 4, 5, 10)],
    *[Design(f"default_grace{g:g}", "step-probe", "tpe", grace=g) for g in (0.25, 0.4, 0.5, 0.6)],
    Design("default_grace0.5_rf3", "step-probe", "tpe", grace=0.5, reduction_factor=3),
    Design("default_rf3", "step-probe", "tpe", reduction_factor=3),
    Design("default_multivariate", "step-probe", "tpe", multivariate=True),
    Design("tpe10_fifo", "fifo", "tpe", n_startup_trials=10),
]
RECIPE = {"lr": 0.02, "max_epochs": 6, "step_frac": 4 / 6}  # configs/demo: lr 0.02, step 4 of 6


def table_space(path: Path, table: CurveTable) -> SearchSpace:
    """The space restricted to what the table varies (its warmup is fixed at 50)."""
    space = load_space(path)
    params = {k: v for k, v in space.params.items() if k in ("lr", "max_epochs", "step_frac")}
    return replace(space, params=params)


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else float("nan")


def table_facts(table: CurveTable) -> list[str]:
    """What the table says before any scheduler runs: its best, the recipe, how predictive a
    pre-step value and a probe value are of the final result, and whether pre-step epochs of
    one lr agree across schedules (the assumption that lets one probed run serve them all)."""
    best, curve = table.best()
    lines = [f"table: {len(table.curves)} measured configs; best {table.metric} {best:.3f} "
             f"(lr {curve.lr:g}, LR step after epoch {curve.step} of {curve.max_epochs}); "
             f"{sum(1 for c in table.curves.values() if max(c.values) >= 0.95 * best)} configs "
             f"reach 95% of it"]
    recipe = table.curves.get((0.02, 6, 4))
    if recipe:
        lines.append(f"recipe (lr 0.02, step 4 of 6): {max(recipe.values):.3f}")
    lines.append(f"measured costs in epochs: trial start {table.start_cost:.2f}, LR-step probe "
                 f"{table.probe_cost:.2f}")
    for epoch in sorted({e for _, e in table.probes}):
        pre, probe, final = [], [], []
        for c in table.curves.values():
            if epoch <= c.step and (c.lr, epoch) in table.probes:
                pre.append(c.values[epoch - 1])
                probe.append(table.probes[(c.lr, epoch)])
                final.append(max(c.values))
        if len(final) >= 4:
            lines.append(f"epoch {epoch}, {len(final)} configs not yet stepped: Spearman with the "
                         f"final result: raw value {spearman(pre, final):+.2f}, LR-step probe "
                         f"{spearman(probe, final):+.2f}")
    worst = 0.0
    for c in table.curves.values():
        for d in table.curves.values():
            if c.lr == d.lr and c is not d:
                shared = min(c.step, d.step)
                worst = max([worst] + [abs(a - b) for a, b in zip(c.values[:shared],
                                                                  d.values[:shared])])
    lines.append(f"pre-step epochs of one lr across schedules: largest difference {worst:.4f}")
    return lines


def write_png(runs_by_design: dict[str, list], budget: float, path: Path, table_best: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(0, budget, 121)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for name, runs in runs_by_design.items():
        curves = []
        for r in runs:
            ys, k, best = [], 0, np.nan
            for x in grid:
                while k < len(r.trace) and r.trace[k][0] <= x:
                    best = r.trace[k][1]
                    k += 1
                ys.append(best)
            curves.append(ys)
        arr = np.array(curves, dtype=float)
        med = np.nanmedian(arr, axis=0)
        lo, hi = np.nanpercentile(arr, 25, axis=0), np.nanpercentile(arr, 75, axis=0)
        line, = ax.plot(grid, med, label=name)
        ax.fill_between(grid, lo, hi, alpha=0.15, color=line.get_color())
    ax.axhline(0.95 * table_best, ls="--", lw=0.8, color="grey", label="95% of table best")
    ax.set_xlabel("trial-epochs spent (starts and probes charged at their measured cost)")
    ax.set_ylabel("best bbox mAP so far")
    ax.set_title(f"Demo curve replay: median and IQR over {len(next(iter(runs_by_design.values())))} seeds")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", nargs="+", default=[str(REPO / "bench" / "curves" / "demo.json")],
                    help="curve table(s); several are merged (e.g. demo.json demo_long.json)")
    ap.add_argument("--recipe", default=json.dumps(RECIPE),
                    help="trial 0 in the space's terms (JSON)")
    ap.add_argument("--space", default=str(REPO / "search_spaces" / "demo.yaml"))
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budgets", type=float, nargs="+", default=[60, 30, 200],
                    help="trial-epoch budgets; the first is plotted (200: long enough that "
                         "every design's median reaches 95%% of the best, so the trial-epochs "
                         "it takes compare)")
    ap.add_argument("--designs", nargs="+", default=[d.name for d in DESIGNS])
    ap.add_argument("--png", default=str(REPO / "bench" / "curves" / "replay_demo.png"))
    ap.add_argument("--json", action="store_true", help="print only the B = 60 summary as JSON")
    args = ap.parse_args()
    import logging

    logging.getLogger("ray").setLevel(logging.ERROR)
    table = CurveTable.from_json(*args.table)
    recipe = json.loads(args.recipe)
    space = table_space(Path(args.space), table)
    designs = [d for d in DESIGNS + VARIANTS if d.name in args.designs]
    table_best, _ = table.best()
    budgets = [60.0] if args.json else args.budgets
    started = time.time()
    out: dict[float, dict[str, dict]] = {}
    runs60: dict[str, list] = {}
    for budget in budgets:
        out[budget] = {}
        for design in designs:
            runs = [replay(design, table, space, budget, seed, points=[recipe])
                    for seed in range(args.first_seed, args.first_seed + args.seeds)]
            out[budget][design.name] = summarize(runs, table)
            if budget == budgets[0]:
                runs60[design.name] = runs
    if args.json:
        keys = ("median_best", "iqr_best", "median_epochs_to_95", "p_best_survives")
        print(json.dumps({"table_best": table_best, "budget_trial_epochs": 60,
                          "designs": {n: {k: s[k] for k in keys} for n, s in out[60.0].items()}}))
        return
    print("\n".join(table_facts(table)))
    for budget, designs_out in out.items():
        print(f"\nbudget {budget:g} trial-epochs, {args.seeds} seeds (target: 95% of the table's "
              f"best = {0.95 * table_best:.3f})")
        print(f"{'design':15s}{'median best':>12s}{'IQR':>16s}{'epochs to 95%':>15s}"
              f"{'reach 95%':>11s}{'best survives':>15s}{'trials':>8s}")
        for name, s in designs_out.items():
            to95 = "never" if s["median_epochs_to_95"] is None else f"{s['median_epochs_to_95']:.1f}"
            surv = "-" if s["p_best_survives"] is None else f"{s['p_best_survives']:.2f}"
            print(f"{name:15s}{s['median_best']:>12.4f}{'[%.3f, %.3f]' % tuple(s['iqr_best']):>16s}"
                  f"{to95:>15s}{s['share_reaching_95']:>11.2f}{surv:>15s}{s['mean_trials']:>8.1f}")
        d, r = designs_out.get("default"), designs_out.get("random_fifo")
        if d and r and d["median_epochs_to_95"] and r["median_epochs_to_95"]:
            print(f"default / random_fifo epochs to 95%: "
                  f"{d['median_epochs_to_95'] / r['median_epochs_to_95']:.2f}")
    write_png(runs60, budgets[0], Path(args.png), table_best)
    print(f"\nPNG: {args.png}  ({time.time() - started:.0f}s)")


if __name__ == "__main__":
    main()
