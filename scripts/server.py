"""Start and stop a stock ``multi-model-server`` with a rendered profile.

Each server gets its own state folder: ``config.properties``, ``tmp/`` (MMS's pid
file, unpacked models and worker sockets live in TEMP, and MMS refuses to start a
second server that shares one), ``logs/`` and ``server.json`` (pid and URLs, so
``mmsctl stop`` finds it).

Models are registered through the management API with ``synchronous=true`` once
the server answers, not passed as ``--models`` at startup: MMS then answers only
when every worker has loaded the model, or refuses the model when a worker
cannot load it. (The ``READY`` of ``GET /models/NAME`` only says that a worker
thread runs: it is READY while the model is still loading, or failing to.)

The server runs in its own session; it is stopped by pid and process group:
the launcher, its Java frontend (orphaned when the launcher dies first) and the
Python workers the frontend spawned, each identified by the state folder in its
command line.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Dict

import requests

from mmsctl.config import profiles
from mmsctl.handlers.contract import ENGINE_ENV, LOAD_FAILURES_ENV

from . import preflight, processes, store
from .errors import ManagementError, ServerError
from .files import remove_special_files
from .management import ManagementClient
from .metrics import logconfig
from .models_file import merge_engine_variable, model_settings, model_specs, planned

STATE_FILE = "server.json"
LOAD_FAILURES_FILE = "load_failures.log"
#: ``<state_dir>/loading``: a foreground server is loading its models (/readyz answers 503 while it exists)
LOADING_FILE = "loading"

@dataclass
class ServerState:
    pid: int
    state_dir: str
    inference_url: str
    management_url: str
    profile: str
    models: Dict[str, str] = field(default_factory=dict)
    #: per model: the models file's settings and the plan's workers and threads
    settings: Dict[str, dict] = field(default_factory=dict)
    server: str = "mms"  # or "torchserve" (mmsctl.torchserve)

    def save(self):
        with open(os.path.join(self.state_dir, STATE_FILE), "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)

    @classmethod
    def load(cls, state_dir):
        path = os.path.join(state_dir, STATE_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                return cls(**json.load(handle))
        except FileNotFoundError:
            raise ServerError("no server state in %s: was it started with `mmsctl serve --state-dir %s`?"
                              % (state_dir, state_dir))


def default_state_dir():
    return os.environ.get("MMSCTL_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".mmsctl", "server")


def server_environment(profile, state_dir, base=None):
    """The environment of the server process: the profile's thread settings reach
    the Python workers from here, before MXNet is imported."""
    env = dict(os.environ if base is None else base)
    for key in profile.unset_environment:
        env.pop(key, None)
    engine = env.get(ENGINE_ENV)
    env.update(profile.environment)
    if ENGINE_ENV in profile.environment:  # the models file's engines, over the server's own preference
        env[ENGINE_ENV] = merge_engine_variable(engine, profile.environment[ENGINE_ENV])
    tmp = os.path.join(state_dir, "tmp")
    logs = os.path.join(state_dir, "logs")
    env.update({"TEMP": tmp, "TMPDIR": tmp, "LOG_LOCATION": logs, "METRICS_LOCATION": logs,
                # where the handlers append why a model cannot load (MMS may lose a dying worker's output)
                LOAD_FAILURES_ENV: os.path.join(logs, LOAD_FAILURES_FILE)})
    bindir = os.path.dirname(sys.executable)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def prepare(profile, state_dir):
    """Write the state folder; return (command, environment)."""
    config_path, env = prepare_state(profile, state_dir, profiles.render_properties(profile))
    command = [preflight.launcher(), "--start", "--foreground", "--mms-config", config_path,
               "--model-store", profile.model_store,
               "--log-config", logconfig.write(state_dir)]  # our layouts, which mmsctl.metrics reads
    return command, env


def prepare_state(profile, state_dir, config_text):
    """Write the state folder and its ``config.properties``; return (its path, the server's environment)."""
    for sub in ("tmp", "logs"):
        os.makedirs(os.path.join(state_dir, sub), exist_ok=True)
    if os.path.exists(os.path.join(state_dir, STATE_FILE)):
        try:
            old = ServerState.load(state_dir)
        except (TypeError, ValueError):
            old = None
        if old is not None and processes.server_processes(old):
            raise ServerError("a server started from %s is still running (pid %d): `mmsctl stop --state-dir %s`"
                              % (state_dir, old.pid, state_dir))
    # MMS's launcher refuses to start while its pid file names a live pid; a killed
    # server leaves one behind (and its pid may live on as an unreaped zombie)
    for stale in (os.path.join(state_dir, "tmp", ".model_server.pid"),
                  os.path.join(state_dir, LOADING_FILE),  # a killed foreground server's flag
                  os.path.join(state_dir, "logs", LOAD_FAILURES_FILE)):  # and the last run's reasons
        if os.path.exists(stale):
            os.remove(stale)
    config_path = os.path.join(state_dir, "config.properties")
    # 0600: with TLS the file holds the keystore password
    with os.fdopen(os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        handle.write(config_text)
    os.chmod(config_path, 0o600)
    return config_path, server_environment(profile, state_dir)


def _inference_url(profile):
    return profile.inference_address.replace("0.0.0.0", "127.0.0.1")


def _launch(profile, state_dir, models, preparer=None, **popen):
    """Check, write the state folder, start the launcher in its own session; return (process, state, profile).
    ``preparer`` replaces :func:`prepare` for another server (mmsctl.torchserve)."""
    specs = model_specs(models)
    models = {spec.name: spec.archive for spec in specs}
    store.check_models(profile, models)
    profile = planned(profile, specs)
    os.makedirs(state_dir, exist_ok=True)
    command, env = (preparer or prepare)(profile, state_dir)
    preflight.preflight(profile, env)
    process = subprocess.Popen(command, env=env, cwd=state_dir, stdin=subprocess.DEVNULL, start_new_session=True,
                               **popen)
    state = ServerState(pid=process.pid, state_dir=state_dir, inference_url=_inference_url(profile),
                        management_url=profile.management_address, profile=profile.name, models=models,
                        settings=model_settings(profile, specs), server=getattr(preparer, "server", "mms"))
    state.save()
    return process, state, profile


def start(profile, state_dir, models=None, ready_timeout=180.0, stdout=None, preparer=None):
    """Start the server in the background; return once every model's workers have loaded it."""
    state_dir = os.path.abspath(state_dir)
    os.makedirs(os.path.join(state_dir, "logs"), exist_ok=True)
    log = stdout or open(os.path.join(state_dir, "logs", "server.out"), "ab")
    try:
        process, state, profile = _launch(profile, state_dir, models, preparer, stdout=log, stderr=subprocess.STDOUT)
    finally:
        if stdout is None:
            log.close()
    try:
        deadline = time.monotonic() + ready_timeout
        wait_api(state, ready_timeout, process=process)
        failures = load_models(state, profile, max(1.0, deadline - time.monotonic()))
    except BaseException:
        stop(state)
        raise
    if failures:
        stop(state)  # first: the frontend's asynchronous log is complete once it has stopped
        raise ServerError(load_failure_message(state, failures))
    return state


def _log_tail(state_dir, lines=8):
    """The lines of the server's logs that explain a failure (a handler's load failure first)."""
    for name, keys in ((LOAD_FAILURES_FILE, ("ModelLoadFailure",)),
                       ("mms_log.log", ("ModelLoadFailure",)),
                       ("ts_log.log", ("ModelLoadFailure",)),
                       ("model_log.log", ("ModelLoadFailure",)),
                       ("server.out", ("Error", "Exception")),
                       ("mms_log.log", ("Error", "Exception"))):
        path = os.path.join(state_dir, "logs", name)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read().splitlines()
        except OSError:
            continue
        picked = []
        for line in text:
            if any(key in line for key in keys) and not line.lstrip().startswith("at "):
                short = line.split(" - ", 1)[-1].strip()
                if short not in picked:
                    picked.append(short)
        if picked:
            return "\n".join(picked[-lines:])
    return ""


def wait_api(state, timeout, process=None):
    """Poll until the management API answers (or the server process exits)."""
    client = ManagementClient(state.management_url, timeout=5)
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ServerError("the server exited with status %d while starting; see %s/logs\n%s"
                              % (process.returncode, state.state_dir, _log_tail(state.state_dir)))
        try:
            client.list(limit=1)
            return state
        except ManagementError:
            pass
        if time.monotonic() > deadline:
            raise ServerError("the management API at %s did not answer within %.0f s; see %s/logs\n%s"
                              % (state.management_url, timeout, state.state_dir, _log_tail(state.state_dir)))
        time.sleep(0.25)


def load_models(state, profile, timeout):
    """Register every model (``synchronous=true``, with its settings: workers, batch size,
    batch delay, response timeout), in parallel; return the failures, one line per model
    (none when all loaded).

    MMS answers 200 once each worker has loaded the model, and refuses (and drops)
    a model a worker cannot load; the reason is then in the server's logs.
    """
    def register(item):
        name, path = item
        settings = state.settings.get(name, {})
        workers = settings.get("workers", profile.workers)
        client = ManagementClient(state.management_url, timeout=timeout)
        try:
            entry = store.model_url(path, profile.model_store)
            if entry.endswith(".mar"):
                entry = store.unpacked_entry(profile.model_store, entry) or entry
            if state.server == "torchserve":  # it finds only a store's top-level names; a full path anywhere
                entry = os.path.join(profile.model_store, entry)
            client.register(entry, name=name, workers=workers, batch_size=settings.get("batch_size"),
                            max_batch_delay=settings.get("max_batch_delay_ms"),
                            response_timeout=settings.get("response_timeout_s"), synchronous=True)
        except ManagementError as err:
            return "model %s: %s" % (name, err)
        warm_request_path(state.inference_url, name, workers)
        return None

    if not state.models:
        return []
    with ThreadPoolExecutor(max_workers=len(state.models)) as pool:
        return [f for f in pool.map(register, state.models.items()) if f]


def warm_request_path(inference_url, model, count=1, timeout=30.0):
    """Send ``count`` empty-body predictions (each answered 400 by our handlers) so the
    frontend's request path and each worker's socket are exercised before the first
    real request. Measured: the JVM's first request cost 20-30 ms more than later ones.
    Best effort: any failure is ignored, the model is loaded either way."""
    url = "%s/predictions/%s" % (inference_url.rstrip("/"), model)
    with requests.Session() as session:
        for _ in range(max(1, count)):
            try:
                session.post(url, data=b"", timeout=timeout,
                             headers={"Content-Type": "application/octet-stream", "X-Mmsctl-Warm-Up": "1"})
            except requests.RequestException:
                return


def load_failure_message(state, failures):
    """The failures of ``load_models`` and the reasons the (stopped) server logged."""
    return "%s\nfrom the server's logs (%s/logs):\n%s" % (
        "\n".join(failures), state.state_dir, _log_tail(state.state_dir) or "(nothing more)")


def wait_ready(state, models, timeout, process=None, workers=1):
    """Poll the management API until each model (loaded at startup) shows ``workers`` READY workers.

    For servers started by hand with ``--models``; READY means a running worker
    thread, which MMS reports while the model is still loading.
    """
    client = ManagementClient(state.management_url, timeout=5)
    deadline = time.monotonic() + timeout
    pending = list(models)
    while True:
        if process is not None and process.poll() is not None:
            raise ServerError("the server exited with status %d while starting; see %s/logs\n%s"
                              % (process.returncode, state.state_dir, _log_tail(state.state_dir)))
        try:
            pending = [m for m in pending if client.ready_workers(m)[0] < workers]
            if not pending:
                return state
        except ManagementError:
            pass
        if time.monotonic() > deadline:
            raise ServerError("model(s) %s not READY after %.0f s; see %s/logs\n%s"
                              % (", ".join(pending or models), timeout, state.state_dir, _log_tail(state.state_dir)))
        time.sleep(0.25)


def stop(state, timeout=10.0):
    """Stop the launcher, the Java frontend and every worker (SIGTERM, then SIGKILL after ``timeout``)."""
    procs = processes.server_processes(state)
    workers = [proc for proc in procs if processes.is_worker_process(proc)]
    # MMS's forked workers answer SIGTERM by deleting their socket files and going
    # on (a worker loading a model runs seconds more): they hold no state, kill them.
    processes.signal_all(workers, signal.SIGKILL)
    processes.signal_all([proc for proc in procs if proc not in workers], signal.SIGTERM)
    _, alive = processes.wait_gone(procs, timeout)
    seen = {proc.pid for proc in procs}
    deadline = time.monotonic() + 10
    while True:  # the rest, and workers forked while we were stopping the others
        late = {proc.pid: proc for proc in alive + processes.server_processes(state)}
        if not late or time.monotonic() > deadline:
            break
        seen.update(late)
        processes.signal_all(late.values(), signal.SIGKILL)
        _, alive = processes.wait_gone(list(late.values()), 1.0)
    try:  # reap the launcher if it is our child
        os.waitpid(state.pid, os.WNOHANG)
    except ChildProcessError:
        pass
    path = os.path.join(state.state_dir, STATE_FILE)
    if os.path.exists(path):
        os.remove(path)
    if not late:  # every process is gone: nothing writes to TEMP any more
        clean_temporary_folder(state.state_dir)
    return len(seen)


def clean_temporary_folder(state_dir):
    """Remove what a stopped MMS leaves in TEMP: the named pipes of its workers' output,
    their Unix sockets and its pid file (a pipe blocks whoever opens it; a pid file
    names a pid that may be reused)."""
    tmp = os.path.join(state_dir, "tmp")
    if not os.path.isdir(tmp):
        return
    remove_special_files(tmp)
    pid_file = os.path.join(tmp, ".model_server.pid")
    if os.path.exists(pid_file):
        os.remove(pid_file)


def serve_foreground(profile, state_dir, models=None, ready_timeout=300.0, on_ready=None, stop_timeout=5.0,
                     drain=None, preparer=None, on_launched=None):
    """Run the server in front (a container's main process).

    Registers the models, calls ``on_ready(state)``, then waits for the server.
    ``on_launched(state)`` is called as soon as the server process runs, with
    ``<state_dir>/loading`` written until every model has loaded (the exporter started
    there answers /readyz 503 "loading" meanwhile, as a kubelet's startup probe expects).
    SIGTERM/SIGINT go to the whole process group at once (a second one kills it);
    once ready, a first signal runs ``drain()`` (in a thread) before that, when given;
    every process is gone when this returns: 0 when stopped by a signal, else the
    server's exit status. A model that cannot load stops the server and raises.
    """
    state_dir = os.path.abspath(state_dir)
    signals, launched, ready = [], [], []

    def forward(signum, _frame):
        signals.append(signum)
        if launched and len(signals) == 1 and drain is not None and ready:
            threading.Thread(target=_drain_then_stop, args=(drain, launched[0]), daemon=True).start()
        elif launched:
            _signal_group(launched[0], signal.SIGTERM if len(signals) == 1 else signal.SIGKILL)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        process, state, profile = _launch(profile, state_dir, models, preparer)
    except BaseException:
        _restore(previous)
        raise
    launched.append(process)
    if signals:  # a signal came while the server was being launched
        _signal_group(process, signal.SIGTERM)
    loading = os.path.join(state_dir, LOADING_FILE)
    try:
        try:
            deadline = time.monotonic() + ready_timeout
            if on_launched is not None:
                with open(loading, "w", encoding="utf-8") as handle:
                    handle.write("loading %s\n" % (", ".join(state.models) or "no model"))
                on_launched(state)
            wait_api(state, ready_timeout, process=process)
            failures = load_models(state, profile, max(1.0, deadline - time.monotonic()))
            if os.path.exists(loading):
                os.remove(loading)
            if failures and not signals:
                stop(state, timeout=stop_timeout)
                raise ServerError(load_failure_message(state, failures))
            if on_ready is not None and not signals:
                on_ready(state)
            ready.append(True)
        except ServerError:
            if not signals:
                raise
        code = process.wait()
    finally:
        stop(state, timeout=stop_timeout)
        _restore(previous)
        if os.path.exists(loading):
            os.remove(loading)
    return 0 if signals else code


def _drain_then_stop(drain, process):
    try:
        drain()
    finally:
        _signal_group(process, signal.SIGTERM)


def _signal_group(process, sig):
    """Signal the session of our launcher (unreaped, it keeps the group id from being reused)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _restore(handlers):
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
