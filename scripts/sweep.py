"""``mmsctl bench sweep``: seed 002's appendix table, reproduced on this machine.

For each profile (and each server-side batch size) the sweep starts a stock
multi-model-server, sends the first request on its own, runs the same load as
``mmsctl bench``, reads the cold-start parts from MMS's logs and stops the
server. Batch size 1 starts the way ``mmsctl serve`` does (``server.start`` with
the model on the command line); other batch sizes start the server empty and
register the archive through the management API (``batch_size``,
``max_batch_delay``, the profile's workers, synchronous), since MMS 1.1.11 takes
a batch size only there. With the server stopped, the archive's own handler runs
in-process with the profile's threads. Each server (batch size 1) also times the MMS
floor, a no-op handler registered beside the model with the same body
(``mmsctl.reference``); after the last server, the independent limit
(``mmsctl.limit``: MXNet fused and onnxruntime on the archive's weights, one process,
every core) gives the report its per-request breakdown. Everything lands in one report.

Cold start is measured from launching ``multi-model-server`` to the first
answer. MMS's logs split it (wall-clock stamps, millisecond resolution):

==============  ==================================================================================
part            from -> to (log line)
==============  ==================================================================================
frontend        launch -> "Management API bind to" (launcher script + JVM)
api to register -> our POST /models (polling for the API; unknown when server.start registers)
unzip           the API is up (server.start registers then) or our POST /models -> "Model NAME loaded."
worker start    -> "Connection accepted" (the Python worker process is up)
import          -> "MXNet x.y on ..." (handler package + MXNet imports)
load            -> "model NAME ready on ..." (weights, hybridize, warm-up)
first request   -> the first answer
==============  ==================================================================================

``ready reported`` is when ``server.start`` (what ``mmsctl serve`` waits for) or
the synchronous register returned: a first request sent then waits for whatever
of the load is still running.

The last three markers are the mmsctl handlers' own log lines; a part whose
marker is missing is reported as unknown, never guessed.
"""
import datetime
import os
import random
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Optional

from mmsctl.config import profiles as profiles_mod

from . import server
from .bench import (BenchError, LoadConfig, describe_input, finish_report, first_call, new_report, read_input,
                    run_server_bench)
from .errors import UsageError
from .limit import DEFAULT_REQUESTS, add_limit
from .management import ManagementClient
from .reference import add_floor

PORT_RANGE = (20000, 32000)  # MMS 1.1.11 refuses ports from 32767 up


@dataclass(frozen=True)
class SweepConfig:
    """Options of ``mmsctl bench sweep``."""

    archive: str
    input: str
    out: str
    load: LoadConfig = field(default_factory=lambda: LoadConfig(requests=50))
    profiles: tuple = ("cpu-latency", "cpu-throughput")
    batch_sizes: tuple = (1,)
    max_batch_delay: int = 50
    vcpus: Optional[int] = None
    inprocess: bool = True
    ready_timeout: float = 300.0
    keep_server_files: bool = False
    unpacked: bool = False
    floor: bool = True


def validate(config):
    if not os.path.isfile(config.archive):
        raise UsageError("archive %s does not exist: build one with `mmsctl archive ...`" % config.archive)
    if not config.archive.endswith(".mar"):
        raise UsageError("--archive %s is not a .mar file" % config.archive)
    unknown = [p for p in config.profiles if p not in profiles_mod.PROFILES]
    if unknown or not config.profiles:
        raise UsageError("--profiles: unknown %s; choose from %s" % (", ".join(unknown) or "(none given)",
                                                                     ", ".join(profiles_mod.PROFILES)))
    if not config.batch_sizes or min(config.batch_sizes) < 1:
        raise UsageError("--batch-sizes must be positive integers")
    if config.max_batch_delay < 0:
        raise UsageError("--max-batch-delay cannot be negative")
    config.load.validate()
    return config


def free_port(taken=()):
    """A free loopback port in 20000-32000."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(*PORT_RANGE)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise BenchError("no free port found in %d-%d" % PORT_RANGE)


def model_name_of(archive):
    from mmsctl.archives import mar
    with mar.open_mar(archive) as handle:
        manifest = mar.read_manifest(handle)
    return (manifest.get("model") or {}).get("modelName") or os.path.splitext(os.path.basename(archive))[0]


def plan_cells(config, store=None):
    """(profile, batch size) for every server the sweep starts, each on fresh ports."""
    store = store or os.path.dirname(os.path.abspath(config.archive))
    cells, taken = [], set()
    for name in config.profiles:
        for batch in config.batch_sizes:
            ports = [free_port(taken), None]
            taken.add(ports[0])
            ports[1] = free_port(taken)
            taken.add(ports[1])
            profile = profiles_mod.build_profile(name, vcpus=config.vcpus, model_store=store,
                                                 inference_port=ports[0], management_port=ports[1])
            cells.append((profile, batch))
    return cells


# -- MMS logs ----------------------------------------------------------------------------------
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d),(\d{3}) \[\s*(\w+)\s*\] (\S+) (.*)$")

#: marker -> pattern of the log message (the first match after the previous marker counts)
MARKERS = (
    ("api_bound", re.compile(r"Management API bind to")),
    ("unzip_start", re.compile(r"Loading initial models")),
    ("model_registered", re.compile(r"ModelManager - Model (?P<name>\S+) loaded\.")),
    ("worker_connected", re.compile(r"Connection accepted")),
    ("framework_imported", re.compile(r"(?:MXNet|onnxruntime) \S+ on \w+\(\d+\)")),
    ("model_ready", re.compile(r"model (?P<name>\S+) ready on \S+ in [\d.]+ s")),
)


def parse_log(text):
    """[(epoch seconds, thread, message)] of the stamped lines of mms_log.log."""
    events = []
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
        events.append((time.mktime(stamp.timetuple()) + int(match.group(2)) / 1000.0, match.group(4),
                       match.group(5)))
    return events


def find_markers(events, since=None):
    """{marker: epoch seconds of its first line at or after ``since``}.

    >>> events = [(10.0, "main", "com.x.ModelServer - Management API bind to: http://127.0.0.1:1")]
    >>> find_markers(events)["api_bound"]
    10.0
    """
    found = {}
    for key, pattern in MARKERS:
        for stamp, _thread, message in events:
            if since is not None and stamp < since:
                continue
            if pattern.search(message):
                found[key] = stamp
                break
    return found


def _span(end, start):
    if end is None or start is None:
        return None
    return max(0.0, end - start)


def cold_start_parts(markers, launched, registered, first_answer, ready_reported=None):
    """The parts of serve-to-first-answer (seconds); None where a marker is missing.

    ``launched``, ``registered`` (None when the model was on the command line),
    ``first_answer`` and ``ready_reported`` (when ``server.start``/register
    returned) are epoch seconds taken here; the markers come from MMS's log.

    >>> parts = cold_start_parts({"api_bound": 11.0, "unzip_start": 11.2, "model_registered": 11.5,
    ...     "worker_connected": 11.6, "framework_imported": 13.0, "model_ready": 13.5}, 10.0, None, 13.7)
    >>> [round(parts[k], 2) for k in ("serve_to_first_answer_s", "unzip_s", "import_s", "load_s", "first_request_s")]
    [3.7, 0.3, 1.4, 0.5, 0.2]
    """
    api, unzip_start, model, worker, framework, ready = (markers.get(k) for k in (
        "api_bound", "unzip_start", "model_registered", "worker_connected", "framework_imported", "model_ready"))
    if registered is not None:
        unzip_start = registered
    elif unzip_start is None:  # registered by server.start as soon as the API answered
        unzip_start = api
    return {
        "serve_to_first_answer_s": _span(first_answer, launched),
        "ready_reported_s": _span(ready_reported, launched),
        "frontend_s": _span(api, launched),
        "api_to_register_s": _span(registered, api),
        "unzip_s": _span(model, unzip_start),
        "worker_start_s": _span(worker, model),
        "import_s": _span(framework, worker),
        "load_s": _span(ready, framework),
        "first_request_s": _span(first_answer, ready if ready is not None else ready_reported),
    }


PREDICTION_TIME = re.compile(r"PredictionTime\.Milliseconds:([\d.]+)")
JOB_TIMES = re.compile(r"Waiting time: (\d+), Backend time: (\d+)")
ACCESS = re.compile(r'"POST /predictions/\S+ HTTP/[\d.]+" (\d{3}) (\d+)\s*$')


def _median(values):
    from .bench import percentile
    return percentile(values, 50)


def request_times(metrics_text, log_text, access_text, segments=None):
    """Where a served request's time goes, from MMS's own logs (medians, ms).

    ``handler``: the handler's ``handle`` call in the worker (PredictionTime);
    ``backend``: frontend -> worker -> frontend (Job "Backend time"); ``queue``:
    MMS's "Waiting time" of a job; ``frontend``: the whole request inside the
    frontend (access log). So backend - handler is the worker protocol's share,
    frontend - backend - queue the rest of the frontend's.

    ``segments``: [(label, request count)] in the order the requests were sent
    (first request, warm-up, one per concurrency level); one entry each.

    >>> (t,) = request_times("PredictionTime.Milliseconds:90.5|#x", "Job - Waiting time: 1, Backend time: 93",
    ...                      '"POST /predictions/m HTTP/1.1" 200 95')
    >>> (t["handler_ms"], t["worker_protocol_ms"], t["frontend_other_ms"])
    (90.5, 2.5, 1.0)
    """
    handler = [float(x) for x in PREDICTION_TIME.findall(metrics_text)]
    jobs = [(int(w), int(b)) for w, b in JOB_TIMES.findall(_dedupe(log_text))]
    access = [m.groups() for m in map(ACCESS.search, access_text.splitlines()) if m]
    entries, start = [], 0
    for label, count in segments or [("all", len(access))]:
        part = slice(start, start + count)
        start += count
        entries.append(_times_entry(label, handler[part], jobs[part],
                                    [int(ms) for status, ms in access[part] if status == "200"]))
    return entries


def _times_entry(label, handler, jobs, access):
    entry = {"segment": label, "requests_seen": len(access), "handler_ms": _median(handler),
             "queue_ms": _median([w for w, _ in jobs]), "backend_ms": _median([b for _, b in jobs]),
             "frontend_ms": _median(access)}
    entry["worker_protocol_ms"] = (entry["backend_ms"] - entry["handler_ms"]
                                   if None not in (entry["backend_ms"], entry["handler_ms"]) else None)
    entry["frontend_other_ms"] = (entry["frontend_ms"] - entry["backend_ms"] - entry["queue_ms"]
                                  if None not in (entry["frontend_ms"], entry["backend_ms"], entry["queue_ms"])
                                  else None)
    return entry


def _dedupe(text):
    """MMS 1.1.11's log configuration writes most lines twice; keep the first of each."""
    return "\n".join(dict.fromkeys(text.splitlines()))


def wait_for_access_log(path, expected, timeout=5.0):
    """The access log once it lists ``expected`` predictions (MMS logs asynchronously), or as it is then."""
    deadline = time.monotonic() + timeout
    while True:
        text = _read_text(path)
        if text.count("POST /predictions/") >= expected or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def unpack_into_store(archive, out, model):
    """Extract the archive once into ``OUT/store/MODEL/``: a model store entry MMS
    serves in place, without unzipping it at every start. Returns (store, entry)."""
    from mmsctl.archives import mar
    store = os.path.join(os.path.abspath(out), "store")
    target = os.path.join(store, model)
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.makedirs(store, exist_ok=True)
    mar.extract(archive, target)
    return store, model


def run_cell(config, profile, batch, report, model, progress=None, message=None, entry_name=None):
    """One server: start, register, first request, load, cold-start parts, stop.

    ``entry_name``: the model store entry to register (the archive's file name,
    or the folder of an unpacked archive).
    """
    entry_name = entry_name or os.path.basename(config.archive)
    tag = profile.name if batch == 1 else "%s-batch%d" % (profile.name, batch)
    state_dir = os.path.join(os.path.abspath(config.out), "servers", tag)
    if os.path.isdir(state_dir):
        shutil.rmtree(state_dir)
    if message:
        message("server %s: %d worker%s x %d OpenMP thread%s, batch size %d" % (
            tag, profile.workers, "" if profile.workers == 1 else "s", profile.omp_threads,
            "" if profile.omp_threads == 1 else "s", batch))
    body = read_input(config.input)
    # Batch size 1 starts exactly as `mmsctl serve` does (server.start with the
    # archive); a batch size goes to MMS 1.1.11 only through our own register
    # call, and so does an unpacked archive (server.start takes .mar files).
    path = "serve" if batch == 1 and not config.unpacked else "register"
    launched = time.time()
    models = {model: entry_name} if path == "serve" else {}
    state = server.start(profile, state_dir, models, ready_timeout=config.ready_timeout)
    try:
        ready = time.time()
        registered = None
        if path == "register":
            registered = time.time()
            ManagementClient(state.management_url, timeout=config.ready_timeout).register(
                entry_name, name=model, batch_size=batch,
                max_batch_delay=config.max_batch_delay, workers=profile.workers, synchronous=True)
            ready = time.time()
        first = first_call(state.inference_url, model, body, config.load.timeout)
        first_answer = time.time()
        run_server_bench(state.inference_url, model, config.input, config.load, _price_of(report),
                         progress=progress, config=profile.name, profile=profile.name, workers=profile.workers,
                         omp_threads=profile.omp_threads, batch_size=batch, report=report, first=first)
        logs = os.path.join(state_dir, "logs")
        rows = [r for r in report["rows"] if r["kind"] == "server" and r["config"] == profile.name
                and r["batch_size"] == batch]
        load = config.load
        # server.start sends one empty-body request per worker once the model is loaded
        # (server.warm_request_path); they come first in the logs
        segments = [("warm-up", profile.workers if path == "serve" else 0), ("first", 1),
                    ("warm-up", max(load.warmup, max(load.concurrency)) if load.warmup else 0)]
        segments += [("c=%d" % r["concurrency"], r["requests"]) for r in rows]
        access_text = wait_for_access_log(os.path.join(logs, "access_log.log"), sum(n for _, n in segments))
        log_text = _read_text(os.path.join(logs, "mms_log.log"))
        times = request_times(_read_text(os.path.join(logs, "model_metrics.log")), log_text, access_text, segments)
        if batch == 1 and config.floor:
            add_floor(report, profile.name, state.management_url, state.inference_url, profile.model_store,
                      requests=config.load.requests or DEFAULT_REQUESTS, warmup=min(config.load.warmup, 5))
    finally:
        server.stop(state)
        if not config.keep_server_files:
            shutil.rmtree(os.path.join(state_dir, "tmp"), ignore_errors=True)
    markers = find_markers(parse_log(log_text), since=launched - 1.0)
    entry = {"config": profile.name, "kind": "server", "batch_size": batch,
             "path": path + (" (unpacked)" if config.unpacked else "")}
    entry.update(cold_start_parts(markers, launched, registered, first_answer, ready_reported=ready))
    entry["logs"] = os.path.join(state_dir, "logs")
    report["cold_start"].append(entry)
    for entry in times:
        if entry["segment"] != "warm-up":
            entry.update({"config": profile.name, "batch_size": batch})
            report.setdefault("server_time", []).append(entry)
    return report


def _price_of(report):
    from .bench import Price
    price = report["price"]
    return Price(price["usd_per_hour"], price["label"], price["source"])


def run(config, price, progress=None, message=None):
    """The whole sweep; returns the report (not yet written)."""
    from .inprocess import plan_levels, run_inprocess_bench

    validate(config)
    model = model_name_of(config.archive)
    body = read_input(config.input)
    report = new_report("Sweep of %s over %s" % (model, ", ".join(config.profiles)), model,
                        describe_input(config.input, body), config.load, price,
                        target={"archive": os.path.abspath(config.archive), "profiles": list(config.profiles),
                                "batch_sizes": list(config.batch_sizes), "max_batch_delay_ms": config.max_batch_delay,
                                "vcpus": config.vcpus or profiles_mod.detect_vcpus()})
    store, entry_name = None, None
    if config.unpacked:
        store, entry_name = unpack_into_store(config.archive, config.out, model)
        report["notes"].append("unpacked: the archive was extracted once into %s and registered as a folder, "
                               "which MMS serves without unzipping it" % os.path.join(store, entry_name))
    cells = plan_cells(config, store)
    done_inprocess = set()
    for profile, batch in cells:
        run_cell(config, profile, batch, report, model, progress=progress, message=message, entry_name=entry_name)
        if config.inprocess and profile.name not in done_inprocess:
            done_inprocess.add(profile.name)
            plan = plan_levels(config.load.concurrency, profile.vcpus, workers=profile.workers,
                               threads=profile.omp_threads)
            run_inprocess_bench(config.archive, config.input, config.load, plan, profile.environment, report,
                                config=profile.name, progress=progress, message=message, model_name=model,
                                log_dir=os.path.join(os.path.abspath(config.out), "inprocess-logs", profile.name))
    if config.inprocess:
        add_limit(report, config.archive, config.load, message=message,
                  log_dir=os.path.join(os.path.abspath(config.out), "inprocess-logs", "limit"))
    vcpus = report["machine"]["vcpus"]
    load_average = report["machine"].get("load_average") or [0.0]
    if load_average[0] > 0.5 * vcpus:
        report["notes"].append("the machine was busy when the sweep started (load average %.2f on %d vCPUs): "
                               "treat the timings as indicative and re-run on a quiet machine" % (
                                   load_average[0], vcpus))
    report["notes"].append("the load generator runs on the same vCPUs as the server (client CPU per request is in "
                           "the details table); in-process pipelines run with the server stopped")
    return finish_report(report)


# -- a large model with random weights -------------------------------------------------------
def build_random_resnet(export_path, layers=152, name=None, classes=1000, seed=0, force=False):
    """Archive a Gluon model-zoo ResNet v1 with random (seeded) weights: benchmarks
    need its size and compute, not its answers."""
    import tempfile

    import mxnet as mx

    from mmsctl.archives import mxnet_checkpoint

    factory = getattr(mx.gluon.model_zoo.vision, "resnet%d_v1" % layers, None)
    if factory is None:
        raise UsageError("no Gluon model-zoo resnet%d_v1: choose 18, 34, 50, 101 or 152" % layers)
    name = name or "resnet-%d" % layers
    with tempfile.TemporaryDirectory(prefix="mmsctl-resnet-") as tmp:
        mx.random.seed(seed)
        net = factory(pretrained=False, classes=classes)
        net.initialize(mx.init.Xavier(magnitude=2.5))
        net.hybridize()
        net(mx.nd.zeros((1, 3, 224, 224))).wait_to_read()
        prefix = os.path.join(tmp, "resnet")
        net.export(prefix, 0)
        synset = os.path.join(tmp, "synset.txt")
        with open(synset, "w", encoding="utf-8") as handle:
            handle.writelines("n%08d random class %d\n" % (i, i) for i in range(classes))
        return mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(
            name=name, symbol=prefix + "-symbol.json", params=prefix + "-0000.params", synset=synset,
            export_path=export_path, force=force,
            description="ResNet-%d v1 with random weights (seed %d), for benchmarks" % (layers, seed)))
