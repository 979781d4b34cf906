"""onnxruntime engine: an ONNX model run by an InferenceSession; never imports MXNet.

The provider is chosen by a small pure function: CUDA when MMS gave this worker a
GPU (``gpu_id``) and the installed onnxruntime offers the CUDA provider, else the
CPU. Intra-op threads follow ``OMP_NUM_THREADS`` (set by the deployment profile),
so workers x threads stays within the vCPUs as it does for MXNet.

Session settings, measured served (docs/benchmarks.md, "onnxruntime session settings"):
ORT_ENABLE_ALL is 1.5x faster than ORT_ENABLE_EXTENDED on the default model (its NCHWc
layout transforms); turning off the intra-op threads' spinning changed nothing beyond the
noise, so onnxruntime's default stays; one inter-op thread.
"""
import logging
import os

from .devices import Device, device_request, select_device
from .engines import Engine
from .errors import ModelLoadFailure

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def select_providers(gpu_id, available, required=None):
    """(providers for InferenceSession, Device) for one worker.

    ``required`` is the profile's device requirement (``MMSCTL_REQUIRE_DEVICE``):
    a GPU profile without the CUDA provider fails instead of running on the CPU.

    >>> select_providers(None, [CUDA, CPU])[0]
    ['CPUExecutionProvider']
    >>> select_providers("1", [CUDA, CPU])[0]
    [('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
    >>> select_providers(0, [CPU])[1].kind
    'cpu'
    """
    if required == "eia":
        raise ModelLoadFailure("this profile needs an Elastic Inference accelerator, which onnxruntime cannot "
                               "use: archive the model with --engine mxnet for the EI build of MXNet")
    device = select_device(gpu_id, ei_available=False, required=required)
    if device.kind == "gpu":
        if CUDA in available:
            return [(CUDA, {"device_id": device.index}), CPU], device
        if required == "gpu":
            raise ModelLoadFailure("this profile needs a GPU but onnxruntime offers only %s: install "
                                   "onnxruntime-gpu (same version) in the server's environment"
                                   % ", ".join(available))
        device = Device("cpu", 0, "MMS assigned gpu_id=%s but this onnxruntime has no CUDA provider "
                                  "(install onnxruntime-gpu)" % gpu_id)
    return [CPU], device


def intra_op_threads(environ):
    """Threads per session from ``OMP_NUM_THREADS``; 0 lets onnxruntime decide.

    >>> intra_op_threads({"OMP_NUM_THREADS": "2"}), intra_op_threads({}), intra_op_threads({"OMP_NUM_THREADS": "x"})
    (2, 0, 0)
    """
    try:
        return max(0, int(environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


class OnnxRuntimeEngine(Engine):
    """Loads ``engine.model`` (an .onnx file in the archive) on the best provider."""

    def __init__(self, signature, model_dir, system_properties, ort=None, environ=None):
        super().__init__(signature, model_dir)
        if ort is None:
            import onnxruntime as ort
        if environ is None:
            environ = os.environ
        required, _ = device_request(environ)
        providers, self.device = select_providers(system_properties.get("gpu_id"), ort.get_available_providers(),
                                                  required)
        self.device_description = "%s(%d)" % (self.device.kind, self.device.index)
        logger.info("onnxruntime %s on %s: %s", ort.__version__, self.device_description, self.device.reason)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads(environ)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.path("model"), sess_options=options, providers=providers)
        self.output_names = [out.name for out in self.session.get_outputs()]
        logger.info("onnxruntime session providers: %s", ", ".join(self.session.get_providers()))

    def _run(self, feeds):
        values = self.session.run(self.output_names, {name: feeds[name] for name in self.input_names})
        return dict(zip(self.output_names, values))
