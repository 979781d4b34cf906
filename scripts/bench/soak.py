"""``mmsctl soak``: one model at full concurrency for a long time, watched per interval.

Closed-loop load (one keep-alive connection per client thread, ``bench.HttpSender``)
runs for ``duration`` seconds; at the end of every interval the requests completed
in it are summarised (count, errors by status, requests/s, latency percentiles of
the successful ones) and the memory of the server's processes is sampled with
psutil: the RSS and USS of all Python worker processes and the RSS of the Java
frontend, plus the worker pids, so a restarted worker shows up.

The verdict is a pure function of the report: no error at all, no worker restart,
and worker RSS growing no more than ``max_growth_mib`` and ``max_growth_fraction``
from the first interval after warm-up to the last.
"""
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass

import psutil

from mmsctl.errors import MmsctlError, UsageError
from mmsctl.files import read_regular
from mmsctl.processes import is_worker_process

from .load import ClosedLoop, HttpSender, close_all
from .stats import is_success, percentile

REPORT_FORMAT = "mmsctl-soak/1"
DEFAULT_DURATION = 600.0
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 60.0
MIB = 1024.0 * 1024.0


class SoakError(MmsctlError):
    """A soak that cannot run, or whose verdict is a failure."""


@dataclass(frozen=True)
class Limits:
    """What a soak may show and still pass."""

    max_errors: int = 0
    max_growth_mib: float = 100.0
    max_growth_fraction: float = 0.20
    warmup_intervals: int = 1


# -- figures (pure) ---------------------------------------------------------------------
def interval_summary(index, end_s, length_s, samples):
    """One interval's figures from its samples ``[(latency_ms, status), ...]``.

    >>> row = interval_summary(0, 10.0, 10.0, [(10.0, 200), (30.0, 200), (5.0, 503), (1.0, "ConnectionResetError")])
    >>> row["requests"], row["errors"], row["error_statuses"], row["p50_ms"], row["rps"]
    (4, 2, {'503': 1, 'ConnectionResetError': 1}, 20.0, 0.2)
    """
    ok = [latency for latency, status in samples if is_success(status)]
    errors = Counter(str(status) for _, status in samples if not is_success(status))
    return {
        "interval": index, "end_s": round(end_s, 3), "requests": len(samples), "errors": sum(errors.values()),
        "error_statuses": dict(sorted(errors.items())),
        "rps": round(len(ok) / length_s, 3) if length_s > 0 else None,
        "p50_ms": percentile(ok, 50), "p90_ms": percentile(ok, 90), "p99_ms": percentile(ok, 99),
        "max_ms": max(ok) if ok else None,
    }


def memory_growth(intervals, warmup=1):
    """(MiB, fraction) worker RSS grew from the first interval after ``warmup`` to the last.

    >>> memory_growth([{"worker_rss_mib": 500.0}, {"worker_rss_mib": 300.0}, {"worker_rss_mib": 330.0}])
    (30.0, 0.1)
    >>> memory_growth([{"worker_rss_mib": 300.0}])
    (None, None)
    """
    sampled = [row["worker_rss_mib"] for row in intervals[warmup:] if row.get("worker_rss_mib")]
    if len(sampled) < 2:
        return None, None
    first, last = sampled[0], sampled[-1]
    return round(last - first, 3), round((last - first) / first, 4)


def verdict(report, limits=Limits()):
    """The problems a soak report shows (an empty list passes).

    >>> rows = [{"requests": 9, "errors": 0, "worker_rss_mib": 300.0, "worker_pids": [7]},
    ...         {"requests": 9, "errors": 0, "worker_rss_mib": 300.0, "worker_pids": [7]},
    ...         {"requests": 9, "errors": 1, "worker_rss_mib": 420.0, "worker_pids": [8]}]
    >>> for problem in verdict({"intervals": rows, "late_errors": 0}): print(problem)
    1 failed request(s), more than the 0 allowed
    worker RSS grew 120.0 MiB (40.0%) from interval 1 to the last: more than 100 MiB or 20%
    worker processes changed during the soak (a restart?): [7] -> [8]
    """
    problems = []
    intervals = report["intervals"]
    errors = sum(row["errors"] for row in intervals) + report.get("late_errors", 0)
    if errors > limits.max_errors:
        problems.append("%d failed request(s), more than the %d allowed" % (errors, limits.max_errors))
    if sum(row["requests"] for row in intervals) == 0:
        problems.append("no request completed")
    growth_mib, growth_fraction = memory_growth(intervals, limits.warmup_intervals)
    if growth_mib is not None and (growth_mib > limits.max_growth_mib or growth_fraction > limits.max_growth_fraction):
        problems.append("worker RSS grew %.1f MiB (%.1f%%) from interval %d to the last: more than %.0f MiB or %.0f%%"
                        % (growth_mib, 100 * growth_fraction, limits.warmup_intervals, limits.max_growth_mib,
                           100 * limits.max_growth_fraction))
    pids = [tuple(row["worker_pids"]) for row in intervals if row.get("worker_pids") is not None]
    if pids and any(p != pids[0] for p in pids):
        changed = next(p for p in pids if p != pids[0])
        problems.append("worker processes changed during the soak (a restart?): %s -> %s"
                        % (list(pids[0]), list(changed)))
    return problems


def render_table(report):
    """The per-interval table ``mmsctl soak`` prints."""
    header = "%5s %8s %8s %7s %8s %8s %8s %8s %10s %10s %10s" % (
        "t(s)", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "wrk RSS", "wrk USS", "java RSS")
    lines = [header, "-" * len(header)]

    def num(value, digits=1):
        return "-" if value is None else "%.*f" % (digits, value)
    for row in report["intervals"]:
        lines.append("%5.0f %8d %8d %7s %8s %8s %8s %8s %10s %10s %10s" % (
            row["end_s"], row["requests"], row["errors"], num(row["rps"]), num(row["p50_ms"]), num(row["p90_ms"]),
            num(row["p99_ms"]), num(row["max_ms"]), num(row.get("worker_rss_mib")), num(row.get("worker_uss_mib")),
            num(row.get("frontend_rss_mib"))))
    growth_mib, growth_fraction = memory_growth(report["intervals"], report["limits"]["warmup_intervals"])
    lines.append("")
    lines.append("%s at concurrency %d for %.0f s: %d requests, %d errors%s; worker RSS growth after warm-up: %s"
                 % (report["model"], report["concurrency"], report["duration_s"], report["requests"],
                    report["errors"], " (%d after the end)" % report["late_errors"] if report["late_errors"] else "",
                    "n/a" if growth_mib is None else "%+.1f MiB (%+.1f%%)" % (growth_mib, 100 * growth_fraction)))
    problems = report.get("problems", [])
    lines.append("verdict: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return "\n".join(lines)


# -- the server's processes --------------------------------------------------------------
def server_memory(server_pid):
    """Memory of a server's process tree: Python workers (RSS, USS, pids) and the Java frontend (RSS)."""
    try:
        root = psutil.Process(server_pid)
        tree = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        raise SoakError("server pid %d is gone: the server stopped during the soak" % server_pid)
    rss = uss = frontend = 0
    pids = []
    for proc in tree:
        try:
            if is_worker_process(proc):
                info = proc.memory_full_info()
                rss, uss = rss + info.rss, uss + info.uss
                pids.append(proc.pid)
            elif proc.name().startswith("java"):
                frontend += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return {"workers": len(pids), "worker_pids": sorted(pids), "worker_rss_mib": round(rss / MIB, 1),
            "worker_uss_mib": round(uss / MIB, 1), "frontend_rss_mib": round(frontend / MIB, 1)}


# -- the load -------------------------------------------------------------------------------
def run_soak(url, model, body, duration=DEFAULT_DURATION, interval=DEFAULT_INTERVAL, concurrency=2,
             server_pid=None, timeout=DEFAULT_TIMEOUT, limits=Limits(), sender_factory=HttpSender, progress=None):
    """Load ``model`` at ``url`` with ``concurrency`` clients for ``duration`` s; the report as a dict.

    ``server_pid`` (the launcher's pid, from the server state) enables the memory
    samples. ``progress(row)`` is called after each interval.
    """
    if duration <= 0 or interval <= 0:
        raise UsageError("--duration and --interval must be positive")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    senders = [sender_factory(url, model, body, timeout=timeout) for _ in range(concurrency)]
    load = ClosedLoop(senders, duration=duration, label="soak", max_seconds=duration + timeout)
    per_thread = load.per_thread  # (completed at, latency ms, status), appended by one thread each
    started = load.start().started
    intervals, index, boundary = [], 0, started
    taken = [0] * concurrency
    try:
        while boundary < started + duration:
            length = min(interval, started + duration - boundary)
            boundary += length
            time.sleep(max(0.0, boundary - time.perf_counter()))
            samples = []
            for i, mine in enumerate(per_thread):  # each list is in completion order
                end = taken[i]
                while end < len(mine) and mine[end][0] <= boundary:
                    end += 1
                samples += [(latency, status) for _, latency, status in mine[taken[i]:end]]
                taken[i] = end
            row = interval_summary(index, boundary - started, length, samples)
            if server_pid is not None:
                row.update(server_memory(server_pid))
            intervals.append(row)
            if progress is not None:
                progress(row)
            index += 1
    finally:
        load.stop()
        load.join(timeout=timeout + 5)
        close_all(senders)
    late = [status for i, mine in enumerate(per_thread) for _, _, status in mine[taken[i]:]]
    report = {
        "format": REPORT_FORMAT, "model": model, "url": url, "concurrency": concurrency,
        "duration_s": duration, "interval_s": interval, "timeout_s": timeout,
        "requests": sum(row["requests"] for row in intervals) + len(late),
        "errors": sum(row["errors"] for row in intervals) + sum(1 for s in late if not is_success(s)),
        "late_errors": sum(1 for s in late if not is_success(s)),
        "limits": asdict(limits), "intervals": intervals,
    }
    report["problems"] = verdict(report, limits)
    return report


def default_concurrency(workers):
    """Full concurrency: two clients per worker, so a worker never waits for the next request.

    >>> default_concurrency(1), default_concurrency(4)
    (2, 8)
    """
    return max(2, 2 * int(workers))


def read_body(path):
    try:
        return read_regular(path)
    except OSError as err:
        raise UsageError("cannot read the request body %s: %s" % (path, err.strerror))


def write_report(report, path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return path
