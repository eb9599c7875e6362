"""Judge search designs by what the pipeline returns: replay the demo's measured learning curves
(bench/curves/demo.json, several seeds per config) through Ray Tune's real schedulers, the real
searchers, the confirmation and the time-budget rule, in simulated wall-clock with K trials at
once, over many seeds, at equal device budgets (slot-epochs).

Designs: `default` (what `python -m raytune_ft.search` runs: TPE with 3 start-up trials and
constant_liar, step-after ASHA, no confirmation), `step_probe` (ASHA ranking pre-step trials on
an LR-step probe: the default before this replay), `asha_progress` (the rule as shipped before
step-fairness: raw values at 0.34/0.68 of each schedule, Ray's stock OptunaSearch, Optuna's
default 10 start-up trials), `asha_progress_now` (the old rule with today's searcher),
`random_fifo` and `tpe_fifo` (no early stopping). They share the default's confirmation setting,
so they differ only in how they search. Trial 0 is the recipe. `--designs` picks others (the
variants the defaults were chosen from: `--list`).

Scores (`raytune_ft.simulate.summarize`): the *true quality* of the config the pipeline returns
(its mean over the table's seeds), its ratio to the best config's true mean, `p_beats_recipe`,
wall-clock (epochs of one slot) until the incumbent is within 95% of the best true mean and
until the pipeline ends; and the seen values the first replay reported (best value seen, epochs
to reach 95% of the best single run).

    .venv/bin/python bench/replay.py                  # tables for B = 60 (+ K = 1, 4, 8), PNG
    .venv/bin/python bench/replay.py --json           # the B = 60 numbers as JSON only
    .venv/bin/python bench/replay.py --json --out d/x.json  # ... also in d/x.json, plot d/x.png
    .venv/bin/python bench/replay.py --designs default confirm1_seeds2 tpe_noliar --slots 1 4
    .venv/bin/python bench/replay.py --predict        # the demo's default budget, a cluster
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

from raytune_ft.simulate import CurveTable, Design, replay, summarize  # noqa: E402
from raytune_ft.tuning.space import SearchSpace, load_space  # noqa: E402

DESIGNS = [
    Design.of("default"),
    Design.of("step_probe", scheduler="step-probe"),  # the default before the seeded replay
    # the rule as shipped before step-fairness: raw values at 0.34/0.68 (progress-asha's own
    # grace), Ray's stock OptunaSearch (truncated values told COMPLETE), Optuna's default 10
    # start-up trials
    Design.of("asha_progress", scheduler="progress-asha", stock_optuna=True, startup_trials=10),
    Design.of("asha_progress_now", scheduler="progress-asha"),  # --scheduler progress-asha
    Design.of("random_fifo", scheduler="fifo", searcher="random"),
    Design.of("tpe_fifo", scheduler="fifo", searcher="tpe"),
]
# How the defaults were chosen (`--designs NAME ...`); not in the main table.
VARIANTS = [
    *[Design.of(f"default_startup{n}", startup_trials=n) for n in (2, 5, 10)],
    Design.of("tpe_noliar", constant_liar=False),
    Design.of("tpe_multivariate", multivariate=True),
    Design.of("tpe_multivariate_noliar", multivariate=True, constant_liar=False),
    Design.of("default_startup_running", startup_counts_running=True),
    Design.of("gp", searcher="gp"),
    Design.of("random_after", searcher="random"),
    Design.of("confirm1_seeds2", confirm=1, seeds=2),  # the default before the replay
    Design.of("confirm1_seeds1", confirm=1, seeds=1),
    Design.of("confirm2_seeds1", confirm=2, seeds=1),
    Design.of("confirm2_seeds2", confirm=2, seeds=2),
    Design.of("step_probe_confirm1_seeds2", scheduler="step-probe", confirm=1, seeds=2),
    Design.of("random_fifo_confirm1_seeds2", scheduler="fifo", searcher="random", confirm=1,
              seeds=2),
    Design.of("tpe_fifo_confirm1_seeds2", scheduler="fifo", searcher="tpe", confirm=1, seeds=2),
    *[Design.of(f"default_grace{g:g}", grace=g) for g in (0.25, 0.5)],
]
# What a replay predicts for real budgets (`--predict`). The demo: its default --time-budget at
# this table's measured epoch time, and on a machine twice as slow (as a fresh CI machine was).
# A Cityscapes-like cluster search (ASSUMPTIONS, not measured): 4 x 8-GPU nodes, one 8-GPU trial
# per node (K = 4), 5 hours; the tutorial's 8-epoch recipe (RepeatDataset x 8 of 2975 images,
# batch 16: ~1490 iterations/epoch at ~0.45 s/it on 8 V100s = ~11 min/epoch) mapped onto this
# table's 6-epoch schedules, so one table epoch ~ 8/6 x 11 = 15 min; 5 h = 20 table epochs of
# wall-clock per slot, 80 slot-epochs of device budget; start and probe costs as measured here.
DEMO_BUDGET_S = 18 * 60
CLUSTER = {"slots": 4, "budget": 80.0, "what": "Cityscapes-like, 4 x 8-GPU, 5 h (assumed "
                                              "15 min per table epoch)"}
RECIPE = {"lr": 0.02, "max_epochs": 6, "step_frac": 4 / 6}  # configs/demo: lr 0.02, step 4 of 6
RECIPE_KEY = (0.02, 6, 4)
CONCURRENCY = (1, 4, 8)


def shown(path: str | Path) -> str:
    """A path as the committed outputs print it: relative to the repository when inside it
    (no machine's absolute path in bench/curves/*.txt)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


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


def seed_noise(table: CurveTable) -> dict[str, float]:
    """Seed noise (median over configs of the std over seeds of the kept value) next to the
    spread of config means."""
    stds = [statistics.stdev([c.best for c in runs.values()]) for runs in table.curves.values()
            if len(runs) > 1]
    means = sorted(table.true_mean(k) for k in table.curves)
    return {"median_seed_std": statistics.median(stds) if stds else float("nan"),
            "max_seed_std": max(stds) if stds else float("nan"),
            "config_means_std": statistics.stdev(means),
            "config_means_range": [means[0], means[-1]]}


def table_facts(table: CurveTable) -> list[str]:
    """What the table says before any scheduler runs: seeds and their noise, the best config by
    true mean and the best single run, the recipe, how predictive a pre-step value and a probe
    value are of the final result, and whether pre-step epochs of one lr agree across schedules
    (the assumption that lets one probed run serve them all)."""
    seen, curve = table.seen_best()
    true, key = table.true_best()
    noise = seed_noise(table)
    ranked = sorted(table.curves, key=table.true_mean, reverse=True)
    lines = [f"table: {len(table.curves)} measured configs x {len(table.seeds)} seeds "
             f"{table.seeds}; best true mean {true:.4f} (lr {key[0]:g}, LR step after epoch "
             f"{key[2]} of {key[1]}); best single run {seen:.4f} (lr {curve.lr:g}, step "
             f"{curve.step}/{curve.max_epochs}, seed {curve.seed}, true mean "
             f"{table.true_mean(curve.key):.4f}, rank {ranked.index(curve.key) + 1})",
             f"seed noise: median std over seeds {noise['median_seed_std']:.4f} (max "
             f"{noise['max_seed_std']:.4f}); config means: std {noise['config_means_std']:.4f}, "
             f"range {noise['config_means_range'][0]:.4f}-{noise['config_means_range'][1]:.4f}; "
             f"{sum(1 for k in table.curves if table.true_mean(k) >= 0.95 * true)} configs "
             f"within 95% of the best true mean"]
    if RECIPE_KEY in table.curves:
        r = table.curves[RECIPE_KEY]
        lines.append(f"recipe (lr 0.02, step 4 of 6): true mean {table.true_mean(RECIPE_KEY):.4f} "
                     f"(seeds: {', '.join(f'{c.best:.3f}' for c in r.values())}), rank "
                     f"{ranked.index(RECIPE_KEY) + 1} of {len(ranked)}")
    lines.append(f"measured costs in epochs: trial start {table.start_cost:.2f}, LR-step probe "
                 f"{table.probe_cost:.2f}")
    for epoch in sorted({e for _, e, _ in table.probes}):
        pre, probe, final = [], [], []
        for runs in table.curves.values():
            for c in runs.values():
                if epoch <= c.step and (c.lr, epoch, c.seed) in table.probes:
                    pre.append(c.values[epoch - 1])
                    probe.append(table.probes[(c.lr, epoch, c.seed)])
                    final.append(table.true_mean(c.key))
        if len(final) >= 4:
            lines.append(f"epoch {epoch}, {len(final)} runs not yet stepped: Spearman with the "
                         f"config's true mean: raw value {spearman(pre, final):+.2f}, LR-step "
                         f"probe {spearman(probe, final):+.2f}")
    worst = 0.0
    for runs in table.curves.values():
        for c in runs.values():
            for other in table.curves.values():
                d = other.get(c.seed)
                if d is not None and d.lr == c.lr and d is not c:
                    shared = min(c.step, d.step)
                    worst = max([worst] + [abs(a - b) for a, b in zip(c.values[:shared],
                                                                      d.values[:shared])])
    lines.append(f"pre-step epochs of one lr and seed across schedules: largest difference "
                 f"{worst:.4f}")
    return lines


def run_design(design: Design, table: CurveTable, space: SearchSpace, budget: float,
               seeds: range, slots: int = 1, recipe: dict | None = None) -> list:
    return [replay(design, table, space, budget, seed, points=[recipe or RECIPE], slots=slots)
            for seed in seeds]


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
    ax.axhline(0.95 * table_best, ls="--", lw=0.8, color="grey", label="95% of the best run")
    ax.set_xlabel("trial-epochs spent (starts and probes charged at their measured cost)")
    ax.set_ylabel("best bbox mAP seen so far")
    ax.set_title(f"Demo curve replay: median and IQR over {len(next(iter(runs_by_design.values())))} seeds")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def print_table(title: str, rows: dict[str, dict], best_true: float) -> None:
    print(f"\n{title}")
    print(f"{'design':24s}{'true med':>9s}{'ratio':>7s}{'p>recipe':>9s}{'wall':>7s}{'wall95':>8s}"
          f"{'device':>8s}{'trials':>7s}{'confirmed':>10s}{'seen med':>9s}{'ep to 95':>9s}"
          f"{'survives':>9s}")
    for name, s in rows.items():
        t = s["true_quality"]
        w95 = "never" if s["median_wall_to_95_true"] is None else f"{s['median_wall_to_95_true']:.1f}"
        e95 = "never" if s["median_epochs_to_95"] is None else f"{s['median_epochs_to_95']:.1f}"
        surv = "-" if s["p_best_survives"] is None else f"{s['p_best_survives']:.2f}"
        print(f"{name:24s}{t['median']:>9.4f}{t['ratio_to_best']:>7.3f}{t['p_beats_recipe']:>9.2f}"
              f"{s['median_wall_clock']:>7.1f}{w95:>8s}{s['median_device']:>8.1f}"
              f"{s['mean_trials']:>7.1f}{s['share_confirmed']:>10.2f}{s['median_best']:>9.4f}"
              f"{e95:>9s}{surv:>9s}")


def predict(design: Design, table: CurveTable, space: SearchSpace, seeds: range,
            recipe_key) -> None:
    """The default's predictions: by trials run (over budgets of 15-150 slot-epochs, K = 1),
    for the demo's default time budget here and on a machine twice as slow, and for the
    Cityscapes-like cluster search (`CLUSTER`)."""
    recipe_true = table.true_mean(recipe_key)
    by_trials: dict[int, list] = {}
    for budget in range(15, 151, 15):
        for run in run_design(design, table, space, float(budget), seeds):
            by_trials.setdefault(len(run.trials), []).append(run)
    out = {"made_by": "bench/replay.py --predict", "design": design.describe(),
           "table": shown(table.source), "seeds_per_config": len(table.seeds),
           "by_trials": {}}
    for n, runs in sorted(by_trials.items()):
        if len(runs) < 20:
            continue  # too few replays ended with exactly n trials to say anything
        s = summarize(runs, table, recipe_key)
        out["by_trials"][str(n)] = {"p_beats_recipe": s["true_quality"]["p_beats_recipe"],
                                    "median_true_quality": s["true_quality"]["median"],
                                    "recipe_true_mean": recipe_true, "replays": len(runs)}
    scenarios = {
        f"demo default --time-budget {DEMO_BUDGET_S // 60}m, this machine": (
            1, DEMO_BUDGET_S / table.epoch_seconds),
        f"demo default --time-budget {DEMO_BUDGET_S // 60}m, a 2x slower machine": (
            1, DEMO_BUDGET_S / (2 * table.epoch_seconds)),
        CLUSTER["what"]: (CLUSTER["slots"], CLUSTER["budget"]),
    }
    out["scenarios"] = {}
    for what, (slots, budget) in scenarios.items():
        runs = run_design(design, table, space, budget, seeds, slots)
        s = summarize(runs, table, recipe_key)
        out["scenarios"][what] = {
            "slots": slots, "device_budget_slot_epochs": budget, "mean_trials": s["mean_trials"],
            "median_true_quality": s["true_quality"]["median"],
            "ratio_to_best": s["true_quality"]["ratio_to_best"],
            "p_beats_recipe": s["true_quality"]["p_beats_recipe"],
            "median_wall_clock_epochs": s["median_wall_clock"],
            "share_confirmed": s["share_confirmed"]}
        print(f"{what}: K={slots}, {budget:.0f} slot-epochs: {s['mean_trials']:.1f} trials, "
              f"true {s['true_quality']['median']:.4f} (ratio "
              f"{s['true_quality']['ratio_to_best']:.3f}), p>recipe "
              f"{s['true_quality']['p_beats_recipe']:.2f}, wall {s['median_wall_clock']:.1f} "
              f"epochs, confirmed {s['share_confirmed']:.2f}")
    for n, p in out["by_trials"].items():
        print(f"{n:>3} trials: p>recipe {p['p_beats_recipe']:.2f}, true "
              f"{p['median_true_quality']:.4f} ({p['replays']} replays)")
    path = REPO / "bench" / "curves" / "demo_predictions.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {shown(path)} (epoch = {table.epoch_seconds:.1f} s here)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", nargs="+", default=[str(REPO / "bench" / "curves" / "demo.json")],
                    help="curve table(s); several are merged (e.g. demo.json demo_long.json)")
    ap.add_argument("--recipe", default=json.dumps(RECIPE),
                    help="trial 0 in the space's terms (JSON)")
    ap.add_argument("--space", default=str(REPO / "search_spaces" / "demo.yaml"))
    ap.add_argument("--seeds", type=int, default=100, help="replays per design (default 100)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=60.0,
                    help="device budget in slot-epochs, confirmation included (default 60)")
    ap.add_argument("--slots", type=int, nargs="+", default=[1],
                    help="trials at once for the design table (default 1)")
    ap.add_argument("--designs", nargs="+", default=[d.name for d in DESIGNS])
    ap.add_argument("--list", action="store_true", help="list the designs and variants")
    ap.add_argument("--png", default=None,
                    help="where the plot goes (default: beside --out as <out>.png, else "
                         "bench/curves/replay_demo.png, the committed one)")
    ap.add_argument("--json", action="store_true",
                    help="print only the B = 60 summary (designs at K = 1, the default at "
                         "K = 1, 4, 8) as JSON; the plot is written only with --out or --png")
    ap.add_argument("--no-confirm", action="store_true",
                    help="replay every design without the confirmation (for a table with one "
                         "seed per config, e.g. demo_long.json: true quality is then the one "
                         "measured run)")
    ap.add_argument("--out", default=None, help="also write the JSON summary to this file "
                    "(its folder is created) and the plot beside it")
    ap.add_argument("--predict", action="store_true",
                    help="what the default predicts for the demo's default time budget and a "
                         "Cityscapes-like cluster search; writes bench/curves/"
                         "demo_predictions.json (p_beats_recipe by trials run, read by the "
                         "demo's console)")
    args = ap.parse_args()
    import logging

    logging.getLogger("ray").setLevel(logging.ERROR)
    every = {d.name: d for d in DESIGNS + VARIANTS}
    if args.list:
        for d in every.values():
            print(d.describe())
        return
    unknown = [n for n in args.designs if n not in every]
    if unknown:
        sys.exit(f"unknown design(s) {unknown}; --list shows them")
    if args.no_confirm:
        every = {n: d.with_options(confirm=0) for n, d in every.items()}
    table = CurveTable.from_json(*args.table)
    if not args.no_confirm:
        table.require_seeds(3, "judging what the pipeline returns (a trial's seed plus 2 fresh "
                               "seeds for the confirmation; --no-confirm replays without it)")
    recipe = json.loads(args.recipe)
    recipe_key = table.key_for(recipe)
    space = table_space(Path(args.space), table)
    best_true, _ = table.true_best()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.predict:
        predict(every["default"], table, space, seeds, recipe_key)
        return
    budget = 60.0 if args.json else args.budget
    started = time.time()
    runs1: dict[str, list] = {}
    out: dict[int, dict[str, dict]] = {}
    for slots in ([1] if args.json else args.slots):
        out[slots] = {}
        for name in args.designs:
            runs = run_design(every[name], table, space, budget, seeds, slots, recipe)
            out[slots][name] = summarize(runs, table, recipe_key)
            if slots == 1:
                runs1[name] = runs
            print(f"[replay] {name} K={slots}: {time.time() - started:.0f}s", file=sys.stderr,
                  flush=True)
    concurrency = {}
    for slots in CONCURRENCY:
        s = (out.get(slots, {}).get("default")
             or summarize(run_design(every["default"], table, space, budget, seeds, slots,
                                     recipe), table, recipe_key))
        concurrency[str(slots)] = {"median_true_quality": s["true_quality"]["median"],
                                   "p_beats_recipe": s["true_quality"]["p_beats_recipe"],
                                   "wall_clock": s["median_wall_clock"]}
    seen_best, _ = table.seen_best()
    keys = ("median_best", "iqr_best", "median_epochs_to_95", "p_best_survives", "true_quality")
    summary = {
        "table_best": seen_best, "budget_trial_epochs": budget,
        "designs": {n: {k: s[k] for k in keys} for n, s in out[1].items()} if 1 in out else {},
        "seeds_per_config": len(table.seeds), "best_true_mean": best_true,
        "recipe_true_mean": table.true_mean(recipe_key), "concurrency": concurrency,
        "replays": len(seeds),
    }
    png = None
    if runs1 and (args.out or args.png or not args.json):  # --json alone: stdout only
        png = Path(args.png) if args.png else (
            Path(args.out).with_suffix(".png") if args.out
            else REPO / "bench" / "curves" / "replay_demo.png")
        png.parent.mkdir(parents=True, exist_ok=True)
        write_png(runs1, budget, png, seen_best)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary))
        return
    print("\n".join(table_facts(table)))
    for slots, rows in out.items():
        print_table(f"device budget {budget:g} slot-epochs (confirmation included), K = {slots} "
                    f"trial(s) at once, {len(seeds)} replays; best true mean {best_true:.4f}, "
                    f"recipe {summary['recipe_true_mean']:.4f}", rows, best_true)
    print("\ndefault at K = 1, 4, 8 (same device budget): "
          + "; ".join(f"K={k}: true {v['median_true_quality']:.4f}, p>recipe "
                      f"{v['p_beats_recipe']:.2f}, wall {v['wall_clock']:.1f}"
                      for k, v in concurrency.items()))
    if png is not None:
        print(f"\nPNG: {shown(png)}")
    print(f"({time.time() - started:.0f}s)")


if __name__ == "__main__":
    main()
