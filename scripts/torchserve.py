"""TorchServe 0.12 as the server of the same archives (``mmsctl serve --server torchserve``).

TorchServe is MMS's successor and reads the same ``.mar`` layout; an mmsctl archive registers on
it unchanged. This module renders TorchServe's ``config.properties`` from the same profiles as MMS
(workers, OpenMP threads through the environment, management API on 127.0.0.1) and starts and
stops it through :mod:`mmsctl.server`, which does the rest as for MMS: the state folder, the
models registered synchronously from ``MODEL_STORE/.mmsctl-unpacked/``, stopping by process group.

What differs from MMS, and is set here:

* ``enable_model_api=true``: TorchServe refuses ``POST /models`` (register) and ``DELETE`` without it.
* ``disable_token_authorization=true``, allowed only while the management API is on loopback:
  mmsctl refuses ``--management-host`` elsewhere with TorchServe (its token authorization would
  then be needed, and mmsctl's clients do not send tokens).
* A third port, TorchServe's metrics API (``metrics_address``, its default 8082), on 127.0.0.1
  (``mmsctl serve --torchserve-metrics-port``).
* ``default_response_timeout`` is in seconds (MMS 1.1.11 read that key as minutes).
* ``--ncs``: no config snapshots (TorchServe would otherwise restore the last run's models).

The launcher is ``torchserve`` from ``$MMSCTL_TORCHSERVE`` (its path, or the folder of its
environment), else next to this Python, else on PATH. TorchServe runs its workers with the
Python of its launcher, so the engines (onnxruntime, MXNet) are installed there.
"""
import os
import shutil
import sys
from urllib.parse import urlsplit

from mmsctl.config import profiles

from . import preflight, server
from .errors import ServerError

LAUNCHER = "torchserve"
LAUNCHER_ENV = "MMSCTL_TORCHSERVE"
DEFAULT_METRICS_PORT = 8082
SERVERS = ("mms", "torchserve")
#: the profiles TorchServe serves here: no Elastic Inference in TorchServe; GPUs not checked here.
PROFILES = ("cpu-latency", "cpu-throughput")


def launcher(environ=None):
    """The ``torchserve`` launcher: ``$MMSCTL_TORCHSERVE`` (file or environment folder), this Python's, PATH.

    >>> try:  # doctest: +ELLIPSIS
    ...     launcher({"MMSCTL_TORCHSERVE": "/nonexistent/venv"})
    ... except ServerError as err:
    ...     print(err)
    MMSCTL_TORCHSERVE=/nonexistent/venv names no torchserve launcher (give the launcher's path or its ...)
    """
    environ = os.environ if environ is None else environ
    given = environ.get(LAUNCHER_ENV)
    if given:
        for candidate in (given, os.path.join(given, "bin", LAUNCHER), os.path.join(given, LAUNCHER)):
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return os.path.abspath(candidate)
        raise ServerError("%s=%s names no torchserve launcher (give the launcher's path or its virtualenv's folder)"
                          % (LAUNCHER_ENV, given))
    here = os.path.join(os.path.dirname(sys.executable), LAUNCHER)
    found = here if os.path.exists(here) else shutil.which(LAUNCHER, path=environ.get("PATH"))
    if not found:
        raise ServerError("torchserve is not installed: make its environment (docs/torchserve.md) "
                          "and set %s to its folder" % LAUNCHER_ENV)
    return found


def check_profile(profile):
    """Refuse what TorchServe cannot serve as mmsctl runs it: EI/GPU profiles, a management API off loopback."""
    if profile.name not in PROFILES:
        raise ServerError("--server torchserve serves the profiles %s; profile %s is MMS only (TorchServe has no "
                          "Elastic Inference, and GPUs were not checked with it)" % (", ".join(PROFILES), profile.name))
    host = urlsplit(profile.management_address).hostname
    if host not in profiles.LOOPBACK_HOSTS:
        raise ServerError("--server torchserve keeps the management API on 127.0.0.1, where TorchServe's token "
                          "authorization is turned off; --management-host %s would need its tokens, which mmsctl "
                          "does not send: reach it through SSH or an authenticating proxy instead" % host)
    return profile


def properties(profile, metrics_port=DEFAULT_METRICS_PORT):
    """TorchServe's ``config.properties`` keys for a profile (MMS's, adapted), in a stable order.

    >>> p = profiles.build_profile("cpu-latency", vcpus=2, model_store="/s", openmp="gnu")
    >>> props = properties(p, 9082)
    >>> [props[k] for k in ("metrics_address", "default_response_timeout", "enable_model_api",
    ...                      "disable_token_authorization", "default_workers_per_model")]
    ['http://127.0.0.1:9082', '120', 'true', 'true', '1']
    >>> "default_response_timeout_seconds" in props
    False
    """
    check_profile(profile)
    props = dict(profiles.properties(profile))
    props["default_response_timeout"] = props.pop("default_response_timeout_seconds")
    props.update({
        "metrics_address": "http://127.0.0.1:%d" % metrics_port,
        "enable_model_api": "true",
        "disable_token_authorization": "true",  # only on loopback: check_profile
        # the worker output and the frontend's metrics stay; the per-minute psutil collector goes
        "disable_system_metrics": "true",
        "install_py_dep_per_model": "false",
    })
    return props


def render_properties(profile, metrics_port=DEFAULT_METRICS_PORT):
    """The text of TorchServe's ``config.properties`` for ``profile``."""
    lines = ["# TorchServe 0.12 config.properties for profile %s (%d worker%s x %d OpenMP thread%s), "
             "rendered by mmsctl" % (profile.name, profile.workers, "" if profile.workers == 1 else "s",
                                     profile.omp_threads, "" if profile.omp_threads == 1 else "s")]
    lines += ["%s=%s" % (key, value) for key, value in properties(profile, metrics_port).items()]
    return "\n".join(lines) + "\n"


def preparer(metrics_port=DEFAULT_METRICS_PORT, environ=None):
    """A ``prepare(profile, state_dir) -> (command, environment)`` for :func:`mmsctl.server.start`."""
    command_launcher = launcher(environ)

    def prepare(profile, state_dir):
        config_path, env = server.prepare_state(profile, state_dir, render_properties(profile, metrics_port))
        problem = preflight.port_problem("http://127.0.0.1:%d" % metrics_port, "TorchServe metrics API",
                                      "--metrics-port")
        if problem:
            raise ServerError(problem)
        env.pop("VIRTUAL_ENV", None)  # the launcher's own environment runs the workers
        env["TS_DECODE_INPUT_REQUEST"] = "false"
        command = [command_launcher, "--start", "--foreground", "--ncs", "--ts-config", config_path,
                   "--model-store", profile.model_store]
        return command, env

    prepare.server = "torchserve"  # recorded in the state; models are then registered by full path
    return prepare


def start(profile, state_dir, models=None, ready_timeout=180.0, metrics_port=DEFAULT_METRICS_PORT):
    """Start TorchServe in the background; return once every model's workers have loaded it."""
    check_profile(profile)
    return server.start(profile, state_dir, models, ready_timeout=ready_timeout, preparer=preparer(metrics_port))


def serve_foreground(profile, state_dir, models=None, ready_timeout=300.0, on_ready=None, drain=None,
                     metrics_port=DEFAULT_METRICS_PORT):
    """Run TorchServe in front (a container's main process); see :func:`mmsctl.server.serve_foreground`."""
    check_profile(profile)
    return server.serve_foreground(profile, state_dir, models, ready_timeout=ready_timeout, on_ready=on_ready,
                                   drain=drain, preparer=preparer(metrics_port))
