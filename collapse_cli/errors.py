"""The project's error type; the CLI turns it into a one-line message and an exit code."""

from __future__ import annotations


class CollapseError(Exception):
    """A problem the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(CollapseError):
    """A bad config, override, file or option: nothing was created."""

    exit_code = 2


class RunError(CollapseError):
    """A run that could not start or that stopped abnormally."""

    exit_code = 1
