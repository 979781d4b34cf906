"""Engines run the forward pass; handlers never touch a framework directly.

Every engine takes a batch as a list of items (``{input name: array without the
batch axis}``) and returns one ``{output name: array}`` per item. The batching
rule is shared: a model whose signature fixes the batch size (``shape[0]`` an
integer) runs in chunks of exactly that size, the last one padded, so an answer
never depends on which other requests shared its batch.
"""
import importlib
import os

import numpy as np

from .errors import ModelLoadFailure

#: signature "engine.name" -> "module:Class" (imported lazily: an onnxruntime
#: archive must load without MXNet installed, and the other way round).
ENGINES = {
    "mxnet": "mxnet_engine:MXNetEngine",
    "onnxruntime": "onnx_engine:OnnxRuntimeEngine",
}

DATATYPES = {
    "FP32": np.float32, "FP16": np.float16, "FP64": np.float64,
    "INT64": np.int64, "INT32": np.int32, "INT16": np.int16, "INT8": np.int8,
    "UINT8": np.uint8, "BOOL": np.bool_,
}


def create_engine(signature, model_dir, system_properties):
    """Build the engine the archive's signature names."""
    name = signature.get("engine", {}).get("name")
    target = ENGINES.get(name)
    if target is None:
        raise ModelLoadFailure("signature.json names engine %r; this handler knows %s"
                               % (name, ", ".join(sorted(ENGINES))))
    module_name, class_name = target.split(":")
    module = importlib.import_module("." + module_name, __package__)
    return getattr(module, class_name)(signature, model_dir, system_properties)


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
        self.forward([self.example_item()])

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
