"""MXNet engine: a symbol + params checkpoint run through Gluon's SymbolBlock.

The device comes from ``devices.select_device`` (EI, GPU from ``gpu_id``, CPU),
with the profile's requirement read from the worker's environment
(``MMSCTL_REQUIRE_DEVICE``, ``EI_VISIBLE_DEVICES``).
"""
import logging
import os
import warnings

from .devices import data_context, device_request, mxnet_context, mxnet_ei_api, optimize_for_eia, select_device
from .engines import Engine

logger = logging.getLogger(__name__)

class MXNetEngine(Engine):
    """Loads ``engine.symbol``/``engine.params`` on the best MXNet context.

    ``mx`` and ``environ`` are injectable (tests pass a stand-in for the EI build,
    which cannot be installed any more); MMS uses ``mxnet`` and ``os.environ``.
    """

    def __init__(self, signature, model_dir, system_properties, mx=None, environ=None):
        super().__init__(signature, model_dir)
        if mx is None:
            import mxnet as mx
        self.mx = mx
        environ = os.environ if environ is None else environ
        required, visible = device_request(environ)
        self.device = select_device(system_properties.get("gpu_id"), ei_available=mxnet_ei_api(mx),
                                    required=required, ei_visible=visible)
        self.context = mxnet_context(mx, self.device)
        # With Elastic Inference the inputs stay on the CPU; MXNet ships them to the accelerator.
        self.data_context = data_context(mx, self.device, self.context)
        self.device_description = "%s(%d)" % (self.device.kind, self.device.index)
        logger.info("MXNet %s on %s: %s", mx.__version__, self.device_description, self.device.reason)
        with warnings.catch_warnings():  # SymbolBlock warns that it cannot infer the input's dtype
            warnings.simplefilter("ignore", UserWarning)
            self.net = mx.gluon.nn.SymbolBlock.imports(
                self.path("symbol"), self.input_names, self.path("params"), ctx=self.context)
        self.output_names = signature["engine"].get("outputs") or [
            spec["name"] for spec in signature.get("outputs", [])] or ["output"]
        if self.device.api == "eimx":
            optimize_for_eia(self.net, self._zeros())
        else:
            self.net.hybridize(static_alloc=True, static_shape=True)

    def _zeros(self):
        item = self.example_item()
        batch = self.fixed_batch or 1
        return [self.mx.nd.zeros((batch,) + item[name].shape, ctx=self.data_context) for name in self.input_names]

    def _run(self, feeds):
        nd = self.mx.nd
        arrays = [nd.array(feeds[name], ctx=self.data_context, dtype=feeds[name].dtype) for name in self.input_names]
        out = self.net(*arrays)
        if not isinstance(out, (list, tuple)):
            out = [out]
        return {name: value.asnumpy() for name, value in zip(self.output_names, out)}
