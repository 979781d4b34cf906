"""Profiles, device contexts and real servers per CPU profile.

* the rules table (workers x OpenMP threads per profile) and that no profile
  oversubscribes the vCPUs; the rendered config.properties and environment;
  the rendered files in config/ equal what ``mmsctl config render`` prints;
* device choice (EI, GPU, CPU) as a table, and the EI paths of the MXNet engine
  with stand-ins for the EI builds of MXNet (see ``ei_stand_in``);
* ``mmsctl serve`` for each CPU profile on a real server: the live workers'
  count and each worker process's environment (``/proc/PID/environ``).
"""
import dataclasses
import glob
import json
import os
import re
import shlex
import sys

import numpy as np
import psutil
import pytest

from mmsctl import cli, preflight, processes, server
from mmsctl.config import profiles
from mmsctl.handlers import devices
from mmsctl.handlers.errors import ModelLoadFailure

from helpers import MxnetDeviceStandIn, free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the rules ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, vcpus, gpus, workers, threads", [
    ("ei", 2, 0, 1, 1),
    ("ei", 16, 0, 1, 1),
    ("gpu", 8, 1, 1, 1),
    ("gpu", 32, 4, 4, 1),
    ("cpu-throughput", 1, 0, 1, 1),
    ("cpu-throughput", 2, 0, 2, 1),
    ("cpu-throughput", 4, 0, 4, 1),   # seed 002: c5.xlarge, throughput: 4 workers x 1 thread
    ("cpu-latency", 1, 0, 1, 1),
    ("cpu-latency", 2, 0, 1, 2),
    ("cpu-latency", 4, 0, 1, 4),      # seed 002: c5.xlarge, latency: 1 worker x 4 threads
])
def test_rules_table(name, vcpus, gpus, workers, threads):
    profile = profiles.build_profile(name, vcpus=vcpus, gpus=gpus, openmp="gnu")
    assert (profile.workers, profile.omp_threads) == (workers, threads)
    assert profile.environment["OMP_NUM_THREADS"] == str(threads)
    assert profile.environment["MXNET_CPU_WORKER_NTHREADS"] == "1"
    assert profile.environment["MMSCTL_REQUIRE_DEVICE"] == {"ei": "eia", "gpu": "gpu"}.get(name, "cpu")
    assert "default_workers_per_model=%d\n" % workers in profiles.render_properties(profile)


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_no_profile_oversubscribes(name):
    for vcpus in range(1, 17):
        for gpus in range(1, vcpus + 1) if name == "gpu" else [0]:
            profile = profiles.build_profile(name, vcpus=vcpus, gpus=gpus, openmp="gnu")
            assert profile.workers * profile.omp_threads <= vcpus, profile
            for workers in range(1, vcpus + 2):
                try:
                    forced = profiles.build_profile(name, vcpus=vcpus, gpus=gpus, workers=workers, openmp="gnu")
                except profiles.ProfileError as err:
                    assert "oversubscribe %d vCPUs" % vcpus in str(err)
                    continue
                assert forced.workers * forced.omp_threads <= vcpus


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "cpu-latency", "vcpus": 2, "workers": 2}, "2 workers x 2 OpenMP threads would oversubscribe 2 vCPUs"),
    ({"name": "gpu", "vcpus": 4, "gpus": 0}, "needs at least one GPU"),
    ({"name": "gpu", "vcpus": 2, "gpus": 4}, "oversubscribe 2 vCPUs"),
    ({"name": "cpu-fast", "vcpus": 2}, "unknown profile 'cpu-fast'"),
    ({"name": "cpu-latency", "vcpus": 0}, "--vcpus must be at least 1"),
    ({"name": "cpu-latency", "vcpus": 2, "workers": 0}, "--workers must be at least 1"),
    ({"name": "cpu-latency", "vcpus": 2, "openmp": "llvm"}, "--openmp must be one of gnu, intel"),
    ({"name": "cpu-latency", "vcpus": 2, "unset_ecs_metadata": True}, "option of the ei profile"),
])
def test_profile_errors(kwargs, message):
    with pytest.raises(profiles.ProfileError, match=re.escape(message)):
        profiles.build_profile(**kwargs)


@pytest.mark.parametrize("name, vcpus, expected", [
    ("cpu-latency", 4, {"KMP_BLOCKTIME": "0", "KMP_SETTINGS": "0", "KMP_AFFINITY": "granularity=fine,compact,1,0"}),
    # several processes with compact affinity would all pin to the first cores: no KMP_AFFINITY
    ("cpu-throughput", 4, {"KMP_BLOCKTIME": "0", "KMP_SETTINGS": "0"}),
])
def test_intel_openmp_settings_only_for_intel_builds(name, vcpus, expected):
    intel = profiles.build_profile(name, vcpus=vcpus, openmp="intel").environment
    assert {k: v for k, v in intel.items() if k.startswith("KMP_")} == expected
    gnu = profiles.build_profile(name, vcpus=vcpus, openmp="gnu").environment
    assert not [k for k in gnu if k.startswith("KMP_")]


def test_detect_openmp(tmp_path):
    class Spec:  # what importlib.util.find_spec returns, for a folder we control
        def __init__(self, folder):
            self.submodule_search_locations = [str(folder)]
    (tmp_path / "libmxnet.so").write_bytes(b"")
    assert profiles.detect_openmp(lambda name: Spec(tmp_path)) == "gnu"
    (tmp_path / "libiomp5.so").write_bytes(b"")
    assert profiles.detect_openmp(lambda name: Spec(tmp_path)) == "intel"
    assert profiles.detect_openmp(lambda name: None) == "gnu"
    # the mxnet 1.9.1 pip wheel of this environment links GNU libgomp
    assert profiles.detect_openmp() == "gnu"


def test_ecs_metadata_is_unset_only_when_asked_and_only_for_ei():
    base = {"ECS_CONTAINER_METADATA_URI": "http://169.254.170.2/v3/x",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/y", "PATH": "/usr/bin", "KEEP": "1"}
    plain = profiles.build_profile("ei", vcpus=2, openmp="gnu")
    env = server.server_environment(plain, "/state", base=base)
    assert env["ECS_CONTAINER_METADATA_URI"] and env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    ecs = profiles.build_profile("ei", vcpus=2, openmp="gnu", unset_ecs_metadata=True)
    env = server.server_environment(ecs, "/state", base=base)
    assert "ECS_CONTAINER_METADATA_URI" not in env and "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in env
    assert env["KEEP"] == "1" and env["OMP_NUM_THREADS"] == "1" and env["TEMP"] == "/state/tmp"
    rendered = profiles.render_environment(ecs)
    assert "unset ECS_CONTAINER_METADATA_URI\nunset AWS_CONTAINER_CREDENTIALS_RELATIVE_URI\n" in rendered
    assert "--unset-ecs-metadata" in profiles.render_command(ecs)


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("name", profiles.PROFILES)
def test_rendered_properties(name, public):
    profile = profiles.build_profile(name, vcpus=8, gpus=2 if name == "gpu" else 0, openmp="gnu",
                                     inference_host="0.0.0.0" if public else "127.0.0.1",
                                     inference_port=20080, management_port=20081)
    props = dict(line.split("=", 1) for line in profiles.render_properties(profile).splitlines()
                 if not line.startswith("#"))
    assert props["management_address"] == "http://127.0.0.1:20081"
    assert props["inference_address"] == "http://%s:20080" % ("0.0.0.0" if public else "127.0.0.1")
    assert props["decode_input_request"] == "false"
    assert props["default_response_timeout_seconds"] == "120"
    assert "default_response_timeout" not in props  # MMS 1.1.11 reads that one as minutes
    assert props["number_of_gpu"] == ("2" if name == "gpu" else "0")


@pytest.mark.parametrize("argv", [
    ["--profile", "cpu-throughput", "--vcpus", "4", "--gpus", "0", "--openmp", "gnu"],
    ["--profile", "ei", "--vcpus", "2", "--openmp", "intel", "--unset-ecs-metadata", "--public"],
    ["--profile", "gpu", "--vcpus", "8", "--gpus", "2", "--openmp", "gnu", "--inference-port", "9080",
     "--management-port", "9081", "--model-store", "/srv/models"],
])
def test_render_command_renders_the_same_profile(argv, capsys):
    assert cli.main(["config", "render"] + argv) == 0
    first = capsys.readouterr().out
    command = re.search(r"rendered by: (mmsctl .*)$", first, re.M).group(1)
    assert cli.main(shlex.split(command)[1:]) == 0
    assert capsys.readouterr().out == first
    assert "# environment of the server process" in first and "# export OMP_NUM_THREADS=" in first


REFERENCE_FILES = ["ei", "gpu", "cpu-latency", "cpu-throughput"]


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_reference_files_are_what_render_prints(name, capsys):
    """config/NAME.properties = a comment header + exactly what its own render command prints."""
    with open(os.path.join(REPO, "config", name + ".properties"), encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(r"^# MMS config\.properties for profile (\S+), rendered by: (mmsctl .*)$", text, re.M)
    assert match and match.group(1) == name, "config/%s.properties lacks its render command" % name
    header, rendered = text[:match.start()], text[match.start():]
    assert header and all(line.startswith("# ") for line in header.splitlines())
    assert "Reference machine:" in header
    assert cli.main(shlex.split(match.group(2))[1:]) == 0
    assert capsys.readouterr().out == rendered, "config/%s.properties is stale: re-render it" % name


def test_reference_files_state_the_rules():
    read = {n: open(os.path.join(REPO, "config", n + ".properties"), encoding="utf-8").read() for n in REFERENCE_FILES}
    assert "default_workers_per_model=1\n" in read["ei"] and "export OMP_NUM_THREADS=1\n" in read["ei"]
    assert "export MMSCTL_REQUIRE_DEVICE=eia" in read["ei"] and "--unset-ecs-metadata" in read["ei"]
    assert "number_of_gpu=1\n" in read["gpu"] and "default_workers_per_model=1\n" in read["gpu"]
    assert "default_workers_per_model=1\n" in read["cpu-latency"]
    assert "export OMP_NUM_THREADS=4\n" in read["cpu-latency"]
    assert "default_workers_per_model=4\n" in read["cpu-throughput"]
    assert "export OMP_NUM_THREADS=1\n" in read["cpu-throughput"]


# -- device choice ----------------------------------------------------------------------------
@pytest.mark.parametrize("gpu_id, ei, required, visible, kind, index, api", [
    (None, None, None, None, "cpu", 0, None),
    ("1", None, None, None, "gpu", 1, None),
    (None, "eia", None, None, "eia", 0, "eia"),
    (None, "eimx", None, None, "eia", 0, "eimx"),
    (None, "eia", None, ["3"], "eia", 0, "eia"),        # the one visible accelerator is ordinal 0 in-process
    (None, "eimx", "eia", ["1", "3"], "eia", 0, "eimx"),
    (None, "eia", None, [], "cpu", 0, None),            # EI_VISIBLE_DEVICES="" hides every accelerator
    ("0", "eia", None, [], "gpu", 0, None),
    ("2", "eia", "gpu", None, "gpu", 2, None),           # the gpu profile on an EI host still takes the GPU
    (None, "eia", "cpu", None, "cpu", 0, None),         # a cpu profile next to an EI one (seed 000)
    ("0", None, "cpu", None, "cpu", 0, None),
])
def test_select_device(gpu_id, ei, required, visible, kind, index, api):
    device = devices.select_device(gpu_id, ei_available=ei, required=required, ei_visible=visible)
    assert (device.kind, device.index, device.api) == (kind, index, api)
    assert device.reason


@pytest.mark.parametrize("gpu_id, ei, required, visible, message", [
    (None, None, "eia", None, "needs an Elastic Inference accelerator (MMSCTL_REQUIRE_DEVICE=eia) but the "
                              "Elastic Inference build of MXNet is not installed"),
    ("0", None, "eia", None, "Elastic Inference build of MXNet is not installed"),
    (None, "eia", "eia", [], "EI_VISIBLE_DEVICES is set empty"),
    (None, None, "gpu", None, "needs a GPU (MMSCTL_REQUIRE_DEVICE=gpu) but MMS assigned no gpu_id"),
])
def test_select_device_refuses(gpu_id, ei, required, visible, message):
    with pytest.raises(ModelLoadFailure, match=re.escape(message)):
        devices.select_device(gpu_id, ei_available=ei, required=required, ei_visible=visible)


def test_device_request_reads_the_environment():
    assert devices.device_request({"MMSCTL_REQUIRE_DEVICE": " GPU "}) == ("gpu", None)
    assert devices.device_request({"EI_VISIBLE_DEVICES": "eia-0123,2"}) == (None, ["eia-0123", "2"])
    with pytest.raises(ModelLoadFailure, match="MMSCTL_REQUIRE_DEVICE='tpu' is not a device"):
        devices.device_request({"MMSCTL_REQUIRE_DEVICE": "tpu"})


@pytest.mark.parametrize("name, facts, problem", [
    ("ei", {"mxnet": "1.9.1", "eia": False, "eimx": False, "gpus": 0}, "profile ei needs the Elastic Inference"),
    ("ei", {"mxnet": "1.5.1", "eia": True, "eimx": False, "gpus": 0}, None),
    ("ei", {"mxnet": "1.8.0", "eia": False, "eimx": True, "gpus": 0}, None),
    ("gpu", {"mxnet": "1.9.1", "eia": False, "eimx": False, "gpus": 0}, "profile gpu needs an MXNet build that sees"),
    ("gpu", {"mxnet": "1.9.1", "eia": False, "eimx": False, "gpus": 1}, None),
    ("cpu-latency", {}, None),
])
def test_device_problem(name, facts, problem):
    found = preflight.device_problem(name, facts, "/venv/bin/python")
    assert (found is None) if problem is None else (problem in found and "/venv/bin/python" in found)


# -- the EI paths of the MXNet engine, with stand-ins ---------------------------------------------
# The EI builds of MXNet cannot be installed any more (AWS closed Elastic Inference
# to new customers in 2023), so these tests run the real engine on real mxnet 1.9.1
# with STAND-INS that provide the same names as the EI builds:
#   * EI builds up to 1.5.1: ``mx.eia(i)``, a context. The stand-in is the real
#     mxnet module plus an ``eia`` that records the ordinal and returns mx.cpu().
#   * EI builds from 1.7: ``import eimx`` registers the "EIA" subgraph backend for
#     ``net.optimize_for(x, backend="EIA")``. The stand-in is a module named eimx
#     on sys.path whose import makes backend "EIA" record the call and hybridize.
EIMX_STAND_IN = '''"""STAND-IN for AWS's eimx (EI builds of MXNet 1.7+), which cannot be installed any more.

The real package registers the "EIA" subgraph backend on import; this one makes
HybridBlock.optimize_for(..., backend="EIA") record the call and hybridize on the CPU.
"""
import mxnet

CALLS = []
_original = mxnet.gluon.HybridBlock.optimize_for


def _optimize_for(self, x, *args, backend=None, **kwargs):
    if backend != "EIA":
        return _original(self, x, *args, backend=backend, **kwargs)
    CALLS.append({"shapes": [a.shape for a in (x,) + args], "contexts": [str(a.context) for a in (x,) + args],
                  "kwargs": kwargs})
    self.hybridize(static_alloc=True, static_shape=True)


def uninstall():
    mxnet.gluon.HybridBlock.optimize_for = _original


mxnet.gluon.HybridBlock.optimize_for = _optimize_for
'''


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real two-layer MXNet checkpoint (fixed weights) and its signature.json."""
    import mxnet as mx
    folder = tmp_path_factory.mktemp("tiny_model")
    mx.random.seed(3)
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(8, activation="relu"), mx.gluon.nn.Dense(4))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 6)))
    net.export(str(folder / "tiny"), 0)
    signature = {"engine": {"name": "mxnet", "symbol": "tiny-symbol.json", "params": "tiny-0000.params"},
                 "inputs": [{"name": "data", "shape": [1, 6], "datatype": "FP32"}],
                 "outputs": [{"name": "scores", "shape": [1, 4], "datatype": "FP32"}]}
    (folder / "signature.json").write_text(json.dumps(signature))
    return signature, str(folder)


def run_engine(tiny_model, **kwargs):
    from mmsctl.handlers.mxnet_engine import MXNetEngine
    signature, folder = tiny_model
    engine = MXNetEngine(signature, folder, {"gpu_id": kwargs.pop("gpu_id", None)}, **kwargs)
    item = {"data": np.arange(6, dtype=np.float32) / 6}
    return engine, engine.forward([item])[0]["scores"]


@pytest.fixture
def eimx_stand_in(tmp_path, monkeypatch):
    (tmp_path / "eimx.py").write_text(EIMX_STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield tmp_path
    finally:
        module = sys.modules.pop("eimx", None)
        if module is not None:
            module.uninstall()


def test_engine_on_cpu_without_ei(tiny_model):
    engine, scores = run_engine(tiny_model, environ={})
    assert (engine.device.kind, engine.device.api, engine.preparation) == ("cpu", None, "mkldnn")  # fused
    assert str(engine.context) == str(engine.data_context) == "cpu(0)" and scores.shape == (4,)


def test_engine_ei_up_to_151_binds_to_mx_eia_and_keeps_inputs_on_cpu(tiny_model):
    import mxnet as mx
    _, expected = run_engine(tiny_model, environ={})
    stand_in = MxnetDeviceStandIn(mx, "eia")  # stand-in: the EI build is not installable (AWS closed EI in 2023)
    engine, scores = run_engine(tiny_model, mx=stand_in, environ={"MMSCTL_REQUIRE_DEVICE": "eia",
                                                                  "EI_VISIBLE_DEVICES": "2"})
    assert (engine.device.kind, engine.device.index, engine.device.api) == ("eia", 0, "eia")
    assert engine.preparation == "hybridize"  # bound to mx.eia(0), not fused for the CPU
    assert stand_in.calls == [0]  # accelerator 2 is the one visible: ordinal 0 inside the process
    assert "accelerator 2 of EI_VISIBLE_DEVICES" in engine.device.reason
    assert str(engine.data_context) == "cpu(0)"
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_engine_ei_from_17_imports_eimx_and_optimizes_for_eia(tiny_model, eimx_stand_in):
    _, expected = run_engine(tiny_model, environ={"MMSCTL_REQUIRE_DEVICE": "cpu"})
    assert "eimx" not in sys.modules
    engine, scores = run_engine(tiny_model, environ={})  # nothing required: the EI build is preferred
    assert (engine.device.kind, engine.device.api, engine.preparation) == ("eia", "eimx", "eia")
    calls = sys.modules["eimx"].CALLS  # stand-in: the EI build is not installable (AWS closed EI in 2023)
    assert calls == [{"shapes": [(1, 6)], "contexts": ["cpu(0)"], "kwargs": {}}]
    assert str(engine.context) == str(engine.data_context) == "cpu(0)"
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_cpu_profile_stays_on_cpu_on_an_ei_host(tiny_model, eimx_stand_in):
    engine, _ = run_engine(tiny_model, environ={"MMSCTL_REQUIRE_DEVICE": "cpu"})
    assert engine.device.kind == "cpu" and "eimx" not in sys.modules


@pytest.mark.parametrize("environ, gpu_id, message", [
    ({"MMSCTL_REQUIRE_DEVICE": "eia"}, None, "Elastic Inference build of MXNet is not installed"),
    ({"MMSCTL_REQUIRE_DEVICE": "gpu"}, None, "MMS assigned no gpu_id"),
])
def test_engine_refuses_a_required_device_it_lacks(tiny_model, environ, gpu_id, message):
    """Real mxnet 1.9.1, no stand-in: the worker fails to load rather than run on the CPU."""
    with pytest.raises(ModelLoadFailure, match=re.escape(message)):
        run_engine(tiny_model, environ=environ, gpu_id=gpu_id)


@pytest.mark.parametrize("argv, message", [
    (["--profile", "ei"], "profile ei needs the Elastic Inference build of MXNet, but the server's Python"),
    (["--profile", "gpu", "--gpus", "1", "--foreground"], "profile gpu needs an MXNet build that sees a GPU"),
])
@pytest.mark.server
def test_serve_refuses_a_device_profile_without_its_mxnet_build(argv, message, model_store, tmp_path, capsys):
    """Checked up front in the server's Python (mxnet 1.9.1 CPU wheel here): no server, no silent CPU."""
    code = cli.main(["serve", "--vcpus", "2", "--model-store", model_store, "--state-dir", str(tmp_path),
                     "--models", "efficientnet-lite0=efficientnet-lite0.mar", "--inference-port", str(free_port()),
                     "--management-port", str(free_port())] + argv)
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmsctl: error: " + message), lines
    assert "mxnet 1.9.1" in lines[0] and "cpu" in lines[0]
    assert not os.path.exists(tmp_path / "server.json")  # nothing was started


@pytest.mark.server
def test_worker_without_its_device_fails_the_start_with_the_reason(model_store, tmp_path):
    """The worker-side check on a real server, as when the up-front check cannot see the
    problem (or MMS is started by hand from config/ei.properties): no silent CPU."""
    profile = profiles.build_profile("cpu-latency", vcpus=1, model_store=model_store, inference_port=free_port(),
                                     management_port=free_port())
    profile = dataclasses.replace(profile, environment={**profile.environment, "MMSCTL_REQUIRE_DEVICE": "eia"})
    state_dir = str(tmp_path / "state")
    with pytest.raises(server.ServerError) as info:
        server.start(profile, state_dir, {"resnet18": "resnet18.mar"}, ready_timeout=120)
    message = str(info.value)
    assert message.startswith("model resnet18: register resnet18: ") and "answered 500" in message
    assert "ModelLoadFailure: this profile needs an Elastic Inference accelerator (MMSCTL_REQUIRE_DEVICE=eia)" \
        in message
    assert not processes.server_processes(server.ServerState(0, state_dir, "", "", profile.name))


# -- real servers, one per CPU profile --------------------------------------------------------------
def worker_processes(pid):
    """The Python workers under a server's launcher (pid), found by their command line."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if "model_service_worker" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.parametrize("name, workers, threads", [("cpu-latency", 1, 2), ("cpu-throughput", 2, 1)])
@pytest.mark.server
def test_serve_profile_reaches_every_worker(name, workers, threads, model_store, tmp_path, capsys):
    state_dir = str(tmp_path / "state")
    management = "http://127.0.0.1:%d" % free_port()
    assert cli.main(["serve", "--profile", name, "--vcpus", "2", "--model-store", model_store,
                     "--models", "efficientnet-lite0=efficientnet-lite0.mar", "--state-dir", state_dir,
                     "--inference-port", str(free_port()), "--management-port", management.rsplit(":", 1)[1]]) == 0
    state = server.ServerState.load(state_dir)
    try:
        out = capsys.readouterr().out
        assert "profile %s: %d worker%s x %d thread" % (name, workers, "" if workers == 1 else "s", threads) in out
        assert cli.main(["describe", "efficientnet-lite0", "--management-url", management]) == 0
        described = json.loads(capsys.readouterr().out)
        assert [w["status"] for w in described["workers"]] == ["READY"] * workers
        procs = worker_processes(state.pid)
        # MMS 1.1.11 starts one backend process per model, which forks one process per worker
        forked = [p for p in procs if p.ppid() in {q.pid for q in procs}]
        assert len(forked) == workers and len(procs) == workers + 1
        for proc in procs:
            with open("/proc/%d/environ" % proc.pid, "rb") as handle:
                environ = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
            assert environ[b"OMP_NUM_THREADS"] == str(threads).encode(), proc.cmdline()
            assert environ[b"MXNET_CPU_WORKER_NTHREADS"] == b"1"
            assert environ[b"MMSCTL_REQUIRE_DEVICE"] == b"cpu"
            assert environ[b"TEMP"] == os.path.join(state_dir, "tmp").encode()
        with open(os.path.join(state_dir, "config.properties"), encoding="utf-8") as handle:
            config = handle.read()
        assert "default_workers_per_model=%d\n" % workers in config
        assert "management_address=%s\n" % management in config
        everything = processes.server_processes(state)
    finally:
        assert cli.main(["stop", "--state-dir", state_dir]) == 0
    assert "stopped server pid %d" % state.pid in capsys.readouterr().out
    gone, alive = psutil.wait_procs(everything, timeout=10)
    assert not alive and not glob.glob(os.path.join(state_dir, "server.json"))
