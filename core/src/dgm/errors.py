"""Errors a user can act on. The CLI prints them as one paragraph, without a traceback."""

from __future__ import annotations


class DgmError(Exception):
    """Base class: the message says what was wrong, where, and what was expected."""


class RecipeError(DgmError):
    """A recipe file is missing, unreadable, or has an unknown key or a wrong type."""


class RegistryError(DgmError):
    """An unknown, ambiguous or clashing registered name."""


class PluginError(DgmError):
    """A plugin failed to load or registered something invalid."""


class DataError(DgmError):
    """A data file is unreadable or a data set is empty."""


class RunDirError(DgmError):
    """A folder is not a dgm run folder, or conflicts with the requested run."""


class TrainingError(DgmError):
    """Training cannot go on (for example, a non-finite loss)."""


class ExportError(DgmError):
    """A run cannot be exported to the requested format."""


class RecipeWarning(UserWarning):
    """A recipe setting that has no effect (for example a table the family never reads)."""
