"""The exporter: Prometheus ``/metrics``, ``/healthz`` and ``/readyz`` for one server.

It reads the server's state folder (``server.json``: pid and URLs; ``logs/``:
the files written with mmsctl's log4j2 layouts), follows the logs, polls the
management API and the worker processes once a second, and answers over HTTP.
"""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from mmsctl import loading, supervisor
from mmsctl.drain import DRAINING_FILE
from mmsctl.errors import ManagementError, ServerError
from mmsctl.management import ManagementClient
from mmsctl.server import LOADING_FILE, ServerState

from . import logconfig, parse, procs
from .emf import EmfWriter
from .store import LOADED, Store
from .tail import Follower

DEFAULT_PORT = 8082

_LOGS = (("access", logconfig.ACCESS_LOG, parse.access, False),
         ("model_metrics", logconfig.MODEL_METRICS_LOG, parse.metric, False),
         # worker states are replayed from the start of the file: a state, not a count
         ("worker_state", logconfig.WORKER_STATE_LOG, parse.state_change, True))

_STATE_NAMES = {"WORKER_MODEL_LOADED": "loaded", "WORKER_STARTED": "loading", "WORKER_STOPPED": "stopped"}


def state_name(state):
    return _STATE_NAMES.get(state) or state.lower().replace("worker_", "")


class Exporter:
    def __init__(self, state_dir, host="127.0.0.1", port=DEFAULT_PORT, emf_stream=None, tail_interval=0.25,
                 poll_interval=1.0):
        self.state_dir = os.path.abspath(state_dir)
        self.store = Store()
        logs = os.path.join(self.state_dir, "logs")
        self.tailed = [(name, Follower(os.path.join(logs, filename), from_start=replay), parser)
                       for name, filename, parser, replay in _LOGS]
        self.tail_interval, self.poll_interval = tail_interval, poll_interval
        self.processes, self.host_figures = [], {}
        self.host_sampler = procs.HostSampler()
        self.emf = None
        if emf_stream is not None:
            self.emf = EmfWriter(emf_stream, self.store.loaded_workers)
            self.store.listeners_emf.append(self.emf.observe)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self.url = "http://%s:%d" % ("127.0.0.1" if host in ("0.0.0.0", "") else host, self.httpd.server_port)
        self._threads = []
        self._tail_lock = threading.Lock()
        self.errors, self.last_error = 0, None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        self.tail_once()
        self.poll_once()
        for target in (self.httpd.serve_forever, self._loop(self.tail_once, self.tail_interval),
                       self._loop(self.poll_once, self.poll_interval)):
            thread = threading.Thread(target=target, daemon=True, name="mmsctl-exporter")
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, step, interval):
        def run():
            while not self.stopping.wait(interval):
                try:
                    step()
                except Exception as err:  # never let one bad poll end the exporter
                    self.errors += 1
                    self.last_error = repr(err)
        return run

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.tail_once()
        if self.emf is not None:
            self.emf.flush(final=True)
        for _name, follower, _parser in self.tailed:
            follower.close()

    # -- reading -------------------------------------------------------------------------------
    def tail_once(self):
        with self._tail_lock:  # the tail thread and /readyz both read
            self._tail_once()

    def _tail_once(self):
        for name, follower, parser in self.tailed:
            lines = follower.lines()
            now = time.time()
            for line in lines:
                if not line.strip():
                    continue
                record = parser(line)
                self.store.on_line(name, record is not None, record.time_ms if record else None, now)
                if record is None:
                    continue
                if name == "access":
                    self.store.on_access(record)
                elif name == "model_metrics":
                    self.store.on_metric(record)
                else:
                    self.store.on_state(record)

    def server_state(self):
        try:
            return ServerState.load(self.state_dir)
        except (ServerError, TypeError, ValueError):
            return None

    def poll_once(self):
        state = self.server_state()
        if state is not None:
            try:
                names = [m["modelName"] for m in ManagementClient(state.management_url, timeout=2).list()]
                self.store.set_registered(names, int(time.time() * 1000))
            except ManagementError:
                pass
            self.processes = procs.worker_processes(state.pid, os.path.join(state.state_dir, "tmp"))
        else:
            self.processes = []
        self.host_figures = self.host_sampler.sample()
        if self.emf is not None:
            self.emf.flush(sorted(self.store.registered or ()))

    # -- health ----------------------------------------------------------------------------------
    def health(self):
        """(HTTP status, body): the server process runs and the frontend answers /ping."""
        state = self.server_state()
        if state is None:
            return 503, {"healthy": False, "reason": "no server state in %s (stopped?)" % self.state_dir}
        if not procs.alive(state.pid):
            return 503, {"healthy": False, "reason": "the server process (pid %d) is not running" % state.pid}
        try:
            answer = requests.get(state.inference_url.rstrip("/") + "/ping", timeout=3, verify=False)
        except requests.RequestException as err:
            return 503, {"healthy": False, "reason": "the frontend does not answer /ping: %s" % type(err).__name__}
        if answer.status_code != 200:
            return 503, {"healthy": False, "reason": "the frontend answered /ping with %d" % answer.status_code}
        return 200, {"healthy": True}

    def readiness(self):
        """(HTTP status, body): every registered model has a worker that has loaded it, and is alive."""
        if os.path.exists(os.path.join(self.state_dir, DRAINING_FILE)):
            return 503, {"ready": False, "reason": "draining"}
        if os.path.exists(os.path.join(self.state_dir, LOADING_FILE)):
            return 503, {"ready": False, "reason": "loading the models"}
        state = self.server_state()
        if state is None or not procs.alive(state.pid):
            return 503, {"ready": False, "reason": "the server is not running"}
        client = ManagementClient(state.management_url, timeout=3)
        try:
            names = [m["modelName"] for m in client.list()]
        except ManagementError as err:
            return 503, {"ready": False, "reason": str(err)}
        if not names:
            return 503, {"ready": False, "reason": "no model is registered"}
        self.tail_once()  # the newest worker state changes
        # the one rule of a loaded model (mmsctl health reads it too): a live worker process that has loaded it
        _ready, statuses, problems = loading.readiness(client, names)
        heals = supervisor.read_record(self.state_dir)
        models = {}
        for name in names:
            status = statuses.get(name, {})
            models[name] = {"loaded_workers": status.get("loadedWorkers"),
                            "worker_processes": status.get("liveProcesses")}
        for name, why in sorted(heals.get("gave_up", {}).items()):
            problems.append("model %s: the supervisor gave up healing it: %s" % (name, why))
        if problems:
            states = "; ".join("%s worker threads: %s" % (name, ", ".join(
                "%d %s" % (n, state_name(s)) for s, n in sorted(self.store.worker_states(name).items())) or "none")
                for name in names if models[name]["loaded_workers"] in (0, None))
            return 503, {"ready": False, "reason": "; ".join(problems) + ("; " + states if states else ""),
                         "models": models}
        return 200, {"ready": True, "models": models}


class _Collector:
    def __init__(self, exporter):
        self.exporter = exporter

    def collect(self):
        store = self.exporter.store
        requests_total = CounterMetricFamily("mmsctl_requests", "Prediction requests answered, by model and "
                                             "HTTP status (access log)", labels=["model", "code"])
        durations = HistogramMetricFamily("mmsctl_request_duration_seconds", "Prediction request duration as "
                                          "the frontend logged it (access log)", labels=["model", "code"])
        other = CounterMetricFamily("mmsctl_other_requests", "Requests naming no model (ping, management API)",
                                    labels=["code"])
        prediction = HistogramMetricFamily("mmsctl_prediction_time_seconds", "Handler time per request "
                                           "(PredictionTime, model_metrics.log)", labels=["model"])
        workers = GaugeMetricFamily("mmsctl_workers", "Worker threads of the frontend by state (loaded: the "
                                    "model has loaded in it)", labels=["model", "state"])
        restarts = CounterMetricFamily("mmsctl_worker_restarts", "Workers restarted after they stopped",
                                       labels=["model"])
        lines = CounterMetricFamily("mmsctl_log_lines", "Log lines read", labels=["log"])
        unparsed = CounterMetricFamily("mmsctl_log_unparsed_lines", "Log lines that could not be parsed (skipped)",
                                       labels=["log"])
        lag = GaugeMetricFamily("mmsctl_log_lag_seconds", "Seconds between the last line's time and its reading",
                                labels=["log"])
        unread = GaugeMetricFamily("mmsctl_log_unread_bytes", "Bytes of the log not read yet", labels=["log"])
        with store.lock:
            for (model, code), count in sorted(store.requests.items()):
                requests_total.add_metric([model, code], count)
            for (model, code), hist in sorted(store.durations.items()):
                durations.add_metric([model, code], hist.cumulative(), sum_value=hist.sum)
            for code, count in sorted(store.other_requests.items()):
                other.add_metric([code], count)
            for model, hist in sorted(store.prediction.items()):
                prediction.add_metric([model], hist.cumulative(), sum_value=hist.sum)
            for model, states in sorted(store.states.items()):
                for state, count in sorted(states.items()):
                    workers.add_metric([model, state_name(state)], count)
            for model in sorted(set(store.states) | set(store.restarts)):
                restarts.add_metric([model], store.restarts.get(model, 0))
            port_models = {port: model for model, port in store.ports.items()}
            for name, follower, _parser in self.exporter.tailed:
                lines.add_metric([name], store.lines.get(name, 0))
                unparsed.add_metric([name], store.unparsed.get(name, 0))
                lag.add_metric([name], store.lag.get(name, 0.0))
                unread.add_metric([name], follower.unread_bytes())
        yield from (requests_total, durations, other, prediction, workers, restarts)
        rss = GaugeMetricFamily("mmsctl_worker_resident_memory_bytes", "RSS of each worker process (a listener "
                                "is counted once, role=listener; its forks are role=worker)",
                                labels=["model", "pid", "role"])
        cpu = CounterMetricFamily("mmsctl_worker_cpu_seconds", "CPU seconds (user+system) of each worker process",
                                  labels=["model", "pid", "role"])
        for proc in self.exporter.processes:
            model = port_models.get(proc.port, "port-%d" % proc.port)
            rss.add_metric([model, str(proc.pid), proc.role], proc.rss)
            cpu.add_metric([model, str(proc.pid), proc.role], proc.cpu_seconds)
        yield from (rss, cpu)
        host = self.exporter.host_figures
        if host:
            yield GaugeMetricFamily("mmsctl_host_cpu_percent", "Host CPU use over the last poll",
                                    value=host["cpu_percent"])
            yield GaugeMetricFamily("mmsctl_host_memory_used_bytes", "Host memory in use (total - available)",
                                    value=host["memory_used"])
            yield GaugeMetricFamily("mmsctl_host_memory_total_bytes", "Host memory", value=host["memory_total"])
        yield from (lines, unparsed, lag, unread)
        record = supervisor.read_record(self.exporter.state_dir)
        heals = CounterMetricFamily("mmsctl_heals", "Models the supervisor of `mmsctl serve` registered again "
                                    "after their worker processes died, by cause", labels=["model", "cause"])
        for model, causes in sorted(record["heals"].items()):
            for cause, count in sorted(causes.items()):
                heals.add_metric([model, cause], count)
        failed = CounterMetricFamily("mmsctl_heal_failures", "Heals that failed (the supervisor gives up on a "
                                     "model after a few in a window)", labels=["model"])
        for model, count in sorted(record["failures"].items()):
            failed.add_metric([model], count)
        yield from (heals, failed)
        yield CounterMetricFamily("mmsctl_exporter_errors", "Polls or reads of the exporter that failed "
                                  "(skipped; the next one runs)", value=self.exporter.errors)


def _handler_for(exporter):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(exporter.registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                status, body = exporter.health() if path == "/healthz" else exporter.readiness()
                self._send(status, json.dumps(body).encode("utf-8") + b"\n", "application/json")
            else:
                self._send(404, b'{"error": "not found: try /metrics, /healthz or /readyz"}\n', "application/json")

        def _send(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):  # scrapes every few seconds: not worth a line each
            pass

    return Handler


__all__ = ["Exporter", "DEFAULT_PORT", "DRAINING_FILE", "LOADED"]
