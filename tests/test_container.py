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
the module. The session fixtures ``podman`` and ``cpu_image`` are conftest's (tests/test_k8s.py
runs the same image with a rendered Deployment's settings); podman's wrapper is helpers.Podman.
"""
import json
import os
import shutil
import signal
import socket
import time

import pytest
import requests

from mmsctl.client import predict

from helpers import CONTAINER_LABEL as LABEL, CONTAINER_TEST_TIMEOUT_S, free_port, record_timings as _record

pytestmark = [pytest.mark.installs, pytest.mark.slow, pytest.mark.server,
              pytest.mark.timeout(CONTAINER_TEST_TIMEOUT_S)]

#: measured here: PID 1 gone 0.40-0.48 s after SIGTERM (the Java frontend takes ~0.35 s of it); the
#: bound leaves room for a loaded 2-core machine, far below any SIGKILL timeout
STOP_LIMIT_SECONDS = 3.0


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
    address = podman.address(name)
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
