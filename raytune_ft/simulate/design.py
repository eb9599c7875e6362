"""A search design to replay: the options a search runs with (`SearchConfig`) plus what only
a replay varies (a sampler the command line does not offer, the searcher before step-fairness,
TPE's switches). A default changed in `raytune_ft.options` changes the replayed default too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from raytune_ft.options import TPE_CONSTANT_LIAR, TPE_MULTIVARIATE, SearchConfig


@dataclass(frozen=True)
class Design:
    """`options` as `python -m raytune_ft.search` takes them (grace, start-up trials, the
    confirmation's configs and seeds under their flag names) and the replay-only fields.

    `Design("default")` is what a user runs. `Design.of(name, scheduler=..., stock_optuna=...)`
    sorts keyword arguments into the two.
    """

    name: str
    options: SearchConfig = field(default_factory=SearchConfig)
    sampler_override: str | None = None  # an Optuna sampler beyond --searcher's ("gp")
    stock_optuna: bool = False  # Ray's own OptunaSearch (the old searcher) instead of ours
    multivariate: bool = TPE_MULTIVARIATE
    constant_liar: bool = TPE_CONSTANT_LIAR
    startup_counts_running: bool = False  # TPE's start-up counts running trials (a variant)

    @classmethod
    def of(cls, name: str, **kwargs: Any) -> Design:
        """A design from keyword arguments: replay-only fields by their names, every other
        one a `SearchConfig` option (`scheduler`, `searcher`, `grace`, `startup_trials`,
        `confirm`, `seeds`, ...). `searcher="gp"` is the replay-only GP sampler."""
        own = {f.name for f in fields(cls)} - {"name", "options"}
        if kwargs.get("searcher") == "gp":
            kwargs["sampler_override"] = kwargs.pop("searcher")
        mine = {k: kwargs.pop(k) for k in list(kwargs) if k in own}
        return cls(name, SearchConfig(**kwargs), **mine)

    def with_options(self, **changes: Any) -> Design:
        """The same design with some options changed (e.g. `confirm=0`)."""
        return replace(self, options=self.options.replace(**changes))

    @property
    def scheduler(self) -> str:
        return self.options.scheduler

    @property
    def sampler(self) -> str:
        """The Optuna sampler: --searcher's (tpe, random) or the replay-only override."""
        return self.sampler_override or self.options.searcher

    @property
    def confirm(self) -> int:
        return self.options.confirm

    @property
    def seeds(self) -> int:
        return self.options.seeds

    @property
    def confirm_runs(self) -> int:
        return self.options.confirm_runs

    def describe(self) -> str:
        """`name: scheduler, sampler, grace g, ...`: what --list and --predict print."""
        o = self.options
        extra = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                 if f.name not in ("name", "options", "sampler_override")
                 and getattr(self, f.name) != f.default]
        return (f"{self.name}: --scheduler {o.scheduler} --searcher {self.sampler} --grace "
                f"{o.resolved_grace:g} --reduction-factor {o.reduction_factor:g} "
                f"--startup-trials {o.startup_trials} --confirm {o.confirm} --seeds {o.seeds}"
                + (f" ({', '.join(extra)})" if extra else ""))


def make_scheduler(design: Design, metric: str):
    from raytune_ft.tuning.scheduler import build_scheduler

    return build_scheduler(design.scheduler, metric, "max", design.options.resolved_grace,
                           design.options.reduction_factor)


def probe_rungs(scheduler) -> list[float]:
    """The rungs at which trials probe under `scheduler` (none unless it is step-probe)."""
    return scheduler.rungs if getattr(scheduler, "probe", False) else []


def make_searcher(design: Design, metric: str, seed: int, points: list[dict[str, Any]]):
    """The searcher a search with this design builds, in memory instead of optuna.db."""
    from raytune_ft.tuning.searcher import build_optuna_searcher

    return build_optuna_searcher(design.sampler, seed, design.options.startup_trials, metric, "max",
                                 points, multivariate=design.multivariate,
                                 constant_liar=design.constant_liar,
                                 startup_counts_running=design.startup_counts_running,
                                 stock=design.stock_optuna)


