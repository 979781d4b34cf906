"""Typed errors of the operator tools (server control, management API, bench)."""


class MmsctlError(Exception):
    """Base of the errors the CLI turns into one line and a non-zero exit."""

    exit_code = 1


class ServerError(MmsctlError):
    """The server could not be started, reached or stopped."""


class ManagementError(MmsctlError):
    """The management API refused a request or answered something unexpected."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class UsageError(MmsctlError):
    """Options that do not fit together."""

    exit_code = 2
