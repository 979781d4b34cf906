"""The one error root of the operator side: everything the CLI turns into one line derives from MmsctlError.

Builder errors (``mmsctl.archives.errors.ArchiveError``) and profile errors
(``mmsctl.config.profiles.ProfileError``) derive from it too. Handlers inside archives have their own
(``mmsctl_handlers.errors``): they run inside MMS and never import the operator side.
"""


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
