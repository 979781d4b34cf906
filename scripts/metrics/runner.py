"""Run the exporter next to a server: in-process (``serve --foreground``) or as a child
process of ``mmsctl serve`` (stopped by ``mmsctl stop``, and by itself once the
server is gone).

The SIGTERM drain of a foreground server is ``mmsctl.drain``'s; ``/readyz`` reads its
``<state_dir>/draining``. ``<state_dir>/metrics.json`` records the exporter's URL
(``mmsctl top`` reads it) and, for a child, its pid.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import requests

from mmsctl import processes
from mmsctl.errors import ServerError
from mmsctl.preflight import port_problem
from mmsctl.server import STATE_FILE

from .exporter import DEFAULT_PORT, DRAINING_FILE, Exporter

METRICS_FILE = "metrics.json"
EXPORTER_LOG = "exporter.out"


def metrics_url(state_dir):
    """The exporter URL of the server started from ``state_dir`` (None without one)."""
    try:
        with open(os.path.join(state_dir, METRICS_FILE), encoding="utf-8") as handle:
            return json.load(handle)["url"]
    except (OSError, ValueError, KeyError):
        return None


def _record(state_dir, url, pid=None):
    with open(os.path.join(state_dir, METRICS_FILE), "w", encoding="utf-8") as handle:
        json.dump({"url": url, "pid": pid}, handle)


def check_port(host, port):
    """Raise ServerError when the exporter could not listen on ``host:port``."""
    problem = port_problem("http://%s:%d" % (host, port), "metrics exporter", "--metrics-port (0: no exporter)")
    if problem:
        raise ServerError(problem)


def clear(state_dir):
    """Forget a previous exporter's files (a stale ``draining`` would keep /readyz at 503)."""
    for name in (DRAINING_FILE, METRICS_FILE):
        path = os.path.join(state_dir, name)
        if os.path.exists(path):
            os.remove(path)


def start_in_process(state_dir, host="127.0.0.1", port=DEFAULT_PORT, emf_stream=None):
    exporter = Exporter(state_dir, host=host, port=port, emf_stream=emf_stream).start()
    _record(state_dir, exporter.url)
    return exporter


def start_child(state_dir, host="127.0.0.1", port=DEFAULT_PORT, emf=False, timeout=20.0):
    """Start ``python -m mmsctl.metrics`` for the server of ``state_dir``; return its URL once it answers."""
    state_dir = os.path.abspath(state_dir)
    command = [sys.executable, "-m", "mmsctl.metrics", "--state-dir", state_dir, "--host", host, "--port", str(port)]
    if emf:
        command.append("--emf")
    with open(os.path.join(state_dir, "logs", EXPORTER_LOG), "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    url = "http://%s:%d" % ("127.0.0.1" if host == "0.0.0.0" else host, port)
    _record(state_dir, url, child.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise ServerError("the metrics exporter exited with status %d; see %s"
                              % (child.returncode, os.path.join(state_dir, "logs", EXPORTER_LOG)))
        try:
            requests.get(url + "/metrics", timeout=2)
            return url
        except requests.RequestException:
            time.sleep(0.2)
    stop_child(state_dir)
    raise ServerError("the metrics exporter did not answer on %s within %.0f s" % (url, timeout))


def stop_child(state_dir, timeout=5.0):
    """Stop the exporter child of ``state_dir`` (checked by its command line); True if one ran."""
    try:
        with open(os.path.join(state_dir, METRICS_FILE), encoding="utf-8") as handle:
            pid = json.load(handle).get("pid")
    except (OSError, ValueError):
        return False
    clear(state_dir)
    return processes.stop_helper(pid, state_dir, timeout)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mmsctl.metrics",
                                     description="Prometheus exporter, /healthz and /readyz for an mmsctl server")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--emf", action="store_true", help="write CloudWatch EMF lines to stdout")
    args = parser.parse_args(argv)
    exporter = Exporter(args.state_dir, host=args.host, port=args.port,
                        emf_stream=sys.stdout if args.emf else None).start()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    gone_since = None
    try:
        while not stopping:
            time.sleep(0.5)
            server_gone = not os.path.exists(os.path.join(args.state_dir, STATE_FILE))
            gone_since = (gone_since or time.monotonic()) if server_gone else None
            if gone_since and time.monotonic() - gone_since > 5:  # the server was stopped without us
                break
    except KeyboardInterrupt:
        pass
    exporter.stop()
    return 0
