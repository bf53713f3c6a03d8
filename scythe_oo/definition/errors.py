"""The framework's own exceptions.

Each one subclasses a built-in so that callers who only know Python can still catch it
(``except ValueError``), and each message names what was wrong and how to fix it.
"""

from __future__ import annotations


class ScytheError(Exception):
    """Base of every error raised by scythe_oo itself."""


class ExperimentDefinitionError(ScytheError, TypeError):
    """An Experiment subclass is malformed; raised when the class statement runs."""


class SpecValidationError(ScytheError, ValueError):
    """One or more specs handed to ``allocate`` are invalid; nothing was written."""


class DesignError(ScytheError, ValueError):
    """Specs cannot be sampled from the input schema and the arguments given."""


class UnknownExperimentError(ScytheError, KeyError):
    """A name was looked up that no registered Experiment carries."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class StoreError(ScytheError, OSError):
    """The artifact store failed or a key is missing."""


class ArtifactNotFoundError(StoreError, FileNotFoundError):
    """A key or URI that should exist does not."""


class OutputValidationError(ScytheError, ValueError):
    """A leaf's ``run`` returned something that does not match the output schema."""


class RunFailedError(ScytheError, RuntimeError):
    """A run ended without producing its final tables."""


class StrategyError(ScytheError, TypeError):
    """A strategy (recursion policy, collector, store, engine) cannot be used as given."""
