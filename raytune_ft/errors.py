"""User-facing errors: one paragraph, exit status 2, raised before expensive work starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

EXIT_USER_ERROR = 2

F = TypeVar("F", bound=Callable[..., int])


class UserError(Exception):
    """A problem with the user's input (file, flag, config) that they can fix.

    The message is a complete paragraph: what is wrong, where, and what to do.
    """


def user_errors_exit_2(main: F) -> F:
    """Turn a `UserError` raised by a CLI entry point into a paragraph on stderr and exit 2."""

    @wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR

    return wrapper  # type: ignore[return-value]
