"""Shared fixtures: a fake MMS context, model checkpoints, and real MMS servers.

Servers are real ``multi-model-server`` processes on free loopback ports below
32767 (MMS 1.1.11 refuses higher ones), each with its own state folder (MMS keeps
a pid file in TEMP and refuses a second server sharing it), always stopped in
``finally`` by process tree.
"""
import dataclasses
import importlib.util
import os
import sys

import pytest

from mmsctl import server
from mmsctl.config import profiles

from helpers import free_port  # noqa: F401 (also imported from conftest by older test modules)

HERE = os.path.dirname(os.path.abspath(__file__))


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


def python_executable():
    return sys.executable
