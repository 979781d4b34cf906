"""Client of MMS's management API (register, scale, describe, list, unregister).

Every failure becomes a :class:`ManagementError` that names the server and the
model: a server that is down, a model that does not exist, a refused request.
"""
import os
import re
from urllib.parse import quote, urlencode, urlsplit

import requests

from .errors import ManagementError, UsageError

DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"
MANAGEMENT_URL_ENV = "MMSCTL_MANAGEMENT_URL"
_REMOTE_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def default_management_url():
    return os.environ.get(MANAGEMENT_URL_ENV) or DEFAULT_MANAGEMENT_URL


def url_under(url, prefix):
    """True when ``url`` has the scheme, host and port of ``prefix`` and a path at or below its path.

    A bare string prefix would let ``https://models.example.com.evil.io/x.mar`` or
    ``https://models.example.com@evil.io/x.mar`` through an allowed
    ``https://models.example.com``; comparing the parsed parts does not.

    >>> url_under("https://models.example.com/r/x.mar", "https://models.example.com/r")
    True
    >>> url_under("https://models.example.com.evil.io/x.mar", "https://models.example.com")
    False
    """
    try:
        got, want = urlsplit(url), urlsplit(prefix)
        same_origin = (got.scheme.lower(), got.hostname, got.port) == (want.scheme.lower(), want.hostname, want.port)
    except ValueError:  # a malformed port
        return False
    if not same_origin or got.username or got.password or not want.hostname:
        return False
    if ".." in got.path.split("/"):
        return False
    base = want.path.rstrip("/") + "/"
    return got.path == want.path or got.path.startswith(base)


def check_model_url(url, allow=()):
    """Refuse remote archive URLs unless one of the ``allow`` prefixes matches.

    MMS downloads any http(s) URL it is given and runs the handler inside; a local
    file name in the model store is always allowed.
    """
    if not _REMOTE_URL.match(url):
        return url
    if any(url_under(url, prefix) for prefix in allow):
        return url
    raise UsageError("refusing remote model URL %s: pass --allow-url PREFIX for sources you trust" % url)


class ManagementClient:
    """Thin, typed wrapper over MMS's management REST API."""

    def __init__(self, base_url=None, timeout=30.0, session=None):
        self.base_url = (base_url or default_management_url()).rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _call(self, method, path, what, params=None, timeout=None, timeout_hint="", body=None):
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        try:
            response = self.session.request(method, url, timeout=timeout or self.timeout, json=body)
        except requests.ConnectionError as err:
            reset = "reset" in str(err).lower() or "aborted" in str(err).lower()
            raise ManagementError("%s: management API at %s %s" % (
                what, self.base_url, "closed the connection" if reset else "is not reachable (is the server running?)"))
        except requests.Timeout:
            raise ManagementError("%s: management API at %s did not answer within %.0f s%s" % (
                what, self.base_url, timeout or self.timeout, timeout_hint))
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text.strip()}
        if response.status_code >= 300:
            message = body.get("message") if isinstance(body, dict) else str(body)
            raise ManagementError("%s: %s answered %d: %s" % (what, self.base_url, response.status_code, message),
                                  status=response.status_code)
        return response.status_code, body

    def register(self, url, name=None, batch_size=None, max_batch_delay=None, workers=None,
                 response_timeout=None, synchronous=True, allow=()):
        """Register an archive; ``response_timeout`` is in SECONDS, ``max_batch_delay`` in ms.

        The request is a JSON body: MMS 1.1.11 reads ``response_timeout`` from a JSON body
        as seconds, but from the query string as minutes (``RegisterModelRequest``
        multiplies it by 60), so only the body can say 5 s. Either form applies
        ``batch_size`` and ``max_batch_delay``; omitted keys keep MMS's defaults (batch 1,
        100 ms, ``default_workers_per_model``, ``default_response_timeout_seconds``).
        """
        check_model_url(url, allow)
        body = {"url": url}
        for key, value in (("model_name", name), ("batch_size", batch_size), ("max_batch_delay", max_batch_delay),
                           ("initial_workers", workers), ("response_timeout", response_timeout)):
            if value is not None:
                body[key] = int(value) if key != "model_name" else value
        body["synchronous"] = bool(synchronous)
        what = "register %s" % (name or url)
        try:
            return self._call("POST", "/models", what, timeout=max(self.timeout, 300), body=body)[1]
        except ManagementError as err:
            if err.status == 500 and "failed to start workers" in str(err).lower():
                raise ManagementError("%s: the model's workers could not load it (corrupt or incompatible files, "
                                      "or a handler error), so it was not registered; the reason is in the "
                                      "server's logs/mms_log.log (search for 'failed to load')" % err,
                                      status=err.status) from err
            raise

    def scale(self, name, min_worker, max_worker=None, synchronous=True, timeout=None):
        """Scale workers; returns (status, body). MMS answers 210 for a partial success."""
        params = {"min_worker": int(min_worker), "synchronous": "true" if synchronous else "false"}
        if max_worker is not None:
            params["max_worker"] = int(max_worker)
        return self._call("PUT", "/models/" + quote(name, safe=""), "scale model %s" % name, params,
                          timeout=timeout or max(self.timeout, 300), timeout_hint=(
                              " (MMS 1.1.11 never answers when a model scaled down to 0 workers is scaled up "
                              "again: unregister it and register it anew)" if synchronous and min_worker > 0 else ""))

    def describe(self, name, what=None):
        """MMS's description of a model; ``what`` names the operation in errors (default: describe)."""
        body = self._call("GET", "/models/" + quote(name, safe=""), what or "describe model %s" % name)[1]
        if isinstance(body, list):  # TorchServe describes each version of the model: mmsctl registers one
            body = body[0] if body else {}
        return body

    def list(self, limit=100):
        """All registered models, following ``nextPageToken``."""
        models, token = [], None
        while True:
            params = {"limit": limit}
            if token:
                params["next_page_token"] = token
            body = self._call("GET", "/models", "list models", params)[1]
            models.extend(body.get("models", []))
            token = body.get("nextPageToken")
            if not token:
                return models

    def unregister(self, name):
        return self._call("DELETE", "/models/" + quote(name, safe=""), "unregister model %s" % name)[1]

    def ready_workers(self, name):
        """(READY workers, all workers) of a model.

        MMS's READY means a running worker thread; the model may still be loading
        in it. Models registered with ``synchronous=true`` (as ``mmsctl serve``
        does) have loaded in every worker when the registration returns.
        """
        workers = self.describe(name).get("workers", [])
        return sum(1 for w in workers if w.get("status") == "READY"), len(workers)

    def health(self, names=None):
        """{model: live worker processes that have loaded it}; raises ManagementError unless each has one.

        MMS's /ping answers 200 even when every worker is dead, and its READY stays on a worker whose
        processes were killed, so this reads the rule of :func:`mmsctl.loading.readiness` (the exporter's
        /readyz reads it too): a live worker process that has loaded the model.
        """
        from . import loading
        names = list(names or [m["modelName"] for m in self.list()])
        if not names:
            raise ManagementError("health: no model is registered at %s" % self.base_url)
        _ready, models, problems = loading.readiness(self, names)
        if problems:
            raise ManagementError("health: %s at %s" % ("; ".join(problems), self.base_url))
        return {name: status["loadedWorkers"] for name, status in models.items()}
