"""Task-agnostic training engine. Nothing in core/ imports tasks/ (the registry imports lazily)."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("twotrack")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0+src"
