"""Confirmation runs: is the search's winner better than the recipe, or was it a lucky seed?

A search scores each config once, with one seed, on the val set that picked it: its best value
is biased upwards (the winner's curse) and run-to-run noise is the size of the gains it finds.
Confirmation re-runs the top K configs *and the recipe* at their full schedules with S fresh
seeds each (a second Ray Tune run, FIFO over configs x seeds, seeds through mmengine's
`randomness.seed`), compares each config with the recipe seed by seed (a paired t interval),
and names as winner the best confirmed mean.

`python -m raytune_ft.confirm EXP` runs (or finishes) it for an existing experiment.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from raytune_ft.errors import UserError
from raytune_ft.options import flag
from raytune_ft.storage import ExperimentStorage, Storage

CONFIRM_DIR = "confirm"  # <experiment>/confirm/: its own Tune experiment and trials
FIRST_SEED = 1  # fresh seeds 1..S (the demo's search runs with seed 0)


@dataclass
class Candidate:
    """One config under confirmation and what its seeds gave."""

    source_trial: str
    role: str  # "recipe" or "best #k"
    point: dict[str, Any]  # the sampled point (the space's terms)
    hparams: dict[str, Any]
    search_value: float | None  # its single value in the search
    values: dict[int, float | None] = field(default_factory=dict)  # seed -> best metric
    rows: list = field(default_factory=list)
    diff: dict[str, Any] | None = None  # vs the recipe: mean, ci95, n

    @property
    def scored(self) -> list[float]:
        return [v for v in self.values.values() if v is not None]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scored) if self.scored else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.scored) if len(self.scored) > 1 else 0.0


@dataclass
class Confirmation:
    """The candidates, their seeds' values, and the winner."""

    seeds: list[int]
    candidates: list[Candidate]
    mode: str
    job: Any = None  # the confirmation's SearchJob (its experiment holds the runs)

    @property
    def recipe(self) -> Candidate | None:
        return next((c for c in self.candidates if "recipe" in c.role), None)

    @property
    def rows(self) -> list:
        return [r for c in self.candidates for r in c.rows]

    @property
    def winner(self) -> Candidate | None:
        """The best confirmed mean among candidates every seed of which scored."""
        complete = [c for c in self.candidates if c.values and len(c.scored) == len(self.seeds)]
        if not complete:
            return None
        pick = max if self.mode == "max" else min
        return pick(complete, key=lambda c: c.mean)

    def best_run(self, candidate: Candidate | None):
        """The candidate's run (seed) with the best value, by this confirmation's mode: its
        checkpoint becomes best_checkpoint.pth and is the one scored on test."""
        from raytune_ft.results import best_row

        return best_row(candidate.rows, self.mode) if candidate is not None else None

    def beats_recipe(self, candidate: Candidate) -> bool:
        """Better than the recipe beyond noise: the paired 95% interval excludes 0."""
        d = candidate.diff
        if not d or d.get("ci95") is None:
            return False
        lo, hi = d["ci95"]
        return lo > 0 if self.mode == "max" else hi < 0

    def to_json(self) -> dict[str, Any]:
        winner = self.winner
        return {
            "seeds": self.seeds,
            "winner_trial": winner.source_trial if winner else None,
            "winner_beats_recipe_beyond_noise": bool(winner and self.beats_recipe(winner)),
            "candidates": [{
                "trial": c.source_trial, "role": c.role, "hparams": c.hparams,
                "search_value": c.search_value,
                "values": {str(s): v for s, v in c.values.items()},
                "mean": None if math.isnan(c.mean) else c.mean, "std": c.std,
                "diff_to_recipe": c.diff,
            } for c in self.candidates],
        }


def paired_interval(diffs: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of per-seed differences with a two-sided t interval (None below 2 seeds).

    A t interval, not a bootstrap: with 2-5 seeds a bootstrap has almost no distinct resamples
    and is far too narrow; t's heavy tails at few degrees of freedom say honestly how little
    two seeds can tell.
    """
    from scipy import stats

    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n}
    half = stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


def pick_candidates(rows: list, k: int, mode: str) -> list[Candidate]:
    """The top k search trials by value among those that ran their full schedule, and the
    recipe (trial 0), each once."""
    finished = [r for r in rows if r.phase == "search" and r.status == "finished"
                and r.best_metric is not None]
    if k > len(finished):
        raise UserError(f"{flag('confirm')} {k} asks for more configs than the "
                        f"{len(finished)} search trial(s) that ran their full schedule.")
    ranked = sorted(finished, key=lambda r: r.best_metric, reverse=(mode == "max"))[:k]
    recipe = next((r for r in rows if r.phase == "search" and r.order == 0), None)
    picked = [Candidate(r.trial_id, f"best #{i + 1}", dict(r.config), dict(r.hparams),
                        r.best_metric) for i, r in enumerate(ranked)]
    if recipe is not None:
        if recipe.trial_id in {c.source_trial for c in picked}:
            next(c for c in picked if c.source_trial == recipe.trial_id).role += " (recipe)"
        else:
            picked.append(Candidate(recipe.trial_id, "recipe", dict(recipe.config),
                                    dict(recipe.hparams), recipe.best_metric))
    return picked


def score(confirmation: Confirmation) -> Confirmation:
    """Fill each candidate's values from its rows and its paired difference to the recipe."""
    for c in confirmation.candidates:
        c.values = {s: None for s in confirmation.seeds}
        for r in c.rows:
            if r.status == "finished" and r.best_metric is not None:
                c.values[r.seed] = r.best_metric
    recipe = confirmation.recipe
    for c in confirmation.candidates:
        if recipe is None or c is recipe:
            continue
        pairs = [(c.values[s], recipe.values[s]) for s in confirmation.seeds
                 if c.values.get(s) is not None and recipe.values.get(s) is not None]
        c.diff = paired_interval([a - b for a, b in pairs])
    return confirmation


def confirm_experiment(experiment: ExperimentStorage) -> ExperimentStorage:
    """The confirmation's own Tune experiment, inside the search's folder."""
    return ExperimentStorage(Storage.resolve(experiment.path), CONFIRM_DIR)


def run_confirmation(plan, rows: list, k: int, n_seeds: int) -> Confirmation:
    """Run (or resume) the confirmation of `rows`' top k configs and the recipe."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from raytune_ft.results import collect
    from raytune_ft.search import trial_driver_resources, trial_statuses
    from raytune_ft.trainable import confirm_trainable
    from raytune_ft.cluster import init_ray

    config = plan.config
    seeds = list(range(FIRST_SEED, FIRST_SEED + n_seeds))
    candidates = pick_candidates(rows, k, plan.job.mode)
    exp = confirm_experiment(plan.experiment)
    job = dataclasses.replace(plan.job, experiment=exp, probe=None)
    nodes = init_ray(config.address)
    trainable = tune.with_resources(tune.with_parameters(confirm_trainable, job=job),
                                    trial_driver_resources(nodes))
    where = exp.restore_kwargs()
    print(f"\n[raytune_ft] confirmation: {len(candidates)} config(s) "
          f"({', '.join(c.role for c in candidates)}) x seeds {seeds} at their full schedules; "
          f"runs in {exp.path}", flush=True)
    if tune.Tuner.can_restore(**where):
        tuner = tune.Tuner.restore(trainable=trainable, resume_unfinished=True,
                                   resume_errored=True, **where)
    else:
        space = {"candidate": tune.grid_search([{"source": c.source_trial, "point": c.point}
                                                for c in candidates]),
                 "seed": tune.grid_search(seeds)}
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=BasicVariantGenerator(max_concurrent=config.max_concurrent),
                max_concurrent_trials=config.max_concurrent),
            run_config=tune.RunConfig(
                verbose=1, failure_config=tune.FailureConfig(max_failures=0),
                **exp.tune_run_kwargs()))
    grid = tuner.fit()
    runs = collect(grid, job, trial_statuses(exp))
    by_source = {c.source_trial: c for c in candidates}
    for r in runs:
        cand = r.config.get("candidate", {})
        r.phase, r.seed, r.source_trial = "confirm", int(r.config.get("seed")), cand.get("source")
        if r.source_trial in by_source:
            by_source[r.source_trial].rows.append(r)
    return score(Confirmation(seeds, candidates, plan.job.mode, job))


def format_confirmation(conf: Confirmation, metric: str) -> str:
    """The confirmation table and one plain sentence on the winner."""
    head = ["trial", "role", "search", *[f"seed {s}" for s in conf.seeds], "mean +- std",
            "vs recipe (95% CI)"]
    body = []
    for c in conf.candidates:
        diff = ""
        if c.diff and c.diff.get("ci95"):
            lo, hi = c.diff["ci95"]
            diff = f"{c.diff['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        elif c.diff:
            diff = f"{c.diff['mean']:+.4f} (1 seed: no interval)"
        body.append([c.source_trial, c.role, _f(c.search_value),
                     *[_f(c.values.get(s)) for s in conf.seeds],
                     "" if math.isnan(c.mean) else f"{c.mean:.4f} +- {c.std:.4f}", diff])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in [head, *body]]
    winner, recipe = conf.winner, conf.recipe
    if winner is None:
        lines.append("[raytune_ft] no config finished every seed: no confirmed winner; "
                     "best_config.py keeps the search's best single run.")
    elif "recipe" in winner.role:
        lines.append(f"[raytune_ft] winner: the recipe (trial {winner.source_trial}), "
                     f"{metric} {winner.mean:.4f} +- {winner.std:.4f}: no searched config beat "
                     "it on fresh seeds.")
    else:
        d = winner.diff or {}
        if conf.beats_recipe(winner):
            verdict = "beats the recipe beyond noise (the paired 95% interval excludes 0)"
        elif d.get("ci95"):
            verdict = ("is ahead of the recipe but within noise (the paired 95% interval "
                       f"includes 0 at {len(conf.seeds)} seeds; more --seeds would tell)")
        else:
            verdict = "cannot be compared with the recipe beyond noise with 1 seed"
        lines.append(f"[raytune_ft] winner: trial {winner.source_trial} ({winner.role}), "
                     f"{metric} {winner.mean:.4f} +- {winner.std:.4f} over {len(conf.seeds)} "
                     f"seeds vs recipe {recipe.mean:.4f}: it {verdict}." if recipe else
                     f"[raytune_ft] winner: trial {winner.source_trial}, {metric} "
                     f"{winner.mean:.4f} +- {winner.std:.4f}.")
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def experiment_at(path: str) -> ExperimentStorage:
    """An experiment from its folder or URI (`<storage-path>/<name>`)."""
    from raytune_ft.storage import is_uri

    if not is_uri(path):
        from pathlib import Path

        folder = Path(path).expanduser().resolve()
        return ExperimentStorage.create(folder.parent, folder.name)
    base, _, query = path.partition("?")
    parent, _, name = base.rstrip("/").rpartition("/")
    return ExperimentStorage.create(parent + (f"?{query}" if query else ""), name)


def main(argv: list[str] | None = None) -> int:
    """`python -m raytune_ft.confirm EXP [--confirm K] [--seeds S]`."""
    import argparse

    from raytune_ft.errors import user_errors_exit_2
    from raytune_ft.options import CONFIRM_CLI_DEFAULT, DEFAULT_SEEDS

    parser = argparse.ArgumentParser(prog="python -m raytune_ft.confirm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="the search's folder or URI (<storage-path>/<name>)")
    parser.add_argument("--confirm", type=int, default=CONFIRM_CLI_DEFAULT,
                        help=f"best configs to confirm, besides the recipe (default "
                             f"{CONFIRM_CLI_DEFAULT})")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"fresh seeds per config (default {DEFAULT_SEEDS})")
    parser.add_argument("--address", default=None, help="join a running Ray cluster")

    @user_errors_exit_2
    def run(args) -> int:
        from raytune_ft.results import read_rows
        from raytune_ft.search import confirm_and_rewrite, load_config_of, prepare, report

        if args.confirm < 1:
            raise UserError(f"--confirm must be >= 1 (configs to confirm), got {args.confirm}.")
        experiment = experiment_at(args.experiment)
        config = load_config_of(experiment).replace(
            storage_path=experiment.storage.root, name=experiment.name, resume=False,
            check_only=False, smoke=False, address=args.address, confirm=args.confirm,
            seeds=args.seeds, num_samples=None)
        rows = [r for r in read_rows(experiment) if r.phase == "search"]
        if not rows:
            raise UserError(f"experiment '{experiment.path}' has no results yet (trials.json): "
                            "finish it first with python -m raytune_ft.search --resume.")
        plan = prepare(config)
        ok = confirm_and_rewrite(plan, rows, args.confirm, args.seeds)
        report(plan.experiment)
        return 0 if ok else 1

    return run(parser.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
