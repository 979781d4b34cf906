"""Reading and writing ``.mar`` files (zip archives with ``MAR-INF/MANIFEST.json``).

Writing is deterministic: entries sorted, fixed timestamps and permissions, so the
same inputs give byte-identical archives. Large binary files are stored
uncompressed (MMS unpacks every archive at each start; deflated weights cost
seconds and save little). Reading refuses entries that would escape the folder.
"""
import json
import os
import posixpath
import stat
import tempfile
import zipfile

from mmsctl.files import open_regular
from mmsctl.handlers.contract import MANIFEST_PATH, SIGNATURE_FILE

from . import batching
from .errors import InvalidInput, OutputExists, UnsafeArchive

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_COMPRESS_SUFFIXES = (".json", ".txt", ".py", ".md")


def check_entry_name(name):
    """Refuse absolute paths, drive letters, backslashes and ``..`` components.

    >>> check_entry_name("model/x.params")
    'model/x.params'
    """
    if not name or name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive("archive entry %r has an absolute or Windows path: refusing to unpack it" % name)
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or "/../" in "/" + name + "/":
        raise UnsafeArchive("archive entry %r escapes the folder with '..': refusing to unpack it" % name)
    return name


def check_entry_mode(info):
    """Refuse symlink entries (Unix mode S_IFLNK in the high 16 bits of ``external_attr``).

    Python's zipfile would write the link target as a plain file, but other
    unpackers (``unzip``, MMS's own) may create the link and then write through it.
    """
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):  # whatever create_system claims
        raise UnsafeArchive("archive entry %r is a symbolic link: refusing to unpack it" % info.filename)
    return info


def write_mar(path, entries, force=False):
    """Write ``entries`` ({archive name: bytes}) to ``path`` atomically.

    The archive is written to a temporary file next to ``path`` and renamed over
    it only when complete.
    """
    if os.path.exists(path) and not force:
        raise OutputExists("%s already exists: pass --force to overwrite it, or choose another "
                           "--export-path or --name" % path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InvalidInput("export path %s does not exist: create it first" % folder)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for name in sorted(entries):
                check_entry_name(name)
                info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
                info.external_attr = 0o644 << 16
                info.create_system = 3
                if name.endswith(_COMPRESS_SUFFIXES):
                    info.compress_type = zipfile.ZIP_DEFLATED
                else:
                    info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, entries[name])
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def open_mar(path):
    """Open an archive for reading after checking every entry name."""
    try:
        handle = open_regular(path)
    except FileNotFoundError:
        raise InvalidInput("archive %s does not exist" % path)
    except OSError as err:
        raise InvalidInput("archive %s %s" % (path, err.strerror))
    try:
        archive = zipfile.ZipFile(handle)
    except zipfile.BadZipFile:
        handle.close()
        raise InvalidInput("%s is not a .mar (zip) archive" % path)
    try:
        for info in archive.infolist():
            check_entry_name(info.filename)
            check_entry_mode(info)
    except UnsafeArchive:
        archive.close()
        raise
    return archive


def read_manifest(archive):
    try:
        return json.loads(archive.read(MANIFEST_PATH))
    except KeyError:
        raise InvalidInput("%s has no %s: not an MMS archive" % (archive.filename, MANIFEST_PATH))
    except ValueError as err:
        raise InvalidInput("%s: %s is not valid JSON: %s" % (archive.filename, MANIFEST_PATH, err))


def describe(path):
    """Manifest and entries of an archive: what ``mmsctl archive inspect`` prints."""
    with open_mar(path) as archive:
        manifest = read_manifest(archive)
        signature = None
        if SIGNATURE_FILE in archive.namelist():
            signature = json.loads(archive.read(SIGNATURE_FILE))
        entries = [{"name": info.filename, "size": info.file_size, "compressed": info.compress_size,
                    "stored": info.compress_type == zipfile.ZIP_STORED} for info in archive.infolist()]
    return {"path": os.path.abspath(path), "manifest": manifest, "signature": signature, "entries": entries}


def engine_lines(signature):
    """One line per engine of a signature (either format), most preferred first.

    >>> engine_lines({"engines": [{"name": "onnxruntime", "version": "1.20.1", "model": "model.onnx"},
    ...                           {"name": "mxnet", "version": "1.9.1", "symbol": "s.json", "params": "p.params"}]})
    ['1. onnxruntime 1.20.1: model.onnx', '2. mxnet 1.9.1: s.json, p.params']
    """
    signature = signature or {}
    engines = signature.get("engines") or ([signature["engine"]] if signature.get("engine") else [])
    if not engines:
        return ["none named (no signature.json: not an mmsctl archive)"]
    lines = []
    for rank, engine in enumerate(engines, 1):
        files = [engine[key] for key in ("model", "symbol", "params") if engine.get(key)]
        lines.append("%d. %s%s%s" % (rank, engine.get("name"), " " + engine["version"] if engine.get("version") else "",
                                     ": " + ", ".join(files) if files else ""))
    return lines


def server_lines(manifest):
    """How each server reads the manifest, for ``archive inspect``: MMS 1.1.11 and TorchServe 0.12.

    >>> server_lines({"runtime": "python", "model": {"modelName": "m", "handler": "h.x", "modelVersion": "1.0"},
    ...               "engine": {"engineName": "MXNet"}, "archiverVersion": "mmsctl-0.1.0",
    ...               "createdOn": "01/01/1980 00:00:00"})  # doctest: +NORMALIZE_WHITESPACE
    ['MMS 1.1.11: model m, handler h.x, runtime python, engine MXNet',
     'TorchServe 0.12: model m version 1.0, handler h.x, runtime python, archiver mmsctl-0.1.0,
      created 01/01/1980 00:00:00']
    >>> server_lines({"model": {"modelName": "m", "handler": "h.x"}})[1]
    'TorchServe 0.12: model m version 1.0 (assumed: no modelVersion), handler h.x, runtime python (assumed)'
    """
    model = manifest.get("model") or {}
    name, handler = model.get("modelName", "?"), model.get("handler", "?")
    runtime = manifest.get("runtime") or "python (assumed)"
    engine = (manifest.get("engine") or {}).get("engineName")
    mms = "MMS 1.1.11: model %s, handler %s, runtime %s, engine %s" % (
        name, handler, runtime, engine or "none named (MMS needs none)")
    version = model.get("modelVersion")
    torchserve = "TorchServe 0.12: model %s version %s, handler %s, runtime %s" % (
        name, version or "1.0 (assumed: no modelVersion)", handler, runtime)
    if manifest.get("archiverVersion"):
        torchserve += ", archiver %s" % manifest["archiverVersion"]
    if manifest.get("createdOn"):
        torchserve += ", created %s" % manifest["createdOn"]
    return [mms, torchserve]


def model_line(signature):
    """What the archive serves and how, for ``archive inspect``.

    >>> model_line({"task": "tensor", "batching": {"batchable": False, "reason": "input 's' is a scalar"}})[:87]
    "tensor model (Open Inference Protocol v2), not batchable, because input 's' is a scalar"
    >>> model_line({"task": "image-classification"})
    'image classifier, batchable on the first axis (requests are cut into rows and batched)'
    """
    if not signature:
        return "not an mmsctl archive (no signature.json)"
    task = signature.get("task")
    kind = {"tensor": "tensor model (Open Inference Protocol v2)", "image-classification": "image classifier"}.get(
        task, "task %r" % task)
    return "%s, %s" % (kind, batching.describe(signature.get("batching")))


def quantization_lines(signature):
    """The int8 record of a ``--quantize`` archive, for ``archive inspect`` (``fp32`` when none).

    >>> quantization_lines({})
    ['fp32 (not quantized)']
    >>> quantization_lines({"quantization": {"method": "int8 static QDQ", "top1_agreement": 0.883,
    ...     "top5_overlap": 4.45, "min_agreement": 0.85, "calibration": {"inputs": 5, "source": "photos"},
    ...     "validation": {"inputs": 120, "source": "views"}, "fp32_sha256": "ab" * 32}})[1]
    'top-1 agreement with fp32 0.883 (minimum 0.85), mean top-5 overlap 4.45'
    """
    record = (signature or {}).get("quantization")
    if not record:
        return ["fp32 (not quantized)"]
    lines = [record.get("method", "?"),
             "top-1 agreement with fp32 %s (minimum %s), mean top-5 overlap %s"
             % (record.get("top1_agreement"), record.get("min_agreement"), record.get("top5_overlap"))]
    for part in ("calibration", "validation"):
        entry = record.get(part) or {}
        lines.append("%s: %s inputs, %s" % (part, entry.get("inputs", "?"), entry.get("source", "?")))
    lines.append("fp32 model sha256 %s" % record.get("fp32_sha256", "?"))
    return lines


def extract(path, dest):
    """Unpack an archive into ``dest`` after checking that no entry escapes it."""
    root = os.path.realpath(dest)
    with open_mar(path) as archive:
        for info in archive.infolist():
            target = os.path.realpath(os.path.join(root, info.filename))
            if os.path.commonpath([root, target]) != root:
                raise UnsafeArchive("archive entry %r would be written outside %s" % (info.filename, dest))
        archive.extractall(root)
    return root
