"""Tensor handler: Open Inference Protocol v2 JSON in, v2 JSON out (any engine).

MMS entry point: ``mmsctl_handlers.tensor_model`` (this module defines exactly one
class, which is how MMS finds a class handler). For a batchable model each request may carry a batch
(its tensors' first axis); the rows of every request in an MMS batch go through the
engine together, concatenated on the batch axis when their shapes agree (one forward
pass per distinct shape otherwise), and are split back per request. A model the
archive records as not batchable (inputs of different leading sizes, scalars, a
reduction over the first axis...) gets each request's tensors unchanged, one forward
pass per request, and refuses to load with MMS's ``batch_size`` above 1.
"""
from . import codec, v2
from .base import BaseHandler
from .errors import BadRequest, ModelLoadFailure, UnsupportedMediaType, first_line


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

    batch_size = 1

    def initialize(self, context):
        try:
            self.batch_size = int(context.system_properties.get("batch_size") or 1)
        except (TypeError, ValueError):
            self.batch_size = 1
        super().initialize(context)

    def setup(self, signature, model_dir):
        self.input_specs = signature["inputs"]
        self.output_specs = signature["outputs"]
        batching = signature.get("batching") or {}
        self.batchable = batching.get("batchable", True)
        if not self.batchable and self.batch_size > 1:
            raise ModelLoadFailure(
                "model %s is not batchable (%s) but was registered with batch_size %d: register it with "
                "batch_size 1; each request is served as it is" % (
                    self.model_name, batching.get("reason", "its archive says so"), self.batch_size))

    def preprocess(self, part):
        return v2.decode_request(read_json(part, self.input_specs), self.input_specs, self.output_specs,
                                 batchable=self.batchable)

    def inference(self, inputs):
        """Decoded requests -> ``(request, rows or whole outputs)`` per request, rows batched across requests."""
        items = [item for request in inputs for item in request.items]
        rows = [None] * len(items)
        for group in v2.shape_groups(items):
            for position, result in zip(group, self.engine.forward([items[i] for i in group])):
                rows[position] = result
        answers, start = [], 0
        for request in inputs:
            if request.whole is not None:
                answers.append((request, self._run_whole(request.whole)))
                continue
            answers.append((request, rows[start:start + request.batch]))
            start += request.batch
        return answers

    def _run_whole(self, feeds):
        """The engine's outputs for one request's tensors, or the BadRequest to answer.

        The model loaded and ran at warm-up, and nothing else shares this forward pass, so
        a failure here comes from this request's shapes or values (a symbolic dimension the
        graph needs to match another, an index out of range...).
        """
        try:
            return self.engine.run_whole(feeds)
        except Exception as err:  # onnxruntime raises its own InvalidArgument/Fail types
            return BadRequest("the model cannot run on these tensors (%s): %s: %s" % (
                ", ".join("%s %s" % (name, list(value.shape)) for name, value in feeds.items()),
                type(err).__name__, first_line(err)))

    def postprocess(self, output):
        request, result = output
        if isinstance(result, BadRequest):
            raise result
        specs = self.output_specs
        if request.output_names is not None:
            by_name = {spec["name"]: spec for spec in specs}
            specs = [by_name[name] for name in request.output_names]
        if request.whole is not None:
            return v2.encode_outputs(self.model_name, result, specs, request.request_id)
        return v2.encode_response(self.model_name, result, specs, request.request_id)
