"""Assemble an archive: MANIFEST, signature, model files and the handler package.

Every builder (MXNet checkpoints, ONNX, the bundled EfficientNet) validates its
inputs first, then calls :func:`assemble` with the files it vouches for.
"""
import datetime
import json
import os
import re
from dataclasses import dataclass
from typing import List, Optional

from mmsctl import __version__
from mmsctl.errors import MmsctlError
from mmsctl.files import read_regular, regular_files
from mmsctl.handlers.contract import HANDLER_PACKAGE, SIGNATURE_FILE

from . import mar
from .errors import InvalidInput, OutputExists

#: MMS's own rule for model names (ModelArchive.java).
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")

#: signature.json formats: 1 names one engine (``"engine": {...}``); 2 names several,
#: most preferred first (``"engines": [{...}, ...]``), all answering alike within
#: ``engines_agree_within`` (checked at build time); the worker picks one (handlers/engine_choice.py).
SIGNATURE_FORMAT = "mmsctl-signature/1"
SEVERAL_ENGINES_FORMAT = "mmsctl-signature/2"

#: Name the handler package takes inside an archive (distinct from the installed
#: ``mmsctl.handlers`` so a worker never mixes the two).

#: task -> handler module inside HANDLER_PACKAGE
HANDLER_MODULES = {
    "image-classification": "image_classifier",
    "tensor": "tensor_model",
}

PREPROCESS_PRESETS = {
    # Gluon model zoo and torchvision ImageNet models: RGB, mean/std of ImageNet on 0-255.
    "imagenet": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "channel_order": "RGB"},
    # The classic MMS/MXNet model-zoo symbols (resnet-152 with bn_data): raw 0-255 RGB pixels.
    "raw": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "channel_order": "RGB"},
    # EfficientNet-Lite: (x - 127) / 128.
    "efficientnet": {"mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "channel_order": "RGB"},
}


@dataclass(frozen=True, kw_only=True)
class ImageOptions:
    """Preprocessing and answer options shared by every image-classifier archive kind
    (``archive resnet``, ``archive onnx --synset``, the default model)."""

    preprocess: str = "imagenet"
    resize: Optional[int] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    channel_order: Optional[str] = None
    interpolation: str = "bilinear"
    topk: int = 5
    force: bool = False
    description: Optional[str] = None
    #: ``quantize.QuantizeOptions`` for an int8 archive (``--quantize int8``), None for fp32.
    quantize: Optional[object] = None


def check_name(name):
    if not name or not MODEL_NAME_PATTERN.match(name):
        raise InvalidInput("model name %r is not allowed by MMS: use letters, digits, '_', '-' and '.', "
                           "starting with a letter or digit" % name)
    return name


def check_inside_folder(path, option):
    """Refuse an input that resolves outside its own folder (a symlink out of the model folder).

    ``path`` is the file as given; its folder is the one the name sits in. A
    symlink to a sibling file is fine; one to ``/etc/shadow`` or ``../other`` is
    not, whether the file itself or a link in its own name resolves away.
    Returns the resolved path.
    """
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    target = os.path.realpath(path)
    if os.path.commonpath([folder, target]) != folder:
        raise InvalidInput("%s %s resolves to %s, outside its folder %s (a symlink?): refusing to follow it; "
                           "copy the file into the model folder instead" % (option, path, target, folder))
    return target


def output_path(export_path, name, force):
    """Where the archive goes; refuses to overwrite without ``force`` before any work."""
    folder = export_path or os.getcwd()
    if not os.path.isdir(folder):
        raise InvalidInput("--export-path %s is not a folder: create it first" % folder)
    path = os.path.join(folder, name + ".mar")
    if os.path.exists(path) and not force:
        raise OutputExists("%s already exists: pass --force to overwrite it" % path)
    return path


def parse_shape(text):
    """``"1,3,224,224"`` -> ``[1, 3, 224, 224]`` (4 positive integers, NCHW)."""
    try:
        shape = [int(x) for x in str(text).split(",")]
    except ValueError:
        raise InvalidInput("--input-shape %r: give four integers N,C,H,W such as 1,3,224,224" % text)
    if len(shape) != 4 or min(shape) < 1 or shape[1] != 3:
        raise InvalidInput("--input-shape %r: give N,3,H,W with positive sizes, e.g. 1,3,224,224" % text)
    return shape


INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")


def preprocess_spec(shape, preset="imagenet", resize=None, mean=None, std=None, channel_order=None,
                    interpolation="bilinear"):
    """The preprocessing the handler applies, stored in the archive's signature."""
    if preset not in PREPROCESS_PRESETS:
        raise InvalidInput("--preprocess %r: choose one of %s" % (preset, ", ".join(PREPROCESS_PRESETS)))
    spec = dict(PREPROCESS_PRESETS[preset])
    height, width = shape[2], shape[3]
    spec.update({"height": height, "width": width,
                 "resize": int(resize) if resize is not None else round(min(height, width) * 256 / 224)})
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            values = [float(v) for v in value]
            if len(values) != 3:
                raise InvalidInput("--%s needs three numbers, one per channel" % key)
            spec[key] = values
    if any(s == 0 for s in spec["std"]):
        raise InvalidInput("--std must not contain 0")
    if channel_order is not None:
        if channel_order.upper() not in ("RGB", "BGR"):
            raise InvalidInput("--channel-order must be RGB or BGR")
        spec["channel_order"] = channel_order.upper()
    if interpolation not in INTERPOLATIONS:
        raise InvalidInput("--interpolation %r: choose one of %s" % (interpolation, ", ".join(INTERPOLATIONS)))
    spec["interpolation"] = interpolation
    return spec


def read_synset(path, classes):
    """Read and check a synset file: one non-empty line per class."""
    try:
        text = read_regular(path).decode("utf-8")
        lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    except FileNotFoundError:
        raise InvalidInput("synset file %s does not exist" % path)
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInput("synset file %s cannot be read as UTF-8 text: %s" % (path, err))
    if classes is not None and len(lines) != classes:
        raise InvalidInput("synset file %s has %d labels but the model has %d classes: give one label per "
                           "line, in class order" % (path, len(lines), classes))
    return lines


def handler_sources(folder=None):
    """{archive name: bytes} of the handler package, read from ``folder`` (default: the
    installed mmsctl.handlers); only regular ``.py`` files, nothing else is opened."""
    if folder is None:
        from mmsctl import handlers
        folder = os.path.dirname(handlers.__file__)
    files = {}
    for name in regular_files(folder):  # never opens a pipe or socket left in the folder
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as handle:
                files["%s/%s" % (HANDLER_PACKAGE, name)] = handle.read()
    return files


#: ``model.modelVersion``: TorchServe registers every archive under a version (it assumes "1.0" when absent).
MODEL_VERSION = "1.0"
#: ``createdOn`` when $SOURCE_DATE_EPOCH is unset: the zip entries' own fixed date, so archives stay byte-identical.
FIXED_CREATED_ON = "01/01/1980 00:00:00"


def created_on(environ=None):
    """``createdOn`` in torch-model-archiver's format (day/month/year): from ``$SOURCE_DATE_EPOCH`` (UTC)
    when set (reproducible builds), else a constant; never the clock.

    >>> created_on({}), created_on({"SOURCE_DATE_EPOCH": "1700000000"})
    ('01/01/1980 00:00:00', '14/11/2023 22:13:20')
    """
    environ = os.environ if environ is None else environ
    epoch = (environ.get("SOURCE_DATE_EPOCH") or "").strip()
    if not epoch:
        return FIXED_CREATED_ON
    try:
        moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise InvalidInput("SOURCE_DATE_EPOCH=%r is not a number of seconds since 1970" % epoch)
    return moment.strftime("%d/%m/%Y %H:%M:%S")


def has_current_handlers(archive):
    """Whether ``archive`` carries this mmsctl's handler code; False for an archive built by another
    version (whoever reuses an archive rebuilds it then) or for a file that is not a readable archive."""
    try:
        with mar.open_mar(archive) as opened:
            names = set(opened.namelist())
            return all(name in names and opened.read(name) == body for name, body in handler_sources().items())
    except (MmsctlError, OSError):
        return False


def manifest(name, task, engine_name, engine_version=None, description=None, environ=None):
    """MAR-INF/MANIFEST.json in MMS's schema (as model-archiver 1.0 writes it), plus what TorchServe's
    (torch-model-archiver 0.12) adds: ``model.modelVersion``, ``archiverVersion`` and ``createdOn``.
    MMS 1.1.11 reads the last two into its own Manifest and ignores ``modelVersion``; TorchServe ignores
    MMS's ``engine`` and ``*Version`` fields."""
    doc = {
        "runtime": "python",
        "model": {
            "modelName": name,
            "handler": "%s.%s" % (HANDLER_PACKAGE, HANDLER_MODULES[task]),
            "modelVersion": MODEL_VERSION,
        },
        "modelServerVersion": "1.0",
        "implementationVersion": "1.0",
        "specificationVersion": "1.0",
        "archiverVersion": "mmsctl-%s" % __version__,
        "createdOn": created_on(environ),
    }
    if description:
        doc["model"]["description"] = description
    if engine_name == "mxnet":  # the only engine MMS's manifest schema names
        doc["engine"] = {"engineName": "MXNet"}
        if engine_version:
            doc["engine"]["engineVersion"] = engine_version
    return doc


def with_engines(signature, engines, tolerance):
    """A format-2 signature offering ``engines`` (most preferred first) in place of the one engine of ``signature``.

    >>> with_engines({"format": SIGNATURE_FORMAT, "engine": {"name": "onnxruntime"}, "task": "t"},
    ...              [{"name": "onnxruntime"}, {"name": "mxnet"}], 1e-4)["engines"][1]
    {'name': 'mxnet'}
    """
    several = {key: value for key, value in signature.items() if key != "engine"}
    several.update({"format": SEVERAL_ENGINES_FORMAT, "engines": list(engines), "engines_agree_within": tolerance})
    return several


def signature_engines(signature):
    """The engine entries of a signature of either format, most preferred first."""
    return list(signature.get("engines") or ([signature["engine"]] if signature.get("engine") else []))


def assemble(path, name, signature, files, force=False, description=None):
    """Write the archive: model ``files`` ({name: bytes}), signature, handlers, manifest."""
    task = signature["task"]
    engines = signature_engines(signature)
    # The manifest names MXNet whenever the archive can run on it (the only engine MMS's schema knows).
    main = next((engine for engine in engines if engine["name"] == "mxnet"), engines[0])
    entries = dict(files)
    entries.update(handler_sources())
    entries[SIGNATURE_FILE] = json.dumps(signature, indent=2, sort_keys=True).encode() + b"\n"
    entries[mar.MANIFEST_PATH] = json.dumps(
        manifest(name, task, main["name"], main.get("version"), description),
        indent=2, sort_keys=True).encode() + b"\n"
    return mar.write_mar(path, entries, force=force)
