"""`_base_` entries written for MMDetection 2.x's folder layout, resolved to the bases mmdet ships.

The fine-tuning tutorial's config starts with `_base_ = ['../_base_/models/mask_rcnn_r50_fpn.py',
...]`: paths into a checkout of the mmdetection repository. A user's config in their own folder
has no `../_base_/`, and MMDetection 3.x renamed many of those files (`mask-rcnn_r50_fpn.py`).
Here a relative `_base_` entry that does not exist, and names a `_base_/...` file mmdet ships
(under its 2.x or its 3.x name), becomes `mmdet::_base_/...`, logged once; a relative base
that exists locally always wins; one that matches nothing is an error with the closest names.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from raytune_ft.errors import UserError

MARKER = "_base_/"


def shipped_bases() -> dict[str, str]:
    """Every base mmdet ships, keyed by its path under `_base_/`, plus the same key with `-`
    written `_` (the 2.x names): value = the 3.x path under `_base_/`."""
    import mmdet

    root = Path(mmdet.__file__).parent / ".mim" / "configs" / "_base_"
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root).as_posix()
        out[rel] = rel
        out.setdefault(rel.replace("-", "_"), rel)
    return out


def _base_entries(tree: ast.Module) -> tuple[ast.Assign | None, list[str]]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            value = node.value
            items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            if all(isinstance(i, ast.Constant) and isinstance(i.value, str) for i in items):
                return node, [i.value for i in items]
    return None, []


@contextlib.contextmanager
def resolved_bases(path: Path) -> Iterator[Path]:
    """`path` itself when every `_base_` entry resolves; else a copy (same file name, in a
    temporary folder, removed when the block ends: mmengine's Config keeps the text it read)
    whose missing relative entries point at mmdet's shipped bases and whose existing relative
    entries are made absolute."""
    rewritten = _rewrite_bases(path)
    if rewritten is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="raytune_ft_cfg_") as folder:
        copy = Path(folder) / path.name
        copy.write_text(rewritten)
        yield copy


def _rewrite_bases(path: Path) -> str | None:
    """The config's text with its `_base_` entries resolved, or None when none needs it."""
    text = path.read_text()
    tree = ast.parse(text, filename=str(path))
    node, entries = _base_entries(tree)
    if node is None:
        return None
    resolved: list[str] = []
    mapped = False
    shipped: dict[str, str] | None = None
    for entry in entries:
        if "::" in entry or Path(entry).is_absolute() or (path.parent / entry).exists():
            resolved.append(entry if "::" in entry or Path(entry).is_absolute()
                            else str((path.parent / entry).resolve()))
            continue
        if MARKER not in entry:
            resolved.append(entry)  # not a base path we know how to map: mmengine reports it
            continue
        shipped = shipped if shipped is not None else shipped_bases()
        tail = entry[entry.index(MARKER) + len(MARKER):]
        target = shipped.get(tail) or shipped.get(tail.replace("-", "_"))
        if target is None:
            close = difflib.get_close_matches(tail, sorted(set(shipped.values())), n=3, cutoff=0.5)
            raise UserError(
                f"config '{path}': _base_ '{entry}' does not exist (relative to {path.parent}) "
                f"and MMDetection ships no base named '{MARKER}{tail}'"
                + (f"; closest shipped: {', '.join('mmdet::' + MARKER + c for c in close)}"
                   if close else "") + ". Write a shipped base as 'mmdet::_base_/...', a local "
                "one as a path relative to the config file.")
        new = f"mmdet::{MARKER}{target}"
        print(f"[raytune_ft] _base_ '{entry}' -> '{new}'", flush=True)
        resolved.append(new)
        mapped = True
    if not mapped:
        return None
    lines = text.splitlines(keepends=True)
    start, end = node.lineno - 1, node.end_lineno
    replacement = f"_base_ = {resolved!r}\n"
    return "".join(lines[:start]) + replacement + "".join(lines[end:])
