"""Reading MMS 1.1.11's logs: stamped lines of ``mms_log.log``, the cold-start markers, and
where a served request's time goes (``model_metrics.log``, job times, ``access_log.log``).
"""
import datetime
import re
import time

from .stats import percentile


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d),(\d{3}) \[\s*(\w+)\s*\] (\S+) (.*)$")

#: marker -> pattern of the log message (the first match after the previous marker counts)
MARKERS = (
    ("api_bound", re.compile(r"Management API bind to")),
    ("unzip_start", re.compile(r"Loading initial models")),
    ("model_registered", re.compile(r"ModelManager - Model (?P<name>\S+) loaded\.")),
    ("worker_connected", re.compile(r"Connection accepted")),
    ("framework_imported", re.compile(r"(?:MXNet|onnxruntime) \S+ on \w+\(\d+\)")),
    ("model_ready", re.compile(r"model (?P<name>\S+) ready on \S+ in [\d.]+ s")),
)


def parse_log(text):
    """[(epoch seconds, thread, message)] of the stamped lines of mms_log.log."""
    events = []
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
        events.append((time.mktime(stamp.timetuple()) + int(match.group(2)) / 1000.0, match.group(4),
                       match.group(5)))
    return events


def find_markers(events, since=None):
    """{marker: epoch seconds of its first line at or after ``since``}.

    >>> events = [(10.0, "main", "com.x.ModelServer - Management API bind to: http://127.0.0.1:1")]
    >>> find_markers(events)["api_bound"]
    10.0
    """
    found = {}
    for key, pattern in MARKERS:
        for stamp, _thread, message in events:
            if since is not None and stamp < since:
                continue
            if pattern.search(message):
                found[key] = stamp
                break
    return found


def _span(end, start):
    if end is None or start is None:
        return None
    return max(0.0, end - start)


def cold_start_parts(markers, launched, registered, first_answer, ready_reported=None):
    """The parts of serve-to-first-answer (seconds); None where a marker is missing.

    ``launched``, ``registered`` (None when the model was on the command line),
    ``first_answer`` and ``ready_reported`` (when ``server.start``/register
    returned) are epoch seconds taken here; the markers come from MMS's log.

    >>> parts = cold_start_parts({"api_bound": 11.0, "unzip_start": 11.2, "model_registered": 11.5,
    ...     "worker_connected": 11.6, "framework_imported": 13.0, "model_ready": 13.5}, 10.0, None, 13.7)
    >>> [round(parts[k], 2) for k in ("serve_to_first_answer_s", "unzip_s", "import_s", "load_s", "first_request_s")]
    [3.7, 0.3, 1.4, 0.5, 0.2]
    """
    api, unzip_start, model, worker, framework, ready = (markers.get(k) for k in (
        "api_bound", "unzip_start", "model_registered", "worker_connected", "framework_imported", "model_ready"))
    if registered is not None:
        unzip_start = registered
    elif unzip_start is None:  # registered by server.start as soon as the API answered
        unzip_start = api
    return {
        "serve_to_first_answer_s": _span(first_answer, launched),
        "ready_reported_s": _span(ready_reported, launched),
        "frontend_s": _span(api, launched),
        "api_to_register_s": _span(registered, api),
        "unzip_s": _span(model, unzip_start),
        "worker_start_s": _span(worker, model),
        "import_s": _span(framework, worker),
        "load_s": _span(ready, framework),
        "first_request_s": _span(first_answer, ready if ready is not None else ready_reported),
    }

PREDICTION_TIME = re.compile(r"PredictionTime\.Milliseconds:([\d.]+)")
JOB_TIMES = re.compile(r"Waiting time: (\d+), Backend time: (\d+)")
ACCESS = re.compile(r'"POST /predictions/\S+ HTTP/[\d.]+" (\d{3}) (\d+)\s*$')

def _median(values):
    return percentile(values, 50)


def request_times(metrics_text, log_text, access_text, segments=None):
    """Where a served request's time goes, from MMS's own logs (medians, ms).

    ``handler``: the handler's ``handle`` call in the worker (PredictionTime);
    ``backend``: frontend -> worker -> frontend (Job "Backend time"); ``queue``:
    MMS's "Waiting time" of a job; ``frontend``: the whole request inside the
    frontend (access log). So backend - handler is the worker protocol's share,
    frontend - backend - queue the rest of the frontend's.

    ``segments``: [(label, request count)] in the order the requests were sent
    (first request, warm-up, one per concurrency level); one entry each.

    >>> (t,) = request_times("PredictionTime.Milliseconds:90.5|#x", "Job - Waiting time: 1, Backend time: 93",
    ...                      '"POST /predictions/m HTTP/1.1" 200 95')
    >>> (t["handler_ms"], t["worker_protocol_ms"], t["frontend_other_ms"])
    (90.5, 2.5, 1.0)
    """
    handler = [float(x) for x in PREDICTION_TIME.findall(metrics_text)]
    jobs = [(int(w), int(b)) for w, b in JOB_TIMES.findall(_dedupe(log_text))]
    access = [m.groups() for m in map(ACCESS.search, access_text.splitlines()) if m]
    entries, start = [], 0
    for label, count in segments or [("all", len(access))]:
        part = slice(start, start + count)
        start += count
        entries.append(_times_entry(label, handler[part], jobs[part],
                                    [int(ms) for status, ms in access[part] if status == "200"]))
    return entries


def _times_entry(label, handler, jobs, access):
    entry = {"segment": label, "requests_seen": len(access), "handler_ms": _median(handler),
             "queue_ms": _median([w for w, _ in jobs]), "backend_ms": _median([b for _, b in jobs]),
             "frontend_ms": _median(access)}
    entry["worker_protocol_ms"] = (entry["backend_ms"] - entry["handler_ms"]
                                   if None not in (entry["backend_ms"], entry["handler_ms"]) else None)
    entry["frontend_other_ms"] = (entry["frontend_ms"] - entry["backend_ms"] - entry["queue_ms"]
                                  if None not in (entry["frontend_ms"], entry["backend_ms"], entry["queue_ms"])
                                  else None)
    return entry


def _dedupe(text):
    """MMS 1.1.11's log configuration writes most lines twice; keep the first of each."""
    return "\n".join(dict.fromkeys(text.splitlines()))


def wait_for_access_log(path, expected, timeout=5.0):
    """The access log once it lists ``expected`` predictions (MMS logs asynchronously), or as it is then."""
    deadline = time.monotonic() + timeout
    while True:
        text = read_text(path)
        if text.count("POST /predictions/") >= expected or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""

