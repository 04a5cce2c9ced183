"""drillkit's own error tree, so no third-party exception reaches the CLI.

Each error carries the exit code the CLI maps it to; modules that own a third-party dependency
wrap its exceptions into these (see kube.py, prometheus.py).
"""

from __future__ import annotations


class DrillkitError(Exception):
    """Base of every error drillkit raises on purpose."""

    exit_code = 1


class InputError(DrillkitError):
    """Bad input from the user: a scenario, policy file or option (exit 2)."""

    exit_code = 2


class ScenarioError(InputError):
    """A located problem in a YAML file: `FILE:LINE: key.path: message`."""

    def __init__(self, file: str, line: int | None, path: str, message: str) -> None:
        self.file, self.line, self.path, self.message = file, line, path, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


class UnavailableError(DrillkitError):
    """The target system or Prometheus cannot be reached or used (exit 3)."""

    exit_code = 3


class TransientError(UnavailableError):
    """A failure worth retrying: connection errors, 429, 5xx."""


class PermanentError(DrillkitError):
    """A failure that retrying cannot fix, e.g. 403 Forbidden or 404 on our own input."""

    exit_code = 3


class RejectedRequest(PermanentError):
    """The API refused our request as malformed (HTTP 400/422), e.g. PromQL that does not parse;
    `detail` is the API's own message."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class PreflightError(UnavailableError):
    """The drill cannot start safely: a guardrail, missing alert rule, or bad target."""


class Aborted(DrillkitError):
    """The drill was stopped early: a signal or an abort condition. Reverts still run."""

    exit_code = 130

    def __init__(self, reason: str, by_signal: bool) -> None:
        super().__init__(reason)
        self.reason, self.by_signal = reason, by_signal
