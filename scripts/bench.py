"""``mmsctl bench``: bounded load on loopback, latency and throughput statistics,
cost per 100k requests, and the reports (``report.json``, ``report.md``, ``report.png``).

The arithmetic is pure functions of known inputs (percentiles, requests/s, cost);
the load loop takes a sender factory, so one loop drives an HTTP server (one
keep-alive ``http.client`` connection per thread: little client work per request)
and the in-process runner's handler calls. Every loop ends by count or by time,
and a hard time limit bounds the count-bounded ones as well.

Cost per 100k requests = hourly price / (requests/s x 3600) x 100000, with prices
from ``config/prices.json`` (copied from the seed documents, each with its source)
or ``--price-per-hour``. The table follows seed 002's appendix (Table 1); the plot
is seed 004's cost performance against processing time.
"""
import datetime
import hashlib
import http.client
import ipaddress
import json
import math
import os
import platform
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional
from urllib.parse import quote, urlsplit

from . import breakdown
from .errors import MmsctlError, UsageError
from .files import read_regular

REPORT_FORMAT = "mmsctl-bench/1"
DEFAULT_REQUEST_TIMEOUT = 120.0
#: every count-bounded phase also stops after this many seconds
DEFAULT_MAX_SECONDS = 600.0
PERCENTILES = (50, 95, 99)

#: the targets of issue 5, checked in every report that has the figures
TARGETS = {
    "overhead_p50": 1.05,           # server p50 / in-process p50 at concurrency 1, at most
    "saturated_throughput": 0.95,   # best server req/s / best in-process req/s, at least
    "cold_start_s": 4.0,            # serve start to first answer, under
    "first_request_ratio": 1.5,     # first request / steady p50, at most
}


class BenchError(MmsctlError):
    """A benchmark that cannot run or whose inputs are wrong."""


# -- statistics (pure) ------------------------------------------------------------
def percentile(values, q):
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks
    (numpy's default method); None for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10, 20, 30, 40, 50], 95)
    48.0
    >>> percentile([], 50) is None
    True
    """
    if not 0 <= q <= 100:
        raise ValueError("percentile %r is outside 0-100" % q)
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(latencies_ms):
    """p50/p95/p99/min/max/mean of latencies in milliseconds (None values when empty)."""
    summary = {"p%d" % q: percentile(latencies_ms, q) for q in PERCENTILES}
    summary["min"] = min(latencies_ms) if latencies_ms else None
    summary["max"] = max(latencies_ms) if latencies_ms else None
    summary["mean"] = sum(latencies_ms) / len(latencies_ms) if latencies_ms else None
    return summary


def requests_per_second(count, elapsed_s):
    """Completed requests over the measured window.

    >>> requests_per_second(45, 10.0)
    4.5
    """
    if elapsed_s is None or elapsed_s <= 0:
        return None
    return count / elapsed_s


def cost_per_100k(hourly_usd, rps):
    """USD per 100,000 requests = hourly price / (requests/s x 3600) x 100000.

    Seed 002's m5.large at 4.50 requests/s ($0.096/hour) costs $0.59:

    >>> round(cost_per_100k(0.096, 4.50), 2)
    0.59
    >>> cost_per_100k(None, 4.5) is None
    True
    """
    if hourly_usd is None or not rps or rps <= 0:
        return None
    return hourly_usd / (rps * 3600.0) * 100000.0


def thousand_requests_per_usd(hourly_usd, rps):
    """Seed 004's cost performance: thousands of requests one dollar buys.

    >>> round(thousand_requests_per_usd(0.096, 4.5), 1)
    168.8
    """
    if hourly_usd is None or hourly_usd <= 0 or not rps:
        return None
    return rps * 3600.0 / hourly_usd / 1000.0


def is_success(status):
    return isinstance(status, int) and 200 <= status < 300


def summarize(samples, elapsed_s, hourly_usd=None, cpu_s=None):
    """Figures of one phase from its samples: ``[(latency_ms, status), ...]``.

    Latency percentiles and requests/s count successful (2xx) answers only; every
    other outcome is counted in ``errors`` by HTTP status or exception name.
    """
    ok = [latency for latency, status in samples if is_success(status)]
    errors = Counter(str(status) for _, status in samples if not is_success(status))
    rps = requests_per_second(len(ok), elapsed_s)
    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": dict(sorted(errors.items())),
        "elapsed_s": elapsed_s,
        "rps": rps,
        "latency_ms": latency_summary(ok),
        "hourly_usd": hourly_usd,
        "cost_per_100k_usd": cost_per_100k(hourly_usd, rps),
        "client_cpu_ms_per_request": (cpu_s * 1000.0 / len(samples)) if cpu_s is not None and samples else None,
    }


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# -- prices --------------------------------------------------------------------------
def prices_path():
    from mmsctl import config
    return os.path.join(os.path.dirname(config.__file__), "prices.json")


def load_prices(path=None):
    path = path or prices_path()
    try:
        with open(path, encoding="utf-8") as handle:
            prices = json.load(handle)
    except OSError as err:
        raise BenchError("cannot read the price table %s: %s" % (path, err.strerror))
    except ValueError as err:
        raise BenchError("price table %s is not valid JSON: %s" % (path, err))
    for key in ("instances", "accelerators", "sources"):
        if not isinstance(prices.get(key), dict):
            raise BenchError("price table %s has no %r table" % (path, key))
    return prices


def _lookup(table, name):
    for key, entry in table.items():
        if name == key or name in entry.get("aliases", ()):
            return key, entry
    return None, None


@dataclass(frozen=True)
class Price:
    usd_per_hour: Optional[float]
    label: str
    source: str


def resolve_price(prices, instance=None, accelerator=None, price_per_hour=None):
    """The hourly price of an instance (+ accelerator), or ``price_per_hour`` as given.

    >>> p = resolve_price(load_prices(), "m5.large", "eia.medium")
    >>> (round(p.usd_per_hour, 3), p.label)
    (0.226, 'm5.large + eia1.medium')
    """
    if price_per_hour is not None:
        if price_per_hour <= 0:
            raise UsageError("--price-per-hour must be positive, got %r" % price_per_hour)
        label = " + ".join(x for x in (instance, accelerator) if x) or "custom"
        return Price(float(price_per_hour), label, "--price-per-hour %g" % price_per_hour)
    if not instance and not accelerator:
        return Price(None, "this machine", "no price: pass --instance TYPE or --price-per-hour USD")
    total, labels, sources = 0.0, [], []
    for kind, name, table in (("instance", instance, prices["instances"]),
                              ("accelerator", accelerator, prices["accelerators"])):
        if not name:
            continue
        key, entry = _lookup(table, name)
        if entry is None:
            missing = " ".join(prices.get("missing", {}).values())
            raise UsageError("no price for %s %s in %s (known: %s)%s; pass --price-per-hour USD instead"
                             % (kind, name, prices_path(), ", ".join(sorted(table)),
                                ": " + missing if missing and name.startswith("eia2") else ""))
        total += float(entry["usd_per_hour"])
        labels.append(key)
        source = prices["sources"].get(entry.get("source"), {})
        sources.append("%s $%s/h: %s (region %s)" % (key, entry["usd_per_hour"], source.get("file", "?"),
                                                     source.get("region", "?")))
    return Price(total, " + ".join(labels), "; ".join(sources))


# -- load --------------------------------------------------------------------------------
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def check_loopback(url):
    """Load goes to this machine only: refuse any URL whose host is not a loopback address."""
    host = urlsplit(url).hostname
    if not host:
        raise UsageError("--url %r has no host: give e.g. http://127.0.0.1:8080" % url)
    if host.lower() in LOOPBACK_NAMES:
        return url
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url
    except ValueError:
        pass
    raise UsageError("refusing to send load to %s: mmsctl bench targets servers on this machine only "
                     "(127.0.0.1, localhost or ::1)" % host)


def read_input(path):
    try:
        body = read_regular(path)
    except OSError as err:
        raise BenchError("cannot read the input %s: %s" % (path, err.strerror))
    if not body:
        raise BenchError("input %s is empty: give the file to send as each request's body" % path)
    return body


def describe_input(path, body):
    return {"path": os.path.abspath(path), "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


class HttpSender:
    """POST one body to ``/predictions/MODEL`` over one keep-alive connection.

    Calling it returns the HTTP status, or the exception's name when the request
    failed on the way (refused, reset, timeout); the connection is then reopened
    for the next call. ``last_body`` keeps the latest answer for a sanity check.
    """

    def __init__(self, url, model, body, timeout=DEFAULT_REQUEST_TIMEOUT, content_type="application/octet-stream"):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path.rstrip("/") + "/predictions/" + quote(model, safe=""))
        self.body = body
        self.headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        self.timeout = timeout
        self.connection = None
        self.last_body = None

    def _connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def __call__(self):
        if self.connection is None:
            self.connection = self._connect()
        try:
            self.connection.request("POST", self.path, body=self.body, headers=self.headers)
            response = self.connection.getresponse()
            self.last_body = response.read()
            if response.will_close:
                self.close()
            return response.status
        except (OSError, http.client.HTTPException) as err:
            self.close()
            return type(err).__name__

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


@dataclass
class PhaseResult:
    concurrency: int
    samples: List[tuple]
    elapsed_s: float
    cpu_s: float
    started: float = 0.0
    extra: Dict = field(default_factory=dict)


def run_phase(senders, requests=None, duration=None, progress=None, label="", max_seconds=DEFAULT_MAX_SECONDS):
    """Closed-loop load: one thread per sender, each sending as soon as its last answer came.

    Ends after ``requests`` requests in all, or after ``duration`` seconds (requests
    in flight then finish and count), and in any case after ``max_seconds``.
    ``progress(label, done, total, elapsed_s)`` is called about twice a second.
    """
    if (requests is None) == (duration is None):
        raise UsageError("give either a request count or a duration, not both")
    if requests is not None and requests < 1:
        raise UsageError("the request count must be at least 1")
    if duration is not None and duration <= 0:
        raise UsageError("the duration must be positive")
    count = len(senders)
    lock = threading.Lock()
    issued = [0]
    samples = [[] for _ in range(count)]
    ends = [0.0] * count
    start_gate = threading.Event()
    window = {}

    def take():
        now = time.perf_counter()
        if now >= window["hard_stop"] or (duration is not None and now >= window["stop"]):
            return False
        if requests is None:
            return True
        with lock:
            if issued[0] >= requests:
                return False
            issued[0] += 1
            return True

    def loop(index):
        send, mine = senders[index], samples[index]
        start_gate.wait()
        while take():
            began = time.perf_counter()
            status = send()
            mine.append(((time.perf_counter() - began) * 1000.0, status))
        ends[index] = time.perf_counter()

    threads = [threading.Thread(target=loop, args=(i,), name="bench-%s-%d" % (label, i), daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    cpu0 = time.process_time()
    started = time.perf_counter()
    window["hard_stop"] = started + max_seconds
    window["stop"] = started + (duration if duration is not None else max_seconds)
    start_gate.set()
    total = requests
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
            if progress is not None:
                progress(label, sum(len(s) for s in samples), total, time.perf_counter() - started)
    cpu_s = time.process_time() - cpu0
    elapsed = max(ends) - started
    merged = [sample for per_thread in samples for sample in per_thread]
    return PhaseResult(concurrency=count, samples=merged, elapsed_s=elapsed, cpu_s=cpu_s, started=started)


def timed_call(send):
    """(latency in ms, status) of one call on its own."""
    began = time.perf_counter()
    status = send()
    return (time.perf_counter() - began) * 1000.0, status


def parse_levels(text):
    """``"1,2,4"`` -> ``[1, 2, 4]`` (positive, ascending, no repeats)."""
    try:
        levels = sorted({int(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise UsageError("expected positive integers separated by commas, got %r" % text)
    if not levels or levels[0] < 1:
        raise UsageError("expected positive integers separated by commas, got %r" % text)
    return levels


@dataclass(frozen=True)
class LoadConfig:
    """How much load each phase gets: a count or a duration per concurrency level."""

    concurrency: tuple = (1, 2)
    requests: Optional[int] = None
    duration: Optional[float] = None
    warmup: int = 5
    timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_seconds: float = DEFAULT_MAX_SECONDS

    def validate(self):
        if self.requests is None and self.duration is None:
            raise UsageError("give --requests N or --duration S")
        if self.requests is not None and self.duration is not None:
            raise UsageError("give --requests N or --duration S, not both")
        if self.warmup < 0:
            raise UsageError("--warmup cannot be negative")
        return self


def first_call(url, model, body, timeout=DEFAULT_REQUEST_TIMEOUT, sender_factory=HttpSender):
    """The first request, on a connection of its own: {"latency_ms", "status", "answer"}."""
    check_loopback(url)
    sender = sender_factory(url, model, body, timeout=timeout)
    try:
        latency, status = timed_call(sender)
        answer = (sender.last_body or b"")[:400].decode("utf-8", errors="replace")
    finally:
        sender.close()
    if status == "ConnectionRefusedError":
        raise BenchError("nothing answers at %s: is the server running? (mmsctl serve ...)" % url)
    return {"latency_ms": latency, "status": status, "answer": answer}


def bench_server(url, model, body, load, progress=None, sender_factory=HttpSender, first=None):
    """First request alone (unless ``first`` was already measured), warm-up at the
    highest concurrency, then one phase per concurrency level.

    Returns ``{"first_request": {...}, "phases": [PhaseResult, ...], "sample_answer": ...}``.
    """
    check_loopback(url)
    load.validate()
    make = lambda: sender_factory(url, model, body, timeout=load.timeout)  # noqa: E731
    if first is None:
        first = first_call(url, model, body, load.timeout, sender_factory)
    first_ms, first_status, sample = first["latency_ms"], first["status"], first["answer"]
    if load.warmup:
        senders = [make() for _ in range(max(load.concurrency))]
        try:
            run_phase(senders, requests=max(load.warmup, len(senders)), progress=progress, label="warm-up",
                      max_seconds=load.max_seconds)
        finally:
            for sender in senders:
                sender.close()
    phases = []
    for level in load.concurrency:
        senders = [make() for _ in range(level)]
        try:
            phases.append(run_phase(senders, requests=load.requests, duration=load.duration, progress=progress,
                                    label="c=%d" % level, max_seconds=load.max_seconds))
        finally:
            for sender in senders:
                sender.close()
    return {"first_request": {"latency_ms": first_ms, "status": first_status}, "phases": phases,
            "sample_answer": sample}


# -- report ------------------------------------------------------------------------------
def machine_info():
    from mmsctl.config.profiles import detect_vcpus
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
            "python": platform.python_version(), "load_average": _loadavg()}


def _loadavg():
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
    for cold in report.get("cold_start", []):
        if cold.get("serve_to_first_answer_s") is not None:
            checks.append({"target": "serve to first answer < %.0f s" % TARGETS["cold_start_s"],
                           "config": "%s (%s%s)" % (cold["config"], cold["kind"], ", batch %d" % cold[
                               "batch_size"] if cold.get("batch_size", 1) > 1 else ""),
                           "value": cold["serve_to_first_answer_s"],
                           "met": cold["serve_to_first_answer_s"] < TARGETS["cold_start_s"]})
    for first in report.get("first_requests", []):
        if first.get("ratio_to_p50") is not None:
            checks.append({"target": "first request <= %.1fx steady p50" % TARGETS["first_request_ratio"],
                           "config": "%s (%s%s)" % (first["config"], first["kind"], ", batch %d" % first[
                               "batch_size"] if first.get("batch_size", 1) > 1 else ""),
                           "value": first["ratio_to_p50"],
                           "met": first["ratio_to_p50"] <= TARGETS["first_request_ratio"]})
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
    report["machine"]["load_average_end"] = _loadavg()
    report["comparison"] = compare(report["rows"])
    report["targets"] = check_targets(report)
    report["breakdown"] = breakdown.report_breakdown(report)
    return report


# -- rendering ------------------------------------------------------------------------------
def _fmt(value, digits=1, prefix="", none="n/a"):
    if value is None:
        return none
    return "%s%.*f" % (prefix, digits, value)


def _usd(value, digits=2):
    return _fmt(value, digits, prefix="$ ")


def _errors(errors):
    return ", ".join("%s: %d" % item for item in sorted(errors.items())) or "none"


def _table(header, lines):
    out = ["|" + "|".join(header) + "|", "|" + "|".join("---" for _ in header) + "|"]
    out += ["|" + "|".join(str(cell) for cell in line) + "|" for line in lines]
    return "\n".join(out)


def _row_title(row):
    label = row.get("label") or row["config"]
    parts = [label, "c=%d" % row["concurrency"]]
    if row.get("batch_size") and row["batch_size"] > 1:
        parts.append("batch %d" % row["batch_size"])
    if row["kind"] == "in-process" and label != "in-process":
        parts.append("in-process")
    return ", ".join(parts)


def render_markdown(report):
    """report.md: seed 002's Table 1 layout, then the details behind it."""
    price = report["price"]
    machine = report["machine"]
    instance = price["label"] if price["usd_per_hour"] is not None else "this machine (%d vCPUs)" % machine["vcpus"]
    lines = ["# %s" % report["title"], "",
             "Measured %s on %s (%d vCPUs, %s), load average %s at start, %s at end. Input: %s (%d bytes). "
             "Latency is the p50 at that concurrency; requests/s count successful answers." % (
                 report["created"], machine["hostname"], machine["vcpus"], machine["cpu"],
                 machine.get("load_average"), machine.get("load_average_end"), os.path.basename(
                     report["input"]["path"]), report["input"]["bytes"]), ""]
    lines += ["**Table 1:** Raw performance and cost results for %s." % report["model"], ""]
    header = ["**Instance Type**", "**Optimized for**", "**# of workers ***", "**# of OMP threads ****",
              "**Hourly cost**", "**Cost Efficiency**", "**Latency (ms)**", "**Throughput (requests/sec)**"]
    body = []
    for row in report["rows"]:
        kind = row.get("optimized_for")
        body.append([instance, "%s (%s)" % (kind, _row_title(row)) if kind else _row_title(row),
                     _fmt(row.get("workers"), 0),
                     _fmt(row.get("omp_threads"), 0), _usd(row.get("hourly_usd"), 3),
                     _usd(row.get("cost_per_100k_usd")), _fmt(row["latency_ms"]["p50"], 0), _fmt(row["rps"], 2)])
    lines += [_table(header, body), ""]
    lines += ["\\* Number of workers for the model (in-process: pipelines, each a process running the archive's "
              "handler). \\*\\* OMP_NUM_THREADS per worker. Cost Efficiency: USD per 100,000 requests = hourly "
              "cost / (requests/s x 3600) x 100,000. Price: %s." % price["source"], ""]

    lines += ["## Details", ""]
    header = ["Configuration", "Kind", "Concurrency", "Batch", "Requests", "OK", "Errors", "req/s", "p50 ms",
              "p95 ms", "p99 ms", "max ms", "client CPU ms/req"]
    body = [[_row_title(r), r["kind"], r["concurrency"], r.get("batch_size") or 1, r["requests"], r["ok"],
             _errors(r["errors"]), _fmt(r["rps"], 2), _fmt(r["latency_ms"]["p50"]), _fmt(r["latency_ms"]["p95"]),
             _fmt(r["latency_ms"]["p99"]), _fmt(r["latency_ms"]["max"]), _fmt(r.get("client_cpu_ms_per_request"), 2)]
            for r in report["rows"]]
    lines += [_table(header, body), ""]

    if report.get("first_requests"):
        lines += ["## First request", ""]
        lines += ["The first request of each configuration, sent alone before any warm-up, against the steady "
                  "p50 at concurrency 1.", ""]
        body = [[f["config"], f["kind"], f.get("batch_size") or 1, _fmt(f["latency_ms"]), f["status"],
                 _fmt(f["steady_p50_ms"]), _fmt(f["ratio_to_p50"], 2)] for f in report["first_requests"]]
        lines += [_table(["Configuration", "Kind", "Batch", "First request ms", "Status", "Steady p50 ms (c=1)",
                          "First / p50"], body), ""]

    if report.get("cold_start"):
        lines += ["## Cold start", "",
                  "Server: from launching multi-model-server to the first answer; the parts come from MMS's "
                  "logs (wall-clock stamps, millisecond resolution). In-process: extracting the archive, "
                  "importing the handler package and the framework, initialize() (weights + warm-up).", ""]
        for kind in ("server", "in-process"):
            entries = [e for e in report["cold_start"] if e["kind"] == kind]
            keys = []
            for entry in entries:
                keys += [k for k in entry if k.endswith("_s") and k not in keys]
            if not entries:
                continue
            body = [[entry["config"] + (", batch %d" % entry["batch_size"] if entry.get("batch_size", 1) > 1 else ""),
                     entry.get("path", kind)] + [_fmt(entry.get(k), 2) for k in keys] for entry in entries]
            lines += [_table(["Configuration", "Started by"] + [k[:-2].replace("_", " ") + " (s)" for k in keys],
                             body), ""]

    if report.get("server_time"):
        lines += ["## Where a served request's time goes", "",
                  "Medians per phase (the first request, then each concurrency level; requests matched to phases "
                  "by their order in the logs), from MMS's logs (ms): the handler's handle() "
                  "(PredictionTime), the worker protocol (Backend time - handler), waiting for a free worker (MMS's job "
                  "waiting time), and the rest of the frontend (access-log time - backend - waiting).", ""]
        body = [[t["config"], t.get("batch_size") or 1, t.get("segment", "all"), t["requests_seen"],
                 _fmt(t["frontend_ms"]), _fmt(t["handler_ms"]), _fmt(t["worker_protocol_ms"]), _fmt(t["queue_ms"]),
                 _fmt(t["frontend_other_ms"])] for t in report["server_time"]]
        lines += [_table(["Configuration", "Batch", "Phase", "Requests", "frontend total", "handler",
                          "worker protocol", "waiting", "frontend other"], body), ""]

    comparison = report.get("comparison") or {}
    if comparison.get("pairs"):
        lines += ["## Server against the in-process limit", "",
                  "In-process: the archive's own handler code (same decode, preprocessing and forward) called "
                  "in processes with the profile's thread settings, no server. Overhead = server p50 / "
                  "in-process p50 (only where neither side queues).", ""]
        body = [[p["config"], p.get("batch_size") or 1, p["concurrency"], _fmt(p["server_p50_ms"]),
                 _fmt(p["inprocess_p50_ms"]), _fmt(p["overhead_p50"], 3), _fmt(p["server_rps"], 2),
                 _fmt(p["inprocess_rps"], 2), _fmt(p["throughput_ratio"], 3)] for p in comparison["pairs"]]
        lines += [_table(["Configuration", "Batch", "Concurrency", "server p50 ms", "in-process p50 ms", "overhead",
                          "server req/s", "in-process req/s", "throughput ratio"], body), ""]
        lines += ["Best server throughput %s req/s, best in-process %s req/s: ratio %s." % (
            _fmt(comparison.get("best_server_rps"), 2), _fmt(comparison.get("best_inprocess_rps"), 2),
            _fmt(comparison.get("saturated_throughput_ratio"), 3)), ""]

    lines += breakdown.render(report).splitlines()
    if report.get("targets"):
        lines += ["## Targets", ""]
        body = [[t["target"], t["config"], _fmt(t["value"], 3), "met" if t["met"] else "**not met**"]
                for t in report["targets"]]
        lines += [_table(["Target", "Configuration", "Value", ""], body), ""]
    if report.get("notes"):
        lines += ["## Notes", ""] + ["- " + note for note in report["notes"]] + [""]
    return "\n".join(lines) + "\n"


def write_plot(report, path):
    """report.png: cost performance against latency (seed 004), headless (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    priced = report["price"]["usd_per_hour"] is not None
    figure = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    markers = {"server": ("o", "tab:blue"), "in-process": ("^", "tab:orange")}
    for kind, (marker, colour) in markers.items():
        rows = [r for r in report["rows"] if r["kind"] == kind and r["rps"] and r["latency_ms"]["p50"] is not None]
        if not rows:
            continue
        xs = [r["latency_ms"]["p50"] for r in rows]
        ys = [thousand_requests_per_usd(r.get("hourly_usd"), r["rps"]) if priced else r["rps"] for r in rows]
        axes.scatter(xs, ys, marker=marker, color=colour, s=60, label=kind)
        for x, y, row in zip(xs, ys, rows):
            axes.annotate(_row_title(row), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xlabel("process time: p50 latency (ms)")
    if priced:
        axes.set_ylabel("cost performance (thousand requests per USD)")
        axes.set_title("%s on %s: cost performance vs. process time" % (report["model"], report["price"]["label"]))
    else:
        axes.set_ylabel("throughput (requests/s)")
        axes.set_title("%s: throughput vs. process time (no price given)" % report["model"])
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best")
    axes.margins(x=0.25, y=0.15)
    figure.tight_layout()
    figure.savefig(path)
    return path


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


# -- terminal progress -------------------------------------------------------------------
class TerminalProgress:
    """Progress lines on a terminal stream (stderr): rewritten in place on a tty."""

    def __init__(self, stream, interval=1.0):
        self.stream = stream
        self.interval = interval
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0
        self._label = None

    def __call__(self, label, done, total, elapsed):
        now = time.monotonic()
        if label == self._label and now - self._last < self.interval:
            return
        if self._label is not None and label != self._label and self.tty:
            self.stream.write("\n")
        self._label, self._last = label, now
        rate = done / elapsed if elapsed > 0 else 0.0
        text = "  %-22s %5d%s requests  %6.1f s  %7.2f req/s" % (
            label, done, "/%d" % total if total else "", elapsed, rate)
        self.stream.write(("\r" + text) if self.tty else (text + "\n"))
        self.stream.flush()

    def message(self, text):
        if self.tty and self._label is not None:
            self.stream.write("\n")
        self._label = None
        self.stream.write(text + "\n")
        self.stream.flush()


def run_server_bench(url, model, input_path, load, price, progress=None, message=None, config="server",
                     profile=None, workers=None, omp_threads=None, batch_size=1, report=None, first=None):
    """``mmsctl bench --url``: a report with one row per concurrency level."""
    body = read_input(input_path)
    if report is None:
        report = new_report("Benchmark of %s at %s" % (model, url), model, describe_input(input_path, body), load,
                            price, target={"url": url})
    if message:
        message("bench %s at %s: concurrency %s, %s per level" % (
            model, url, ",".join(map(str, load.concurrency)),
            "%d requests" % load.requests if load.requests else "%g s" % load.duration))
    result = bench_server(url, model, body, load, progress=progress, first=first)
    for phase in result["phases"]:
        report["rows"].append(make_row(
            "server", summarize(phase.samples, phase.elapsed_s, price.usd_per_hour, phase.cpu_s), phase.concurrency,
            config=config, label=config, optimized_for=optimized_for(profile),
            profile=profile, workers=workers, omp_threads=omp_threads, batch_size=batch_size, instance=price.label))
    report["first_requests"].append(first_request_entry(config, "server", result["first_request"]["latency_ms"],
                                                        result["first_request"]["status"], report["rows"],
                                                        batch_size=batch_size))
    report.setdefault("sample_answers", {})["%s batch %d" % (config, batch_size)] = result["sample_answer"]
    return report


def run_bench(input_path, load, price, url=None, model=None, inprocess_archive=None, profile_name=None,
              vcpus=None, progress=None, message=None, log_dir=None):
    """``mmsctl bench``: a server (``url``), the in-process limit (``inprocess_archive``), or both.

    ``profile_name`` is the server's profile (its workers and threads); the
    in-process pipelines use its thread settings, so both sides of a comparison
    run the same numbers of threads. Without a profile, the in-process run puts
    ``level`` pipelines on the vCPUs (vCPUs // level threads each).
    """
    from mmsctl.config import profiles

    from .inprocess import plan_levels, run_inprocess_bench

    if url is None and inprocess_archive is None:
        raise UsageError("give --url URL --model NAME (a running server) and/or --inprocess/--compare-inprocess "
                         "FILE.mar")
    if url is not None and not model:
        raise UsageError("--url needs --model NAME (the model's name on the server)")
    if url is not None:
        check_loopback(url)
    if inprocess_archive is not None and not os.path.isfile(inprocess_archive):
        raise UsageError("archive %s does not exist" % inprocess_archive)
    load.validate()
    profile = profiles.build_profile(profile_name or "cpu-latency", vcpus=vcpus)
    body = read_input(input_path)
    if model is None:
        from .sweep import model_name_of
        model = model_name_of(inprocess_archive)
    title = "Benchmark of %s" % model + (" at %s" % url if url else " in-process")
    report = new_report(title, model, describe_input(input_path, body), load, price,
                        target=report_target(url, inprocess_archive, profile_name, profile.vcpus))
    config = profile_name or ("server" if url else "in-process")
    if url is not None:
        run_server_bench(url, model, input_path, load, price, progress=progress, message=message, config=config,
                         profile=profile_name, workers=profile.workers if profile_name else None,
                         omp_threads=profile.omp_threads if profile_name else None, report=report)
    if inprocess_archive is not None:
        if profile_name or url is not None:
            plan = plan_levels(load.concurrency, profile.vcpus, workers=profile.workers, threads=profile.omp_threads)
        else:
            plan = plan_levels(load.concurrency, profile.vcpus)
        run_inprocess_bench(inprocess_archive, input_path, load, plan, profile.environment, report, config=config,
                            log_dir=log_dir, progress=progress, message=message, model_name=model)
        if url is not None:
            report["notes"].append("the server kept running (idle) while the in-process pipelines ran")
            if not profile_name:
                report["notes"].append("no --profile given: the server was assumed to run cpu-latency (%d worker x "
                                       "%d threads) for the in-process side" % (profile.workers, profile.omp_threads))
    return finish_report(report)
