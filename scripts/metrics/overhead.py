"""What the exporter costs a served model: p50 at concurrency 1 and requests/s at
concurrency 2, with and without the exporter, on one server in one run.

    mmsctl bench exporter-overhead --archive model_store/efficientnet-lite0.mar --rounds 3 --duration 15

Phases alternate (off, on, on, off, ...) so that drift of a busy machine falls on both
sides; with the exporter on, a thread scrapes /metrics every second, as an aggressive
Prometheus would. Prints a Markdown table with the medians over rounds and the ratios.
"""
import json
import os
import shutil
import statistics
import tempfile
import threading
import time

import psutil
import requests

from mmsctl import bench, server
from mmsctl.bench.load import free_port
from mmsctl.bench.shared import request_body
from mmsctl.config import profiles
from mmsctl.errors import UsageError

from . import runner

HELP = "what the metrics exporter costs a served model: p50 and requests/s with and without it, one server"
EXAMPLE = "mmsctl bench exporter-overhead --archive model_store/efficientnet-lite0.mar --rounds 3 --duration 15"


def _scraper(url, stop):
    def run():
        with requests.Session() as session:
            while not stop.wait(1.0):
                try:
                    session.get(url + "/metrics", timeout=5).content
                except requests.RequestException:
                    pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def measure(state, model, body, duration):
    """(p50 ms at concurrency 1, requests/s at concurrency 2)."""
    one = bench.run_phase([bench.HttpSender(state.inference_url, model, body)], duration=duration)
    two = bench.run_phase([bench.HttpSender(state.inference_url, model, body) for _ in range(2)], duration=duration)
    bad = [s for s in one.samples + two.samples if s[1] != 200]
    if bad:
        raise bench.BenchError("%d requests failed, e.g. %r" % (len(bad), bad[0]))
    return (bench.percentile([s[0] for s in one.samples], 50), len(two.samples) / two.elapsed_s)


def run(archive, body, rounds=3, duration=15.0, vcpus=None, out=print):
    store = os.path.dirname(os.path.abspath(archive))
    model = os.path.splitext(os.path.basename(archive))[0]
    profile = profiles.build_profile("cpu-latency", vcpus=vcpus, model_store=store, inference_port=free_port(),
                                     management_port=free_port())
    state_dir = tempfile.mkdtemp(prefix="mmsctl-overhead-")
    state = server.start(profile, state_dir, {model: os.path.basename(archive)})
    results = {"off": [], "on": []}
    exporter_cpu = []  # (CPU seconds of the exporter process, seconds it ran)
    try:
        measure(state, model, body, min(5.0, duration))  # warm-up
        order = []
        for index in range(rounds):
            order += ["off", "on"] if index % 2 == 0 else ["on", "off"]
        for mode in order:
            stop = threading.Event()
            if mode == "on":
                url = runner.start_child(state_dir, port=free_port())
                with open(os.path.join(state_dir, runner.METRICS_FILE), encoding="utf-8") as handle:
                    child = psutil.Process(json.load(handle)["pid"])
                _scraper(url, stop)
            try:
                results[mode].append(measure(state, model, body, duration))
            finally:
                stop.set()
                if mode == "on":
                    times = child.cpu_times()
                    exporter_cpu.append((times.user + times.system, time.time() - child.create_time()))
                    runner.stop_child(state_dir)
            out("  %-3s p50 %.1f ms, %.1f req/s" % ((mode,) + results[mode][-1]))
    finally:
        server.stop(state)
        shutil.rmtree(state_dir, ignore_errors=True)
    off_p50 = statistics.median(r[0] for r in results["off"])
    on_p50 = statistics.median(r[0] for r in results["on"])
    off_rps = statistics.median(r[1] for r in results["off"])
    on_rps = statistics.median(r[1] for r in results["on"])
    out("")
    out("| %s, %d rounds x %.0f s | p50 at concurrency 1 | req/s at concurrency 2 |" % (model, rounds, duration))
    out("|---|---|---|")
    out("| without the exporter | %.1f ms | %.1f |" % (off_p50, off_rps))
    out("| with the exporter (scraped every 1 s) | %.1f ms | %.1f |" % (on_p50, on_rps))
    out("| ratio with / without | %.3f | %.3f |" % (on_p50 / off_p50, on_rps / off_rps))
    cpu, seconds = sum(c for c, _ in exporter_cpu), sum(s for _, s in exporter_cpu)
    out("")
    out("exporter process: %.2f CPU s in %.0f s under load (%.1f%% of one core, start-up included)"
        % (cpu, seconds, 100.0 * cpu / seconds))
    return {"off": results["off"], "on": results["on"]}


def add_options(parser):
    """The options of ``mmsctl bench exporter-overhead``."""
    parser.add_argument("--archive", required=True, help="FILE.mar in its model store")
    parser.add_argument("--input", help="request body (default: scikit-image's chelsea.png)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--vcpus", type=int)
    return parser


def main(args):
    """``mmsctl bench exporter-overhead``: measure and print the table."""
    if not os.path.isfile(args.archive):
        raise UsageError("--archive %s is not a file: give FILE.mar in its model store" % args.archive)
    run(args.archive, request_body(args.input), rounds=args.rounds, duration=args.duration, vcpus=args.vcpus)
    return 0
