"""Follow a log file the way ``tail -F`` does, across log4j2's rotation.

log4j2's RollingFile renames ``x.log`` away (then gzips the renamed file) and
creates a new ``x.log``. A :class:`Follower` keeps the descriptor of the file it
is reading, so after a rename it first reads what is left of the old file, then
opens the new one from its first byte: no line is lost and none is read twice.
A file truncated in place is read again from its start. On its first open a
follower starts at the end of the file (a restarted exporter does not count old
lines again); a file that appears later is read from its start.
"""
import os

from mmsctl.files import open_regular

#: bytes read per system call
CHUNK = 1 << 20


class Follower:
    """Complete lines appended to ``path`` since the last call of :meth:`lines`."""

    def __init__(self, path, from_start=False):
        self.path = path
        self._handle = None
        self._identity = None
        self._partial = b""
        self._first = not from_start
        self.rotations = 0
        if not self._open():  # the end is where the file is now, not at the first read
            self._first = False  # missing now: when it appears, all of it is new

    def _open(self):
        try:
            handle = open_regular(self.path)
        except OSError:
            return False
        info = os.fstat(handle.fileno())
        if self._first:
            handle.seek(0, os.SEEK_END)  # started on an existing file: only what comes next
        self._first = False
        self._handle, self._identity = handle, (info.st_dev, info.st_ino)
        return True

    def _current_identity(self):
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_dev, info.st_ino), info.st_size

    def unread_bytes(self):
        """Bytes of the file not turned into lines yet (an unfinished last line counts; 0 when missing)."""
        current = self._current_identity()
        if current is None:
            return len(self._partial)
        if self._handle is None:
            return 0 if self._first else current[1]
        if current[0] != self._identity:
            return current[1] + len(self._partial)
        return max(0, current[1] - self._handle.tell()) + len(self._partial)

    def lines(self):
        """The complete lines (str, without the newline) written since the last call."""
        if self._handle is None:
            if not self._open():
                return []
        out = self._read_available()
        current = self._current_identity()
        if current is not None:
            identity, size = current
            if identity != self._identity:  # rotated: the old file is finished, read the new one
                self._handle.close()
                self._handle = None
                self.rotations += 1
                if self._partial:  # the old file's last line had no newline
                    out.append(self._partial.decode("utf-8", "replace"))
                    self._partial = b""
                if self._open():
                    out += self._read_available()
            elif size < self._handle.tell():  # truncated in place
                self._handle.seek(0)
                self._partial = b""
                out += self._read_available()
        return out

    def _read_available(self):
        out = []
        while True:
            data = self._handle.read(CHUNK)
            if not data:
                return out
            data = self._partial + data
            *complete, self._partial = data.split(b"\n")
            out += [line.decode("utf-8", "replace") for line in complete]

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None
