"""Whether every worker of a model has really loaded it, and operations that wait for that.

MMS 1.1.11 shows a worker as READY as soon as its thread runs: while the model is
still loading, or failing to. A scale, register or unregister sent during a
registration can make MMS fail that registration and then unregister the model
(the listener of the registration counts a scaled-down worker as a failure). So
mmsctl reads a real signal before acting, from the server's processes on this host:

* the frontend is the process listening on the management port;
* each model has one backend process (``model_service_worker.py ... --model-name
  NAME``) that forks one process per worker;
* a forked worker has loaded the model once it has answered the frontend's LOAD
  command: only then does it point its standard output at the pipe MMS made for it
  (``TEMP/<channel>-stdout``), and it keeps that until it exits.

A management URL whose server is not on this host (or not visible to this user)
gives ``None``: unknown, and the operations proceed as before.
"""
import os
import socket
import time
from urllib.parse import urlsplit

import psutil

from .errors import ManagementError
from .processes import is_worker, workers_in

TORCHSERVE_FRONTEND = "org.pytorch.serve.ModelServer"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::")


def frontend_for(management_url):
    """The process listening on the management URL's port on this host, else None."""
    parts = urlsplit(management_url)
    if parts.hostname not in LOOPBACK and parts.hostname is not None:
        try:
            local = parts.hostname in {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            local = False
        if not local:
            return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for proc in psutil.process_iter(["name"]):
        if "java" not in (proc.info["name"] or ""):
            continue
        try:
            connections = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") \
                else proc.connections(kind="inet")
        except (psutil.Error, OSError):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections):
            return proc
    return None


def _model_of(cmdline):
    """The --model-name of a worker command line (None for other processes)."""
    if not is_worker(cmdline):
        return None
    try:
        return cmdline[cmdline.index("--model-name") + 1]
    except (ValueError, IndexError):
        return None


def _temp_dir(frontend):
    """The frontend's TEMP (``-Djava.io.tmpdir=``), where its workers' sockets live; None if unknown."""
    try:
        for arg in frontend.cmdline():
            if arg.startswith("-Djava.io.tmpdir="):
                return os.path.join(arg.split("=", 1)[1], "")
    except psutil.Error:
        pass
    return None


def model_processes(frontend, model):
    """``(listeners, forks)``: the live processes of ``model`` served by ``frontend``.

    A listener is the model's ``model_service_worker.py`` process whose parent is not one: the frontend's
    child, or one the supervisor of ``mmsctl serve`` started again on the same socket (in the frontend's
    TEMP) after MMS's died; its forks are the workers.
    """
    temp = _temp_dir(frontend)
    procs = {}
    try:
        for proc in frontend.children(recursive=True):
            procs[proc.pid] = proc
    except psutil.Error:
        pass
    if temp:
        for proc in workers_in(temp, exclude=procs):
            procs[proc.pid] = proc
    named = {}
    for proc in procs.values():
        try:
            if _model_of(proc.cmdline()) == model and proc.status() != psutil.STATUS_ZOMBIE:
                named[proc.pid] = proc
        except psutil.Error:
            continue
    listeners, forks = [], []
    for proc in named.values():
        try:
            parent = proc.ppid()
        except psutil.Error:
            continue
        if parent in named or has_loaded(proc):  # a fork, or one orphaned by its listener's death
            forks.append(proc)
        else:
            listeners.append(proc)
    return listeners, forks


def worker_processes(frontend, model):
    """The forked worker processes of ``model`` under ``frontend`` (not its listener)."""
    return model_processes(frontend, model)[1]


def is_torchserve(frontend):
    """True when the frontend is TorchServe's (mmsctl.torchserve), not MMS's."""
    try:
        return any(TORCHSERVE_FRONTEND in arg for arg in frontend.cmdline())
    except psutil.Error:
        return False


def has_loaded(proc):
    """True once the worker's standard output is the pipe MMS opened for it after its LOAD answer."""
    try:
        target = os.readlink("/proc/%d/fd/1" % proc.pid)
    except OSError:
        return False
    return target.endswith("-stdout")


def load_status(client, name, frontend=None, described=None):
    """``{"workerCount": n, "loadedWorkers": k or None, "allWorkersLoaded": bool or None}`` for a model.

    ``workerCount`` is what MMS describes; ``loadedWorkers`` counts its live worker processes
    that have loaded the model (None when the server's processes are not visible here);
    ``liveProcesses`` counts the model's live processes, its listener included (0: its
    workers died and MMS 1.1.11 will not start them again; None when not visible here).

    This is THE rule of a loaded model: ``mmsctl health``, the exporter's ``/readyz`` and the
    supervisor of ``mmsctl serve`` all read it.
    """
    described = described if described is not None else client.describe(name)
    count = len(described.get("workers", []))
    frontend = frontend or frontend_for(client.base_url)
    if frontend is None:
        return {"workerCount": count, "loadedWorkers": None, "allWorkersLoaded": None, "liveProcesses": None}
    if is_torchserve(frontend):  # its READY is a worker that has loaded the model (one process each, no fork)
        loaded = sum(1 for worker in described.get("workers", []) if worker.get("status") == "READY")
        live = None  # it starts dead workers again itself
    else:
        listeners, forks = model_processes(frontend, name)  # one look at the processes for both counts
        loaded = sum(1 for proc in forks if has_loaded(proc))
        live = len(listeners) + len(forks)
    return {"workerCount": count, "loadedWorkers": loaded, "allWorkersLoaded": loaded >= count, "liveProcesses": live}


def dead_message(what, name, status):
    """The one line for an operation on a model none of whose worker processes is alive, or None."""
    if status.get("liveProcesses") != 0 or not status.get("workerCount"):
        return None
    return ("%s: model %s has no live worker process (its workers died; MMS 1.1.11 never starts them again): "
            "the supervisor of `mmsctl serve` restores it within seconds (see `mmsctl describe %s`); without one, "
            "`mmsctl unregister %s` and register it again, or restart the server" % (what, name, name, name))


def readiness(client, names=None, frontend=None):
    """``(ready, {model: load status}, [problem, ...])``: each model has a live worker process that has
    loaded it. The truth of ``mmsctl health`` and of the exporter's ``/readyz``."""
    names = list(names) if names else [m["modelName"] for m in client.list()]
    frontend = frontend or frontend_for(client.base_url)
    models, problems = {}, []
    for name in names:
        try:
            described = client.describe(name)
        except ManagementError as err:
            problems.append("model %s: %s" % (name, err))
            continue
        status = load_status(client, name, frontend, described)
        models[name] = status
        loaded = status["loadedWorkers"]
        if loaded is None:  # not visible from here: MMS's READY is all there is
            loaded = sum(1 for w in described.get("workers", []) if w.get("status") == "READY")
        if loaded < 1:
            problems.append("model %s: no live worker has loaded it (%s of %d workers loaded; %s live worker "
                            "process%s)" % (name, loaded, status["workerCount"],
                                            "?" if status["liveProcesses"] is None else status["liveProcesses"],
                                            "" if status["liveProcesses"] == 1 else "es"))
    return not problems and bool(names), models, problems


def wait_until_loaded(client, name, timeout, what, poll=0.25, hint=""):
    """Wait until every worker of ``name`` has loaded it; raise a clear ManagementError if that
    does not happen within ``timeout``. Returns the last described model (None if not registered)."""
    deadline = time.monotonic() + timeout
    frontend = frontend_for(client.base_url)
    while True:
        try:
            described = client.describe(name, what=what)
        except ManagementError as err:
            if err.status == 404:
                return None
            raise
        status = load_status(client, name, frontend, described)
        if status["allWorkersLoaded"] is not False:
            return described
        dead = dead_message(what, name, status)
        if dead:
            raise ManagementError(dead)
        if time.monotonic() >= deadline:
            raise ManagementError(
                "%s: model %s is still loading (%d of %d workers have loaded it after %.0f s): a registration or "
                "scale is in progress, or a worker keeps failing to load (see the server's logs); acting now "
                "could make MMS drop the model, so nothing was sent: retry when `mmsctl describe %s` shows "
                "allWorkersLoaded true%s" % (what, name, status["loadedWorkers"], status["workerCount"], timeout, name,
                                             hint))
        time.sleep(poll)
