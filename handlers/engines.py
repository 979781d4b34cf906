"""Engines run the forward pass; handlers never touch a framework directly.

Every engine takes a batch as a list of items (``{input name: array without the
batch axis}``) and returns one ``{output name: array}`` per item. The batching
rule is shared: a model whose signature fixes the batch size (``shape[0]`` an
integer) runs in chunks of exactly that size, the last one padded, so an answer
never depends on which other requests shared its batch. A model the archive records
as not batchable (``signature["batching"]``) runs each request whole (:meth:`Engine.run_whole`).
"""
import importlib
import importlib.util
import logging
import os

import numpy as np

from .devices import device_request, ei_build_present
from .engine_choice import ENGINE_ENV, ENGINE_PACKAGES, choose_engine, engine_entries, parse_engine_override
from .errors import ModelLoadFailure, first_line

logger = logging.getLogger(__name__)

#: signature engine "name" -> "module:Class" (imported lazily: an onnxruntime
#: archive must load without MXNet installed, and the other way round).
ENGINES = {
    "mxnet": "mxnet_engine:MXNetEngine",
    "onnxruntime": "onnx_engine:OnnxRuntimeEngine",
}

DATATYPES = {
    "FP32": np.float32, "FP16": np.float16, "FP64": np.float64,
    "INT64": np.int64, "INT32": np.int32, "INT16": np.int16, "INT8": np.int8,
    "UINT64": np.uint64, "UINT32": np.uint32, "UINT16": np.uint16, "UINT8": np.uint8, "BOOL": np.bool_,
}

CUDA_PROVIDER = "CUDAExecutionProvider"


def installed(name, find_spec=importlib.util.find_spec):
    """Whether the worker's Python has the package engine ``name`` needs (without importing it)."""
    try:
        return find_spec(ENGINE_PACKAGES[name]) is not None
    except (ImportError, ValueError):
        return False


def probe_worker(offered, gpu_id, required, providers=None):
    """What the choice needs to know about this worker: ``{"installed", "ei_build", "cuda_provider"}``.

    Nothing is imported that the choice does not need: the EI build matters only when
    both engines could run and no device is required, onnxruntime's providers only
    for a GPU. ``providers`` (tests) replaces ``onnxruntime.get_available_providers``.
    """
    found = {name for name in offered if installed(name)}
    both = {"mxnet", "onnxruntime"} <= found
    ei_build = bool(both and required is None and ei_build_present())
    cuda = False
    if both and gpu_id is not None and str(gpu_id) != "" and required != "cpu":
        if providers is None:
            import onnxruntime
            providers = onnxruntime.get_available_providers
        cuda = CUDA_PROVIDER in providers()
    return {"installed": found, "ei_build": ei_build, "cuda_provider": cuda}


def create_engine(signature, model_dir, system_properties, model_name=None, environ=None, facts=None):
    """Build the engine this worker runs the archive on, and log which and why.

    ``facts`` (tests) replaces :func:`probe_worker`'s look at the worker's Python.
    """
    environ = os.environ if environ is None else environ
    entries = engine_entries(signature)
    known = [entry for entry in entries if entry["name"] in ENGINES]
    if not known:
        raise ModelLoadFailure("signature.json names engine %s; this handler knows %s: rebuild the archive with "
                               "`mmsctl archive`" % (" and ".join(repr(e["name"]) for e in entries),
                                                     ", ".join(sorted(ENGINES))))
    offered = [entry["name"] for entry in known]
    forced = parse_engine_override(environ.get(ENGINE_ENV), model_name)
    required, _ = device_request(environ)
    gpu_id = system_properties.get("gpu_id")
    if facts is None:
        facts = probe_worker(offered, gpu_id, required)
    name, reason = choose_engine(offered, facts["installed"], forced, required, gpu_id, facts["cuda_provider"],
                                 facts["ei_build"], model_name)
    logger.info("model %s runs on %s: %s", model_name, name, reason)
    module_name, class_name = ENGINES[name].split(":")
    entry = next(entry for entry in known if entry["name"] == name)
    try:
        module = importlib.import_module("." + module_name, __package__)
        return getattr(module, class_name)(dict(signature, engine=entry), model_dir, system_properties, environ=environ)
    except Exception as err:  # a forced engine that cannot load: one line naming the override
        if forced is None:
            raise
        raise ModelLoadFailure("model %s failed to load on %s, which %s forces: %s: %s"
                               % (model_name, name, ENGINE_ENV, type(err).__name__, first_line(err))) from err


class Engine:
    """Shared batching over ``_run(feeds) -> {output name: batched array}``."""

    device_description = "cpu"

    def __init__(self, signature, model_dir):
        self.signature = signature
        self.model_dir = model_dir
        self.inputs = signature["inputs"]
        self.input_names = [spec["name"] for spec in self.inputs]
        first = self.inputs[0]["shape"][0] if self.inputs[0]["shape"] else None
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None
        batching = signature.get("batching") or {}
        self.batchable = batching.get("batchable", True)
        self.example_shapes = batching.get("example_shapes") or {}
        #: a model whose build-time pass on made-up inputs failed or crashed (``example_shapes`` null) is not
        #: warmed up on made-up inputs: they could crash its worker (a Col2Im dividing by a zero size)
        self.warms_up = self.batchable or batching.get("example_shapes", {}) is not None

    def path(self, key):
        """Absolute path of an engine file named in the signature, kept inside the model dir."""
        name = self.signature["engine"][key]
        full = os.path.realpath(os.path.join(self.model_dir, name))
        root = os.path.realpath(self.model_dir)
        if os.path.commonpath([root, full]) != root:
            raise ModelLoadFailure("signature.json names %r outside the model folder" % name)
        if not os.path.isfile(full):
            raise ModelLoadFailure("model file %s is missing from the archive" % name)
        return full

    def example_item(self):
        """An all-zero item of the signature's shapes (batch axis dropped)."""
        item = {}
        for spec in self.inputs:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec["shape"][1:]]
            item[spec["name"]] = np.zeros(shape, dtype=DATATYPES[spec.get("datatype", "FP32")])
        return item

    def warm_up(self):
        """One forward on zeros so the first real request does not pay for lazy setup."""
        if not self.warms_up:
            return
        if self.batchable:
            self.forward([self.example_item()])
            return
        self.run_whole({spec["name"]: np.zeros(self.example_shapes.get(spec["name"], [1] * len(spec["shape"])),
                                               dtype=DATATYPES[spec.get("datatype", "FP32")])
                        for spec in self.inputs})

    def run_whole(self, feeds):
        """One forward pass on ``feeds`` as they are (no rows, no batching): ``{output name: array}``."""
        return self._run({name: feeds[name] for name in self.input_names})

    def forward(self, items):
        step = self.fixed_batch or max(1, len(items))
        results = []
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            feeds = {}
            for name in self.input_names:
                stacked = np.stack([item[name] for item in chunk])
                if self.fixed_batch and len(chunk) < self.fixed_batch:
                    pad = np.zeros((self.fixed_batch - len(chunk),) + stacked.shape[1:], stacked.dtype)
                    stacked = np.concatenate([stacked, pad])
                feeds[name] = stacked
            outputs = self._run(feeds)
            for row in range(len(chunk)):
                results.append({name: value[row] for name, value in outputs.items()})
        return results

    def _run(self, feeds):
        raise NotImplementedError
