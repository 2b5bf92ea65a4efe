"""User-facing errors: bad usage, config or data. The CLI prints one line and exits 2.

Raise :class:`UserError` (or a subclass) with a message that names the file, the record or
key, what is wrong and how to proceed. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input: exit status 2, one clear line, no traceback."""


class DataError(UserError):
    """Malformed or missing data (a dataset file, a record, a volume)."""


def exit_on_user_error(main: F) -> F:
    """Wrap a command-line ``main``: a UserError becomes ``error: <message>`` and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    return wrapper  # type: ignore[return-value]
