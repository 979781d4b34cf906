"""The processes of one MMS 1.1.11 server, by model, and the host's figures.

The launcher starts the Java frontend; for each model the frontend starts one
``model_service_worker.py --sock-name TEMP/.mms.sock.PORT`` listener, and the
listener forks one process per worker (same command line). The frontend's worker
threads are named ``W-PORT-MODEL`` (worker_state.log), which maps a port to its
model. A listener is counted once, as ``role="listener"``; its forks are the workers.
"""
import re
import time
from collections import namedtuple

import psutil

from mmsctl.processes import is_worker, workers_in

WorkerProcess = namedtuple("WorkerProcess", "pid port role rss cpu_seconds")

_SOCK = re.compile(r"\.mms\.sock\.(\d+)$")


def _port(cmdline):
    for index, arg in enumerate(cmdline):
        if arg == "--sock-name" and index + 1 < len(cmdline):
            found = _SOCK.search(cmdline[index + 1])
            if found:
                return int(found.group(1))
    return None


def _figures(proc):
    with proc.oneshot():
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        times = proc.cpu_times()
        return proc.memory_info().rss, times.user + times.system


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def worker_processes(launcher_pid, temp_dir=None):
    """Every listener and worker process under the launcher ``launcher_pid``, and with ``temp_dir`` (the
    server's TEMP) those whose socket is in it wherever they run (a listener the supervisor started again)."""
    try:
        tree = psutil.Process(launcher_pid).children(recursive=True)
    except psutil.Error:
        return []
    if temp_dir:
        tree += workers_in(temp_dir, exclude={proc.pid for proc in tree})
    pids = {proc.pid for proc in tree}
    found = []
    for proc in tree:
        try:
            cmdline = proc.cmdline()
            if not is_worker(cmdline):
                continue
            port = _port(cmdline)
            parent = proc.ppid()
            figures = _figures(proc)
        except psutil.Error:
            continue
        if figures is None or port is None:
            continue
        try:
            forked = parent in pids and is_worker(psutil.Process(parent).cmdline())
        except psutil.Error:
            forked = False
        found.append(WorkerProcess(proc.pid, port, "worker" if forked else "listener", *figures))
    return found


class HostSampler:
    """Host CPU percent since the previous sample, and memory."""

    def __init__(self):
        psutil.cpu_percent(None)
        self.sampled = time.monotonic()

    def sample(self):
        memory = psutil.virtual_memory()
        return {"cpu_percent": psutil.cpu_percent(None), "memory_total": memory.total,
                "memory_available": memory.available, "memory_used": memory.total - memory.available}
