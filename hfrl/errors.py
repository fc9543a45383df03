"""Errors that reach users.

Every error a user can cause by bad input (a wrong argument, a missing or corrupt file, an image of the
wrong shape) is an :class:`HfrlError`. The CLI prints its message as one line on stderr and exits with
code 2; the Python API lets it propagate. Messages name the offending thing and say what was expected.
"""

from __future__ import annotations


class HfrlError(Exception):
    """Base class for errors caused by user input; the message is one line meant for people."""


class DataError(HfrlError, ValueError):
    """Images, labels or dataset settings that cannot be used (wrong shape, dtype, range, classes)."""


class CheckpointError(HfrlError):
    """A checkpoint file that is missing, corrupt, truncated or does not match what was asked for."""


class ConfigError(HfrlError, ValueError):
    """A configuration value that is out of range or unknown."""
