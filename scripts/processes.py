"""The processes of a server: the launcher, MMS's Java frontend and its Python workers; which of them are
workers, which are alive, and signalling and waiting for them.

>>> is_worker(["python", "/venv/lib/mms/model_service_worker.py", "--sock-type", "unix"])
True
>>> is_worker(["java", "-cp", "model-server.jar"])
False
"""
import os
import time

import psutil

#: The script MMS 1.1.11 runs for each model's backend; its forks are the workers.
WORKER_SCRIPT = "model_service_worker"


def is_worker(cmdline):
    """Whether a command line is an MMS worker (or its per-model listener)."""
    return any(WORKER_SCRIPT in arg for arg in cmdline or ())


def sock_name(cmdline):
    """The ``--sock-name`` of a worker's command line ('' when it has none).

    >>> sock_name(["python", "model_service_worker.py", "--sock-name", "/s/tmp/.mms.sock.9000"])
    '/s/tmp/.mms.sock.9000'
    """
    cmdline = list(cmdline or ())
    return cmdline[cmdline.index("--sock-name") + 1] if "--sock-name" in cmdline[:-1] else ""


def workers_in(temp_dir, exclude=()):
    """Live MMS worker processes (listeners and forks) whose socket lies in ``temp_dir``, the server's
    TEMP, wherever they run: a listener the supervisor of ``mmsctl serve`` started again is no child of
    the frontend. Processes whose pid is in ``exclude`` are left out."""
    prefix = os.path.join(temp_dir, "")
    return [proc for proc in psutil.process_iter(["cmdline"])
            if proc.pid not in exclude and is_worker(proc.info["cmdline"])
            and sock_name(proc.info["cmdline"]).startswith(prefix)]


def server_processes(state):
    """Every live process of a server: the launcher's tree, plus the members of its process
    group (its session) that name the state folder in their command line (the Java
    frontend and workers outlive a launcher killed first), plus the workers that name it
    wherever they run (a listener the supervisor started again)."""
    found = {}
    try:
        root = psutil.Process(state.pid)
        for proc in [root] + root.children(recursive=True):
            found[proc.pid] = proc
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter(["cmdline"]):
        try:
            # a worker listener the supervisor of `mmsctl serve` started again runs in the supervisor's session
            if proc.pid in found or (os.getpgid(proc.pid) != state.pid and not is_worker(proc.info["cmdline"])):
                continue
            if any(state.state_dir in arg for arg in proc.info["cmdline"] or ()):
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            continue
    return [proc for proc in found.values() if alive(proc)]


def alive(proc):
    """Running, not a zombie (an orphan's zombie waits for an init that may never reap it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_tree(pid):
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    try:
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return [root]


def signal_all(procs, sig):
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def is_worker_process(proc):
    try:
        return is_worker(proc.cmdline())
    except psutil.Error:
        return False


def wait_gone(procs, timeout):
    """psutil.wait_procs, but a process that turned into a zombie counts as gone."""
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left:
        _, left = psutil.wait_procs(left, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        left = [proc for proc in left if alive(proc)]
        if time.monotonic() >= deadline:
            break
    return [proc for proc in procs if proc not in left], left


def stop_helper(pid, state_dir, timeout=5.0):
    """Stop process ``pid`` if it is a helper of the server in ``state_dir`` (its command line names that
    folder: a recycled pid is left alone): SIGTERM, then SIGKILL after ``timeout``. True if it ran."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if os.path.abspath(state_dir) not in proc.cmdline():
            return False
        proc.terminate()
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:
        return False
    return True
