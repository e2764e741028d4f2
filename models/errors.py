"""Errors a user can fix, importable without PyTorch."""

from __future__ import annotations


class MissingWeightsError(FileNotFoundError):
    """The architecture needs a weights file that is not where it was expected."""
