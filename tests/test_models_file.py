"""Several models on one server: the models file, one core budget, operations that cannot lose a model.

* every bad models file is refused in one line naming the file, the model, the key
  and the reason, before anything starts;
* the plan of workers x threads over all models never exceeds the vCPUs, for every
  profile and 1-3 models (else a refusal naming the total, or --oversubscribe);
* on real servers, with a small "probe" archive (a function handler that applies the
  plan's threads like the mmsctl handlers, sleeps on request, and can load slowly or
  fail to load): a two-model file is served as written; the live workers' environment
  (``/proc/PID/environ``) and the threads each applied respect the budget; the response
  timeout fires at the configured seconds; a scale sent while a registration is still
  loading waits and never unregisters the model; a scale MMS rejects leaves the model
  with its previous workers.
"""
import argparse
import json
import os
import re
import threading
import time

import pytest
import requests

from mmsctl import cli, loading, server
from mmsctl.archives import builder, mar
from mmsctl.config import profiles
from mmsctl.handlers import threads as handler_threads
from mmsctl.handlers.errors import ModelLoadFailure
from mmsctl.management import ManagementClient

from helpers import free_port

PROBE_HANDLER = '''\
"""A test handler: applies the plan's threads, loads in LOAD_DELAY s, fails to load while FAIL_IF exists."""
import json
import os
import time

from mmsctl_handlers.threads import apply_model_threads


def _read(context, name):
    path = os.path.join(context.system_properties.get("model_dir"), name)
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def handle(data, context):
    if data is None:
        apply_model_threads(context.model_name)
        time.sleep(float(_read(context, "load_delay.txt")))
        marker = _read(context, "fail_if.txt")
        if marker and os.path.exists(marker):
            raise RuntimeError("probe: %s exists, refusing to load" % marker)
        return None
    answers = []
    for request in data:
        body = request.get("body") or request.get("data") or b"{}"
        asked = json.loads(body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body or "{}")
        time.sleep(float(asked.get("sleep", 0)))
        answers.append(json.dumps({"pid": os.getpid(), "threads": os.environ.get("OMP_NUM_THREADS"),
                                   "batch": len(data)}))
    return answers
'''


def probe_archive(store, name, load_delay=0.0, fail_if=""):
    """NAME.mar in ``store``: the probe handler with the mmsctl_handlers package beside it."""
    entries = dict(builder.handler_sources())
    entries["probe.py"] = PROBE_HANDLER.encode()
    entries["load_delay.txt"] = str(load_delay).encode()
    entries["fail_if.txt"] = str(fail_if).encode()
    entries[mar.MANIFEST_PATH] = json.dumps({
        "runtime": "python", "model": {"modelName": name, "handler": "probe:handle"},
        "modelServerVersion": "1.0", "implementationVersion": "1.0", "specificationVersion": "1.0"}).encode()
    return mar.write_mar(os.path.join(str(store), name + ".mar"), entries, force=True)


def write_file(folder, text, name="models.toml"):
    path = os.path.join(str(folder), name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def ports():
    return ["--inference-port", str(free_port()), "--management-port", str(free_port())]


def serve_argv(store, state_dir, *extra):
    return ["serve", "--model-store", str(store), "--state-dir", str(state_dir)] + ports() + list(extra)


def stop(state_dir):
    if os.path.exists(os.path.join(str(state_dir), server.STATE_FILE)):
        server.stop(server.ServerState.load(str(state_dir)))


# -- bad models files: one line, nothing started -------------------------------------------------
BAD_FILES = [
    ('[a]\narchive = "a.mar"\nbatch = 4\n', ["model 'a'", "key 'batch'", "unknown key"]),
    ('[a]\narchive = "a.mar"\nbatch_size = 0\n', ["key 'batch_size'", "from 1 to 1024", "not 0"]),
    ('[a]\narchive = "a.mar"\nbatch_size = "4"\n', ["key 'batch_size'", "not '4'"]),
    ('[a]\narchive = "a.mar"\nworkers = true\n', ["key 'workers'", "not True"]),
    ('[a]\narchive = "a.mar"\nresponse_timeout_s = 0.5\n', ["key 'response_timeout_s'", "whole number"]),
    ('[a]\narchive = "a.mar"\nshare = 1.5\n', ["key 'share'", "at most 1"]),
    ('[a]\narchive = "a.mar"\nworkers = 1\nshare = 0.5\n', ["key 'share'", "workers or share, not both"]),
    ('[a]\narchive = "a.mar"\nengine = "tpu"\n', ["key 'engine'", "auto, mxnet, onnxruntime", "'tpu'"]),
    ('[a]\nworkers = 1\n', ["model 'a'", "key 'archive'", "missing"]),
    ('[a]\narchive = "missing.mar"\n', ["key 'archive'", "missing.mar is not a file in the model store"]),
    ('[a]\narchive = "a.mar"\n\n[a]\narchive = "b.mar"\n', ["declared twice", "cannot share a name"]),
    ('["bad name"]\narchive = "a.mar"\n', ["model 'bad name'", "MMS's"]),
    ('a = "a.mar"\n', ["model 'a'", "must be a table"]),
    ('[a]\narchive = "a.mar"\n[b]\narchive = "b.mar"\nshare = 1\n[c]\narchive = "a.mar"\nshare = 0.5\n',
     ["key 'share'", "shares of b, c add up to 1.5"]),
    ('[a\n', ["not valid TOML"]),
    ('', ["names no model"]),
]


@pytest.mark.unit
@pytest.mark.parametrize("text, words", BAD_FILES)
def test_every_bad_models_file_is_one_line_and_starts_nothing(text, words, tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    for name in ("a.mar", "b.mar"):
        (store / name).write_bytes(b"not read before the file is accepted")
    path = write_file(tmp_path, text)
    code = cli.main(serve_argv(store, tmp_path / "state", "--models-file", path, "--vcpus", "2"))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("mmsctl: error: " + path + ": "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "state").exists()  # nothing started, not even the state folder


@pytest.mark.unit
def test_a_name_in_the_file_and_in_models_is_refused(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.mar").write_bytes(b"x")
    path = write_file(tmp_path, '[a]\narchive = "a.mar"\n')
    code = cli.main(serve_argv(store, tmp_path / "state", "--models-file", path, "--models", "a=a.mar"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "model 'a' is also given by" in err[0] and path in err[0]


# -- the plan: one core budget per server ---------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("name", profiles.PROFILES)
def test_the_plan_never_exceeds_the_vcpus_for_every_profile_and_model_count(name):
    for vcpus in range(1, 9):
        for gpus in (1, 2) if name == "gpu" else (0,):
            if name == "gpu" and gpus > vcpus:
                continue
            base = profiles.build_profile(name, vcpus=vcpus, gpus=gpus, openmp="gnu")
            for count in (1, 2, 3):
                requests_ = [profiles.ModelRequest("m%d" % i) for i in range(count)]
                try:
                    planned, warning = profiles.plan_models(base, requests_)
                except profiles.ProfileError as err:
                    # only when one worker x one thread per model is already too much
                    need = count * (gpus if name == "gpu" else 1)
                    assert need > vcpus and "more than the %d vCPUs" % vcpus in str(err), (name, vcpus, count)
                    assert "workers x threads in all" in str(err) and "--oversubscribe" in str(err)
                    over, warning = profiles.plan_models(base, requests_, oversubscribe=True)
                    assert warning.startswith("WARNING: ") and "--oversubscribe" in warning
                    continue
                assert warning is None
                total = sum(p.workers * p.threads for p in planned.plan)
                assert total <= vcpus, (name, vcpus, count, planned.plan)
                if name.startswith("cpu"):
                    assert total == vcpus or count > vcpus, planned.plan  # every core is used
                pairs = dict(item.split("=") for item in planned.environment["MMSCTL_THREADS"].split(","))
                assert pairs == {p.name: str(p.threads) for p in planned.plan}
                assert planned.environment["OMP_NUM_THREADS"] == str(min(p.threads for p in planned.plan))
                if count == 1:  # one model: exactly the profile's rule of the table
                    assert (planned.plan[0].workers, planned.plan[0].threads) == (base.workers, base.omp_threads)


@pytest.mark.unit
@pytest.mark.parametrize("name, vcpus, asked, expected", [
    ("cpu-latency", 2, [{}, {}], [(1, 1), (1, 1)]),  # the case: 2 x (1 worker x 1 thread), not 2 x 2
    ("cpu-latency", 8, [{"share": 0.75}, {}], [(1, 6), (1, 2)]),
    ("cpu-latency", 4, [{"workers": 2}, {}], [(2, 1), (1, 2)]),
    ("cpu-throughput", 4, [{"workers": 3}, {}], [(3, 1), (1, 1)]),
    ("cpu-throughput", 5, [{}, {}], [(3, 1), (2, 1)]),
    ("ei", 4, [{}, {}], [(1, 1), (1, 1)]),
    ("gpu", 8, [{}, {}], [(2, 1), (2, 1)]),
])
def test_plans_follow_the_stated_policy(name, vcpus, asked, expected):
    base = profiles.build_profile(name, vcpus=vcpus, gpus=2 if name == "gpu" else 0, openmp="gnu")
    planned, _ = profiles.plan_models(base, [profiles.ModelRequest("m%d" % i, **a) for i, a in enumerate(asked)])
    assert [(p.workers, p.threads) for p in planned.plan] == expected


@pytest.mark.unit
def test_asking_for_more_names_the_total_unless_oversubscribe(tmp_path, capsys):
    path = write_file(tmp_path, '[a]\narchive = "a.mar"\nworkers = 2\n[b]\narchive = "b.mar"\nworkers = 2\n')
    argv = ["config", "render", "--profile", "cpu-throughput", "--vcpus", "3", "--models-file", path]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 models plan 4 workers x threads in all" in err[0] and "3 vCPUs" in err[0]
    assert cli.main(argv + ["--oversubscribe"]) == 0
    captured = capsys.readouterr()
    assert "WARNING: 2 models plan 4 workers x threads" in captured.err
    assert "# model a: 2 workers x 1 thread\n# model b: 2 workers x 1 thread\n" in captured.out
    assert "# total: 4 workers x threads on 3 vCPUs (OVERSUBSCRIBED)" in captured.out


@pytest.mark.unit
def test_config_render_prints_the_plan_per_model(tmp_path, capsys):
    path = write_file(tmp_path, '[a]\narchive = "a.mar"\nbatch_size = 8\n[b]\narchive = "b.mar"\n')
    assert cli.main(["config", "render", "--profile", "cpu-latency", "--vcpus", "4", "--models-file", path,
                     "--models", "c=c.mar"]) == 0
    out = capsys.readouterr().out
    assert "# model a: 1 worker x 2 threads\n# model b: 1 worker x 1 thread\n# model c: 1 worker x 1 thread\n" in out
    assert "# total: 4 workers x threads on 4 vCPUs\n" in out
    assert "# export MMSCTL_THREADS=a=2,b=1,c=1\n" in out and "# export OMP_NUM_THREADS=1\n" in out


@pytest.mark.unit
def test_handlers_apply_their_models_threads(caplog):
    environ = {"MMSCTL_THREADS": "a=3,b=1", "OMP_NUM_THREADS": "1"}
    with caplog.at_level("INFO"):
        assert handler_threads.apply_model_threads("a", environ, modules={}) == 3
    assert environ["OMP_NUM_THREADS"] == "3" and "model a threads 3 (MMSCTL_THREADS" in caplog.text
    other = {"MMSCTL_THREADS": "a=3", "OMP_NUM_THREADS": "2"}
    assert handler_threads.apply_model_threads("z", other, modules={}) == 2 and other["OMP_NUM_THREADS"] == "2"
    with pytest.raises(ModelLoadFailure, match="not MODEL=N"):
        handler_threads.apply_model_threads("a", {"MMSCTL_THREADS": "a=two"}, modules={})


# -- real servers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probe_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("probe_store")
    marker = str(store / "FAIL")
    for name in ("probe-a", "probe-b", "probe-c"):
        probe_archive(store, name)
    probe_archive(store, "slow", load_delay=4.0)
    probe_archive(store, "slow-raw", load_delay=4.0)
    probe_archive(store, "fragile", fail_if=marker)
    return argparse.Namespace(path=str(store), marker=marker)


def live_threads(state, model):
    """{pid: threads in effect} of a model's forked workers, read from /proc/PID/environ."""
    frontend = loading.frontend_for(state.management_url)
    found = {}
    for proc in loading.worker_processes(frontend, model):
        with open("/proc/%d/environ" % proc.pid, "rb") as handle:
            environ = dict(item.decode().split("=", 1) for item in handle.read().split(b"\0") if b"=" in item)
        pairs = dict(item.split("=") for item in environ.get("MMSCTL_THREADS", "").split(",") if item)
        found[proc.pid] = int(pairs.get(model, environ["OMP_NUM_THREADS"]))
    return found


def applied_threads(state_dir):
    """{(model, pid): threads} the handlers logged when they applied the plan."""
    applied = {}
    for name in ("model_log.log", "mms_log.log"):
        path = os.path.join(state_dir, "logs", name)
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                for match in re.finditer(r"model (\S+) threads (\d+) \(\w+, pid (\d+)\)", handle.read()):
                    applied[(match.group(1), int(match.group(3)))] = int(match.group(2))
    return applied


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("profile", ["cpu-latency", "cpu-throughput"])
def test_live_workers_respect_the_core_budget(profile, probe_store, tmp_path, capsys):
    """For 1-3 models on 3 vCPUs: what every live worker has in /proc/PID/environ, and what it applied."""
    vcpus = 3
    for count in (1, 2, 3):
        names = ["probe-a", "probe-b", "probe-c"][:count]
        state_dir = str(tmp_path / ("%s-%d" % (profile, count)))
        argv = serve_argv(probe_store.path, state_dir, "--profile", profile, "--vcpus", str(vcpus), "--models")
        try:
            assert cli.main(argv + ["%s=%s.mar" % (n, n) for n in names]) == 0
            out = capsys.readouterr().out
            state = server.ServerState.load(state_dir)
            expected, _ = profiles.plan_models(profiles.build_profile(profile, vcpus=vcpus, openmp="gnu"),
                                               [profiles.ModelRequest(n) for n in names])
            total = 0
            for plan in expected.plan:
                live = live_threads(state, plan.name)
                assert len(live) == plan.workers and set(live.values()) == {plan.threads}, (plan, live)
                total += sum(live.values())
                if count > 1:
                    assert "model %s" % plan.describe() in out
                logged = {pid: n for (model, pid), n in applied_threads(state_dir).items() if model == plan.name}
                assert {pid: logged.get(pid) for pid in live} == live  # each live worker applied its count
            assert total == vcpus  # every core used, none twice
        finally:
            stop(state_dir)


@pytest.mark.server
def test_a_two_model_file_is_served_as_written(probe_store, tmp_path, capsys):
    path = write_file(tmp_path, '''
["probe-a"]
archive = "probe-a.mar"
workers = 2
batch_size = 4
max_batch_delay_ms = 300
response_timeout_s = 3

["probe-b"]
archive = "probe-b.mar"
batch_size = 1
engine = "onnxruntime"
''')
    state_dir = str(tmp_path / "state")
    argv = serve_argv(probe_store.path, state_dir, "--profile", "cpu-throughput", "--vcpus", "3", "--models-file", path)
    try:
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert "model probe-a: 2 workers x 1 thread (batch_size 4, max_batch_delay_ms 300, response_timeout_s 3)" in out
        assert "model probe-b: 1 worker x 1 thread (batch_size 1, engine onnxruntime)" in out
        state = server.ServerState.load(state_dir)
        url = state.management_url
        assert cli.main(["describe", "probe-a", "--management-url", url, "--state-dir", state_dir]) == 0
        a = json.loads(capsys.readouterr().out)
        assert (a["batchSize"], a["maxBatchDelay"], a["minWorkers"], len(a["workers"])) == (4, 300, 2, 2)
        assert (a["loadedWorkers"], a["allWorkersLoaded"], a["responseTimeoutSeconds"], a["threads"]) == (2, True, 3, 1)
        assert cli.main(["list", "--management-url", url, "--state-dir", state_dir]) == 0
        listed = {m["modelName"]: m for m in json.loads(capsys.readouterr().out)}
        assert (listed["probe-b"]["batchSize"], listed["probe-b"]["workerCount"]) == (1, 1)
        assert listed["probe-b"]["enginePreference"] == "onnxruntime" and listed["probe-b"]["allWorkersLoaded"]
        with open("/proc/%d/environ" % loading.worker_processes(loading.frontend_for(url), "probe-b")[0].pid,
                  "rb") as handle:
            assert b"MMSCTL_ENGINE=probe-b=onnxruntime\0" in handle.read()

        # batch_size 4 reaches the handler: four requests sent at once share one call
        predict = "%s/predictions/probe-a" % state.inference_url
        batches = []

        def send():
            batches.append(requests.post(predict, json={"sleep": 0.2}, timeout=30).json()["batch"])
        senders = [threading.Thread(target=send) for _ in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert max(batches) > 1, batches

        # the response timeout is 3 SECONDS (a query string would have said 3 minutes)
        assert requests.post(predict, json={"sleep": 1}, timeout=30).status_code == 200
        started = time.monotonic()
        late = requests.post(predict, json={"sleep": 12}, timeout=60)
        elapsed = time.monotonic() - started
        assert late.status_code >= 500 and 3 <= elapsed < 12, (late.status_code, late.text, elapsed)
    finally:
        stop(state_dir)


def _registered(client, name):
    return name in {m["modelName"] for m in client.list()}


@pytest.mark.server
@pytest.mark.slow
def test_scale_during_loading_never_unregisters_the_model(probe_store, tmp_path, capsys):
    state_dir = str(tmp_path / "state")
    profile = profiles.build_profile("cpu-throughput", vcpus=4, model_store=probe_store.path, openmp="gnu",
                                     inference_port=free_port(), management_port=free_port())
    started = {}

    def serve():
        try:
            started["state"] = server.start(profile, state_dir, {"slow": "slow.mar"}, ready_timeout=120)
        except Exception as err:  # reported by the assertion below
            started["error"] = err
    runner = threading.Thread(target=serve)
    runner.start()
    client = ManagementClient(profile.management_address, timeout=5)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if len(client.describe("slow")["workers"]) == 4:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        status = loading.load_status(client, "slow")
        assert status["allWorkersLoaded"] is False, status  # READY in MMS, but still loading
        code = cli.main(["scale", "slow", "--min-worker", "1", "--management-url", profile.management_address])
        out, err = capsys.readouterr()
        assert code == 0, err
        runner.join(120)
        assert "error" not in started, started.get("error")
        described = client.describe("slow")
        assert described["minWorkers"] == 1 and len(described["workers"]) == 1
        assert loading.load_status(client, "slow")["allWorkersLoaded"] is True

        # the hazard it avoids, with MMS's own API: a scale during a synchronous registration drops the model
        raw = {}
        registering = threading.Thread(target=lambda: raw.update(result=_try(
            lambda: ManagementClient(profile.management_address, timeout=120).register(
                "slow-raw.mar", name="slow-raw", workers=2, synchronous=True))))
        registering.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_workers(client, "slow-raw")) < 2:
            time.sleep(0.05)
        client.scale("slow-raw", 1, synchronous=False)
        registering.join(60)
        assert isinstance(raw["result"], Exception) and not _registered(client, "slow-raw"), raw
        assert _registered(client, "slow")
    finally:
        runner.join(120)
        stop(state_dir)


def _workers(client, name):
    try:
        return client.describe(name)["workers"]
    except Exception:  # not registered yet
        return []


def _try(call):
    try:
        return call()
    except Exception as err:  # the caller inspects it
        return err


@pytest.mark.server
def test_a_scale_mms_rejects_leaves_the_previous_workers(probe_store, tmp_path, capsys):
    state_dir = str(tmp_path / "state")
    argv = serve_argv(probe_store.path, state_dir, "--profile", "cpu-latency", "--vcpus", "2", "--models",
                      "fragile=fragile.mar")
    try:
        assert cli.main(argv) == 0
        capsys.readouterr()
        state = server.ServerState.load(state_dir)
        with open(probe_store.marker, "w", encoding="utf-8") as handle:
            handle.write("new workers of 'fragile' fail to load\n")
        code = cli.main(["scale", "fragile", "--min-worker", "2", "--management-url", state.management_url,
                         "--timeout", "60"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and "the model keeps its previous 1 worker" in err[0], err
        client = ManagementClient(state.management_url)
        described = client.describe("fragile")
        assert (described["minWorkers"], described["maxWorkers"], len(described["workers"])) == (1, 1, 1)
        assert loading.load_status(client, "fragile")["allWorkersLoaded"] is True
        answer = requests.post("%s/predictions/fragile" % state.inference_url, json={}, timeout=30)
        assert answer.status_code == 200, answer.text

        # register refuses a name already taken, in one line, without sending anything
        code = cli.main(["register", "probe-c.mar", "--name", "fragile", "--management-url", state.management_url])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "already registered" in err[0]
    finally:
        if os.path.exists(probe_store.marker):
            os.remove(probe_store.marker)
        stop(state_dir)


# -- containers and ECS: the task's own command serves the file ------------------------------------
@pytest.mark.unit
def test_ecs_task_definition_takes_the_models_file(tmp_path, capsys):
    path = write_file(tmp_path, '[a]\narchive = "a.mar"\nbatch_size = 4\n[b]\narchive = "b.mar"\nshare = 0.5\n')
    assert cli.main(["ecs", "task-definition", "--profile", "cpu-latency", "--image", "mmsctl:cpu", "--cpu", "4096",
                     "--models-file", path, "--models", "c=c.mar"]) == 0
    (container,) = json.loads(capsys.readouterr().out)["containerDefinitions"]
    command = container["entryPoint"] + container["command"]
    assert command[command.index("--models-file") + 1] == "/models/models.toml"
    assert container["healthCheck"]["command"][-3:] == ["a", "b", "c"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["MMSCTL_THREADS"] == "a=1,b=2,c=1"  # b has half of 4 vCPUs, a and c split the rest
    over = write_file(tmp_path, '[a]\narchive = "a.mar"\nworkers = 5\n', name="over.toml")
    assert cli.main(["ecs", "task-definition", "--profile", "cpu-throughput", "--image", "i", "--vcpus", "4",
                     "--models-file", over]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 models plan 5 workers x threads in all" in err[0]


@pytest.mark.server
def test_the_containers_command_serves_a_mounted_models_file(probe_store, tmp_path, capsys):
    """The exact `mmsctl serve` of the task definition, with /models standing for a local store."""
    store = tmp_path / "store"
    store.mkdir()
    for name in ("probe-a", "probe-b"):
        os.link(os.path.join(probe_store.path, name + ".mar"), store / (name + ".mar"))
    path = write_file(store, '["probe-a"]\narchive = "probe-a.mar"\nbatch_size = 2\n'
                             '["probe-b"]\narchive = "probe-b.mar"\nmax_batch_delay_ms = 7\n')
    assert cli.main(["ecs", "task-definition", "--profile", "cpu-latency", "--image", "mmsctl:cpu", "--vcpus", "2",
                     "--models-file", path]) == 0
    (container,) = json.loads(capsys.readouterr().out)["containerDefinitions"]
    argv = [str(store) if arg == "/models" else arg.replace("/models/", str(store) + "/")
            for arg in (container["entryPoint"] + container["command"])[1:]]
    management = free_port()
    for option, value in (("--inference-port", free_port()), ("--management-port", management)):
        argv[argv.index(option) + 1] = str(value)
    state_dir = str(tmp_path / "state")
    argv = [arg for arg in argv if arg != "--foreground"] + ["--state-dir", state_dir]
    try:
        assert cli.main(argv) == 0
        health = container["healthCheck"]["command"][2:]
        health[health.index("--management-url") + 1] = "http://127.0.0.1:%d" % management
        assert cli.main(health) == 0
        out = capsys.readouterr().out
        assert "probe-a: 1 live worker loaded\nprobe-b: 1 live worker loaded\n" in out
        client = ManagementClient("http://127.0.0.1:%d" % management)
        assert client.describe("probe-a")["batchSize"] == 2 and client.describe("probe-b")["maxBatchDelay"] == 7
    finally:
        stop(state_dir)
