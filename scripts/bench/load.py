"""The one load generator of the benchmarks: a closed loop of N client threads.

Each thread owns one sender (a callable returning the HTTP status or the failed
request's exception name) and sends as soon as its last answer came. A phase ends
by count or by duration, and in any case after a hard time limit; every sample is
``(latency_ms, status)``, kept per thread with its completion time. ``mmsctl bench``,
the sweep, the soak, the profile proof, the latency comparisons and the request
costs all drive their load through :class:`ClosedLoop` / :func:`run_phase` and
:func:`interleaved`, over :class:`HttpSender` (one keep-alive ``http.client``
connection per thread: little client work per request) or the in-process runner.
"""
import hashlib
import http.client
import ipaddress
import os
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional
from urllib.parse import quote, urlsplit

from mmsctl.errors import UsageError
from mmsctl.files import read_regular

from .errors import BenchError

DEFAULT_REQUEST_TIMEOUT = 120.0
#: every count-bounded phase also stops after this many seconds
DEFAULT_MAX_SECONDS = 600.0


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



class ClosedLoop:
    """Closed-loop load: one thread per sender, each sending as soon as its last answer came.

    Ends after ``requests`` requests in all, or after ``duration`` seconds (requests
    in flight then finish and count), and in any case after ``max_seconds``.
    ``per_thread[i]`` holds thread i's ``(completed_at, latency_ms, status)`` in
    completion order, readable while the loop runs (the soak reads it per interval).
    """

    def __init__(self, senders, requests=None, duration=None, label="", max_seconds=DEFAULT_MAX_SECONDS):
        if (requests is None) == (duration is None):
            raise UsageError("give either a request count or a duration, not both")
        if requests is not None and requests < 1:
            raise UsageError("the request count must be at least 1")
        if duration is not None and duration <= 0:
            raise UsageError("the duration must be positive")
        self.senders, self.requests, self.duration, self.max_seconds = senders, requests, duration, max_seconds
        self.per_thread = [[] for _ in senders]
        self.ends = [0.0] * len(senders)
        self.started = None
        self._issued, self._lock, self._stop, self._gate = 0, threading.Lock(), threading.Event(), threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,), name="load-%s-%d" % (label, i), daemon=True)
                         for i in range(len(senders))]

    def _take(self):
        now = time.perf_counter()
        if self._stop.is_set() or now >= self._hard_stop or now >= self._soft_stop:
            return False
        if self.requests is None:
            return True
        with self._lock:
            if self._issued >= self.requests:
                return False
            self._issued += 1
            return True

    def _loop(self, index):
        send, mine = self.senders[index], self.per_thread[index]
        self._gate.wait()
        while self._take():
            began = time.perf_counter()
            status = send()
            ended = time.perf_counter()
            mine.append((ended, (ended - began) * 1000.0, status))
        self.ends[index] = time.perf_counter()

    def start(self):
        """Start the threads, then open the gate: the window starts once every thread is ready."""
        for thread in self._threads:
            thread.start()
        self._cpu0 = time.process_time()
        self.started = time.perf_counter()
        self._hard_stop = self.started + self.max_seconds
        self._soft_stop = self.started + (self.duration if self.duration is not None else self.max_seconds)
        self._gate.set()
        return self

    def done(self):
        return sum(len(mine) for mine in self.per_thread)

    def stop(self):
        """No new requests; those in flight finish."""
        self._stop.set()

    def join(self, progress=None, label="", timeout=None):
        """Wait for every thread; ``progress(label, done, total, elapsed_s)`` about twice a second."""
        for thread in self._threads:
            while thread.is_alive():
                thread.join(timeout=0.5 if timeout is None else min(0.5, timeout))
                if progress is not None:
                    progress(label, self.done(), self.requests, time.perf_counter() - self.started)
                if timeout is not None and time.perf_counter() - self.started > self.max_seconds + timeout:
                    break
        cpu_s = time.process_time() - self._cpu0
        elapsed = max(self.ends) - self.started if self.senders else 0.0
        merged = [(latency, status) for mine in self.per_thread for _, latency, status in mine]
        return PhaseResult(concurrency=len(self.senders), samples=merged, elapsed_s=elapsed, cpu_s=cpu_s,
                           started=self.started)


def run_phase(senders, requests=None, duration=None, progress=None, label="", max_seconds=DEFAULT_MAX_SECONDS):
    """One bounded phase of :class:`ClosedLoop`; its :class:`PhaseResult`."""
    loop = ClosedLoop(senders, requests=requests, duration=duration, label=label, max_seconds=max_seconds)
    return loop.start().join(progress=progress, label=label)


def interleaved(senders, requests, warmup=0, chunk=5):
    """{key: samples}: ``requests`` requests per sender at concurrency 1, the senders taking turns
    ``chunk`` requests at a time (so a slow moment of the machine hits every sender alike),
    after ``warmup`` requests each. ``senders`` is {key: sender}; the caller closes them.
    """
    for sender in senders.values():
        for _ in range(warmup):
            sender()
    samples = {key: [] for key in senders}
    while any(len(s) < requests for s in samples.values()):
        for key, sender in senders.items():
            todo = min(chunk, requests - len(samples[key]))
            if todo > 0:
                samples[key] += run_phase([sender], requests=todo, label="interleaved").samples
    return samples


def close_all(senders):
    for sender in senders:
        sender.close()


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


def free_port(taken=()):
    """A free loopback port below 32767 (MMS 1.1.11 refuses higher ones), not in ``taken``."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free loopback port in 20000-32000")
