"""``mmsctl bench request-costs``: what a request costs besides the model's own work.

Two parts, printed as tables:

1. **In the worker, per request** (microbenchmarks, median of many calls): copying the
   body MMS hands over (a ``bytearray``) to ``bytes``, opening it with PIL (header
   only), encoding the top-5 answer as JSON, and one ``logging`` line like the
   ``[METRICS]`` line MMS's worker writes after every prediction.
2. **MMS's logging** (``async_logging`` in config.properties): two cpu-latency servers
   on the same model store, one with ``async_logging=true`` and one with ``false``,
   each serving the MMS floor (``reference_handlers/noop_service.py``) and the default
   archive; requests at concurrency 1 alternate between the servers in small chunks, so
   both see the same machine. The profile keeps the setting only if it measures better.

    mmsctl bench request-costs --requests 60
"""
import dataclasses
import io
import json
import logging
import os
import tempfile
import timeit

from PIL import Image

from mmsctl.archives import mxnet_checkpoint
from mmsctl.config import profiles

from mmsctl import server
from mmsctl.errors import UsageError
from mmsctl.management import ManagementClient

from . import reference
from .compare_handlers import DEFAULT_MODEL, camera_jpeg
from .load import HttpSender, close_all, free_port, interleaved
from .shared import message, model_store, request_body
from .stats import percentile

HELP = "what a request costs besides the model: body copy, PIL header, JSON, logging; async_logging A/B"
EXAMPLE = "mmsctl bench request-costs --requests 60\nmmsctl bench request-costs --no-servers"
ANSWER = [{"probability": 0.3858 - i * 0.05, "class": "n0212315%d tiger cat" % i} for i in range(5)]


def _median_us(statement, number=200, repeat=7):
    return min(sorted(timeit.repeat(statement, number=number, repeat=repeat))[repeat // 2:]) / number * 1e6


def worker_costs(bodies):
    """{what: microseconds per request} for each body, measured here (pure CPU work)."""
    logger = logging.getLogger(__name__ + ".probe")
    logger.propagate = False
    with open(os.devnull, "w", encoding="utf-8") as sink:
        handler = logging.StreamHandler(sink)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            costs = {}
            for name, body in bodies.items():
                raw = bytearray(body)
                costs[name] = {
                    "body_bytes": len(body),
                    "copy bytearray -> bytes": _median_us(lambda: bytes(raw)),
                    "PIL open (header)": _median_us(lambda: Image.open(io.BytesIO(body)).size),
                }
            shared = {
                "JSON top-5 answer": _median_us(lambda: json.dumps(ANSWER)),
                "one logging line": _median_us(lambda: logger.info("[METRICS]%s", "PredictionTime.Milliseconds:12.3")),
            }
        finally:
            logger.removeHandler(handler)
    return costs, shared


def _profile(store, vcpus, async_logging):
    profile = profiles.build_profile("cpu-latency", vcpus=vcpus, model_store=store, inference_port=free_port(),
                                     management_port=free_port())
    return dataclasses.replace(profile, extra_properties={"async_logging": "true" if async_logging else "false"})


def logging_ab(store, bodies, requests, chunk, vcpus, out, message):
    """p50 (ms) per (async_logging, model, body), requests alternating between the two servers."""
    states = {}
    try:
        for setting in (True, False):
            message("server with async_logging=%s" % str(setting).lower())
            states[setting] = server.start(_profile(store, vcpus, setting),
                                           os.path.join(out, "async-%s" % str(setting).lower()),
                                           {DEFAULT_MODEL: DEFAULT_MODEL + ".mar"}, ready_timeout=600)
            entry = reference.write_floor(store)
            ManagementClient(states[setting].management_url, timeout=120).register(
                entry, name=reference.FLOOR_MODEL, workers=1, synchronous=True)
        cells = [(setting, model, name) for model in (reference.FLOOR_MODEL, DEFAULT_MODEL) for name in bodies
                 for setting in (True, False)]
        senders = {cell: HttpSender(states[cell[0]].inference_url, cell[1], bodies[cell[2]]) for cell in cells}
        try:
            samples = interleaved(senders, requests, warmup=3, chunk=chunk)
        finally:
            close_all(senders.values())
    finally:
        for state in states.values():
            server.stop(state)
    return {cell: percentile([ms for ms, status in values if status == 200], 50) for cell, values in samples.items()}


def render(costs, shared, ab, requests):
    lines = ["## Per-request costs in the worker (median of many calls, microseconds)", "",
             "| body | bytes | copy bytearray -> bytes | PIL open (header) |", "|---|---|---|---|"]
    for name, entry in costs.items():
        lines.append("| %s | %d | %.1f | %.1f |" % (name, entry["body_bytes"], entry["copy bytearray -> bytes"],
                                                   entry["PIL open (header)"]))
    lines += ["", "JSON-encoding the top-5 answer: %.1f us; one logging line: %.1f us." % (
        shared["JSON top-5 answer"], shared["one logging line"]), ""]
    if ab:
        lines += ["## MMS async_logging, same run, requests alternating (p50 ms, %d requests each)" % requests, "",
                  "| model | body | async_logging=true | async_logging=false | false / true |", "|---|---|---|---|---|"]
        seen = []
        for _, model, body in ab:
            if (model, body) in seen:
                continue
            seen.append((model, body))
            on, off = ab[(True, model, body)], ab[(False, model, body)]
            lines.append("| %s | %s | %s | %s | %s |" % (
                model, body, "n/a" if on is None else "%.2f" % on, "n/a" if off is None else "%.2f" % off,
                "n/a" if not on or off is None else "%.3f" % (off / on)))
    return "\n".join(lines) + "\n"


def add_options(parser):
    """The options of ``mmsctl bench request-costs``."""
    parser.add_argument("--requests", type=int, default=60, help="requests per server, model and body")
    parser.add_argument("--chunk", type=int, default=5, help="requests in a row before switching server")
    parser.add_argument("--no-servers", action="store_true", help="only the in-worker microbenchmarks")
    parser.add_argument("--vcpus", type=int)
    parser.add_argument("--out", help="work folder (default: a temporary folder)")
    return parser


def main(args):
    """``mmsctl bench request-costs``: the microbenchmarks, then (unless --no-servers) the logging A/B."""
    if args.requests < 1 or args.chunk < 1:
        raise UsageError("--requests and --chunk must be at least 1")
    with tempfile.TemporaryDirectory(prefix="mmsctl-request-costs-") as tmp:
        out = os.path.abspath(args.out or tmp)
        os.makedirs(out, exist_ok=True)
        bodies = {"chelsea.png": request_body(),
                  "camera-1280x960.jpg": request_body(camera_jpeg(os.path.join(out, "camera-1280x960.jpg")))}
        costs, shared = worker_costs(bodies)
        ab = {}
        if not args.no_servers:
            store = model_store(out)
            if not os.path.isfile(os.path.join(store, DEFAULT_MODEL + ".mar")):
                mxnet_checkpoint.build_efficientnet_lite0(store)
            ab = logging_ab(store, bodies, args.requests, args.chunk, args.vcpus, out, message)
        print(render(costs, shared, ab, args.requests))
    return 0
