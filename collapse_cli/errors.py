"""The project's error types, by kind; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class CollapseError(Exception):
    """A problem the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(CollapseError):
    """A bad config, override, file or option: nothing was created."""

    exit_code = 2


class RunNotFoundError(CollapseError):
    """A run named on the command line that is not there, or that more than one run matches."""

    exit_code = 2


class RunError(CollapseError):
    """A run that could not start or that stopped abnormally."""

    exit_code = 1


class ComponentBug(CollapseError):
    """A component's own code failed (a ``TypeError`` inside it, not a bad config value): a bug
    to report, with the component named, not a mistake in the YAML."""

    exit_code = 1
