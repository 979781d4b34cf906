"""Deployment profiles: the rules that turn a machine into MMS settings.

The seeds' central lesson (seed 002's appendix): workers x OpenMP threads must
match the target. One worker per accelerator (EI calls are sequential; one per
GPU); on CPU, one worker per vCPU with one thread each for throughput, or one
worker with all vCPUs for latency. Workers x threads never exceed the vCPUs:
measured here, 2 workers x 2 threads on 2 cores collapsed ResNet-152 from 11.7
to 1.7-3.5 requests/s.

Everything here is pure: ``build_profile`` computes, ``render_properties``
returns the text of ``config.properties``; nothing reads the machine except the
two ``detect_*`` helpers, which callers may bypass with explicit counts.
"""
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Dict, Optional

PROFILES = ("ei", "gpu", "cpu-latency", "cpu-throughput")
DEFAULT_INFERENCE_PORT = 8080
DEFAULT_MANAGEMENT_PORT = 8081
DEFAULT_RESPONSE_TIMEOUT_SECONDS = 120
DEFAULT_MAX_REQUEST_SIZE = 16 * 1024 * 1024


class ProfileError(ValueError):
    """A profile that cannot be built for the given machine or options."""


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
    environment: Dict[str, str] = field(default_factory=dict)
    unset_environment: tuple = ()
    extra_properties: Dict[str, str] = field(default_factory=dict)


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


def build_profile(name, vcpus=None, gpus=None, model_store="model_store", inference_port=DEFAULT_INFERENCE_PORT,
                  management_port=DEFAULT_MANAGEMENT_PORT, inference_host="127.0.0.1",
                  response_timeout_seconds=DEFAULT_RESPONSE_TIMEOUT_SECONDS, workers: Optional[int] = None):
    """Compute a profile for a machine with ``vcpus`` CPUs and ``gpus`` GPUs."""
    vcpus = detect_vcpus() if vcpus is None else int(vcpus)
    gpus = (detect_gpus() if name == "gpu" else 0) if gpus is None else int(gpus)
    if vcpus < 1:
        raise ProfileError("--vcpus must be at least 1")
    count, threads = threads_for(name, vcpus, gpus)
    if workers is not None:
        count = int(workers)
        if count < 1:
            raise ProfileError("--workers must be at least 1")
    if name.startswith("cpu") and count * threads > vcpus:
        raise ProfileError("%d workers x %d OpenMP threads would oversubscribe %d vCPUs" % (count, threads, vcpus))
    environment = {
        "OMP_NUM_THREADS": str(threads),
        # MXNet's own engine threads for CPU operators: one per worker, the OpenMP
        # pool inside each operator does the parallel work.
        "MXNET_CPU_WORKER_NTHREADS": "1",
        "MXNET_USE_OPERATOR_TUNING": "0",
    }
    return Profile(
        name=name, vcpus=vcpus, gpus=gpus, workers=count, omp_threads=threads, model_store=model_store,
        inference_address="http://%s:%d" % (inference_host, inference_port),
        management_address="http://127.0.0.1:%d" % management_port,
        response_timeout_seconds=int(response_timeout_seconds),
        environment=environment,
    )


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
        "async_logging": "true",
    }
    props.update(profile.extra_properties)
    return props


def render_properties(profile):
    """The text of ``config.properties`` for ``profile``."""
    lines = ["# MMS config.properties rendered by mmsctl for profile %s" % profile.name,
             "# %d vCPUs, %d GPUs: %d workers x %d OpenMP threads" % (
                 profile.vcpus, profile.gpus, profile.workers, profile.omp_threads)]
    lines += ["%s=%s" % (key, value) for key, value in properties(profile).items()]
    return "\n".join(lines) + "\n"


def render_environment(profile):
    """Shell lines exporting the environment the profile implies."""
    lines = ["export %s=%s" % (key, value) for key, value in sorted(profile.environment.items())]
    lines += ["unset %s" % key for key in profile.unset_environment]
    return "\n".join(lines) + "\n"
