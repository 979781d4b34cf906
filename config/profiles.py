"""Deployment profiles: the rules that turn a machine into MMS settings.

The seeds' central lesson (seed 002's appendix): workers x OpenMP threads must
match the target.

================  ==================  ==================  =======================
profile           workers             OMP_NUM_THREADS     why
================  ==================  ==================  =======================
ei                1                   1                   calls to the accelerator are sequential
gpu               one per GPU         1                   the GPU does the work
cpu-throughput    one per vCPU        1                   requests run side by side
cpu-latency       1                   vCPUs               one request uses every core
================  ==================  ==================  =======================

Workers x threads never exceed the vCPUs: measured here, 2 workers x 2 threads
on 2 cores collapsed ResNet-152 from 11.7 to 1.7-3.5 requests/s.

The thread settings reach the Python workers through the server's environment
(MMS's worker sets OMP_NUM_THREADS=1 only when nothing is set), so they are in
effect before MXNet loads. Each profile also names the device its workers must
get (``MMSCTL_REQUIRE_DEVICE``: eia, gpu or cpu), so an ``ei`` server without an
EI build of MXNet fails at start instead of running on the CPU.

Related knobs, and why most are left at MMS's defaults:

* ``MXNET_CPU_WORKER_NTHREADS=1``: MXNet's own engine threads for CPU operators;
  the OpenMP pool inside each operator does the parallel work.
* ``KMP_AFFINITY``/``KMP_BLOCKTIME`` (seed 000) act on Intel OpenMP (libiomp5,
  the ``mxnet-mkl`` style builds) only; the mxnet 1.9.1 pip wheel links GNU
  libgomp, where they do nothing. They are set only when ``openmp="intel"``, and
  ``KMP_AFFINITY`` (which pins each process's threads from core 0 up) only with a
  single worker, so that several workers are not all pinned to the same cores.
* ``OMP_WAIT_POLICY``, ``number_of_netty_threads``, ``netty_client_threads``,
  ``job_queue_size``: not set, because no measurement here showed them to help;
  ``mmsctl bench profiles --env/--property`` measures a variant.

Everything here is pure: ``build_profile`` computes, ``render_*`` return text;
nothing reads the machine except the ``detect_*`` helpers, which callers bypass
with explicit values.
"""
import glob
import importlib.util
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from mmsctl.errors import MmsctlError
from mmsctl.handlers.contract import REQUIRE_DEVICE_ENV, THREADS_ENV

PROFILES = ("ei", "gpu", "cpu-latency", "cpu-throughput")
DEFAULT_INFERENCE_PORT = 8080
DEFAULT_MANAGEMENT_PORT = 8081
DEFAULT_RESPONSE_TIMEOUT_SECONDS = 120
DEFAULT_MAX_REQUEST_SIZE = 16 * 1024 * 1024
OPENMP_RUNTIMES = ("gnu", "intel")

#: the device each profile's workers must get (read by mmsctl_handlers.devices)
REQUIRED_DEVICE = {"ei": "eia", "gpu": "gpu", "cpu-latency": "cpu", "cpu-throughput": "cpu"}

#: Inside an ECS task the EI client must not read the container's metadata
#: endpoint: seed 000 unsets the first, seed 004 both (``--unset-ecs-metadata``).
ECS_METADATA_VARIABLES = ("ECS_CONTAINER_METADATA_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")

#: Intel OpenMP settings of seed 000's task definition (not measured here: no such build).
INTEL_OPENMP_ENVIRONMENT = {"KMP_BLOCKTIME": "0", "KMP_SETTINGS": "0"}
INTEL_OPENMP_SINGLE_WORKER = {"KMP_AFFINITY": "granularity=fine,compact,1,0"}


class ProfileError(MmsctlError, ValueError):
    """A profile that cannot be built for the given machine or options (also a ValueError, as before)."""


logger = logging.getLogger(__name__)

#: Hosts the management API may bind to without a warning.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class TlsConfig:
    """TLS for the inference API: a PEM key + certificate, or a keystore.

    MMS 1.1.11 reads ``private_key_file`` + ``certificate_file`` (PEM; an RSA key,
    PKCS#8 or PKCS#1) or ``keystore`` + ``keystore_pass`` + ``keystore_type``. The
    keystore password ends up in config.properties: keep that file private.
    """

    certificate_file: Optional[str] = None
    private_key_file: Optional[str] = None
    keystore: Optional[str] = None
    keystore_pass: Optional[str] = None
    keystore_type: str = "PKCS12"


def check_tls(tls):
    """Refuse an incomplete TLS setting: a key without a certificate, or both kinds at once."""
    pem = (tls.certificate_file, tls.private_key_file)
    if tls.keystore:
        if any(pem):
            raise ProfileError("TLS: give either --tls-keystore or --tls-cert/--tls-key, not both")
        return tls
    if not all(pem):
        raise ProfileError("TLS needs both --tls-cert (PEM certificate) and --tls-key (PEM private key), "
                           "or --tls-keystore")
    return tls


def tls_properties(tls):
    """The config.properties keys MMS 1.1.11 reads for TLS."""
    if tls.keystore:
        props = {"keystore": tls.keystore, "keystore_type": tls.keystore_type}
        if tls.keystore_pass is not None:
            props["keystore_pass"] = tls.keystore_pass
        return props
    return {"private_key_file": tls.private_key_file, "certificate_file": tls.certificate_file}


def management_exposure_warning(host):
    """The warning to give when the management API leaves the loopback interface, else None."""
    if host in LOOPBACK_HOSTS:
        return None
    return ("WARNING: the management API is exposed on %s: anyone who reaches it can register archives "
            "(code that runs with the server's privileges) and unregister models, and MMS has no "
            "authentication. Keep it behind a firewall or an authenticating proxy" % host)


@dataclass(frozen=True)
class Profile:
    """Everything MMS needs for one deployment target."""

    name: str
    vcpus: int
    gpus: int
    workers: int
    omp_threads: int
    model_store: str = "model_store"
    inference_address: str = "http://127.0.0.1:%d" % DEFAULT_INFERENCE_PORT
    management_address: str = "http://127.0.0.1:%d" % DEFAULT_MANAGEMENT_PORT
    response_timeout_seconds: int = DEFAULT_RESPONSE_TIMEOUT_SECONDS
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    openmp: str = "gnu"
    environment: Dict[str, str] = field(default_factory=dict)
    unset_environment: tuple = ()
    extra_properties: Dict[str, str] = field(default_factory=dict)
    tls: Optional[TlsConfig] = None
    #: per-model workers x threads over the server's one core budget (see plan_models)
    plan: Tuple["ModelPlan", ...] = ()


def detect_vcpus():
    """vCPUs this process may use: CPU affinity, capped by a cgroup v2 CPU quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()
        if quota != "max":
            count = min(count, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def detect_gpus():
    """NVIDIA GPUs visible through ``nvidia-smi -L`` (0 when there is none)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        out = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def detect_openmp(find_spec=importlib.util.find_spec):
    """"intel" when the installed MXNet bundles Intel OpenMP (libiomp5), else "gnu".

    The mxnet 1.9.1 pip wheel links the system's GNU libgomp; MKL builds ship
    libiomp5.so next to libmxnet.so.
    """
    spec = find_spec("mxnet")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if any(glob.glob(os.path.join(folder, "libiomp5*")) for folder in folders):
        return "intel"
    return "gnu"


def threads_for(name, vcpus, gpus):
    """(workers, OMP threads per worker) for a profile: the tuning rules in one table."""
    if name == "ei":
        return 1, 1
    if name == "gpu":
        if gpus < 1:
            raise ProfileError("profile gpu needs at least one GPU; none was detected (pass --gpus N to override)")
        return gpus, 1
    if name == "cpu-throughput":
        return vcpus, 1
    if name == "cpu-latency":
        return 1, vcpus
    raise ProfileError("unknown profile %r: choose one of %s" % (name, ", ".join(PROFILES)))


def thread_environment(name, workers, threads, openmp):
    """The environment of the server process that carries the thread settings."""
    environment = {
        "OMP_NUM_THREADS": str(threads),
        "MXNET_CPU_WORKER_NTHREADS": "1",
        "MXNET_USE_OPERATOR_TUNING": "0",
        REQUIRE_DEVICE_ENV: REQUIRED_DEVICE[name],
    }
    if openmp == "intel":
        environment.update(INTEL_OPENMP_ENVIRONMENT)
        if workers == 1:
            environment.update(INTEL_OPENMP_SINGLE_WORKER)
    return environment


def build_profile(name, vcpus=None, gpus=None, model_store="model_store", inference_port=DEFAULT_INFERENCE_PORT,
                  management_port=DEFAULT_MANAGEMENT_PORT, inference_host="127.0.0.1",
                  response_timeout_seconds=DEFAULT_RESPONSE_TIMEOUT_SECONDS, workers: Optional[int] = None,
                  openmp=None, unset_ecs_metadata=False, management_host="127.0.0.1",
                  tls: Optional[TlsConfig] = None):
    """Compute a profile for a machine with ``vcpus`` CPUs and ``gpus`` GPUs.

    The management API stays on 127.0.0.1 unless ``management_host`` says otherwise
    (logged as a warning); ``tls`` serves the inference API over https.

    ``openmp``: "gnu" or "intel" (default: what the installed MXNet uses).
    ``unset_ecs_metadata``: ei only; the server runs without the ECS variables
    that make the EI client look up the wrong metadata endpoint.
    """
    if name not in PROFILES:
        raise ProfileError("unknown profile %r: choose one of %s" % (name, ", ".join(PROFILES)))
    vcpus = detect_vcpus() if vcpus is None else int(vcpus)
    gpus = (detect_gpus() if name == "gpu" else 0) if gpus is None else int(gpus)
    if vcpus < 1:
        raise ProfileError("--vcpus must be at least 1")
    if gpus < 0:
        raise ProfileError("--gpus cannot be negative")
    openmp = detect_openmp() if openmp is None else openmp
    if openmp not in OPENMP_RUNTIMES:
        raise ProfileError("--openmp must be one of %s, not %r" % (", ".join(OPENMP_RUNTIMES), openmp))
    if unset_ecs_metadata and name != "ei":
        raise ProfileError("--unset-ecs-metadata is an option of the ei profile (the EI client inside an ECS "
                           "task); profile %s does not use it" % name)
    count, threads = threads_for(name, vcpus, gpus)
    if workers is not None:
        count = int(workers)
        if count < 1:
            raise ProfileError("--workers must be at least 1")
    if count * threads > vcpus:
        raise ProfileError("%d workers x %d OpenMP threads would oversubscribe %d vCPUs (profile %s); "
                           "use fewer workers, or cpu-throughput for one single-threaded worker per vCPU"
                           % (count, threads, vcpus, name))
    exposure = management_exposure_warning(management_host)
    if exposure:
        logger.warning(exposure)
    return Profile(
        name=name, vcpus=vcpus, gpus=gpus, workers=count, omp_threads=threads, model_store=model_store,
        inference_address="%s://%s:%d" % ("https" if tls is not None else "http", inference_host, inference_port),
        management_address="http://%s:%d" % (management_host, management_port),
        response_timeout_seconds=int(response_timeout_seconds), openmp=openmp,
        environment=thread_environment(name, count, threads, openmp),
        unset_environment=ECS_METADATA_VARIABLES if unset_ecs_metadata else (),
        tls=check_tls(tls) if tls is not None else None,
    )


@dataclass(frozen=True)
class ModelRequest:
    """What one model asks of the core budget: a worker count, a share of the vCPUs, or neither."""

    name: str
    workers: Optional[int] = None
    share: Optional[float] = None


@dataclass(frozen=True)
class ModelPlan:
    """Workers x threads for one model; ``cores`` is its part of the server's vCPUs."""

    name: str
    workers: int
    threads: int
    cores: int

    def describe(self):
        return "%s: %d worker%s x %d thread%s" % (self.name, self.workers, "" if self.workers == 1 else "s",
                                                  self.threads, "" if self.threads == 1 else "s")


def allot_cores(vcpus, requests, reserved=None):
    """{model: cores}: a model in ``reserved`` takes that many cores, a model with a ``share``
    gets that fraction of the vCPUs (at least 1), the others split what is left equally, the
    first ones taking the remainder.

    >>> allot_cores(4, [ModelRequest("a"), ModelRequest("b"), ModelRequest("c")])
    {'a': 2, 'b': 1, 'c': 1}
    >>> allot_cores(8, [ModelRequest("a", share=0.75), ModelRequest("b")])
    {'a': 6, 'b': 2}
    >>> allot_cores(1, [ModelRequest("a"), ModelRequest("b")])
    {'a': 1, 'b': 0}
    >>> allot_cores(3, [ModelRequest("a"), ModelRequest("b", workers=2)], reserved={"b": 2})
    {'a': 1, 'b': 2}
    """
    cores = dict(reserved or {})
    cores.update({r.name: max(1, int(r.share * vcpus)) for r in requests if r.share is not None})
    rest = [r.name for r in requests if r.name not in cores]
    left = max(0, vcpus - sum(cores.values()))
    for index, name in enumerate(rest):
        cores[name] = left // len(rest) + (1 if index < left % len(rest) else 0)
    return {r.name: cores[r.name] for r in requests}


def model_plan(profile, request, cores, default_workers=None):
    """Workers x threads of one model inside its ``cores``, by the profile's rule:

    cpu-latency: 1 worker (or ``workers``) sharing the cores as OpenMP threads;
    cpu-throughput: one single-threaded worker per core (or ``workers``); ei: 1 worker,
    1 thread; gpu: one worker per GPU, 1 thread. A model always gets one worker and
    one thread, so more models than vCPUs oversubscribe (refused by plan_models).
    """
    workers = request.workers or default_workers
    if profile.name == "cpu-latency":
        workers = workers or 1
        return ModelPlan(request.name, workers, max(1, cores // workers), cores)
    if profile.name == "cpu-throughput":
        return ModelPlan(request.name, workers or max(1, cores), 1, cores)
    return ModelPlan(request.name, workers or (profile.gpus if profile.name == "gpu" else 1), 1, cores)


def plan_models(profile, requests, oversubscribe=False, default_workers=None):
    """``(profile with its plan, warning or None)``: workers x threads for every model so that
    the sum over ALL models stays within the vCPUs (one core budget per server).

    The workers get their threads from ``MMSCTL_THREADS`` (``MODEL=N`` pairs, applied by the
    mmsctl handlers before MXNet or onnxruntime loads) and ``OMP_NUM_THREADS`` (the smallest
    count, for handlers that read only that). A plan over the budget is refused with the
    total, unless ``oversubscribe`` (then the warning says by how much).
    ``default_workers`` (``--workers``) replaces the profile's count for models without one.
    """
    requests = list(requests)
    if not requests:
        return profile, None
    shares = sum(r.share for r in requests if r.share is not None)
    if shares > 1 + 1e-9:
        raise ProfileError("the models' shares add up to %g, more than the whole server (1)" % shares)
    # single-threaded workers (all but cpu-latency): a model's worker count is its cores
    reserved = {r.name: r.workers or default_workers for r in requests
                if profile.name != "cpu-latency" and (r.workers or default_workers) and r.share is None}
    cores = allot_cores(profile.vcpus, requests, reserved)
    plan = tuple(model_plan(profile, r, cores[r.name], default_workers) for r in requests)
    total = sum(p.workers * p.threads for p in plan)
    warning = None
    if total > profile.vcpus:
        problem = ("%d models plan %d workers x threads in all (%s), more than the %d vCPUs of profile %s"
                   % (len(plan), total, "; ".join(p.describe() for p in plan), profile.vcpus, profile.name))
        if not oversubscribe:
            raise ProfileError(problem + ": lower the workers or shares, serve fewer models, or pass "
                                         "--oversubscribe to run them anyway")
        warning = "WARNING: %s (--oversubscribe): expect the models to slow each other down" % problem
    environment = dict(profile.environment)
    environment["OMP_NUM_THREADS"] = str(min(p.threads for p in plan))
    environment[THREADS_ENV] = ",".join("%s=%d" % (p.name, p.threads) for p in plan)
    if sum(p.workers for p in plan) > 1:  # compact affinity would pin every process to the same cores
        for key in INTEL_OPENMP_SINGLE_WORKER:
            environment.pop(key, None)
    return replace(profile, plan=plan, environment=environment), warning


def render_plan(profile):
    """One line per model of the plan, and the total (empty without a plan)."""
    if not profile.plan:
        return ""
    total = sum(p.workers * p.threads for p in profile.plan)
    return "".join("# model %s\n" % p.describe() for p in profile.plan) + (
        "# total: %d workers x threads on %d vCPUs%s\n" % (total, profile.vcpus,
                                                           " (OVERSUBSCRIBED)" if total > profile.vcpus else ""))


def properties(profile):
    """The ``config.properties`` keys of a profile, in a stable order."""
    props = {
        "inference_address": profile.inference_address,
        "management_address": profile.management_address,
        "model_store": profile.model_store,
        "default_workers_per_model": str(profile.workers),
        "number_of_gpu": str(profile.gpus if profile.name == "gpu" else 0),
        # Handlers decode bodies themselves: with MMS's default (true) a malformed
        # JSON body kills the worker before any handler code runs.
        "decode_input_request": "false",
        # MMS 1.1.11 reads default_response_timeout as MINUTES; this key is seconds.
        "default_response_timeout_seconds": str(profile.response_timeout_seconds),
        "max_request_size": str(profile.max_request_size),
        "max_response_size": str(profile.max_request_size),
        # Measured twice (mmsctl bench request-costs, two servers side by side, requests alternating, busy
        # 2-core machine): the MMS floor's p50 with / without async logging was 19.7 / 41.2 and 9.5 / 16.1 ms
        # (PNG body), 15.9 / 19.2 and 8.5 / 10.0 ms (JPEG); EfficientNet-Lite0 within noise (0.98-1.15x). Kept on.
        "async_logging": "true",
    }
    if profile.tls is not None:
        props.update(tls_properties(profile.tls))
    props.update(profile.extra_properties)
    return props


def render_command(profile):
    """The ``mmsctl config render`` command line that renders ``profile`` again."""
    words = ["mmsctl", "config", "render", "--profile", profile.name, "--vcpus", str(profile.vcpus),
             "--gpus", str(profile.gpus), "--openmp", profile.openmp, "--model-store", profile.model_store]
    if profile.workers != threads_for(profile.name, profile.vcpus, profile.gpus)[0]:
        words += ["--workers", str(profile.workers)]
    inference, management = urlsplit(profile.inference_address), urlsplit(profile.management_address)
    if inference.port != DEFAULT_INFERENCE_PORT:
        words += ["--inference-port", str(inference.port)]
    if management.port != DEFAULT_MANAGEMENT_PORT:
        words += ["--management-port", str(management.port)]
    if inference.hostname == "0.0.0.0":
        words.append("--public")
    if profile.unset_environment:
        words.append("--unset-ecs-metadata")
    if management.hostname not in ("127.0.0.1", None):
        words += ["--management-host", management.hostname]
    if profile.tls is not None and profile.tls.keystore:
        words += ["--tls-keystore", profile.tls.keystore, "--tls-keystore-type", profile.tls.keystore_type]
    elif profile.tls is not None:
        words += ["--tls-cert", profile.tls.certificate_file, "--tls-key", profile.tls.private_key_file]
    return " ".join(words)


def render_properties(profile):
    """The text of ``config.properties`` for ``profile``."""
    lines = ["# MMS config.properties for profile %s, rendered by: %s" % (profile.name, render_command(profile)),
             "# %d vCPUs, %d GPUs, %s OpenMP: %d worker%s x %d OpenMP thread%s" % (
                 profile.vcpus, profile.gpus, profile.openmp, profile.workers, "" if profile.workers == 1 else "s",
                 profile.omp_threads, "" if profile.omp_threads == 1 else "s")]
    lines += ["%s=%s" % (key, value) for key, value in properties(profile).items()]
    return "\n".join(lines) + "\n"


def render_environment(profile):
    """Shell lines exporting the environment the profile implies."""
    lines = ["export %s=%s" % (key, value) for key, value in sorted(profile.environment.items())]
    lines += ["unset %s" % key for key in profile.unset_environment]
    return "\n".join(lines) + "\n"


def render_config(profile):
    """What ``mmsctl config render`` prints: config.properties, then the environment as comments."""
    environment = "".join("# " + line + "\n" for line in render_environment(profile).splitlines())
    return (render_properties(profile)
            + ("\n# plan: workers x threads per model (register them with these workers)\n" + render_plan(profile)
               if profile.plan else "")
            + "\n# environment of the server process (set it in the shell that starts MMS by hand)\n"
            + environment)
