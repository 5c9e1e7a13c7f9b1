"""Exceptions for bad input. Each carries a one-line message naming the file, row or field.

The CLI turns any :class:`AdvsecError` into ``advsec: error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = ["AdvsecError", "ConfigError", "DataError", "SchemaError"]


class AdvsecError(ValueError):
    """Base class for user-facing input errors (one line, no traceback in the CLI)."""


class SchemaError(AdvsecError):
    """A feature schema is inconsistent or names unknown columns."""


class DataError(AdvsecError):
    """A data file or table is missing, malformed or does not match its schema."""


class ConfigError(AdvsecError):
    """An experiment configuration or a command-line option is invalid."""
