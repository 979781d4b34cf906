"""Shared fixtures: a fake MMS context, model checkpoints, and real MMS servers.

Servers are real ``multi-model-server`` processes on free loopback ports below
32767 (MMS 1.1.11 refuses higher ones), each with its own state folder (MMS keeps
a pid file in TEMP and refuses a second server sharing it), always stopped in
``finally`` by process tree.
"""
import dataclasses
import os
import sys
import time

import pytest

from mmsctl import server
from mmsctl.config import profiles

from helpers import (BASE_TAG, CONTAINER_CACHE, CONTAINER_LABEL, IMAGE_IMPORT_TIMEOUT_S, IMAGE_BUILD_TIMEOUT_S,
                     IMAGE_TAG, INSTALL_TEST_TIMEOUT_S, Podman, container_setup, free_port, record_timings,
                     skimage_photo)

#: Every test has at least one kind; ``pytest -m unit`` is the quick subset (under a minute).
KINDS = ("unit", "server", "slow", "installs")
#: Fixtures (of conftest or of one test module) that decide a test's kind when it has no explicit marker:
#: they start real servers, pip-install environments or build images, or build heavy models.
SERVER_FIXTURES = {"servers", "mgmt"}
INSTALL_FIXTURES = {"podman", "stock_python", "plain_venv", "torchserve_python"}
SLOW_FIXTURES = {"model_store", "onnx_store", "dual", "aws"}  # aws: moto's in-memory AWS

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


@pytest.fixture(scope="session")
def cat_photo():
    return skimage_photo("chelsea.png")


@pytest.fixture(scope="session")
def coffee_photo():
    return skimage_photo("coffee.png")


@pytest.fixture(scope="session")
def resnet_checkpoint(tmp_path_factory):
    """A Gluon model-zoo ResNet-18 v1 checkpoint (random weights, seeded) + a synset."""
    import mxnet as mx
    folder = tmp_path_factory.mktemp("resnet18")
    mx.random.seed(7)
    net = mx.gluon.model_zoo.vision.resnet18_v1(pretrained=False, classes=10)
    net.initialize(mx.init.Xavier(magnitude=2.5))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.export(str(folder / "resnet18"), 0)
    (folder / "synset.txt").write_text("".join("n%08d label %d\n" % (i, i) for i in range(10)))
    return {"symbol": str(folder / "resnet18-symbol.json"), "params": str(folder / "resnet18-0000.params"),
            "synset": str(folder / "synset.txt"), "dir": str(folder)}


@pytest.fixture(scope="session")
def model_store(tmp_path_factory, resnet_checkpoint):
    """A model store with the default archive and a ResNet-18 archive (built once)."""
    from mmsctl.archives import mxnet_checkpoint
    store = tmp_path_factory.mktemp("model_store")
    mxnet_checkpoint.build_efficientnet_lite0(str(store))
    mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(
        name="resnet18", symbol=resnet_checkpoint["symbol"], params=resnet_checkpoint["params"],
        synset=resnet_checkpoint["synset"], export_path=str(store)))
    return str(store)


@pytest.fixture
def aws_credentials(monkeypatch):
    """Fake credentials and region for moto's in-memory AWS (nothing here may reach the real one)."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def restore_environ():
    saved = dict(os.environ)
    try:
        yield os.environ
    finally:
        os.environ.clear()
        os.environ.update(saved)


class ServerFactory:
    """Starts real servers through mmsctl.server; stops every one at teardown."""

    def __init__(self, base):
        self.base = base
        self.started = []

    def start(self, model_store, models, profile="cpu-latency", vcpus=None, workers=None, timeout=180,
              overrides=None, **profile_options):
        """``profile_options`` go to build_profile (tls=...); ``overrides`` replace Profile fields after it."""
        prof = profiles.build_profile(profile, vcpus=vcpus, model_store=model_store,
                                      inference_port=free_port(), management_port=free_port(), workers=workers,
                                      **profile_options)
        if overrides:
            prof = dataclasses.replace(prof, **overrides)
        state_dir = os.path.join(self.base, "server%d" % len(self.started))
        state = server.start(prof, state_dir, models, ready_timeout=timeout)
        self.started.append(state)
        return state

    def stop_all(self):
        for state in self.started:
            server.stop(state)
        self.started = []


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    factory = ServerFactory(str(tmp_path_factory.mktemp("servers")))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def default_server(servers, model_store):
    """One server with both archives loaded (cpu-latency profile)."""
    return servers.start(model_store, {"efficientnet-lite0": "efficientnet-lite0.mar", "resnet18": "resnet18.mar"})


# -- podman and the CPU image (tests/test_container.py, tests/test_k8s.py) ---------------------------------------
@pytest.fixture(scope="session")
def timings():
    """The container tests' measured times (written to CONTAINER_CACHE/timings.json)."""
    return {}


@pytest.fixture(scope="session")
def podman(timings):
    """podman ready to build and run, or a skip that says why it cannot be.

    Once per session: ``scripts/container-setup.sh install`` (podman, runc, debootstrap when missing), and a
    Debian bookworm base image made by debootstrap and ``podman import`` (no image registry is reachable) when
    podman's storage (helpers.CONTAINER_CACHE) has none. MMSCTL_CONTAINER_TESTS=0 skips.
    """
    if os.environ.get("MMSCTL_CONTAINER_TESTS") == "0":
        pytest.skip("MMSCTL_CONTAINER_TESTS=0")
    start = time.monotonic()
    setup = container_setup("install")
    if setup.returncode == 3:
        pytest.skip("podman cannot be installed here: " + setup.stderr.strip())
    assert setup.returncode == 0, "scripts/container-setup.sh install failed:\n" + setup.stderr[-3000:]
    tool = Podman(CONTAINER_CACHE)
    info = tool.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        pytest.skip("podman is installed but cannot run here (root is needed; rootless needs uid maps): "
                    + info.stderr.strip()[-500:])
    assert info.stdout.strip() == "runc", "docker/containers.conf asks for runc, podman uses %r" % info.stdout
    if tool.run("image", "exists", BASE_TAG, check=False).returncode != 0:
        base = container_setup("base", CONTAINER_CACHE)
        if base.returncode == 3:
            pytest.skip("no base image can be made here: " + base.stderr.strip())
        assert base.returncode == 0, "scripts/container-setup.sh base failed:\n" + base.stderr[-3000:]
        tool.run("import", base.stdout.strip().splitlines()[-1], BASE_TAG, timeout=IMAGE_IMPORT_TIMEOUT_S)
    # containers left by a run that was killed (their owner is gone); others' runs keep theirs
    for line in tool.run("ps", "-a", "--filter", "label=" + CONTAINER_LABEL, "--format",
                         '{{.Names}} {{index .Labels "%s"}}' % CONTAINER_LABEL).stdout.split("\n"):
        name, _, owner = line.partition(" ")
        if name and owner.isdigit() and not os.path.exists("/proc/%s" % owner):
            tool.run("rm", "--force", name, check=False)
    record_timings(timings, setup_seconds=round(time.monotonic() - start, 1))
    return tool


@pytest.fixture(scope="session")
def cpu_image(podman, timings, tmp_path_factory):
    """docker/Dockerfile.cpu built once per session with the host's pip settings (layers cached across
    sessions in podman's storage): its tag."""
    from mmsctl.docker import images
    log_path = tmp_path_factory.mktemp("image") / "build.log"
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        build = podman.run(
            "build", "--pull=never", "--format", "docker", "--build-arg", "BASE_IMAGE=" + BASE_TAG,
            *images.pip_build_arguments(images.pip_settings(sys.executable)),
            "--ignorefile", os.path.join(REPO, "docker", "Dockerfile.cpu.dockerignore"),
            "--file", os.path.join(REPO, "docker", "Dockerfile.cpu"), "--tag", IMAGE_TAG, REPO,
            timeout=IMAGE_BUILD_TIMEOUT_S, check=False, log=log)
    if build.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            pytest.fail("podman build of docker/Dockerfile.cpu failed (%d); the end of %s:\n%s"
                        % (build.returncode, log_path, handle.read()[-4000:]))
    record_timings(timings, build_seconds=round(time.monotonic() - start, 1))
    # earlier builds' images, untagged by this one (the layers this build used stay)
    podman.run("image", "prune", "--force", check=False)
    return IMAGE_TAG


def pytest_collection_modifyitems(config, items):
    """Give each test its kinds: its explicit markers, plus what its fixtures say, else ``unit``.

    A test that starts a server through ``servers`` (or a module's server fixture) is ``server``, even when it is
    marked ``slow``; one that pip-installs is ``installs`` and ``slow``, and gets pytest-timeout's limit for
    installs (:data:`helpers.INSTALL_TEST_TIMEOUT_S`: the limit counts fixture setup); one that needs the built
    model store is ``slow``; doctests and everything else are ``unit``. Tests that start servers or install some
    other way carry their markers (tests/test_layout.py checks the ones that start a server by hand).
    """
    for item in items:
        kinds = {mark.name for mark in item.iter_markers()} & set(KINDS)
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & INSTALL_FIXTURES:
            item.add_marker(pytest.mark.installs)
            item.add_marker(pytest.mark.slow)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(INSTALL_TEST_TIMEOUT_S))
        if fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.server)
        elif fixtures & SLOW_FIXTURES and not kinds:
            item.add_marker(pytest.mark.slow)
        elif not fixtures & INSTALL_FIXTURES and not kinds:
            item.add_marker(pytest.mark.unit)
