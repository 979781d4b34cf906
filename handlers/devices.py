"""Which device a worker runs on, decided by a small pure function.

Order of preference when nothing is required: an Elastic Inference accelerator
when the EI build of MXNet is present (and ``EI_VISIBLE_DEVICES`` leaves one
visible), else the GPU MMS assigned to this worker (``gpu_id``), else the CPU.

A profile can require a device through ``MMSCTL_REQUIRE_DEVICE`` (``eia``,
``gpu`` or ``cpu``, set by ``mmsctl serve --profile``): a worker that cannot have
it fails to load with a message saying so, never silently on the CPU.

The EI build came with two APIs, both handled here:

* EI builds of MXNet up to 1.5.1: a context, ``mx.eia(i)``; the model binds to it.
* EI builds from 1.7 (``import eimx``): the model stays on ``mx.cpu()`` and is
  partitioned for the accelerator with ``net.optimize_for(x, backend="EIA")``.

With either, input arrays stay on the CPU context (MMS's EI guide; MXNet ships
them to the accelerator). ``EI_VISIBLE_DEVICES`` (comma-separated ordinals or
ids, read by the EI runtime) picks the accelerators a process may see; the
visible ones are renumbered from 0 inside the process, so a worker uses ordinal
0 of what is visible, and an empty value means none is visible.

The MXNet calls sit in one-line adapters at the bottom so the rule itself is
testable without any accelerator.
"""
import importlib
import importlib.metadata
import importlib.util
from collections import namedtuple

from .contract import REQUIRE_DEVICE_ENV
from .errors import ModelLoadFailure

EI_VISIBLE_DEVICES_ENV = "EI_VISIBLE_DEVICES"
DEVICE_KINDS = ("cpu", "gpu", "eia")

#: kind: "cpu" | "gpu" | "eia"; index: the ordinal inside this process;
#: reason: why (for the log); api: for "eia", "eia" (mx.eia, <= 1.5.1) or "eimx" (>= 1.7).
Device = namedtuple("Device", "kind index reason api", defaults=(None,))

_NO_EI_BUILD = ("the Elastic Inference build of MXNet is not installed (neither mx.eia(), in EI builds up to "
                "1.5.1, nor the eimx package, from 1.7); install it or serve with a cpu profile")


def parse_visible_devices(value):
    """``EI_VISIBLE_DEVICES`` -> None when unset (all visible) or the list of entries.

    >>> parse_visible_devices(None) is None
    True
    >>> parse_visible_devices("1, 3")
    ['1', '3']
    >>> parse_visible_devices("")
    []
    """
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def device_request(environ):
    """(required kind or None, visible EI devices or None) from a worker's environment.

    >>> device_request({"MMSCTL_REQUIRE_DEVICE": "EIA", "EI_VISIBLE_DEVICES": "2"})
    ('eia', ['2'])
    >>> device_request({})
    (None, None)
    """
    required = (environ.get(REQUIRE_DEVICE_ENV) or "").strip().lower() or None
    if required is not None and required not in DEVICE_KINDS:
        raise ModelLoadFailure("%s=%r is not a device: use one of %s"
                               % (REQUIRE_DEVICE_ENV, environ.get(REQUIRE_DEVICE_ENV), ", ".join(DEVICE_KINDS)))
    return required, parse_visible_devices(environ.get(EI_VISIBLE_DEVICES_ENV))


def select_device(gpu_id=None, ei_available=False, ei_device=0, required=None, ei_visible=None):
    """Pick the device for one worker.

    ``ei_available``: False/None, or the EI API present ("eia", "eimx"; True means "eia").
    ``ei_visible``: the parsed ``EI_VISIBLE_DEVICES`` (None: unset, all visible).
    ``required``: None (take the best there is), or "cpu", "gpu", "eia".

    >>> select_device(gpu_id=None, ei_available=False).kind
    'cpu'
    >>> select_device(gpu_id="1").index
    1
    >>> select_device(gpu_id=0, ei_available=True).kind
    'eia'
    >>> select_device(ei_available="eimx", ei_visible=["3"]).api
    'eimx'
    """
    ei_api = ("eia" if ei_available is True else ei_available) or None
    has_gpu = gpu_id is not None and str(gpu_id) != ""
    if required == "cpu":
        return Device("cpu", 0, "%s=cpu: the profile asks for the CPU" % REQUIRE_DEVICE_ENV)
    if ei_api and required in (None, "eia"):
        if ei_visible == []:
            if required == "eia":
                raise ModelLoadFailure("this profile needs an Elastic Inference accelerator but %s is set empty, "
                                       "which hides every accelerator: unset it or name one (e.g. 0)"
                                       % EI_VISIBLE_DEVICES_ENV)
        else:
            ordinal = int(ei_device)
            if ei_visible is not None and ordinal >= len(ei_visible):
                raise ModelLoadFailure("Elastic Inference ordinal %d asked, but %s=%s makes %d visible"
                                       % (ordinal, EI_VISIBLE_DEVICES_ENV, ",".join(ei_visible), len(ei_visible)))
            which = ("accelerator %s of %s" % (ei_visible[ordinal], EI_VISIBLE_DEVICES_ENV) if ei_visible
                     else "the first attached accelerator (%s unset)" % EI_VISIBLE_DEVICES_ENV)
            return Device("eia", ordinal, "Elastic Inference build of MXNet (%s API): %s" % (
                "mx.eia()" if ei_api == "eia" else "eimx optimize_for", which), ei_api)
    if required == "eia":
        raise ModelLoadFailure("this profile needs an Elastic Inference accelerator (%s=eia) but %s"
                               % (REQUIRE_DEVICE_ENV, _NO_EI_BUILD))
    if has_gpu:
        return Device("gpu", int(gpu_id), "MMS assigned gpu_id=%s to this worker" % gpu_id)
    if required == "gpu":
        raise ModelLoadFailure("this profile needs a GPU (%s=gpu) but MMS assigned no gpu_id to this worker: "
                               "set number_of_gpu in config.properties (mmsctl serve --profile gpu --gpus N)"
                               % REQUIRE_DEVICE_ENV)
    return Device("cpu", 0, "no accelerator: MMS assigned no GPU and the EI build of MXNet is absent")


# -- adapters over MXNet: one line each ------------------------------------------
def mxnet_ei_api(mx, find_spec=importlib.util.find_spec):
    """Which EI API this MXNet offers: "eia" (EI builds up to 1.5.1), "eimx" (1.7+), or None."""
    return "eia" if hasattr(mx, "eia") else ("eimx" if find_spec("eimx") is not None else None)


def mxnet_context(mx, device):
    """The context the model binds to: mx.eia(i) (<= 1.5.1), mx.gpu(i), else mx.cpu() (CPU and eimx)."""
    return mx.eia(device.index) if device.api == "eia" else (mx.gpu(device.index) if device.kind == "gpu" else mx.cpu())


def data_context(mx, device, model_context):
    """The context of input arrays: the CPU with Elastic Inference (MMS's EI guide), else the model's."""
    return mx.cpu() if device.kind == "eia" else model_context


def optimize_for_eia(net, example_inputs):
    """EI builds from 1.7: ``import eimx`` registers the EIA backend; partition the graph for it."""
    importlib.import_module("eimx")
    net.optimize_for(*example_inputs, backend="EIA")


def installed_mxnet_version():
    """The version of the installed distribution that provides the ``mxnet`` package, or None."""
    for name in importlib.metadata.packages_distributions().get("mxnet", []):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def version_tuple(text):
    """``"1.5.1"`` -> ``(1, 5, 1)``; None when it does not start with numbers.

    >>> version_tuple("1.9.1.post0"), version_tuple("1.5.1"), version_tuple(None)
    ((1, 9, 1), (1, 5, 1), None)
    """
    numbers = []
    for part in str(text or "").split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers[:3]) or None


def ei_build_present(find_spec=importlib.util.find_spec, mxnet_version=installed_mxnet_version,
                     import_module=importlib.import_module):
    """The EI API installed ("eimx", "eia") or None, importing MXNet only when it may be an EI build.

    ``eimx`` (EI from 1.7) is a package of its own; ``mx.eia()`` exists only in EI
    builds up to 1.5.1, so a newer (or an unknown) MXNet is not imported to look.
    """
    if find_spec("eimx") is not None:
        return "eimx"
    version = version_tuple(mxnet_version())
    if version is not None and version > (1, 5, 1):
        return None
    return mxnet_ei_api(import_module("mxnet"), find_spec)
