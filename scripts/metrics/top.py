"""``mmsctl top``: per-model figures from a running exporter, refreshed in place.

Two scrapes ``interval`` seconds apart give requests/s and the p50/p99 of the
requests answered in between (from the duration histogram's buckets, as
Prometheus's histogram_quantile interpolates them).
"""
import sys
import time
from collections import defaultdict

import requests
from prometheus_client.parser import text_string_to_metric_families

from mmsctl.errors import ServerError


def scrape(url, timeout=5.0):
    """{(sample name, frozenset(labels)): value} of ``url``/metrics."""
    try:
        answer = requests.get(url.rstrip("/") + "/metrics", timeout=timeout)
        answer.raise_for_status()
    except requests.RequestException as err:
        raise ServerError("the metrics exporter at %s does not answer (%s): is the server running with "
                          "--metrics-port?" % (url, type(err).__name__))
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _by_model(samples, name, key=None):
    out = defaultdict(lambda: defaultdict(float))
    for (sample, labels), value in samples.items():
        if sample != name:
            continue
        labels = dict(labels)
        out[labels.get("model", "")][labels.get(key) if key else None] += value
    return out


def quantile(buckets, fraction):
    """``histogram_quantile`` over {upper bound: cumulative count}; None without observations.

    >>> quantile({0.005: 0, 0.01: 10, float("inf"): 10}, 0.5)
    0.0075
    """
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0
    if total <= 0:
        return None
    rank, lower, below = fraction * total, 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def figures(before, after, seconds):
    """[{model, rps, p50_ms, p99_ms, workers, rss_mib, errors}] between two scrapes."""
    requests_after = _by_model(after, "mmsctl_requests_total", "code")
    requests_before = _by_model(before, "mmsctl_requests_total", "code")
    buckets_after = _by_model(after, "mmsctl_request_duration_seconds_bucket", "le")
    buckets_before = _by_model(before, "mmsctl_request_duration_seconds_bucket", "le")
    workers = _by_model(after, "mmsctl_workers", "state")
    rss = _by_model(after, "mmsctl_worker_resident_memory_bytes")
    rows = []
    for model in sorted(set(requests_after) | set(workers)):
        done = {code: n - requests_before.get(model, {}).get(code, 0.0) for code, n in requests_after[model].items()}
        delta = {float(le): n - buckets_before.get(model, {}).get(le, 0.0) for le, n in buckets_after[model].items()}
        p50, p99 = quantile(delta, 0.5), quantile(delta, 0.99)
        rows.append({"model": model, "rps": sum(done.values()) / seconds if seconds > 0 else 0.0,
                     "p50_ms": None if p50 is None else p50 * 1000, "p99_ms": None if p99 is None else p99 * 1000,
                     "errors": sum(n for code, n in done.items() if not code.startswith("2")),
                     "workers": int(workers[model].get("loaded", 0)),
                     "rss_mib": rss[model][None] / 2 ** 20 if model in rss else 0.0})
    return rows


def render(rows, url):
    def ms(value):
        return "-" if value is None else "%.1f" % value
    lines = ["mmsctl top  %s  %s" % (url, time.strftime("%H:%M:%S")),
             "%-24s %8s %9s %9s %7s %8s %9s" % ("MODEL", "REQ/S", "P50 MS", "P99 MS", "ERR", "WORKERS", "RSS MIB")]
    for row in rows:
        lines.append("%-24s %8.1f %9s %9s %7d %8d %9.0f" % (
            row["model"][:24], row["rps"], ms(row["p50_ms"]), ms(row["p99_ms"]), row["errors"], row["workers"],
            row["rss_mib"]))
    if not rows:
        lines.append("(no model registered)")
    return "\n".join(lines)


def run(url, interval=2.0, iterations=None, out=sys.stdout):
    """Print the table every ``interval`` seconds (``iterations`` times, forever when None)."""
    clear = "\033[H\033[J" if out.isatty() else ""
    before, taken = scrape(url), time.monotonic()
    count = 0
    while iterations is None or count < iterations:
        time.sleep(interval)
        after, now = scrape(url), time.monotonic()
        out.write(clear + render(figures(before, after, now - taken), url) + "\n")
        out.flush()
        before, taken = after, now
        count += 1
    return 0
