"""The framework's version, from the installed package's metadata: one source of truth."""

from __future__ import annotations

from importlib import metadata


def _installed_version() -> str:
    try:
        return metadata.version("scythe-oo")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _installed_version()
"""``0.1.0``, say: pyproject.toml's version, as pip or uv installed it."""
