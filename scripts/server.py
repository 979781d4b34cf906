"""Start and stop a stock ``multi-model-server`` with a rendered profile.

Each server gets its own state folder: ``config.properties``, ``tmp/`` (MMS's pid
file, unpacked models and worker sockets live in TEMP, and MMS refuses to start a
second server that shares one), ``logs/`` and ``server.json`` (pid and URLs, so
``mmsctl stop`` finds it). The whole process tree is stopped by pid: the launcher,
its Java frontend and the Python workers the frontend spawned.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Dict

import psutil

from mmsctl.config import profiles

from .errors import ManagementError, ServerError
from .management import ManagementClient

STATE_FILE = "server.json"
LAUNCHER = "multi-model-server"


@dataclass
class ServerState:
    pid: int
    state_dir: str
    inference_url: str
    management_url: str
    profile: str
    models: Dict[str, str] = field(default_factory=dict)

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


def launcher():
    """The ``multi-model-server`` script of this Python environment (then PATH)."""
    here = os.path.join(os.path.dirname(sys.executable), LAUNCHER)
    found = here if os.path.exists(here) else shutil.which(LAUNCHER)
    if not found:
        raise ServerError("%s is not installed in this environment: pip install multi-model-server==1.1.11" % LAUNCHER)
    return found


def java_available(env=None):
    env = env or os.environ
    if env.get("JAVA_HOME") and os.path.exists(os.path.join(env["JAVA_HOME"], "bin", "java")):
        return True
    return shutil.which("java", path=env.get("PATH")) is not None


def server_environment(profile, state_dir, base=None):
    """The environment of the server process: the profile's thread settings reach
    the Python workers from here, before MXNet is imported."""
    env = dict(os.environ if base is None else base)
    for key in profile.unset_environment:
        env.pop(key, None)
    env.update(profile.environment)
    tmp = os.path.join(state_dir, "tmp")
    logs = os.path.join(state_dir, "logs")
    env.update({"TEMP": tmp, "TMPDIR": tmp, "LOG_LOCATION": logs, "METRICS_LOCATION": logs})
    bindir = os.path.dirname(sys.executable)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def model_arguments(models):
    """``{"name": "/path/x.mar"}`` -> MMS's ``--models name=x.mar`` list."""
    return ["%s=%s" % (name, os.path.basename(path) if os.path.dirname(path) else path)
            for name, path in models.items()]


def prepare(profile, state_dir, models):
    """Write the state folder; return (command, environment)."""
    for sub in ("tmp", "logs"):
        os.makedirs(os.path.join(state_dir, sub), exist_ok=True)
    if os.path.exists(os.path.join(state_dir, STATE_FILE)):
        try:
            old = ServerState.load(state_dir)
            if psutil.pid_exists(old.pid):
                raise ServerError("a server started from %s is still running (pid %d): `mmsctl stop --state-dir %s`"
                                  % (state_dir, old.pid, state_dir))
        except (TypeError, ValueError):
            pass
    config_path = os.path.join(state_dir, "config.properties")
    with open(config_path, "w", encoding="utf-8") as handle:
        handle.write(profiles.render_properties(profile))
    command = [launcher(), "--start", "--foreground", "--mms-config", config_path,
               "--model-store", profile.model_store]
    if models:
        command += ["--models"] + model_arguments(models)
    return command, server_environment(profile, state_dir)


def _inference_url(profile):
    return profile.inference_address.replace("0.0.0.0", "127.0.0.1")


def start(profile, state_dir, models=None, ready_timeout=180.0, stdout=None):
    """Start the server in the background and wait until every model has READY workers."""
    models = dict(models or {})
    if not os.path.isdir(profile.model_store):
        raise ServerError("model store %s is not a folder" % profile.model_store)
    for name, path in models.items():
        full = path if os.path.isabs(path) else os.path.join(profile.model_store, path)
        if not os.path.isfile(full):
            raise ServerError("model %s: archive %s is not in the model store %s" % (name, path, profile.model_store))
    state_dir = os.path.abspath(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    command, env = prepare(profile, state_dir, models)
    if not java_available(env):
        raise ServerError("java is not installed: MMS's frontend needs Java 11+ (apt-get install openjdk-17-jre-headless)")
    log = stdout or open(os.path.join(state_dir, "logs", "server.out"), "ab")
    try:
        process = subprocess.Popen(command, env=env, cwd=state_dir, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if stdout is None:
            log.close()
    state = ServerState(pid=process.pid, state_dir=state_dir, inference_url=_inference_url(profile),
                        management_url=profile.management_address, profile=profile.name, models=models)
    state.save()
    try:
        wait_ready(state, list(models), ready_timeout, process=process, workers=profile.workers)
    except BaseException:
        stop(state)
        raise
    return state


def _log_tail(state_dir, lines=15):
    """The lines of the server's logs that explain a failure (errors first)."""
    picked = []
    for name in ("mms_log.log", "server.out"):
        path = os.path.join(state_dir, "logs", name)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read().splitlines()
        except OSError:
            continue
        picked += [l for l in text if "ModelLoadFailure" in l or "Error" in l or "Exception" in l][-lines:]
        if picked:
            break
    return "\n".join(picked[-lines:])


def wait_ready(state, models, timeout, process=None, workers=1):
    """Poll the management API until each model has ``workers`` READY workers."""
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


def process_tree(pid):
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    try:
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return [root]


def stop(state, timeout=10.0):
    """Stop the launcher, the Java frontend and every worker, by pid."""
    tree = process_tree(state.pid)
    for proc in tree:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    try:  # reap the launcher if it is our child
        os.waitpid(state.pid, os.WNOHANG)
    except ChildProcessError:
        pass
    path = os.path.join(state.state_dir, STATE_FILE)
    if os.path.exists(path):
        os.remove(path)
    return len(tree)


def serve_foreground(profile, state_dir, models=None):
    """Run the server in front (a container's main process); SIGTERM/SIGINT stop the whole tree."""
    models = dict(models or {})
    state_dir = os.path.abspath(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    command, env = prepare(profile, state_dir, models)
    if not java_available(env):
        raise ServerError("java is not installed: MMS's frontend needs Java 11+")
    process = subprocess.Popen(command, env=env, cwd=state_dir, stdin=subprocess.DEVNULL, start_new_session=True)
    state = ServerState(pid=process.pid, state_dir=state_dir, inference_url=_inference_url(profile),
                        management_url=profile.management_address, profile=profile.name, models=models)
    state.save()
    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        stop(state, timeout=5)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not stopping:
            stop(state, timeout=5)
    return 0 if stopping else code


def with_ports(profile, inference_port, management_port, inference_host="127.0.0.1"):
    return replace(profile, inference_address="http://%s:%d" % (inference_host, inference_port),
                   management_address="http://127.0.0.1:%d" % management_port)
