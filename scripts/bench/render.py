"""Rendering a benchmark report: report.md (seed 002's Table 1 layout, then the details),
report.png (seed 004's cost performance against processing time) and the terminal
progress (tqdm bars on stderr).
"""
import os

from tqdm import tqdm

from . import breakdown
from .stats import thousand_requests_per_usd


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


class TerminalProgress:
    """Progress of the load phases on ``stream`` (stderr): one tqdm bar per phase, updated in place
    on a terminal; ``message`` prints a line between the bars.

    Called as ``progress(label, done, total, elapsed_s)`` by :func:`mmsctl.bench.load.run_phase`.
    """

    def __init__(self, stream, interval=1.0):
        self.stream = stream
        self.interval = interval
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._bar = None
        self._label = None

    def __call__(self, label, done, total, elapsed):
        if label != self._label or self._bar is None:
            self.close()
            self._label = label
            self._bar = tqdm(total=total, desc="  %-22s" % label, unit="req", file=self.stream, leave=True,
                             mininterval=self.interval if self.tty else 10 * self.interval, dynamic_ncols=self.tty)
            self._bar.start_t = self._bar.last_print_t = self._bar._time() - elapsed  # the phase began earlier
        self._bar.update(done - self._bar.n)

    def close(self):
        if self._bar is not None:
            self._bar.close()
        self._bar = self._label = None

    def message(self, text):
        self.close()
        tqdm.write(text, file=self.stream)
