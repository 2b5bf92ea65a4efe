"""Fields of Linux /proc files ("Name:   value" lines: /proc/self/status, /proc/meminfo,
/proc/cpuinfo). Every reader returns None where there is no /proc or no such field, so
callers choose their own fallback."""
from __future__ import annotations


def field(path: str, key: str) -> str | None:
    """The value of the first ``key:`` line of ``path``, stripped."""
    try:
        with open(path) as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def kib_field_bytes(path: str, key: str) -> int | None:
    """A ``kB`` field (``VmHWM:  1234 kB``) in bytes."""
    value = field(path, key)
    return int(value.split()[0]) * 1024 if value else None
