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
(``mmsctl.bench.reference``); after the last server, the independent limit
(``mmsctl.bench.limit``: MXNet fused and onnxruntime on the archive's weights, one process,
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
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Optional

from mmsctl import server
from mmsctl.archives import mar
from mmsctl.config import profiles as profiles_mod
from mmsctl.config.prices import Price
from mmsctl.errors import UsageError
from mmsctl.management import ManagementClient

from .inprocess import model_name_of, plan_levels, run_inprocess_bench
from .limit import DEFAULT_REQUESTS, add_limit
from .load import LoadConfig, describe_input, free_port, read_input
from .mmslog import cold_start_parts, find_markers, parse_log, read_text, request_times, wait_for_access_log
from .reference import add_floor
from .random_resnet import build_random_resnet  # noqa: F401  (mmsctl bench resnet)
from .report import finish_report, new_report
from .run import first_call, run_server_bench


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


def unpack_into_store(archive, out, model):
    """Extract the archive once into ``OUT/store/MODEL/``: a model store entry MMS
    serves in place, without unzipping it at every start. Returns (store, entry)."""
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
        log_text = read_text(os.path.join(logs, "mms_log.log"))
        times = request_times(read_text(os.path.join(logs, "model_metrics.log")), log_text, access_text, segments)
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
    price = report["price"]
    return Price(price["usd_per_hour"], price["label"], price["source"])


def run(config, price, progress=None, message=None):
    """The whole sweep; returns the report (not yet written)."""
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


