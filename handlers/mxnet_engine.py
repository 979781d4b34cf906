"""MXNet engine: a symbol + params checkpoint run through Gluon's SymbolBlock.

The device comes from ``devices.select_device`` (EI, GPU from ``gpu_id``, CPU),
with the profile's requirement read from the worker's environment
(``MMSCTL_REQUIRE_DEVICE``, ``EI_VISIBLE_DEVICES``).

How the graph is prepared depends on the device (:func:`graph_preparation`):

* CPU: partitioned by MXNet's MKLDNN subgraph backend (``optimize_for``), which
  fuses convolution + batch norm + activation (+ sum) and fully-connected layers
  into single oneDNN kernels: measured here (batch 1, 2 threads) 2.1-2.4x faster
  on EfficientNet-Lite0 and 1.1-1.2x on ResNet-152 than the unfused graph, answers
  equal within 1.1e-6 relative. Binding a Module (MKLDNN executor) was as fast, but
  needs a rebind or reshape per batch size; ``optimize_for`` keeps the one Gluon
  path GPU and EI use. ``MXNET_SUBGRAPH_BACKEND=NONE`` (MXNet's own switch) turns it off.
* GPU and Elastic Inference up to 1.5.1 (``mx.eia``): ``hybridize`` as before.
* Elastic Inference from 1.7 (``eimx``): ``optimize_for(x, backend="EIA")``.
"""
import logging
import os
import warnings

from .devices import data_context, device_request, mxnet_context, mxnet_ei_api, optimize_for_eia, select_device
from .engines import Engine
from .errors import ModelLoadFailure, first_line

logger = logging.getLogger(__name__)

SUBGRAPH_BACKEND_ENV = "MXNET_SUBGRAPH_BACKEND"


def graph_preparation(device, mkldnn=True, subgraph_backend=None):
    """How to prepare the graph for ``device``: "eia", "mkldnn" (fused) or "hybridize".

    ``mkldnn``: whether this MXNet build has MKLDNN (oneDNN); ``subgraph_backend``:
    the value of ``MXNET_SUBGRAPH_BACKEND`` ("NONE" disables fusion, as it does
    for MXNet's own executors).

    >>> from .devices import Device
    >>> graph_preparation(Device("cpu", 0, "no accelerator"))
    'mkldnn'
    >>> graph_preparation(Device("cpu", 0, "no accelerator"), subgraph_backend="NONE")
    'hybridize'
    >>> graph_preparation(Device("gpu", 1, "gpu_id=1"))
    'hybridize'
    >>> graph_preparation(Device("eia", 0, "EI", "eimx")), graph_preparation(Device("eia", 0, "EI", "eia"))
    ('eia', 'hybridize')
    """
    if device.kind == "eia" and device.api == "eimx":
        return "eia"
    if device.kind == "cpu" and mkldnn and (subgraph_backend or "").strip().upper() != "NONE":
        return "mkldnn"
    return "hybridize"


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
        self.preparation = graph_preparation(self.device, _has_mkldnn(mx), environ.get(SUBGRAPH_BACKEND_ENV))
        if self.preparation == "eia":
            optimize_for_eia(self.net, self._zeros())
        elif self.preparation == "mkldnn":
            self._fuse()
        else:
            self.net.hybridize(static_alloc=True, static_shape=True)
        logger.info("MXNet graph: %s", {"eia": "partitioned for Elastic Inference (eimx)",
                                        "mkldnn": "fused by the MKLDNN subgraph backend",
                                        "hybridize": "hybridized, not fused"}[self.preparation])

    def _fuse(self):
        """Partition for the MKLDNN backend on the signature's shapes (other batch sizes work too)."""
        try:
            self.net.optimize_for(*self._zeros(), backend="MKLDNN", static_alloc=True, static_shape=True)
        except self.mx.base.MXNetError as err:
            raise ModelLoadFailure("MXNet's MKLDNN fusion failed on this model: %s; set %s=NONE in the "
                                   "server's environment to serve it unfused"
                                   % (first_line(err), SUBGRAPH_BACKEND_ENV))

    def _zeros(self):
        """All-zero inputs of the signature's shapes and types, on the data context."""
        item = self.example_item()
        batch = self.fixed_batch or 1
        return [self.mx.nd.zeros((batch,) + item[name].shape, ctx=self.data_context, dtype=item[name].dtype)
                for name in self.input_names]

    def _run(self, feeds):
        nd = self.mx.nd
        arrays = [nd.array(feeds[name], ctx=self.data_context, dtype=feeds[name].dtype) for name in self.input_names]
        out = self.net(*arrays)
        if not isinstance(out, (list, tuple)):
            out = [out]
        return {name: value.asnumpy() for name, value in zip(self.output_names, out)}


def _has_mkldnn(mx):
    """Whether this MXNet build has MKLDNN (oneDNN), the backend of CPU fusion."""
    features = getattr(getattr(mx, "runtime", None), "Features", None)
    return bool(features is not None and features().is_enabled("MKLDNN"))
