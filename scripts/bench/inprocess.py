"""The in-process limit: an archive's own handler code, called without a server.

The archive is extracted safely (``mmsctl.archives.mar.extract``) and its handler
package (``mmsctl_handlers``, the code MMS would run, not the installed
``mmsctl.handlers``) is imported from there, the way MMS's model loader does:
the manifest's ``model.handler`` names the module; a ``module:function`` entry
point or the module's one class. ``initialize`` gets a small context object, and
every call is ``handle([{"body": BYTES}], context)`` with the same body bytes a
server request carries.

Each pipeline is a fresh ``python -m mmsctl.inprocess`` process with the thread
environment of the profile being compared (OMP_NUM_THREADS is read once, when
MXNet loads), so N pipelines side by side are what N server workers could do at
best. The parent talks to them in JSON lines: each reports ``ready`` (with its
import, initialize and first-request times), waits for ``go``, runs its share of
the load, and reports ``done`` with its samples.
"""
import argparse
import importlib
import importlib.util
import inspect
import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass

import tempfile

from mmsctl.archives import mar
from mmsctl.errors import UsageError
from mmsctl.files import read_json
from mmsctl.handlers.contract import MANIFEST_PATH, SIGNATURE_FILE

from .errors import BenchError
from .load import PhaseResult
from .report import first_request_entry, make_row
from .stats import summarize

#: signature "engine.name" -> the framework module whose import is timed on its own
FRAMEWORK_MODULES = {"mxnet": "mxnet", "onnxruntime": "onnxruntime"}
PROGRESS_INTERVAL_S = 1.0


class InProcessError(BenchError):
    """The archive's handler could not be loaded or run in-process."""


# -- the child: one pipeline ---------------------------------------------------------------
class BenchContext:
    """The part of ``mms.context.Context`` a handler sees, for one raw-body request at a time."""

    def __init__(self, model_name, model_dir, manifest, content_type="application/octet-stream", batch_size=1):
        self.model_name = model_name
        self.manifest = manifest
        self.system_properties = {"model_dir": model_dir, "gpu_id": None, "batch_size": batch_size,
                                  "server_name": "mmsctl-bench", "server_version": "in-process"}
        self.request_ids = {0: "bench"}
        self.metrics = None
        self._headers = {"body": {"content-type": content_type}}
        self.statuses = {}

    def get_all_request_header(self, idx):
        return dict(self._headers)

    def get_request_header(self, idx, key):
        return self._headers.get(key)

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses[idx] = code

    def set_response_content_type(self, idx, value):
        pass

    def status(self, idx=0):
        """The status a server would have answered (200 when the handler set none)."""
        return self.statuses.pop(idx, 200)


def read_manifest(model_dir):
    return read_json(os.path.join(model_dir, MANIFEST_PATH), InProcessError, missing="not an MMS archive")


def read_signature(model_dir):
    try:
        return read_json(os.path.join(model_dir, SIGNATURE_FILE), InProcessError)
    except InProcessError:
        return {}


def framework_of(signature, find_spec=importlib.util.find_spec):
    """The framework module the archive's handler will import: its one engine's, or for an archive
    with several (``engines``) the first one installed, which is the worker's choice on a CPU.

    >>> several = {"engines": [{"name": "onnxruntime"}, {"name": "mxnet"}]}
    >>> framework_of(several, find_spec=lambda module: module == "mxnet" or None)
    'mxnet'
    """
    engines = signature.get("engines") or [signature.get("engine") or {}]
    modules = [FRAMEWORK_MODULES.get(engine.get("name")) for engine in engines]
    installed = [module for module in modules if module and find_spec(module) is not None]
    return installed[0] if installed else (modules[0] if len(modules) == 1 else None)


def handler_target(manifest):
    """(module name, function name or None) from the manifest's ``model.handler``.

    >>> handler_target({"model": {"handler": "mmsctl_handlers.image_classifier"}})
    ('mmsctl_handlers.image_classifier', None)
    >>> handler_target({"model": {"handler": "service.py:handle"}})
    ('service', 'handle')
    """
    handler = (manifest.get("model") or {}).get("handler")
    if not handler:
        raise InProcessError("the archive's manifest names no model.handler")
    module_name, _, function = handler.partition(":")
    if module_name.endswith(".py"):
        module_name = module_name[:-3]
    return module_name.split("/")[-1], function or None


def import_handler(model_dir, module_name):
    """Import the archive's handler module from ``model_dir`` (never an installed copy)."""
    root = os.path.realpath(model_dir)
    sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InProcessError("cannot import handler %s from %s: %s" % (module_name, model_dir, err))
    where = os.path.realpath(getattr(module, "__file__", "") or "")
    if os.path.commonpath([root, where]) != root:
        raise InProcessError("handler %s was imported from %s, not from the archive in %s"
                             % (module_name, where, model_dir))
    return module


def entry_point(module, function_name=None):
    """(handle, initialize or None) as MMS's loader finds them: a function, or the module's one class."""
    if function_name is None and hasattr(module, "handle"):
        function_name = "handle"
    if function_name is not None:
        function = getattr(module, function_name, None)
        if function is None:
            raise InProcessError("handler module %s has no function %s" % (module.__name__, function_name))
        return function, None
    classes = [member for _, member in inspect.getmembers(module, inspect.isclass)
               if member.__module__ == module.__name__]
    if len(classes) != 1:
        raise InProcessError("handler module %s defines %d classes; MMS needs exactly one (or a handle function)"
                             % (module.__name__, len(classes)))
    service = classes[0]()
    return service.handle, service.initialize


def _emit(channel, **event):
    channel.write(json.dumps(event) + "\n")
    channel.flush()


def pipeline_main(argv=None):
    """``python -m mmsctl.inprocess``: one pipeline, driven over stdin/stdout."""
    parser = argparse.ArgumentParser(prog="python -m mmsctl.inprocess")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--model-name")
    args = parser.parse_args(argv)
    # The protocol keeps the real stdout; anything else written to fd 1 (framework
    # banners, prints in handler code) goes to stderr instead.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        return _run_pipeline(args, channel)
    except BaseException as err:  # report any failure (ModelLoadFailure is a BaseException) to the parent
        _emit(channel, event="error", message="%s: %s" % (type(err).__name__, err))
        return 1


def _run_pipeline(args, channel):
    with open(args.input, "rb") as handle:
        body = handle.read()
    model_dir = os.path.realpath(args.model_dir)
    manifest = read_manifest(model_dir)
    name = args.model_name or (manifest.get("model") or {}).get("modelName") or os.path.basename(model_dir)
    module_name, function_name = handler_target(manifest)
    started = time.perf_counter()
    module = import_handler(model_dir, module_name)
    imported = time.perf_counter()
    framework = framework_of(read_signature(model_dir))
    if framework:
        importlib.import_module(framework)
    framework_done = time.perf_counter()
    handle, initialize = entry_point(module, function_name)
    context = BenchContext(name, model_dir, manifest)
    if initialize is not None:
        initialize(context)
    else:
        handle(None, context)
    initialized = time.perf_counter()

    def call():
        began = time.perf_counter()
        handle([{"body": body}], context)
        return (time.perf_counter() - began) * 1000.0, context.status()

    first_ms, first_status = call()
    first_answer_at = time.monotonic()
    for _ in range(args.warmup):
        call()
    _emit(channel, event="ready", import_handlers_s=imported - started, import_framework_s=framework_done - imported,
          framework=framework, initialize_s=initialized - framework_done, first_request_ms=first_ms,
          first_status=first_status, first_answer_at=first_answer_at, pid=os.getpid())
    if sys.stdin.readline().strip() != "go":
        return 0
    samples = []
    cpu0 = time.process_time()
    start = time.monotonic()
    stop = start + args.duration if args.duration is not None else None
    last_report = time.perf_counter()
    while (args.requests is None or len(samples) < args.requests) and (stop is None or time.monotonic() < stop):
        samples.append(call())
        if time.perf_counter() - last_report >= PROGRESS_INTERVAL_S:
            last_report = time.perf_counter()
            _emit(channel, event="progress", done=len(samples))
    end = time.monotonic()
    _emit(channel, event="done", samples=samples, start=start, end=end, cpu_s=time.process_time() - cpu0)
    return 0


# -- the parent ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """One in-process configuration: ``pipelines`` processes of ``threads`` OpenMP threads."""

    concurrency: int
    pipelines: int
    threads: int


def plan_levels(levels, vcpus, workers=None, threads=None):
    """In-process configurations for the concurrency ``levels``.

    Compared with a server profile (``workers`` x ``threads``): min(level, workers)
    pipelines of that many threads, since the server runs at most ``workers``
    requests at once. Alone: ``level`` pipelines sharing the vCPUs.

    >>> [(l.pipelines, l.threads) for l in plan_levels([1, 2], 2, workers=1, threads=2)]
    [(1, 2), (1, 2)]
    >>> [(l.pipelines, l.threads) for l in plan_levels([1, 2, 4], 2)]
    [(1, 2), (2, 1), (4, 1)]
    """
    plan = []
    for level in levels:
        if workers is not None:
            plan.append(Level(level, min(level, workers), threads or 1))
        else:
            plan.append(Level(level, level, threads or max(1, vcpus // level)))
    return plan


def split_requests(total, pipelines):
    """Share a request count among pipelines as evenly as possible.

    >>> split_requests(10, 3)
    [4, 3, 3]
    """
    return [total // pipelines + (1 if i < total % pipelines else 0) for i in range(pipelines)]


def pipeline_environment(base, profile_environment, threads):
    """The environment of a pipeline: the profile's thread settings, OMP_NUM_THREADS = ``threads``."""
    env = dict(base)
    env.update(profile_environment or {})
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def model_name_of(archive):
    """The model name in an archive's manifest (its file name without ``.mar`` when it has none)."""
    with mar.open_mar(archive) as handle:
        manifest = mar.read_manifest(handle)
    return (manifest.get("model") or {}).get("modelName") or os.path.splitext(os.path.basename(archive))[0]


def extract_archive(archive, dest):
    """Unpack the archive safely; (model folder, seconds)."""
    started = time.perf_counter()
    model_dir = mar.extract(archive, dest)
    return model_dir, time.perf_counter() - started


class _Child:
    def __init__(self, process, log_path):
        self.process = process
        self.log_path = log_path
        self.buffer = b""
        self.events = []
        self.done = 0
        self.closed = False

    def feed(self, data):
        if not data:
            self.closed = True
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                event = json.loads(line)
                if event.get("event") == "progress":
                    self.done = event["done"]
                else:
                    self.events.append(event)

    def log_tail(self, lines=12):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "\n".join(handle.read().splitlines()[-lines:])
        except OSError:
            return ""


def _wait_for(children, kind, deadline, progress=None, label="", total=None, started=None):
    """Read events until every child has sent ``kind``; raise with its log if one fails."""
    selector = selectors.DefaultSelector()
    for child in children:
        os.set_blocking(child.process.stdout.fileno(), False)
        selector.register(child.process.stdout, selectors.EVENT_READ, child)
    try:
        while True:
            for child in children:
                for event in child.events:
                    if event.get("event") == "error":
                        raise InProcessError("in-process pipeline (pid %d) failed: %s; its log %s:\n%s" % (
                            child.process.pid, event.get("message"), child.log_path, child.log_tail()))
                if child.closed and not any(e.get("event") == kind for e in child.events):
                    child.process.wait(timeout=10)
                    raise InProcessError("in-process pipeline (pid %d) exited with status %s before '%s'; "
                                         "its log %s:\n%s" % (child.process.pid, child.process.returncode, kind,
                                                              child.log_path, child.log_tail()))
            if all(any(e.get("event") == kind for e in child.events) for child in children):
                return [next(e for e in child.events if e.get("event") == kind) for child in children]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InProcessError("in-process pipelines did not report '%s' in time; logs in %s"
                                     % (kind, os.path.dirname(children[0].log_path)))
            for key, _ in selector.select(timeout=min(0.5, remaining)):
                try:
                    data = os.read(key.fileobj.fileno(), 65536)
                except BlockingIOError:
                    continue
                key.data.feed(data)
            if progress is not None and started is not None:
                progress(label, sum(c.done for c in children), total, time.monotonic() - started)
    finally:
        selector.close()


def run_level(model_dir, input_path, pipelines, env, requests=None, duration=None, warmup=0, timeout=600.0,
              log_dir=None, label="in-process", progress=None, model_name=None):
    """Start ``pipelines`` processes, let them load, release them together, gather the samples.

    Returns (PhaseResult, the first pipeline's ``ready`` event: its cold start).
    """
    if (requests is None) == (duration is None):
        raise UsageError("give either a request count or a duration, not both")
    model_dir, input_path = os.path.abspath(model_dir), os.path.abspath(input_path)
    log_dir = os.path.abspath(log_dir or model_dir)
    os.makedirs(log_dir, exist_ok=True)
    shares = split_requests(requests, pipelines) if requests is not None else [None] * pipelines
    children = []
    try:
        for index, share in enumerate(shares):
            command = [sys.executable, "-m", "mmsctl.inprocess", "--model-dir", model_dir, "--input", input_path,
                       "--warmup", str(warmup)]
            command += ["--requests", str(share)] if share is not None else ["--duration", str(duration)]
            if model_name:
                command += ["--model-name", model_name]
            log_path = os.path.join(log_dir, "%s-%d.log" % (label.replace(" ", "_").replace("/", "_"), index))
            with open(log_path, "wb") as log:
                process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=log, cwd=log_dir)
            children.append(_Child(process, log_path))
        launched = time.monotonic()
        ready = _wait_for(children, "ready", launched + timeout)
        for event in ready:
            event["start_to_first_answer_s"] = event["first_answer_at"] - launched
        for child in children:
            child.process.stdin.write(b"go\n")
            child.process.stdin.flush()
        released = time.monotonic()
        limit = released + (duration + timeout if duration is not None else timeout)
        done = _wait_for(children, "done", limit, progress=progress, label=label,
                         total=requests, started=released)
        for child in children:
            child.process.stdin.close()
            child.process.wait(timeout=30)
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait(timeout=10)
            child.process.stdout.close()
    samples = [tuple(sample) for event in done for sample in event["samples"]]
    start = min(event["start"] for event in done)
    end = max(event["end"] for event in done)
    phase = PhaseResult(concurrency=pipelines, samples=samples, elapsed_s=end - start,
                        cpu_s=sum(event["cpu_s"] for event in done), started=start)
    return phase, ready[0]


def run_inprocess_bench(archive, input_path, load, plan, environment, report, config="in-process", log_dir=None,
                        progress=None, message=None, model_name=None):
    """Run the in-process ``plan`` and add its rows, cold start and first request to ``report``.

    Each distinct (pipelines, threads) runs once; its row lists the concurrency
    ``levels`` of the plan it stands for.
    """
    price = report["price"]["usd_per_hour"]
    with tempfile.TemporaryDirectory(prefix="mmsctl-inprocess-") as tmp:
        model_dir, extract_s = extract_archive(archive, os.path.join(tmp, "model"))
        runs = {}
        for level in plan:
            key = (level.pipelines, level.threads)
            if key in runs:
                runs[key]["levels"].append(level.concurrency)
                continue
            if message:
                message("in-process%s: %d pipeline%s x %d thread%s" % (
                    "" if config == "in-process" else " (%s)" % config, level.pipelines, "" if level.pipelines == 1 else "s", level.threads,
                    "" if level.threads == 1 else "s"))
            env = pipeline_environment(os.environ, environment, level.threads)
            label = "in-process p=%d t=%d" % (level.pipelines, level.threads)
            phase, ready = run_level(model_dir, input_path, level.pipelines, env, requests=load.requests,
                                     duration=load.duration, warmup=load.warmup, timeout=load.max_seconds,
                                     log_dir=log_dir or os.path.join(tmp, "logs"), label=label,
                                     progress=progress, model_name=model_name)
            runs[key] = {"phase": phase, "ready": ready, "levels": [level.concurrency], "level": level}
    for run in runs.values():
        level, phase = run["level"], run["phase"]
        row = make_row("in-process", summarize(phase.samples, phase.elapsed_s, price, phase.cpu_s),
                       level.pipelines, config=config, label=config, optimized_for="limit",
                       workers=level.pipelines, omp_threads=level.threads, pipelines=level.pipelines,
                       instance=report["price"]["label"])
        row["levels"] = run["levels"]
        row["client_cpu_ms_per_request"] = None  # the pipelines' CPU is the work itself, not client overhead
        row["pipeline_cpu_ms_per_request"] = (phase.cpu_s * 1000.0 / len(phase.samples)) if phase.samples else None
        report["rows"].append(row)
    first = next(iter(runs.values()))
    ready = first["ready"]
    report["cold_start"].append({
        "config": config, "kind": "in-process", "extract_s": extract_s,
        "import_handlers_s": ready["import_handlers_s"], "import_framework_s": ready["import_framework_s"],
        "initialize_s": ready["initialize_s"], "start_to_first_answer_s": ready["start_to_first_answer_s"],
        "framework": ready.get("framework"),
        "threads": first["level"].threads,
    })
    report["first_requests"].append(first_request_entry(config, "in-process", ready["first_request_ms"],
                                                        ready["first_status"], report["rows"]))
    return report


if __name__ == "__main__":
    sys.exit(pipeline_main())
