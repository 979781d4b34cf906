"""The supervisor of ``mmsctl serve``: a model never stays dead.

MMS 1.1.11 starts one listener process per model (``model_service_worker.py``) which
forks one process per worker. When a fork dies, MMS reconnects to the listener and a new
fork loads the model (within a second or two). When the listener dies (a crash, or
``kill -9`` on the worker's process group), MMS never starts it again: every worker
thread of the model retries the dead socket forever ("Retry worker ... in 1, 2, 3, 5, 8
seconds"), requests wait in the model's queue for good, and ``GET /models/NAME`` keeps
showing READY workers.

The supervisor watches each model's listener (every ``watch_interval``) and, once a second,
each model's live worker processes that have loaded it (:func:`mmsctl.loading.load_status`,
the rule ``mmsctl health`` and ``/readyz`` read):

* a listener died: it is started again with the same command line, environment, folder and
  socket (``restart-listener``, the default). MMS's retrying worker threads connect to it, a
  new fork loads the model, and the requests that waited in the queue are served. When no
  worker has loaded the model ``RESTART_BOUND`` seconds later, the model is registered again;
* ``reregister``: the management API's sequence MMS 1.1.11 survives. The model is scaled to 0
  at once (``WorkLoadManager.modelChanged`` drops its worker threads, so ``addJob`` answers
  later requests with a prompt 503), then, ``grace`` seconds later, unregistered and
  registered again with the settings MMS describes (archive, batch size, batch delay,
  workers) and the response timeout ``mmsctl serve`` gave it. (Scaling to 0 and back does
  not work: the new worker threads find no listener. A request queued before the scale to 0
  is dropped by the unregistration, unanswered: why it is not the default);
* the listener lives but fewer workers than ``minWorkers`` have loaded the model for
  ``slow_grace`` seconds, and MMS is not loading one: registered again;
* a model whose ``minWorkers`` is 0 (the operator scaled it to 0), or with a worker loading
  (a scale or registration in progress), is left alone.

One log line per heal, with its cause. Heals are recorded in ``<state_dir>/heals.json``
(the exporter's ``mmsctl_heals_total{model,cause}`` and ``/readyz`` read it). After
``max_failures`` failed heals of a model within ``window`` seconds the supervisor gives up
on it: it says so in the log and in ``/readyz``'s reason, and leaves the model alone (a
model that cannot load must not flap forever).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from . import loading, processes
from .drain import DRAINING_FILE
from .errors import ManagementError, ServerError
from .management import ManagementClient

RECORD_FILE = "heals.json"
LISTENERS_LOG = "restarted_listeners.log"
RESTART_LISTENER, REREGISTER = "restart-listener", "reregister"
#: Seconds a listener started again has to get its model loaded before the model is registered again instead.
RESTART_BOUND = 30.0
PID_FILE = "supervisor.json"
LOG_FILE = "supervisor.log"

#: Seconds a model whose listener died stays short of workers before it is healed.
DEFAULT_GRACE = 3.0
#: Seconds a model whose listener lives (MMS should reconnect) stays short of loaded workers before it is healed.
DEFAULT_SLOW_GRACE = 60.0
DEFAULT_MAX_FAILURES = 3
DEFAULT_WINDOW = 600.0
#: Seconds the (synchronous) registration of a heal may take.
REGISTER_TIMEOUT = 300.0


def read_record(state_dir):
    """``{"heals": {model: {cause: n}}, "failures": {model: n}, "gave_up": {model: reason}}`` (empty without one)."""
    try:
        with open(os.path.join(state_dir, RECORD_FILE), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        record = {}
    for key in ("heals", "failures", "gave_up"):
        record.setdefault(key, {})
    return record


def _listener(frontend, name):
    """The model's live listener process, or None."""
    listeners = loading.model_processes(frontend, name)[0]
    return listeners[0] if listeners else None


def _port_of_socket(cmdline):
    suffix = processes.sock_name(cmdline).rsplit(".", 1)[-1]
    return int(suffix) if suffix.isdigit() else None


def _loading_now(frontend, name):
    """True while a live fork of the model has yet to load it (MMS is loading one)."""
    return any(not loading.has_loaded(proc) for proc in loading.worker_processes(frontend, name))


class Supervisor:
    def __init__(self, state, grace=DEFAULT_GRACE, slow_grace=DEFAULT_SLOW_GRACE, max_failures=DEFAULT_MAX_FAILURES,
                 window=DEFAULT_WINDOW, interval=1.0, watch_interval=0.1, log=None, heal_by=RESTART_LISTENER,
                 restart_bound=RESTART_BOUND):
        self.state = state
        self.state_dir = state.state_dir
        self.grace, self.slow_grace = grace, slow_grace
        self.max_failures, self.window = max_failures, window
        self.interval, self.watch_interval = interval, watch_interval
        self.heal_by, self.restart_bound = heal_by, restart_bound
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.client = ManagementClient(state.management_url, timeout=10)
        self.frontend = None
        self.listeners = {}  # model -> its listener process, last seen alive
        self.specs = {}  # model -> (pid, command line, environment, folder) of its listener, to start it again
        self.restarting = {}  # model -> (Popen, registration, cause, monotonic time): listener started again
        self.adopted = {}  # pid -> (model, port, Popen): listeners this supervisor started, alive
        self.short_since = {}  # model -> monotonic time it was first seen short of loaded workers
        self.fenced = {}  # model -> (registration, cause, monotonic time): scaled to 0 workers, to be healed
        self.failed_at = {}  # model -> [monotonic times of failed heals]
        self.lost = {}  # model -> registration of a model a heal unregistered and could not register again
        self.retry_at = {}  # model -> monotonic time of its next try
        self.record = read_record(self.state_dir)
        self.stopping = threading.Event()
        self.thread = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        self.thread = threading.Thread(target=self.run, daemon=True, name="mmsctl-supervisor")
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(15)

    def stopping_server(self):
        """True once the server is stopping (drained, or its launcher gone): nothing is healed then."""
        if os.path.exists(os.path.join(self.state_dir, DRAINING_FILE)):
            return True
        try:
            return psutil.Process(self.state.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    def run(self):
        next_step = 0.0
        while not self.stopping.wait(self.watch_interval):
            if self.stopping_server():
                continue
            try:
                self.watch()
                if time.monotonic() >= next_step:
                    next_step = time.monotonic() + self.interval
                    self.step()
            except (ManagementError, psutil.Error, OSError) as err:  # the server stopping, or a slow answer
                self.short_since.clear()
                if not self.stopping.is_set() and not self.stopping_server():
                    self.log("mmsctl supervisor: skipped a check: %s" % err)

    def _frontend(self):
        if self.frontend is None or not self.frontend.is_running():
            self.frontend = loading.frontend_for(self.state.management_url)
        return self.frontend

    # -- the fast watch: a listener seen alive has died ----------------------------------------------
    def watch(self):
        """Every ``watch_interval``: act on each model whose listener (seen alive before) has died.

        MMS keeps a request for a model with worker threads in the model's queue until a worker
        takes it, and no worker will until a listener listens on the model's socket again. So the
        listener is started again at once (:meth:`_restart_listener`); with ``reregister`` the model
        is scaled to 0 workers at once instead (:meth:`_fence`), so that MMS answers later requests
        with a prompt 503 ("No worker is available to serve request") until the heal registers it.
        """
        for name, proc in list(self.listeners.items()):
            try:
                alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if alive:
                continue
            del self.listeners[name]
            try:
                described = self.client.describe(name)
            except ManagementError as err:
                if err.status == 404:  # unregistered (its listener went with it)
                    continue
                raise
            if (described.get("minWorkers") or 0) < 1 or name in self.restarting:
                continue
            cause = "listener-died: its listener process (pid %d) died" % proc.pid
            if self.heal_by == RESTART_LISTENER and name in self.specs:
                self._restart_listener(name, described, cause)
            else:
                self._fence(name, described, cause)

    def _restart_listener(self, name, described, cause):
        """Start the dead listener again: same command line, environment, folder and socket. MMS's worker
        threads retry that socket (1, 1, 2, 3, 5 ... s apart): they connect, load the model in a new fork, and
        serve the requests that waited in the model's queue. No request is lost and nothing is registered."""
        _pid, cmdline, environ, cwd = self.specs[name]
        try:
            with open(os.path.join(self.state_dir, "logs", LISTENERS_LOG), "ab") as out:
                popen = subprocess.Popen(cmdline, env=environ, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        except OSError as err:
            self.log("mmsctl supervisor: could not start the listener of model %s again (%s); registering the "
                     "model again" % (name, err))
            self._fence(name, described, "%s; starting it again failed" % cause)
            return
        port = _port_of_socket(cmdline)
        self.adopted[popen.pid] = (name, port, popen)
        self.restarting[name] = (popen, self._registration(name, described), cause, time.monotonic())
        self._count("heals", name, cause.split(":", 1)[0])
        try:
            self.listeners[name] = psutil.Process(popen.pid)
        except psutil.Error:
            pass

    def _fence(self, name, described, cause):
        registration = self._registration(name, described)
        try:
            self.client.scale(name, 0, max(1, described.get("maxWorkers") or 1), synchronous=False, timeout=10)
        except ManagementError as err:
            self.log("mmsctl supervisor: could not scale model %s to 0 workers before healing it: %s" % (name, err))
        self.fenced[name] = (registration, cause, time.monotonic())

    # -- one check ------------------------------------------------------------------------------
    def step(self):
        frontend = self._frontend()
        if frontend is None:
            return
        now = time.monotonic()
        for name, registration in list(self.lost.items()):
            if now >= self.retry_at.get(name, 0):
                self._heal(name, registration, "lost-by-a-heal: unregistered by a heal that could not register it",
                           unregister=False)
        for name, (registration, cause, since) in list(self.fenced.items()):
            if name in self.lost or now - since < self.grace:
                continue
            del self.fenced[name]
            self._heal(name, registration, "%s %.1f s ago" % (cause, now - since))
        names = [m["modelName"] for m in self.client.list()]
        for name in set(self.listeners) - set(names):
            del self.listeners[name]
        self._check_adopted(names)
        for name, (popen, registration, cause, since) in list(self.restarting.items()):
            if name not in names:
                del self.restarting[name]
                continue
            described = self.client.describe(name)
            status = loading.load_status(self.client, name, frontend, described)
            target = registration["workers"] or 1
            if (status["loadedWorkers"] or 0) >= target:
                del self.restarting[name]
                self.log("mmsctl supervisor: healed model %s (cause %s) by starting its listener again (pid %d): "
                         "%d worker%s loaded it %.1f s later" % (name, cause, popen.pid, target,
                                                                   "" if target == 1 else "s", now - since))
            elif popen.poll() is not None or now - since > self.restart_bound:
                del self.restarting[name]
                self._stop_adopted(popen.pid)
                self.log("mmsctl supervisor: the listener of model %s started again (pid %d) %s; registering the "
                         "model again" % (name, popen.pid, "exited with status %s" % popen.returncode
                                          if popen.returncode is not None else "got no worker loaded in %.0f s"
                                          % self.restart_bound))
                self._failed(name, cause, "restart-listener", "no worker loaded it", since, retry=False)
                if name not in self.record["gave_up"]:
                    self._heal(name, registration, "listener-restart-failed: after %s" % cause)
        for name in names:
            if name in self.record["gave_up"] or name in self.lost or name in self.fenced or name in self.restarting:
                continue
            try:
                described = self.client.describe(name)
            except ManagementError as err:
                if err.status == 404:  # unregistered meanwhile
                    self.short_since.pop(name, None)
                    continue
                raise
            cause = self._cause(frontend, name, described)
            if cause is not None:
                self._heal(name, self._registration(name, described), cause)

    def _cause(self, frontend, name, described):
        """The cause of a heal due now, or None; remembers the model's listener for :meth:`watch`."""
        target = described.get("minWorkers") or 0
        listener = _listener(frontend, name)
        if listener is not None:
            self.listeners[name] = listener
            if self.specs.get(name, (None,))[0] != listener.pid:
                try:
                    self.specs[name] = (listener.pid, listener.cmdline(), listener.environ(), listener.cwd())
                except psutil.Error:
                    pass
        if target < 1:  # the operator scaled it to 0: left alone
            self.short_since.pop(name, None)
            return None
        status = loading.load_status(self.client, name, frontend, described)
        if status["loadedWorkers"] is None or status["loadedWorkers"] >= min(target, status["workerCount"] or target):
            self.short_since.pop(name, None)
            return None
        if listener is not None and _loading_now(frontend, name):  # MMS is loading one (a restart, a scale): wait
            self.short_since.pop(name, None)
            return None
        now = time.monotonic()
        waited = now - self.short_since.setdefault(name, now)
        if listener is not None and waited > self.slow_grace:
            return "workers-not-restored: %d of %d workers loaded for %.0f s and MMS is not loading one" % (
                status["loadedWorkers"], target, waited)
        if listener is None and waited > self.grace:
            return "listener-died: no live listener process, %d of %d workers loaded for %.1f s" % (
                status["loadedWorkers"], target, waited)
        return None

    def _check_adopted(self, names):
        """Stop the listeners this supervisor started whose model is gone (unregistered, registered again on
        another socket, or scaled to no worker at all); reap those that exited."""
        for pid, (name, port, popen) in list(self.adopted.items()):
            if popen.poll() is not None:
                del self.adopted[pid]
                continue
            keep = name in names
            if keep:
                try:
                    described = self.client.describe(name)
                except ManagementError as err:
                    if err.status != 404:
                        raise
                    described = {}
                ports = {str(w.get("id", "")).split("-", 1)[0] for w in described.get("workers", [])}
                keep = bool(described) and (described.get("maxWorkers") or 0) > 0 and (not ports or str(port) in ports)
            if not keep:
                self._stop_adopted(pid)

    def _stop_adopted(self, pid):
        name, _port, popen = self.adopted.pop(pid, (None, None, None))
        if popen is None:
            return
        if name in self.listeners and self.listeners[name].pid == pid:  # stopped on purpose: not a death
            del self.listeners[name]
        try:
            procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            procs = []
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        popen.wait(10)

    def _registration(self, name, described):
        settings = self.state.settings.get(name, {})
        return {"url": described["modelUrl"], "name": name, "batch_size": described.get("batchSize"),
                "max_batch_delay": described.get("maxBatchDelay"), "workers": described.get("minWorkers"),
                "response_timeout": settings.get("response_timeout_s")}

    def _heal(self, name, registration, cause, unregister=True):
        started = time.monotonic()
        kind = cause.split(":", 1)[0]
        self.short_since.pop(name, None)
        self.listeners.pop(name, None)  # the registration starts a listener of its own (seen by the next step)
        self.specs.pop(name, None)
        self._count("heals", name, kind)
        step = "unregister"
        try:
            if unregister:
                try:
                    self.client.unregister(name)
                except ManagementError as err:
                    if err.status != 404:
                        raise
                self.lost[name] = registration
            step = "register"
            ManagementClient(self.state.management_url, timeout=REGISTER_TIMEOUT).register(
                registration["url"], name=name, batch_size=registration["batch_size"],
                max_batch_delay=registration["max_batch_delay"], workers=registration["workers"],
                response_timeout=registration["response_timeout"], synchronous=True, allow=(registration["url"],))
        except ManagementError as err:
            self._failed(name, cause, step, err, started)
            return False
        self.lost.pop(name, None)
        self.log("mmsctl supervisor: healed model %s (cause %s) by unregister and register, in %.1f s" % (
            name, cause, time.monotonic() - started))
        return True

    def _failed(self, name, cause, step, err, started, retry=True):
        now = time.monotonic()
        times = [t for t in self.failed_at.get(name, []) if now - t <= self.window] + [now]
        self.failed_at[name] = times
        self.retry_at[name] = now + self.grace * 2 ** len(times)
        self.record["failures"][name] = self.record["failures"].get(name, 0) + 1
        if retry:
            self.log("mmsctl supervisor: heal of model %s (cause %s) failed at %s after %.1f s: %s" % (
                name, cause, step, now - started, err))
        if len(times) >= self.max_failures:
            why = "%d heals failed within %.0f s (last: %s)" % (len(times), self.window, str(err)[:300])
            self.record["gave_up"][name] = why
            self.lost.pop(name, None)
            self.log("mmsctl supervisor: gave up on model %s: %s; fix it, then `mmsctl register` it (or restart "
                     "the server)" % (name, why))
        self._save()

    def _count(self, table, name, kind):
        per = self.record[table].setdefault(name, {})
        per[kind] = per.get(kind, 0) + 1
        self._save()

    def _save(self):
        path = os.path.join(self.state_dir, RECORD_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(self.record, handle)
        os.replace(path + ".tmp", path)


# -- a child process of `mmsctl serve` (background) ------------------------------------------------------------
def clear(state_dir):
    for name in (RECORD_FILE, PID_FILE):
        path = os.path.join(state_dir, name)
        if os.path.exists(path):
            os.remove(path)


def start_child(state_dir, options=()):
    """Start ``python -m mmsctl.supervisor`` for the server of ``state_dir``; its log is logs/supervisor.log."""
    state_dir = os.path.abspath(state_dir)
    command = [sys.executable, "-m", "mmsctl.supervisor", "--state-dir", state_dir] + list(options)
    with open(os.path.join(state_dir, "logs", LOG_FILE), "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    with open(os.path.join(state_dir, PID_FILE), "w", encoding="utf-8") as handle:
        json.dump({"pid": child.pid}, handle)
    return child.pid


def stop_child(state_dir, timeout=5.0):
    """Stop the supervisor child of ``state_dir`` (checked by its command line); True if one ran."""
    try:
        with open(os.path.join(state_dir, PID_FILE), encoding="utf-8") as handle:
            pid = json.load(handle).get("pid")
        os.remove(os.path.join(state_dir, PID_FILE))
    except (OSError, ValueError):
        return False
    return processes.stop_helper(pid, state_dir, timeout)


def add_options(parser):
    parser.add_argument("--heal-after", type=float, default=DEFAULT_GRACE, metavar="S",
                        help="seconds a model whose worker processes died stays without them before the "
                             "supervisor registers it again (default %(default)s)")
    parser.add_argument("--heal-give-up", type=int, default=DEFAULT_MAX_FAILURES, metavar="N",
                        help="give up on a model after N failed heals within %d s (default %%(default)s)"
                             % DEFAULT_WINDOW)
    parser.add_argument("--heal-by", choices=[RESTART_LISTENER, REREGISTER], default=RESTART_LISTENER,
                        help="when a model's listener process died: start it again on its socket, where MMS's "
                             "workers reconnect and serve the requests that waited (default), registering the model "
                             "again only if that fails; or register it again at once (scaled to 0 first, so "
                             "requests get a prompt 503 meanwhile)")


def options_of(args):
    return ["--heal-after", str(args.heal_after), "--heal-give-up", str(args.heal_give_up), "--heal-by", args.heal_by]


def main(argv=None):
    from .server import STATE_FILE, ServerState
    parser = argparse.ArgumentParser(prog="python -m mmsctl.supervisor",
                                     description="restore the models of an mmsctl server whose workers died")
    parser.add_argument("--state-dir", required=True)
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        state = ServerState.load(args.state_dir)
    except ServerError as err:
        print("mmsctl supervisor: %s" % err, file=sys.stderr)
        return 1
    supervisor = Supervisor(state, grace=args.heal_after, max_failures=args.heal_give_up, heal_by=args.heal_by).start()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        while not stopping and os.path.exists(os.path.join(args.state_dir, STATE_FILE)):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
