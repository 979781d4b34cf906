"""The benchmark report: its rows, the server/in-process comparison, the issue's targets,
and the files ``report.json`` / ``report.md`` / ``report.png``.
"""
import datetime
import json
import os
import platform
import socket

from mmsctl.config.profiles import detect_vcpus

from . import breakdown
from .errors import BenchError
from .render import render_markdown, write_plot
from .stats import is_success, ratio

REPORT_FORMAT = "mmsctl-bench/1"

#: the targets of issue 5, checked in every report that has the figures
TARGETS = {
    "overhead_p50": 1.05,           # server p50 / in-process p50 at concurrency 1, at most
    "saturated_throughput": 0.95,   # best server req/s / best in-process req/s, at least
    "cold_start_s": 4.0,            # serve start to first answer, under
    "first_request_ratio": 1.5,     # first request / steady p50, at most
}


def machine_info():
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "vcpus": detect_vcpus(), "cpu": model or platform.processor(),
            "python": platform.python_version(), "load_average": load_average()}


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def make_row(kind, phase_summary, concurrency, config="server", label=None, optimized_for=None, profile=None,
             workers=None, omp_threads=None, batch_size=1, pipelines=None, instance=None):
    """One line of the report: a configuration under one load, with its figures."""
    row = {"kind": kind, "config": config, "label": label or config, "optimized_for": optimized_for,
           "profile": profile, "workers": workers, "omp_threads": omp_threads, "batch_size": batch_size,
           "concurrency": concurrency, "pipelines": pipelines, "instance": instance}
    row.update(phase_summary)
    return row


def optimized_for(profile):
    return {"cpu-latency": "Latency", "cpu-throughput": "Throughput", "ei": "Both", "gpu": "Both"}.get(profile)


def compare(rows):
    """Server vs in-process figures, matched by configuration and concurrency.

    p50 overhead is compared only where neither side queues (in-process pipelines
    = concurrency); requests/s everywhere. ``saturated`` compares the best server
    throughput with the best in-process throughput of the whole report.
    """
    server_rows = [r for r in rows if r["kind"] == "server"]
    inproc = {}
    for r in rows:
        if r["kind"] == "in-process":
            for level in r.get("levels") or [r["concurrency"]]:
                inproc[(r["config"], level)] = r
    pairs = []
    for row in server_rows:
        other = inproc.get((row["config"], row["concurrency"]))
        if other is None:
            continue
        no_queue = (other.get("pipelines") or other["concurrency"]) == row["concurrency"]
        pairs.append({
            "config": row["config"], "batch_size": row.get("batch_size"), "concurrency": row["concurrency"],
            "server_p50_ms": row["latency_ms"]["p50"], "inprocess_p50_ms": other["latency_ms"]["p50"],
            "overhead_p50": ratio(row["latency_ms"]["p50"], other["latency_ms"]["p50"]) if no_queue else None,
            "server_rps": row["rps"], "inprocess_rps": other["rps"],
            "throughput_ratio": ratio(row["rps"], other["rps"]),
        })
    best_server = max((r["rps"] or 0 for r in server_rows), default=0) or None
    best_inproc = max((r["rps"] or 0 for r in rows if r["kind"] == "in-process"), default=0) or None
    return {"pairs": pairs, "best_server_rps": best_server, "best_inprocess_rps": best_inproc,
            "saturated_throughput_ratio": ratio(best_server, best_inproc)}


def check_targets(report):
    """The issue's targets against this report's figures (only those it has)."""
    checks = []
    pairs = report.get("comparison", {}).get("pairs", [])
    for pair in pairs:
        if pair["concurrency"] == 1 and pair["overhead_p50"] is not None:
            checks.append({"target": "p50 at concurrency 1 <= %.2fx in-process" % TARGETS["overhead_p50"],
                           "config": pair["config"], "value": pair["overhead_p50"],
                           "met": pair["overhead_p50"] <= TARGETS["overhead_p50"]})
    saturated = report.get("comparison", {}).get("saturated_throughput_ratio")
    if saturated is not None:
        checks.append({"target": "saturated throughput >= %.2fx in-process best" % TARGETS["saturated_throughput"],
                       "config": "all", "value": saturated, "met": saturated >= TARGETS["saturated_throughput"]})
    for entry_key, value_key, target, met in (
            ("cold_start", "serve_to_first_answer_s", "serve to first answer < %.0f s" % TARGETS["cold_start_s"],
             lambda value: value < TARGETS["cold_start_s"]),
            ("first_requests", "ratio_to_p50", "first request <= %.1fx steady p50" % TARGETS["first_request_ratio"],
             lambda value: value <= TARGETS["first_request_ratio"])):
        for entry in report.get(entry_key, []):
            if entry.get(value_key) is not None:
                batch = ", batch %d" % entry["batch_size"] if entry.get("batch_size", 1) > 1 else ""
                checks.append({"target": target, "config": "%s (%s%s)" % (entry["config"], entry["kind"], batch),
                               "value": entry[value_key], "met": met(entry[value_key])})
    return checks


def first_request_entry(config, kind, first_ms, status, rows, batch_size=1):
    """The first request of a configuration against its steady p50 at concurrency 1."""
    steady = [r for r in rows if r["config"] == config and r["kind"] == kind and r["concurrency"] == 1
              and (r.get("batch_size") or 1) == batch_size]
    p50 = steady[0]["latency_ms"]["p50"] if steady else None
    return {"config": config, "kind": kind, "batch_size": batch_size, "latency_ms": first_ms, "status": status,
            "steady_p50_ms": p50, "ratio_to_p50": ratio(first_ms, p50) if is_success(status) else None}


def report_target(url=None, archive=None, profile=None, vcpus=None):
    """What ``mmsctl bench`` measured: the server's URL, the archive run in-process, and the
    server's profile and the vCPUs it planned for (what ``mmsctl ecs autoscaling`` matches)."""
    return {"url": url, "archive": os.path.abspath(archive) if archive else None, "profile": profile, "vcpus": vcpus}


def new_report(title, model, input_info, load, price, target=None):
    return {
        "format": REPORT_FORMAT,
        "title": title,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "model": model,
        "target": target or {},
        "input": input_info,
        "load": {"concurrency": list(load.concurrency), "requests_per_level": load.requests,
                 "duration_s_per_level": load.duration, "warmup_requests": load.warmup,
                 "latency": "client-side wall time per request (send to last byte), successful answers only",
                 "rps": "successful answers / (last answer - start of the phase)"},
        "price": {"label": price.label, "usd_per_hour": price.usd_per_hour, "source": price.source},
        "rows": [],
        "first_requests": [],
        "cold_start": [],
        "notes": [],
    }


def finish_report(report):
    report["machine"]["load_average_end"] = load_average()
    report["comparison"] = compare(report["rows"])
    report["targets"] = check_targets(report)
    report["breakdown"] = breakdown.report_breakdown(report)
    return report

def _json_default(value):
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def write_reports(report, out_dir):
    """Write report.json, report.md and report.png into ``out_dir``; returns their paths."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise BenchError("cannot create the output folder %s: %s" % (out_dir, err.strerror))
    paths = {name: os.path.join(out_dir, "report." + name) for name in ("json", "md", "png")}
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, default=_json_default)
        handle.write("\n")
    with open(paths["md"], "w", encoding="utf-8") as handle:
        handle.write(render_markdown(report))
    write_plot(report, paths["png"])
    return paths

