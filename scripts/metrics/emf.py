"""CloudWatch Embedded Metric Format (EMF): one JSON line per model per minute.

Each line is a structured log event that CloudWatch Logs (the awslogs driver of
an ECS task) turns into metrics, with no agent and no credentials in the
container. The specification's required parts: a top-level ``_aws`` object with
``Timestamp`` (ms since the epoch) and ``CloudWatchMetrics``, a list of
directives ``{"Namespace", "Dimensions": [[names]], "Metrics": [{"Name", "Unit"}]}``;
every dimension and metric a directive names is a top-level member of the line.
"""
import json
import threading
import time
from collections import defaultdict

NAMESPACE = "mmsctl"
DIMENSION = "Model"
STATUS_CLASSES = ("2XX", "4XX", "5XX")

#: the units the specification allows (CloudWatch's StandardUnit)
UNITS = frozenset([
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"])


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of a sorted, non-empty list.

    >>> percentile([1, 2, 3, 4], 0.5), percentile([1, 2, 3, 4], 0.99), percentile([7], 0.9)
    (2, 4, 7)
    """
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def line(model, minute_ms, counts, latencies_ms, workers, namespace=NAMESPACE):
    """One EMF event (a dict) for ``model`` over the minute starting at ``minute_ms``."""
    metrics, values = [], {}
    for status_class in STATUS_CLASSES:
        name = "Requests" + status_class
        metrics.append({"Name": name, "Unit": "Count"})
        values[name] = counts.get(status_class, 0)
    if latencies_ms:
        ordered = sorted(latencies_ms)
        for label, fraction in (("P50", 0.5), ("P90", 0.9), ("P99", 0.99)):
            name = "Latency" + label
            metrics.append({"Name": name, "Unit": "Milliseconds"})
            values[name] = float(percentile(ordered, fraction))
    if workers is not None:
        metrics.append({"Name": "Workers", "Unit": "Count"})
        values["Workers"] = workers
    event = {"_aws": {"Timestamp": int(minute_ms),
                      "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [[DIMENSION]],
                                             "Metrics": metrics}]},
             DIMENSION: model}
    event.update(values)
    return event


def problems(event):
    """What makes ``event`` not a valid EMF event (empty when it is valid)."""
    found = []
    aws = event.get("_aws") if isinstance(event, dict) else None
    if not isinstance(aws, dict):
        return ["no _aws object at the top level"]
    if not isinstance(aws.get("Timestamp"), int) or aws["Timestamp"] < 0:
        found.append("_aws.Timestamp must be a non-negative integer (ms since the epoch)")
    directives = aws.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return found + ["_aws.CloudWatchMetrics must be a non-empty list"]
    for directive in directives:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
            found.append("Namespace must be a string of 1-255 characters")
        dimension_sets = directive.get("Dimensions")
        if not isinstance(dimension_sets, list):
            found.append("Dimensions must be a list of dimension sets")
            dimension_sets = []
        for dimension_set in dimension_sets:
            if not isinstance(dimension_set, list) or len(dimension_set) > 30:
                found.append("a dimension set must be a list of at most 30 names")
                continue
            for name in dimension_set:
                if not isinstance(event.get(name), str):
                    found.append("dimension %r must be a top-level string member" % name)
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list) or len(metrics) > 100:
            found.append("Metrics must be a list of at most 100 definitions")
            metrics = []
        for definition in metrics:
            name = definition.get("Name") if isinstance(definition, dict) else None
            if not isinstance(name, str) or not 1 <= len(name) <= 1024:
                found.append("a metric definition needs a Name of 1-1024 characters")
                continue
            if "Unit" in definition and definition["Unit"] not in UNITS:
                found.append("metric %s: unit %r is not a CloudWatch unit" % (name, definition["Unit"]))
            value = event.get(name)
            numbers = value if isinstance(value, list) else [value]
            if not numbers or len(numbers) > 100 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
                found.append("metric %s must be a top-level number (or list of at most 100)" % name)
    return found


class EmfWriter:
    """Collects each model's requests per minute and writes their EMF lines when the minute is over."""

    def __init__(self, stream, workers_of, namespace=NAMESPACE, clock=time.time):
        self.stream = stream
        self.workers_of = workers_of  # model -> loaded workers now
        self.namespace = namespace
        self.clock = clock
        self.lock = threading.Lock()
        self.minutes = defaultdict(lambda: {"counts": defaultdict(int), "latencies": []})  # (minute_ms, model)
        self.written = {}  # model -> the last minute written

    def observe(self, record, model):
        minute = record.time_ms - record.time_ms % 60000
        status_class = "%dXX" % (record.status // 100)
        with self.lock:
            entry = self.minutes[(minute, model)]
            entry["counts"][status_class] += 1
            entry["latencies"].append(record.duration_ms)

    def flush(self, models=(), final=False):
        """Write the lines of every minute that has ended (all of them when ``final``); ``models``
        (registered now) also get a line for the last minute without requests, for their worker count."""
        now_minute = int(self.clock() * 1000) // 60000 * 60000
        with self.lock:
            done = {key: self.minutes.pop(key) for key in list(self.minutes) if final or key[0] < now_minute}
        if not final:
            last = now_minute - 60000
            for model in models:
                if (last, model) not in done and self.written.get(model, -1) < last:
                    done[(last, model)] = {"counts": {}, "latencies": []}
        for (minute, model), entry in sorted(done.items()):
            event = line(model, minute, entry["counts"], entry["latencies"], self.workers_of(model), self.namespace)
            # one write per line: MMS's frontend writes to the same stdout in a container, and a
            # pipe keeps writes under 4 KiB whole
            self.stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.stream.flush()
            self.written[model] = max(self.written.get(model, -1), minute)
        return len(done)
