"""What the exporter has counted: requests, latencies and worker states per model.

One :class:`Store` is fed by the log tailer (``on_access``, ``on_metric``,
``on_state``) and read by the Prometheus collector, ``/readyz`` and the EMF
writer, each under its lock. Series of a model that is unregistered are dropped.
"""
import threading
from collections import defaultdict

#: request and handler durations, seconds (5 ms to 10 s)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: label of predictions for a name no registered model has (MMS answered 404)
UNKNOWN_MODEL = "_unknown"

LOADED = "WORKER_MODEL_LOADED"
STARTED = "WORKER_STARTED"
STOPPED = "WORKER_STOPPED"


class Histogram:
    """Cumulative-bucket histogram, as Prometheus exposes one."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds):
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[index] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self):
        """[(upper bound as text, cumulative count)], ending with +Inf."""
        out, total = [], 0
        for bound, count in zip([repr(b) for b in BUCKETS] + ["+Inf"], self.counts):
            total += count
            out.append((bound, total))
        return out


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = defaultdict(int)            # (model, code) -> count
        self.durations = defaultdict(Histogram)     # (model, code) -> request durations
        self.other_requests = defaultdict(int)      # code -> requests that name no model (ping, management)
        self.prediction = defaultdict(Histogram)    # model -> handler time (PredictionTime)
        self.states = defaultdict(lambda: defaultdict(int))  # model -> state -> worker threads
        self.listeners = defaultdict(int)           # model -> MMS's preloading listener entries
        self.restarts = defaultdict(int)            # model -> workers restarted
        self.ports = {}                             # model -> the socket port of its workers
        self.forgotten = {}                         # model -> ms when it was seen unregistered
        self.lines = defaultdict(int)               # log -> lines read
        self.unparsed = defaultdict(int)            # log -> lines that could not be parsed
        self.lag = {}                               # log -> seconds between a line's time and its reading
        self.last_line_ms = {}                      # log -> time of the last line read
        self.registered = None                      # set of model names (None before the first poll)
        self.listeners_emf = []                     # callables(access record, model label)

    # -- fed by the tailer ------------------------------------------------------------
    def model_label(self, model, status):
        known = self.registered
        if known is not None and model not in known and status == 404:
            return UNKNOWN_MODEL
        return model

    def on_access(self, record):
        with self.lock:
            if record.model is None:
                self.other_requests[str(record.status)] += 1
                return
            label = self.model_label(record.model, record.status)
            key = (label, str(record.status))
            self.requests[key] += 1
            self.durations[key].observe(record.duration_ms / 1000.0)
        for listener in self.listeners_emf:
            listener(record, label)

    def on_metric(self, record):
        if record.name != "PredictionTime":
            return
        model = record.dimensions.get("ModelName")
        if not model:
            return
        seconds = record.value / (1000.0 if record.unit == "Milliseconds" else 1.0)
        with self.lock:
            self.prediction[model].observe(seconds)

    def on_state(self, record):
        with self.lock:
            if record.time_ms <= self.forgotten.get(record.model, 0):
                return  # a line about a model already dropped (its unregistration)
            self.ports[record.model] = record.port
            if record.old is None and record.new == LOADED:
                self.listeners[record.model] += 1  # MMS's listener process, not a worker
                return
            counts = self.states[record.model]
            if record.old is not None:
                counts[record.old] = max(0, counts[record.old] - 1)
            counts[record.new] += 1
            if record.old == STOPPED and record.new == STARTED:
                self.restarts[record.model] += 1

    def on_line(self, log, parsed, time_ms, now):
        with self.lock:
            self.lines[log] += 1
            if not parsed:
                self.unparsed[log] += 1
            elif time_ms:
                self.last_line_ms[log] = time_ms
                self.lag[log] = max(0.0, now - time_ms / 1000.0)

    # -- fed by the poller ---------------------------------------------------------------
    def set_registered(self, names, now_ms):
        """The models the management API lists; the series of the others are dropped."""
        with self.lock:
            names = set(names)
            if self.registered is not None:
                for gone in self.registered - names:
                    self._forget(gone, now_ms)
            self.registered = names

    def _forget(self, model, now_ms):
        for table in (self.requests, self.durations):
            for key in [k for k in table if k[0] == model]:
                del table[key]
        for table in (self.prediction, self.states, self.listeners, self.restarts, self.ports):
            table.pop(model, None)
        self.forgotten[model] = now_ms

    # -- read --------------------------------------------------------------------------------
    def loaded_workers(self, model):
        with self.lock:
            return self.states.get(model, {}).get(LOADED, 0)

    def worker_states(self, model):
        with self.lock:
            return {state: n for state, n in self.states.get(model, {}).items() if n}
