"""Typed errors of the builder; every message names the file and says what to do."""
from mmsctl.errors import MmsctlError


class ArchiveError(MmsctlError):
    """Base of every builder error; the CLI prints its message and exits non-zero."""


class InvalidInput(ArchiveError):
    """An input file or option is missing, unreadable or inconsistent."""


class OutputExists(ArchiveError):
    """The archive already exists and --force was not given."""


class UnsafeArchive(ArchiveError):
    """An archive entry would escape the folder it is unpacked into."""
