"""Which engine a worker runs an archive on, decided by small pure functions.

An archive offers one engine (signature format 1: ``"engine": {...}``) or several
in order of preference (format 2: ``"engines": [{...}, {...}]``, written by
``mmsctl archive resnet`` / ``efficientnet-lite0`` as onnxruntime then MXNet, the
two checked to agree within 1e-4 at build time). The worker takes, in this order:

1. the engine forced by ``MMSCTL_ENGINE`` for this model, if any (it must be in the
   archive and installed, else the model fails to load);
2. MXNet for Elastic Inference (``MMSCTL_REQUIRE_DEVICE=eia``, or the EI build of
   MXNet installed and no other device required): only MXNet can use it;
3. MXNet when MMS gave the worker a GPU but onnxruntime has no CUDA provider;
4. else the archive's most preferred engine that is installed (onnxruntime on the
   CPU, or with CUDA on the GPU MMS assigned; MXNet when onnxruntime is absent).

``MMSCTL_ENGINE`` (worker environment): ``auto`` (the default), ``mxnet`` or
``onnxruntime`` for every model, or comma-separated ``MODEL=ENGINE`` pairs, with at
most one bare engine as the default of the models not named:
``MMSCTL_ENGINE=resnet-152=mxnet,bert=onnxruntime``.
"""
from .contract import ENGINE_ENV
from .errors import ModelLoadFailure

AUTO = "auto"
#: engine name -> the Python package it needs in the worker
ENGINE_PACKAGES = {"onnxruntime": "onnxruntime", "mxnet": "mxnet"}
SIGNATURE_FORMATS = ("mmsctl-signature/1", "mmsctl-signature/2")


def engine_entries(signature):
    """The engines an archive offers, most preferred first.

    >>> [e["name"] for e in engine_entries({"engines": [{"name": "onnxruntime"}, {"name": "mxnet"}]})]
    ['onnxruntime', 'mxnet']
    >>> engine_entries({"format": "mmsctl-signature/1", "engine": {"name": "mxnet", "symbol": "s.json"}})
    [{'name': 'mxnet', 'symbol': 's.json'}]
    """
    fmt = signature.get("format")
    if fmt is not None and fmt not in SIGNATURE_FORMATS:
        raise ModelLoadFailure("signature.json has format %r but this handler reads %s: rebuild the archive with "
                               "this version of `mmsctl archive`" % (fmt, " and ".join(SIGNATURE_FORMATS)))
    entries = signature.get("engines")
    if entries is None:
        entries = [signature["engine"]] if isinstance(signature.get("engine"), dict) else []
    if not isinstance(entries, list) or not entries or not all(
            isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in entries):
        raise ModelLoadFailure("signature.json names no engine (\"engine\" or \"engines\"): rebuild the archive "
                               "with `mmsctl archive`")
    return entries


def parse_engine_override(value, model_name, known=tuple(ENGINE_PACKAGES)):
    """The engine ``MMSCTL_ENGINE`` forces for ``model_name``, or None (automatic choice).

    The whole value is checked, whichever model asks: a typo fails every model.

    >>> parse_engine_override(None, "m") is None, parse_engine_override(" Auto ", "m") is None
    (True, True)
    >>> parse_engine_override("onnxruntime", "m")
    'onnxruntime'
    >>> parse_engine_override("resnet=mxnet, bert=onnxruntime", "resnet")
    'mxnet'
    >>> parse_engine_override("resnet=mxnet", "bert") is None
    True
    >>> parse_engine_override("onnxruntime,resnet=mxnet", "bert")
    'onnxruntime'
    >>> try:
    ...     parse_engine_override("a=tpu", "m")
    ... except ModelLoadFailure as err:
    ...     print(err.message)
    MMSCTL_ENGINE='a=tpu': 'tpu' is not an engine: use auto, mxnet, onnxruntime or MODEL=ENGINE pairs, comma-separated
    """
    choices = (AUTO,) + tuple(sorted(known))
    usage = "use %s or MODEL=ENGINE pairs, comma-separated" % ", ".join(choices)

    def fail(problem):
        return ModelLoadFailure("%s=%r: %s: %s" % (ENGINE_ENV, value, problem, usage))

    default, per_model = None, {}
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        model, sep, engine = entry.rpartition("=")
        model, engine = model.strip(), engine.strip().lower()
        if engine not in choices:
            raise fail("%r is not an engine" % (engine or entry))
        if sep and not model:
            raise fail("%r names no model before '='" % entry)
        if not sep:
            if default is not None:
                raise fail("two engines for every model (%s and %s)" % (default, engine))
            default = engine
        elif model in per_model:
            raise fail("model %r is given twice" % model)
        else:
            per_model[model] = engine
    engine = per_model.get(model_name, default)
    return None if engine in (None, AUTO) else engine


def choose_engine(offered, installed, forced=None, required=None, gpu_id=None, cuda_provider=False,
                  ei_build=False, model_name=None):
    """``(engine name, reason)`` for one worker.

    ``offered``: the archive's engines, most preferred first; ``installed``: those
    whose package the worker's Python has; ``forced``: from :func:`parse_engine_override`;
    ``required``: ``MMSCTL_REQUIRE_DEVICE`` (None, "cpu", "gpu", "eia"); ``gpu_id``:
    what MMS assigned; ``cuda_provider``: onnxruntime offers CUDAExecutionProvider;
    ``ei_build``: the Elastic Inference build of MXNet is installed.

    >>> choose_engine(["onnxruntime", "mxnet"], {"onnxruntime", "mxnet"})[0]
    'onnxruntime'
    >>> choose_engine(["onnxruntime", "mxnet"], {"mxnet"})
    ('mxnet', "onnxruntime, the archive's first choice, is not installed in the server's Python")
    >>> choose_engine(["onnxruntime", "mxnet"], {"onnxruntime", "mxnet"}, required="eia")[0]
    'mxnet'
    """
    offered = list(offered)
    model = "model %s" % model_name if model_name else "this model"
    if forced is not None:
        if forced not in offered:
            raise ModelLoadFailure("%s forces %s for %s but its archive has only %s: drop the override or rebuild "
                                   "the archive with --engine auto"
                                   % (ENGINE_ENV, forced, model, " and ".join(offered)))
        if forced not in installed:
            raise ModelLoadFailure("%s forces %s for %s but %s is not installed in the server's Python: install it "
                                   "or drop the override" % (ENGINE_ENV, forced, model, ENGINE_PACKAGES[forced]))
        return forced, "%s forces it" % ENGINE_ENV
    usable = [name for name in offered if name in installed]
    if not usable:
        raise ModelLoadFailure("%s runs on %s, and the server's Python has %s: install %s" % (
            model, " or ".join(offered), "neither" if len(offered) > 1 else "not that",
            " or ".join(ENGINE_PACKAGES[name] for name in offered)))
    wants_ei = required == "eia" or (ei_build and required is None)
    if wants_ei and "mxnet" in usable:
        return "mxnet", "Elastic Inference (%s) runs on MXNet only" % (
            "MMSCTL_REQUIRE_DEVICE=eia" if required == "eia" else "the EI build of MXNet is installed")
    if required == "eia":
        if "mxnet" not in offered:
            problem, fix = "the archive of %s has no MXNet model" % model, "rebuild it with --engine auto or mxnet"
        else:
            problem, fix = "MXNet is not installed in the server's Python", "install the EI build of MXNet"
        raise ModelLoadFailure("this profile needs Elastic Inference (MMSCTL_REQUIRE_DEVICE=eia), which only MXNet "
                               "can use, but %s: %s" % (problem, fix))
    on_gpu = gpu_id is not None and str(gpu_id) != "" and required != "cpu"
    first = usable[0]
    if on_gpu and first == "onnxruntime" and not cuda_provider and "mxnet" in usable:
        return "mxnet", ("MMS assigned gpu_id=%s and this onnxruntime has no CUDA provider (onnxruntime-gpu): "
                         "MXNet takes the GPU" % gpu_id)
    if len(offered) == 1:
        reason = "the archive has only %s" % first
    elif first != offered[0]:
        reason = "%s, the archive's first choice, is not installed in the server's Python" % offered[0]
    else:
        reason = "the archive's first choice, installed"
    if first == "onnxruntime" and len(offered) > 1:
        reason += "; on %s" % ("GPU %s with the CUDA provider" % gpu_id if on_gpu and cuda_provider else "the CPU")
    return first, reason
