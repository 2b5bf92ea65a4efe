"""argparse value types shared by the project's command-line entry points."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1; anything else is a usage error (argparse exits 2 with this message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0; anything else is a usage error (argparse exits 2 with this message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value
