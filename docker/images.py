"""Building the images behind a proxy or a private index: ``podman build`` / ``docker build`` arguments
that hand the build's pip this machine's pip settings.

The Dockerfiles declare ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS`` and ``PIP_CERT`` as
build arguments (only the ``RUN`` steps see them; they are not kept in the image). Local file indexes and
wheel folders are mounted read-only at the same path, and the CA bundle of a TLS-intercepting proxy at
:data:`CONTAINER_CA`. Print them for your machine with ``python -m mmsctl.docker.images`` (``podman build``
takes ``--volume``; with ``docker build`` use BuildKit secrets instead).
"""
import os
import subprocess
import sys
import urllib.parse

#: Where the build sees the host's CA bundle.
CONTAINER_CA = "/run/mmsctl-build/ca.crt"
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
_BUILD_ARGS = (("index-url", "PIP_INDEX_URL"), ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
               ("find-links", "PIP_FIND_LINKS"))


def pip_settings(python=sys.executable):
    """This machine's pip settings (``pip config list``: files, then ``PIP_*`` variables, which win)."""
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60,
                         check=False).stdout
    return parse_pip_config(out)


def parse_pip_config(text):
    """``pip config list`` output -> {setting: value}; ``:env:`` lines win over files.

    >>> parse_pip_config("global.index-url='https://a/simple'\\n:env:.index-url='https://b/simple'\\n")
    {'index-url': 'https://b/simple'}
    """
    settings = {}
    for line in sorted(text.splitlines(), key=lambda line: line.startswith(":env:")):
        key, sep, value = line.partition("=")
        if sep:
            settings[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    return settings


def mount_for(location):
    """The host folder a file index or wheel folder needs inside the build, or None for a URL.

    PEP 503 file indexes link to ``../../files`` beside their ``simple/`` folder, so the parent is mounted.
    """
    path = urllib.parse.urlsplit(location).path if location.startswith("file:") else location
    if not os.path.isabs(path) or not os.path.exists(path):
        return None
    path = os.path.normpath(path)
    return os.path.dirname(path) if os.path.basename(path) == "simple" else path


def pip_build_arguments(settings):
    """``podman build`` arguments carrying ``settings`` (from :func:`pip_settings`): the CA bundle, the
    index URLs and the local folders they need.

    >>> pip_build_arguments({"cert": "/nonexistent", "index-url": "https://pypi.example/simple"})
    ['--build-arg', 'PIP_INDEX_URL=https://pypi.example/simple']
    """
    args, mounts = [], set()
    cert = settings.get("cert") or DEFAULT_CA
    if os.path.isfile(cert):
        args += ["--build-arg", "PIP_CERT=" + CONTAINER_CA, "--volume", "%s:%s:ro" % (cert, CONTAINER_CA)]
    for key, arg in _BUILD_ARGS:
        value = settings.get(key)
        if value:
            args += ["--build-arg", "%s=%s" % (arg, value)]
            mounts.update(mount for mount in map(mount_for, value.split()) if mount)
    for mount in sorted(mounts):
        args += ["--volume", "%s:%s:ro" % (mount, mount)]
    return args


if __name__ == "__main__":
    print(" ".join(pip_build_arguments(pip_settings())))
