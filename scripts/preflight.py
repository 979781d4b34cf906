"""Checks made before a server starts, so that what cannot work is refused at once in one line: the
launcher and Java are there, the ports are free, and a device profile's MXNet build sees its device.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from urllib.parse import urlsplit

from .errors import ServerError

LAUNCHER = "multi-model-server"

#: What the server's Python offers for the device-bound profiles (run before MMS starts).
MXNET_PROBE = ("import importlib.util, json, mxnet; print(json.dumps({'mxnet': mxnet.__version__, "
               "'eia': hasattr(mxnet, 'eia'), 'eimx': importlib.util.find_spec('eimx') is not None, "
               "'gpus': mxnet.context.num_gpus()}))")


def launcher():
    """The ``multi-model-server`` script of this Python environment (then PATH)."""
    here = os.path.join(os.path.dirname(sys.executable), LAUNCHER)
    found = here if os.path.exists(here) else shutil.which(LAUNCHER)
    if not found:
        raise ServerError("%s is not installed in this environment: pip install multi-model-server==1.1.11" % LAUNCHER)
    return found


def server_python():
    """The Python MMS runs its workers with: the one next to the launcher (MMS passes its own)."""
    candidate = os.path.join(os.path.dirname(launcher()), "python")
    return candidate if os.path.exists(candidate) else sys.executable


def java_available(env=None):
    env = env or os.environ
    if env.get("JAVA_HOME") and os.path.exists(os.path.join(env["JAVA_HOME"], "bin", "java")):
        return True
    return shutil.which("java", path=env.get("PATH")) is not None


def device_problem(profile_name, facts, python):
    """Why the server's Python cannot serve ``profile_name`` (None when it can).

    ``facts`` is what ``MXNET_PROBE`` printed: {"mxnet", "eia", "eimx", "gpus"}.
    """
    if profile_name == "ei" and not (facts.get("eia") or facts.get("eimx")):
        return ("profile ei needs the Elastic Inference build of MXNet, but the server's Python %s has mxnet %s "
                "with neither mx.eia() (EI builds up to 1.5.1) nor the eimx package (EI builds from 1.7); install "
                "the EI build (AWS closed Elastic Inference to new customers in 2023) or serve with --profile "
                "cpu-latency or cpu-throughput" % (python, facts.get("mxnet", "?")))
    if profile_name == "gpu" and int(facts.get("gpus") or 0) < 1:
        return ("profile gpu needs an MXNet build that sees a GPU, but mxnet %s in %s sees none (a CPU-only "
                "wheel, or no NVIDIA driver); install a CUDA build (e.g. mxnet-cu112) or serve with a cpu profile"
                % (facts.get("mxnet", "?"), python))
    return None


def probe_mxnet(python, env, timeout=120):
    """Run ``MXNET_PROBE`` in the server's Python with the server's environment."""
    try:
        result = subprocess.run([python, "-c", MXNET_PROBE], env=env, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ServerError("cannot run the server's Python %s to check its MXNet: %s" % (python, err))
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServerError("cannot import mxnet in the server's Python %s: %s" % (python, last))
    return json.loads(result.stdout.strip().splitlines()[-1])


def port_problem(url, what, option):
    """Why MMS could not listen on ``url``'s address (None when it can): the port is taken."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the frontend binds
        try:
            probe.bind((host, parts.port))
        except OSError as err:
            return ("port %d on %s (the %s) is not free (%s), perhaps another `mmsctl serve`: stop it with "
                    "`mmsctl stop` (and --state-dir), or choose another port with %s"
                    % (parts.port, host, what, err.strerror, option))
    return None


def preflight(profile, env):
    """Refuse at once what cannot work: a port in use, no Java, or a device profile without its MXNet build."""
    for url, what, option in ((profile.inference_address, "inference API", "--inference-port"),
                              (profile.management_address, "management API", "--management-port")):
        problem = port_problem(url, what, option)
        if problem:
            raise ServerError(problem)
    if not java_available(env):
        raise ServerError("java is not installed: MMS's frontend needs Java 11+ "
                          "(apt-get install openjdk-17-jre-headless)")
    if profile.name in ("ei", "gpu"):
        python = server_python()
        problem = device_problem(profile.name, probe_mxnet(python, env), python)
        if problem:
            raise ServerError(problem)
