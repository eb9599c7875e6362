"""The package's layers: imports flow one way (simulate -> cli -> pipeline -> experiment ->
tuning -> engine -> mmconfig -> data -> foundations), nothing in the package imports the
replay (simulate/), `import raytune_ft` stays cheap, and the module paths of the flat package
(pickled into older experiments) still import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


from helpers import REPO

PACKAGE = REPO / "raytune_ft"
# top to bottom; a module may import from its own layer or any layer below it
LAYERS = ["entry", "simulate", "cli", "pipeline", "experiment", "tuning", "engine", "mmconfig", "data",
          "foundations"]
ENTRY = {"raytune_ft", "raytune_ft.search", "raytune_ft.train", "raytune_ft.confirm",
         "raytune_ft.report", "raytune_ft.doctor",
         "raytune_ft.spot_watch"}  # the package API and the `python -m` names


def layer_of(module: str) -> str:
    if module in ENTRY:
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else "foundations"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every raytune_ft module `path` imports, at the top or inside a function."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.startswith("raytune_ft"):
                targets.add(name)
    return targets


def test_the_layer_names_cover_the_package():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS) - {"entry", "foundations"}


def test_imports_flow_one_way():
    known = modules()
    upward = []
    for module, path in known.items():
        for target in imports_of(path, known):
            own, other = LAYERS.index(layer_of(module)), LAYERS.index(layer_of(target))
            package_init = target == "raytune_ft" and module != "raytune_ft"
            if other < own and not package_init:
                upward.append(f"{module} ({layer_of(module)}) imports {target} "
                              f"({layer_of(target)})")
    assert not upward, "\n".join(upward)


def test_nothing_in_the_package_imports_the_replay():
    """simulate/ drives the product (bench/ and tests use it); the product never needs it."""
    known = modules()
    users = [m for m, path in known.items() if layer_of(m) != "simulate"
             and any(layer_of(t) == "simulate" for t in imports_of(path, known))]
    assert users == []


def test_no_import_cycles():
    """Within a layer too (`../shared/tools/import_cycles.py raytune_ft` says the same)."""
    known = modules()
    graph = {m: imports_of(p, known) - {m, "raytune_ft"} for m, p in known.items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state:
                cycle = visit(target, path + [module])
                if cycle:
                    return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_import_raytune_ft_is_cheap():
    heavy = run_python("import sys, raytune_ft; raytune_ft.SearchConfig; "
                       "print(sorted(m for m in ('torch', 'ray', 'mmdet', 'mmengine', 'optuna')"
                       " if m in sys.modules))")
    assert heavy.strip() == "[]"


def test_the_old_flat_module_paths_import_the_moved_modules():
    """Ray pickled `raytune_ft.scheduler.StepFairASHA` and `raytune_ft.searcher.
    StepFairOptunaSearch` into every experiment made before the move (tuner.pkl): unpickling
    those names in a fresh process gives the current classes."""
    out = run_python(
        "import importlib, pickle\n"
        "from raytune_ft._moved import MOVED\n"
        "old = pickle.loads(b'craytune_ft.scheduler\\nStepFairASHA\\n.')\n"
        "new = importlib.import_module('raytune_ft.tuning.scheduler').StepFairASHA\n"
        "assert old is new, (old, new)\n"
        "searcher = pickle.loads(b'craytune_ft.searcher\\nStepFairOptunaSearch\\n.')\n"
        "assert searcher.__module__ == 'raytune_ft.tuning.searcher'\n"
        "budget = pickle.loads(b'craytune_ft.budget\\nTimeBudget\\n.')\n"
        "assert budget is importlib.import_module('raytune_ft.tuning.budget').TimeBudget\n"
        "for before, after in MOVED.items():\n"
        "    assert importlib.import_module(before) is importlib.import_module(after), before\n"
        "    assert importlib.import_module(after).__spec__.name == after\n"
        "print(len(MOVED))\n")
    assert int(out) >= 20


def test_every_moved_module_exists():
    from raytune_ft._moved import MOVED

    known = modules()
    assert all(new in known for new in MOVED.values())
    assert not any(old in known for old in MOVED), "an old path is a real module again"


def test_the_scheduler_rules_are_the_flag_choices():
    from raytune_ft.options import SCHEDULERS
    from raytune_ft.tuning.scheduler import SCHEDULER_RULES

    assert tuple(SCHEDULER_RULES) == SCHEDULERS
