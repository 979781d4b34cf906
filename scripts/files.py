"""Reading the files a user names, and listing folders, without ever blocking.

``open()`` on a named pipe waits until something writes to it, and MMS leaves
named pipes (worker stdout/stderr) and sockets in its temporary folder. Every
place of mmsctl that reads a path it was given, or walks a folder, goes through
these functions: a path that is not a regular file is refused at once with an
:class:`OSError` whose ``strerror`` says what it is, and folder listings skip
anything that is not a regular file without opening it.
"""
import errno
import json
import os
import stat

#: what to call a file type in a message
_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class NotARegularFile(OSError):
    """The path exists but is a pipe, socket, device or folder."""


def kind_of(mode):
    """What a ``st_mode`` is, in words.

    >>> kind_of(stat.S_IFIFO | 0o644), kind_of(stat.S_IFREG | 0o644)
    ('a named pipe', 'a regular file')
    """
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path):
    """Open ``path`` for binary reading, refusing (at once) anything but a regular file.

    The file is opened non-blocking, so a named pipe does not wait for a writer,
    and checked on the open descriptor, so nothing can swap it in between.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(errno.EINVAL, "is %s, not a regular file" % kind_of(mode), path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path):
    """The bytes of a regular file (see :func:`open_regular`)."""
    with open_regular(path) as handle:
        return handle.read()


def read_json(path, error=ValueError, what="", missing=""):
    """The JSON document in the regular file ``path``; ``error(message)`` (one line) when it
    cannot be read or parsed. ``what`` names the file in messages, ``missing`` explains absence.

    >>> read_json("/nonexistent.json", what="price table")
    Traceback (most recent call last):
    ...
    ValueError: cannot read the price table /nonexistent.json: No such file or directory
    """
    name = (what + " " if what else "") + path
    try:
        with open_regular(path) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError as err:
        raise error("%s is missing: %s" % (name, missing) if missing else
                    "cannot read the %s: %s" % (name, err.strerror))
    except OSError as err:
        raise error("cannot read the %s: %s" % (name, err.strerror))
    except ValueError as err:
        raise error("%s is not valid JSON: %s" % (name, err))


def regular_files(folder):
    """Names of the regular files directly in ``folder``, sorted; pipes, sockets,
    devices, folders and symbolic links are skipped without being opened."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_file(follow_symlinks=False))


def remove_special_files(folder):
    """Delete the named pipes and sockets under ``folder`` (what a stopped MMS leaves
    in its temporary folder); return how many. Regular files and folders stay."""
    removed = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
                if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def cache_dir(environ=None):
    """Where mmsctl keeps what it can rebuild (the quickstart's model store and server
    state, container storage): ``$MMSCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmsctl``,
    else ``~/.cache/mmsctl``; never inside the repository.

    >>> cache_dir({"MMSCTL_CACHE_DIR": "/c"}), cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"})
    ('/c', '/x/mmsctl')
    >>> cache_dir({"HOME": "/h"})
    '/h/.cache/mmsctl'
    """
    environ = os.environ if environ is None else environ
    if environ.get("MMSCTL_CACHE_DIR"):
        return environ["MMSCTL_CACHE_DIR"]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mmsctl")
