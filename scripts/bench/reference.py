"""Reference archives the benchmarks measure against, built without mmsctl's handlers.

* the **floor** (``reference_handlers/noop_service.py``): a handler that answers a
  fixed top-5-sized JSON without reading the body; registered on the server under
  test, its round trip is what MMS itself costs per request;
* the **docs-style handler** (``reference_handlers/docs_service.py``): what a user
  writes from MMS's custom-service docs (Module API, PIL full decode), on the MXNet
  checkpoint of an mmsctl archive, packed by the stock ``model-archiver`` tool when
  the environment has it.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from mmsctl.archives import mar
from mmsctl.handlers.contract import MANIFEST_PATH, SIGNATURE_FILE

from mmsctl.errors import ManagementError, UsageError
from mmsctl.management import ManagementClient

from .load import HttpSender, run_phase
from .stats import summarize

HERE = os.path.dirname(os.path.abspath(__file__))
HANDLERS_DIR = os.path.join(HERE, "reference_handlers")
NOOP_SOURCE = os.path.join(HANDLERS_DIR, "noop_service.py")
DOCS_SOURCE = os.path.join(HANDLERS_DIR, "docs_service.py")
#: model name of the floor on a server, and its folder in the model store
FLOOR_MODEL = "mmsctl-floor"
FLOOR_ENTRY = os.path.join(".mmsctl-unpacked", "mmsctl-floor")


def _manifest(name, handler, description):
    return {"runtime": "python", "model": {"modelName": name, "handler": handler, "description": description},
            "modelServerVersion": "1.0", "implementationVersion": "1.0", "specificationVersion": "1.0"}


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def write_floor(model_store):
    """Write the floor model as a folder of ``model_store`` (MMS serves a folder in place);
    returns its entry name relative to the store, or None when the store is not writable."""
    if not os.path.isdir(model_store) or not os.access(model_store, os.W_OK):
        return None
    target = os.path.join(model_store, FLOOR_ENTRY)
    manifest = os.path.join(target, *MANIFEST_PATH.split("/"))
    os.makedirs(os.path.dirname(manifest), exist_ok=True)
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(_manifest(FLOOR_MODEL, "noop_service:handle", "MMS floor: answers without reading the body"),
                  handle, indent=2)
    shutil.copyfile(NOOP_SOURCE, os.path.join(target, "noop_service.py"))
    return FLOOR_ENTRY


def read_archive(archive):
    """(manifest, signature, {name: bytes} of the MXNet checkpoint and synset) of an mmsctl archive."""
    with mar.open_mar(archive) as handle:
        manifest = mar.read_manifest(handle)
        names = set(handle.namelist())
        if SIGNATURE_FILE not in names:
            raise UsageError("%s has no %s: not an mmsctl archive" % (archive, SIGNATURE_FILE))
        signature = json.loads(handle.read(SIGNATURE_FILE))
        engines = signature.get("engines") or [signature.get("engine") or {}]
        mxnet = next((engine for engine in engines if engine.get("name") == "mxnet"), None)
        if mxnet is None:
            raise UsageError("%s has no MXNet checkpoint (engines: %s): the docs-style handler runs MXNet"
                             % (archive, ", ".join(e.get("name", "?") for e in engines)))
        files = {"model-symbol.json": handle.read(mxnet["symbol"]), "model-0000.params": handle.read(mxnet["params"]),
                 "synset.txt": handle.read((signature.get("postprocess") or {}).get("synset", "synset.txt"))}
    return manifest, signature, files


def docs_config(signature):
    """The numbers the docs-style handler needs, from the archive's signature.

    >>> docs_config({"inputs": [{"name": "data", "shape": [1, 3, 224, 224]}], "preprocess": {"height": 224,
    ...     "width": 224, "resize": 256, "mean": [1, 2, 3], "std": [4, 5, 6]}, "postprocess": {}})["resize"]
    256
    """
    spec = signature["preprocess"]
    return {"input_name": signature["inputs"][0]["name"], "height": int(spec["height"]), "width": int(spec["width"]),
            "resize": max(int(spec.get("resize") or 0), int(spec["height"]), int(spec["width"])),
            "mean": list(spec.get("mean", (0, 0, 0))), "std": list(spec.get("std", (1, 1, 1))),
            "interpolation": spec.get("interpolation", "bilinear"),
            "apply_softmax": bool((signature.get("postprocess") or {}).get("apply_softmax", True))}


def model_archiver():
    """The stock ``model-archiver`` beside this Python, or on PATH; None when absent."""
    beside = os.path.join(os.path.dirname(sys.executable), "model-archiver")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which("model-archiver")


def build_docs_archive(archive, export_path, name, force=True, tool=None):
    """Archive the docs-style handler on ``archive``'s MXNet weights as ``export_path/name.mar``.

    Returns (path, how it was packed). The handler reads the whole image with PIL
    (no reduced-scale decode) and binds a Module, as MMS's docs show.
    """
    _, signature, files = read_archive(archive)
    tool = model_archiver() if tool is None else tool
    path = os.path.join(export_path, name + ".mar")
    with tempfile.TemporaryDirectory(prefix="mmsctl-docs-handler-") as tmp:
        folder = os.path.join(tmp, name)
        os.makedirs(folder)
        for entry, data in files.items():
            with open(os.path.join(folder, entry), "wb") as handle:
                handle.write(data)
        with open(os.path.join(folder, "docs_config.json"), "w", encoding="utf-8") as handle:
            json.dump(docs_config(signature), handle, indent=2)
        shutil.copyfile(DOCS_SOURCE, os.path.join(folder, "docs_service.py"))
        if tool:
            command = [tool, "--model-name", name, "--model-path", folder, "--handler", "docs_service:handle",
                       "--runtime", "python", "--export-path", os.path.abspath(export_path)]
            if force:
                command.append("--force")
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0 or not os.path.isfile(path):
                last = ((done.stderr or done.stdout or "").strip().splitlines() or ["no output"])[-1]
                raise UsageError("model-archiver failed (status %d): %s" % (done.returncode, last))
            return path, "model-archiver (%s)" % tool
        entries = {entry: _read(os.path.join(folder, entry)) for entry in os.listdir(folder)}
        entries[MANIFEST_PATH] = json.dumps(_manifest(
            name, "docs_service:handle", "docs-style reference handler (Module API, PIL)")).encode()
        mar.write_mar(path, entries, force=force)
        return path, "mmsctl's plain .mar writer (model-archiver is not installed)"


@contextlib.contextmanager
def floor_registered(management_url, model_store, timeout=60.0):
    """The floor model registered on a running server while the block runs (its name), unregistered after.
    Raises UsageError saying why when it cannot be registered."""
    entry = write_floor(model_store)
    if entry is None:
        raise UsageError("the model store %s is not writable: the floor model could not be placed there"
                         % model_store)
    client = ManagementClient(management_url, timeout=timeout)
    try:
        client.register(entry, name=FLOOR_MODEL, workers=1, synchronous=True)
    except ManagementError as err:
        raise UsageError("registering the floor model failed: %s" % err)
    try:
        yield FLOOR_MODEL
    finally:
        try:
            client.unregister(FLOOR_MODEL)
        except ManagementError:
            pass


def measure_floor(management_url, inference_url, model_store, body, requests=20, warmup=3, timeout=60.0):
    """Register the floor on a running server, time ``requests`` round trips with ``body`` at
    concurrency 1, unregister it. Returns ``{"p50_ms", "requests", "ok", "body_bytes"}``, or
    ``{"p50_ms": None, "why": ...}`` when it could not be measured."""
    try:
        with floor_registered(management_url, model_store, timeout) as name:
            sender = HttpSender(inference_url, name, body, timeout=timeout)
            try:
                for _ in range(warmup):
                    sender()
                phase = run_phase([sender], requests=requests, label="floor")
            finally:
                sender.close()
    except UsageError as err:
        return {"p50_ms": None, "why": str(err)}
    figures = summarize(phase.samples, phase.elapsed_s)
    return {"p50_ms": figures["latency_ms"]["p50"], "requests": figures["requests"], "ok": figures["ok"],
            "errors": figures["errors"], "body_bytes": len(body)}


def add_floor(report, config, management_url, inference_url, model_store, requests=20, warmup=3):
    """Measure the floor on a running server with the report's input as the body; keep it under ``config``."""
    with open(report["input"]["path"], "rb") as handle:
        body = handle.read()
    report.setdefault("floor", {})[config] = measure_floor(management_url, inference_url, model_store, body,
                                                           requests=requests, warmup=warmup)
    return report
