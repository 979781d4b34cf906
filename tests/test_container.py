"""The CPU image, built and run for real with podman (there is no Docker engine here).

Once per session: ``scripts/container-setup.sh install`` (podman, runc, debootstrap
when missing), a Debian bookworm base image made by debootstrap and ``podman
import`` (no image registry is reachable), then ``podman build`` of
docker/Dockerfile.cpu with the host's pip settings. Then two containers on two
loopback ports serve a prediction each, pass the image's own HEALTHCHECK, run as
uid 10001, publish the inference port only, and stop on SIGTERM.

podman keeps its storage in ~/.cache/mmsctl/containers ($MMSCTL_CONTAINER_CACHE), so a
later run on the same machine, from any clone, reuses the base image and the build's
layers. The measured times go to timings.json there. MMSCTL_CONTAINER_TESTS=0 skips
the module.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from mmsctl.client import predict
from mmsctl.docker import images

from helpers import free_port

#: bounds of the session fixtures: container-setup.sh install and base, podman import of the base, image build
SETUP_TIMEOUT_S = 600
IMPORT_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 900
#: pytest-timeout's limit per test counts fixture setup: the first test pays for all of it, plus 600 s of its own,
#: so a slow build ends with the fixtures' own messages, not pytest-timeout's
CONTAINER_TEST_TIMEOUT_S = 2 * SETUP_TIMEOUT_S + IMPORT_TIMEOUT_S + BUILD_TIMEOUT_S + 600

pytestmark = [pytest.mark.installs, pytest.mark.slow, pytest.mark.server,
              pytest.mark.timeout(CONTAINER_TEST_TIMEOUT_S)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: outside the work tree, so that a fresh clone on the same machine (CI) reuses the base image and layers
CACHE = os.environ.get("MMSCTL_CONTAINER_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mmsctl", "containers")
BASE_TAG = "localhost/mmsctl-base:bookworm"
IMAGE_TAG = "localhost/mmsctl-test:cpu"
LABEL = "mmsctl-test-owner"
#: measured here: PID 1 gone 0.40-0.48 s after SIGTERM (the Java frontend takes ~0.35 s of it); the
#: bound leaves room for a loaded 2-core machine, far below any SIGKILL timeout
STOP_LIMIT_SECONDS = 3.0


class Podman:
    """podman with this project's configuration and storage, as a list of arguments."""

    def __init__(self, cache):
        self.env = dict(os.environ, CONTAINERS_CONF=os.path.join(ROOT, "docker", "containers.conf"))
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


def _setup(*args):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "container-setup.sh")] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False)


def _record(timings, **values):
    timings.update(values)
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "timings.json"), "w", encoding="utf-8") as handle:
        json.dump(timings, handle, indent=2, sort_keys=True)


@pytest.fixture(scope="session")
def timings():
    return {}


@pytest.fixture(scope="session")
def podman(timings):
    """podman ready to build and run, or a skip that says why it cannot be."""
    if os.environ.get("MMSCTL_CONTAINER_TESTS") == "0":
        pytest.skip("MMSCTL_CONTAINER_TESTS=0")
    start = time.monotonic()
    setup = _setup("install")
    if setup.returncode == 3:
        pytest.skip("podman cannot be installed here: " + setup.stderr.strip())
    assert setup.returncode == 0, "scripts/container-setup.sh install failed:\n" + setup.stderr[-3000:]
    tool = Podman(CACHE)
    info = tool.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        pytest.skip("podman is installed but cannot run here (root is needed; rootless needs uid maps): "
                    + info.stderr.strip()[-500:])
    assert info.stdout.strip() == "runc", "docker/containers.conf asks for runc, podman uses %r" % info.stdout
    if tool.run("image", "exists", BASE_TAG, check=False).returncode != 0:
        base = _setup("base", CACHE)
        if base.returncode == 3:
            pytest.skip("no base image can be made here: " + base.stderr.strip())
        assert base.returncode == 0, "scripts/container-setup.sh base failed:\n" + base.stderr[-3000:]
        tool.run("import", base.stdout.strip().splitlines()[-1], BASE_TAG, timeout=IMPORT_TIMEOUT_S)
    # containers left by a run that was killed (their owner is gone); others' runs keep theirs
    for line in tool.run("ps", "-a", "--filter", "label=" + LABEL, "--format",
                         '{{.Names}} {{index .Labels "%s"}}' % LABEL).stdout.split("\n"):
        name, _, owner = line.partition(" ")
        if name and owner.isdigit() and not os.path.exists("/proc/%s" % owner):
            tool.run("rm", "--force", name, check=False)
    _record(timings, setup_seconds=round(time.monotonic() - start, 1))
    return tool


@pytest.fixture(scope="session")
def cpu_image(podman, timings, tmp_path_factory):
    """docker/Dockerfile.cpu built once per session (layers cached across sessions)."""
    log_path = tmp_path_factory.mktemp("image") / "build.log"
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        build = podman.run(
            "build", "--pull=never", "--format", "docker", "--build-arg", "BASE_IMAGE=" + BASE_TAG,
            *images.pip_build_arguments(images.pip_settings(sys.executable)),
            "--ignorefile", os.path.join(ROOT, "docker", "Dockerfile.cpu.dockerignore"),
            "--file", os.path.join(ROOT, "docker", "Dockerfile.cpu"), "--tag", IMAGE_TAG, ROOT,
            timeout=BUILD_TIMEOUT_S, check=False, log=log)
    if build.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            pytest.fail("podman build of docker/Dockerfile.cpu failed (%d); the end of %s:\n%s"
                        % (build.returncode, log_path, handle.read()[-4000:]))
    _record(timings, build_seconds=round(time.monotonic() - start, 1))
    # earlier builds' images, untagged by this one (the layers this build used stay)
    podman.run("image", "prune", "--force", check=False)
    return IMAGE_TAG


def _wait_healthy(podman, name, timeout=240):
    """Poll the image's own HEALTHCHECK (`mmsctl health` inside) until it passes."""
    deadline = time.monotonic() + timeout
    while True:
        state = podman.run("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name).stdout.split()
        if state[0] != "true":
            logs = podman.run("logs", name, check=False)
            pytest.fail("container %s exited with status %s before it was healthy:\n%s"
                        % (name, state[1], (logs.stdout + logs.stderr)[-3000:]))
        if podman.run("healthcheck", "run", name, check=False).returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = podman.run("logs", name, check=False)
            pytest.fail("container %s not healthy after %d s:\n%s" % (name, timeout, logs.stdout[-3000:]))
        time.sleep(0.5)


@pytest.fixture(scope="module")
def readable_store(model_store, tmp_path_factory):
    """The session's archives in a folder the image's user (uid 10001) can read:
    pytest's temporary folders are 0700 root, as a host's model store may be too."""
    store = tmp_path_factory.mktemp("container_store")
    for name in os.listdir(model_store):
        if name.endswith(".mar"):
            shutil.copyfile(os.path.join(model_store, name), store / name)
            os.chmod(store / name, 0o644)
    os.chmod(store, 0o755)
    return str(store)


@pytest.fixture(scope="module")
def containers(podman, cpu_image, readable_store, timings):
    """Two servers from the image, each on its own loopback port; removed at the end."""
    specs = {"lite": ("cpu-latency", "efficientnet-lite0", "efficientnet-lite0.mar"),
             "resnet": ("cpu-throughput", "resnet18", "resnet18.mar")}
    started = {}
    try:
        start = time.monotonic()
        for key, (profile, model, archive) in specs.items():
            name = "mmsctl-test-%d-%s" % (os.getpid(), key)
            port = free_port()
            podman.run("run", "--detach", "--name", name, "--label", "%s=%d" % (LABEL, os.getpid()),
                       "--health-interval", "disable", "--publish", "127.0.0.1:%d:8080" % port,
                       "--volume", "%s:/models:ro" % readable_store, cpu_image,
                       "--profile", profile, "--vcpus", "1", "--models", "%s=%s" % (model, archive))
            started[key] = {"name": name, "model": model, "url": "http://127.0.0.1:%d" % port}
        for info in started.values():
            _wait_healthy(podman, info["name"])
        _record(timings, start_to_healthy_seconds=round(time.monotonic() - start, 1))
        yield started
    finally:
        for info in started.values():
            podman.run("rm", "--force", "--time", "2", info["name"], check=False)


def test_image_runs_as_non_root_with_health_check_and_model_volume(podman, cpu_image):
    image = json.loads(podman.run("image", "inspect", cpu_image).stdout)[0]
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert "/models" in config["Volumes"]
    assert sorted(config["ExposedPorts"]) == ["8080/tcp", "8082/tcp"]  # inference, metrics
    health = config.get("Healthcheck") or image.get("Healthcheck")  # podman lists it beside Config
    assert health["Test"] == ["CMD", "mmsctl", "health"]
    assert config["Entrypoint"][:5] == ["tini", "--", "mmsctl", "serve", "--foreground"]
    assert config["Entrypoint"][-2:] == ["--profile", "cpu-latency"] and not config.get("Cmd")


def test_two_containers_each_serve_a_prediction(containers, cat_photo):
    lite = predict(containers["lite"]["url"], "efficientnet-lite0", [cat_photo], timeout=120)
    assert "cat" in lite[0]["class"], lite  # real ImageNet weights: chelsea.png is a tabby
    resnet = predict(containers["resnet"]["url"], "resnet18", [cat_photo], timeout=120)
    probabilities = [answer["probability"] for answer in resnet]
    assert len(resnet) == 5 and probabilities == sorted(probabilities, reverse=True), resnet
    assert 0 < sum(probabilities) <= 1.0001
    assert len({answer["class"] for answer in resnet}) == 5


def test_processes_run_as_uid_10001(podman, containers):
    for info in containers.values():
        users = podman.run("top", info["name"], "user").stdout.split()[1:]
        assert users and set(users) == {"mms"}, (info["name"], users)


def test_only_the_inference_port_is_published(podman, containers):
    for info in containers.values():
        ports = podman.run("port", info["name"]).stdout.strip().splitlines()
        assert len(ports) == 1 and ports[0].startswith("8080/tcp -> 127.0.0.1:"), ports
    # On the container's own address the inference API answers and the management API is closed:
    # it listens on the container's 127.0.0.1 only, where the health check reads it.
    name = containers["lite"]["name"]
    address = podman.run("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
    if not address:
        pytest.skip("container %s has no bridge address to probe" % name)
    assert requests.get("http://%s:8080/ping" % address, timeout=10).status_code == 200
    with pytest.raises(OSError):
        socket.create_connection((address, 8081), timeout=5).close()


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_sigterm_stops_each_container_quickly_and_cleanly(podman, containers, timings):
    """SIGTERM to the container's PID 1 (tini, as `docker stop` and ECS send it) ends
    tini -> mmsctl serve -> MMS's Java frontend and Python workers, with status 0."""
    exits, stops = {}, {}
    for key, info in containers.items():
        pid = int(podman.run("inspect", "--format", "{{.State.Pid}}", info["name"]).stdout)
        start = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        deadline = start + 30
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        exits[key] = round(time.monotonic() - start, 3)
        podman.run("wait", info["name"], timeout=60)
        stops[key] = round(time.monotonic() - start, 3)
        code = podman.run("inspect", "--format", "{{.State.ExitCode}}", info["name"]).stdout.strip()
        assert code == "0", "%s exited %s after SIGTERM" % (info["name"], code)
    _record(timings, sigterm_to_exit_seconds=exits, sigterm_to_podman_stopped_seconds=stops)
    assert max(exits.values()) < STOP_LIMIT_SECONDS, exits
