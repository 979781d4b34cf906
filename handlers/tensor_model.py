"""Tensor handler: Open Inference Protocol v2 JSON in, v2 JSON out (any engine).

MMS entry point: ``mmsctl_handlers.tensor_model`` (this module defines exactly one
class, which is how MMS finds a class handler). Each request may carry a batch
(its tensors' first axis); the rows of every request in an MMS batch go through the
engine together, concatenated on the batch axis when their shapes agree (one forward
pass per distinct shape otherwise), and are split back per request.
"""
from . import codec, v2
from .base import BaseHandler
from .errors import UnsupportedMediaType


def read_json(part, specs):
    """The decoded JSON of a part; a body that is not JSON (an image...) is a 415."""
    value = part.value
    if isinstance(value, (dict, list)):
        return value
    kind = part.content_type
    if kind == "application/json" or kind.endswith("+json"):
        return codec.decode_value("application/json", value)
    text = bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8", "replace")
    if text.lstrip()[:1] == b"{":  # JSON sent without a JSON content type (curl --data-binary)
        return codec.decode_value("application/json", text)
    raise UnsupportedMediaType(
        "part %r is %s, not JSON: this model takes Open Inference Protocol v2 JSON "
        '{"inputs": [{"name", "shape", "datatype", "data"}]} with Content-Type application/json; inputs: %s'
        % (part.name, kind or type(value).__name__, ", ".join(v2.describe(s) for s in specs)))


class TensorModel(BaseHandler):
    """Named tensors in, named tensors out, as the archive's signature declares them."""

    def setup(self, signature, model_dir):
        self.input_specs = signature["inputs"]
        self.output_specs = signature["outputs"]

    def preprocess(self, part):
        return v2.decode_request(read_json(part, self.input_specs), self.input_specs, self.output_specs)

    def inference(self, inputs):
        """Decoded requests -> ``(request, rows)`` per request, rows batched across requests."""
        items = [item for request in inputs for item in request.items]
        rows = [None] * len(items)
        for group in v2.shape_groups(items):
            for position, result in zip(group, self.engine.forward([items[i] for i in group])):
                rows[position] = result
        answers, start = [], 0
        for request in inputs:
            answers.append((request, rows[start:start + request.batch]))
            start += request.batch
        return answers

    def postprocess(self, output):
        request, rows = output
        specs = self.output_specs
        if request.output_names is not None:
            by_name = {spec["name"]: spec for spec in specs}
            specs = [by_name[name] for name in request.output_names]
        return v2.encode_response(self.model_name, rows, specs, request.request_id)
