"""Which device a worker runs on, decided by a small pure function.

Order of preference: an Elastic Inference accelerator when the EI build of MXNet
is present, else the GPU MMS assigned to this worker (``gpu_id``), else the CPU.
The MXNet calls sit in one-line adapters at the bottom so the rule itself is
testable without any accelerator.
"""
import importlib.util
import logging
from collections import namedtuple

logger = logging.getLogger(__name__)

Device = namedtuple("Device", "kind index reason")


def select_device(gpu_id=None, ei_available=False, ei_device=0):
    """Pick the device for one worker.

    >>> select_device(gpu_id=None, ei_available=False).kind
    'cpu'
    >>> select_device(gpu_id="1").index
    1
    >>> select_device(gpu_id=0, ei_available=True).kind
    'eia'
    """
    if ei_available:
        return Device("eia", int(ei_device), "the Elastic Inference build of MXNet is installed")
    if gpu_id is not None and str(gpu_id) != "":
        return Device("gpu", int(gpu_id), "MMS assigned gpu_id=%s to this worker" % gpu_id)
    return Device("cpu", 0, "no accelerator: MMS assigned no GPU and the EI build of MXNet is absent")


def mxnet_ei_api(mx):
    """Which EI API this MXNet offers: "eia" (EI builds up to 1.5.1), "eimx" (1.7+), or None."""
    if hasattr(mx, "eia"):
        return "eia"
    if importlib.util.find_spec("eimx") is not None:
        return "eimx"
    return None


def mxnet_context(mx, device):
    """The MXNet context for a device (one-line adapters over mx.cpu/gpu/eia)."""
    if device.kind == "eia":
        return mx.eia(device.index) if hasattr(mx, "eia") else mx.cpu()
    if device.kind == "gpu":
        return mx.gpu(device.index)
    return mx.cpu()
