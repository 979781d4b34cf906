"""Helpers shared by the test modules (import them: ``from helpers import free_port``).

Fixtures live in conftest.py; plain functions and classes the test modules import live here.
"""
import glob
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import random
import socket

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TAKEN = set()


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A free loopback port in 20000-32000 (MMS 1.1.11 rejects ports from 32767 up)."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        if port not in _TAKEN and _port_free(port):
            _TAKEN.add(port)
            return port
    raise RuntimeError("no free port found in 20000-32000")


class FakeContext:
    """The part of ``mms.context.Context`` handlers use (cf. TorchServe's mock_context)."""

    def __init__(self, model_dir, gpu_id=None, headers=None, model_name="test-model"):
        self.model_name = model_name
        self.system_properties = {"model_dir": model_dir, "gpu_id": gpu_id, "batch_size": 1}
        self.manifest = {}
        self.headers = headers or []
        self.statuses = {}
        self.content_types = {}

    def get_all_request_header(self, idx):
        return self.headers[idx] if idx < len(self.headers) else {}

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx, value):
        self.content_types[idx] = value


def skimage_photo(name):
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        pytest.skip("scikit-image (the bundled CC0 photos) is not installed: run scripts/bootstrap.sh")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", name)


def end_foreground_serve(process, state_dir):
    """Kill a ``mmsctl serve --foreground`` subprocess a test left running, and the server it started."""
    from mmsctl import server
    if process.poll() is None:
        process.kill()
        process.wait()
    if os.path.exists(os.path.join(state_dir, server.STATE_FILE)):
        server.stop(server.ServerState.load(state_dir))


class MxnetDeviceStandIn:
    """The real ``mxnet`` module whose device function (``gpu`` or ``eia``, the EI build <= 1.5.1) records
    the ordinal asked for and gives the CPU: this machine has no GPU and the EI build is not installable."""

    def __init__(self, module, device):
        self._mx = module
        self._device = device
        self.calls = []

    def __getattr__(self, name):
        if name == self._device:
            return self._context
        return getattr(self._mx, name)

    def _context(self, index=0):
        self.calls.append(index)
        return self._mx.cpu()


#: seconds `python -m venv` may take, and each pip install of :func:`cached_venv`
VENV_CREATE_TIMEOUT_S = 300
PIP_INSTALL_TIMEOUT_S = 1200
#: pytest-timeout's limit for a test whose fixtures make a cached virtualenv of at most two pip installs (it counts
#: fixture setup): the venv's own bounds plus 600 s for the test itself, so the bounds' messages can appear
INSTALL_TEST_TIMEOUT_S = VENV_CREATE_TIMEOUT_S + 2 * PIP_INSTALL_TIMEOUT_S + 600


def cached_venv(name, installs, timeout=PIP_INSTALL_TIMEOUT_S):
    """The python of a virtualenv made by pip-installing ``installs`` (a list of pip argument lists, run in
    order), kept under mmsctl's cache folder and made again only when the arguments, the requirement files
    they name or this Python change. A half-made one (no ``.pins`` file) is never reused."""
    from mmsctl.files import cache_dir

    digest = hashlib.sha256((sys.version + json.dumps(installs)).encode())
    for args in installs:
        for arg in args:
            if arg.endswith(".txt") and os.path.isfile(arg):
                with open(arg, "rb") as handle:
                    digest.update(handle.read())
    key = digest.hexdigest()[:16]
    venv = os.path.join(cache_dir(), "test-venvs", "%s-%s" % (name, key))
    python = os.path.join(venv, "bin", "python")
    if os.path.isfile(os.path.join(venv, ".pins")):
        return python
    for old in glob.glob(os.path.join(cache_dir(), "test-venvs", name + "-*")):  # other pins, or half-made
        shutil.rmtree(old, ignore_errors=True)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=VENV_CREATE_TIMEOUT_S)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    assert len(installs) <= 2, "INSTALL_TEST_TIMEOUT_S allows two pip installs"
    for args in installs:
        done = subprocess.run(pip + list(args), capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, "pip install %s: %s" % (" ".join(args), (done.stdout + done.stderr)[-2000:])
    with open(os.path.join(venv, ".pins"), "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return python


# -- podman (tests/test_container.py, tests/test_k8s.py; the fixtures `podman` and `cpu_image` are conftest's) -----
#: bounds of the session fixtures: container-setup.sh install and base, podman import of the base, image build
CONTAINER_SETUP_TIMEOUT_S = 600
IMAGE_IMPORT_TIMEOUT_S = 300
IMAGE_BUILD_TIMEOUT_S = 900
#: pytest-timeout's limit per test counts fixture setup: the first test pays for all of it, plus 600 s of its own,
#: so a slow build ends with the fixtures' own messages, not pytest-timeout's
CONTAINER_TEST_TIMEOUT_S = 2 * CONTAINER_SETUP_TIMEOUT_S + IMAGE_IMPORT_TIMEOUT_S + IMAGE_BUILD_TIMEOUT_S + 600
#: podman's storage, outside the work tree, so that a fresh clone on the same machine (CI) reuses the base image
#: and the build's layers
CONTAINER_CACHE = os.environ.get("MMSCTL_CONTAINER_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mmsctl", "containers")
BASE_TAG = "localhost/mmsctl-base:bookworm"
IMAGE_TAG = "localhost/mmsctl-test:cpu"
#: every container a test starts carries this label with the pytest process's id (a later run removes the
#: containers of a run that was killed)
CONTAINER_LABEL = "mmsctl-test-owner"


class Podman:
    """podman with this project's configuration and storage, as a list of arguments."""

    def __init__(self, cache):
        self.env = dict(os.environ, CONTAINERS_CONF=os.path.join(REPO, "docker", "containers.conf"))
        # --tmpdir too: podman's state of what is running stays with this storage, not /run/libpod
        self.base = ["podman", "--root", os.path.join(cache, "storage"), "--runroot", os.path.join(cache, "run"),
                     "--tmpdir", os.path.join(cache, "libpod")]

    def run(self, *args, timeout=120, check=True, log=None):
        out = subprocess.run(self.base + list(args), env=self.env, stdin=subprocess.DEVNULL, text=True,
                             stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT if log else subprocess.PIPE,
                             timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise AssertionError("podman %s failed (%d): %s" % (
                " ".join(shlex.quote(a) for a in args[:6]), out.returncode, (out.stderr or "")[-2000:]))
        return out

    def address(self, name):
        """The container's address on podman's bridge network ('' when it has none)."""
        return self.run("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()


def container_setup(*args):
    """scripts/container-setup.sh ARGS (exit status 3: cannot be done on this machine)."""
    return subprocess.run(["bash", os.path.join(REPO, "scripts", "container-setup.sh")] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CONTAINER_SETUP_TIMEOUT_S,
                          check=False)


def record_timings(timings, **values):
    """Add ``values`` to the session's container timings and write them to CONTAINER_CACHE/timings.json."""
    timings.update(values)
    os.makedirs(CONTAINER_CACHE, exist_ok=True)
    with open(os.path.join(CONTAINER_CACHE, "timings.json"), "w", encoding="utf-8") as handle:
        json.dump(timings, handle, indent=2, sort_keys=True)
