"""Durations as users write them (`5h`, `90m`, `1h30m`) and as the console says them."""

from __future__ import annotations

import math
import re

from raytune_ft.errors import UserError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])", re.IGNORECASE)


def parse_duration(text: str, name: str = "--time-budget") -> float:
    """Seconds in a duration such as `5h`, `90m`, `1h30m`, `45s` or a bare number of seconds;
    UserError naming `name` for anything that is not a positive duration."""
    raw = str(text).strip()
    example = f"e.g. {name} 5h, 90m or 1h30m"
    try:
        seconds = float(raw)
    except ValueError:
        parts = _PART.findall(raw)
        if not parts or _PART.sub("", raw).strip():
            raise UserError(f"{name} must be a duration such as 5h, 90m, 1h30m or 45s; got "
                            f"{text!r}.") from None
        seconds = sum(float(v) * _UNITS[u.lower()] for v, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{name} must be a positive duration ({example}); got {text!r}.")
    return seconds


def format_duration(seconds: float) -> str:
    """`3725` -> `1h02m`, `95` -> `1m35s`: how the console and summary.json say a duration."""
    seconds = max(0.0, float(seconds))
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.0f}s"
