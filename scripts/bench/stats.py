"""Benchmark statistics: pure functions of known inputs (percentiles, requests/s, cost).

Cost per 100k requests = hourly price / (requests/s x 3600) x 100000. Nothing here
imports the rest of the project: every other benchmark module may import it.
"""
import math
from collections import Counter

PERCENTILES = (50, 95, 99)


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


