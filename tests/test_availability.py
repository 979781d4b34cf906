"""A model never stays dead (issue 23): the builder's trials in a child, one truth for health, the supervisor.

Three small ONNX graphs built with ``onnx.helper``: ``relu`` (batchable), ``col2im`` (Col2Im divides by its
integer inputs: zeros crashed onnxruntime 1.20.1 with SIGFPE) and ``affine`` (a spatial transformer whose
``size`` input is a shape), and ``poisonable``, a stock-style archive whose handler kills its own process on
one body (the poison request). Servers are started as an operator does, with ``mmsctl serve`` (background: the
supervisor is a child process), and the model's worker processes are SIGKILLed: the fork alone (MMS
restores it) and the listener with its fork (MMS 1.1.11 never does; the supervisor does).
"""
import json
import os
import re
import signal
import threading
import time
import zipfile

import numpy as np
import psutil
import pytest
import requests

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from mmsctl import cli, loading, processes, server, supervisor  # noqa: E402
from mmsctl.archives import mar, onnx_model, trials  # noqa: E402
from mmsctl.archives.errors import InvalidInput  # noqa: E402
from mmsctl.errors import ManagementError  # noqa: E402
from mmsctl.management import ManagementClient  # noqa: E402

from helpers import free_port  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64
JSON = {"Content-Type": "application/json"}
#: A client's limit on one request: far above any answer expected here, so a hang fails the test.
CLIENT_TIMEOUT = 30.0
#: Seconds within which a killed model must answer again.
HEAL_BOUND = 30.0


# -- the graphs ------------------------------------------------------------------------------------------
def _model(nodes, inputs, outputs, opset):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info(*o) for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def relu():
    return _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, ["N", 3])], [("y", F, ["N", 3])], 13)


def col2im():
    """Col2Im(input, image_shape, block_shape): divides by the sizes it is given."""
    return _model([helper.make_node("Col2Im", ["input", "image_shape", "block_shape"], ["y"])],
                  [("input", F, ["N", 4, "L"]), ("image_shape", I64, [2]), ("block_shape", I64, [2])],
                  [("y", F, ["N", "C", "H", "W"])], 18)


def affine():
    """A spatial transformer: AffineGrid(theta, size) then GridSample(x, grid); ``size`` is a shape."""
    return _model([helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=0),
                   helper.make_node("GridSample", ["x", "grid"], ["y"])],
                  [("x", F, ["N", 1, 4, 4]), ("theta", F, ["N", 2, 3]), ("size", I64, [4])],
                  [("y", F, ["N", 1, "H", "W"])], 20)


GRAPHS = {"relu": relu, "col2im": col2im, "affine": affine}

#: Real inputs of each graph (onnxruntime in-process answers them).
FEEDS = {
    "relu": lambda: {"x": np.array([[1.0, -2.0, 3.0]], np.float32)},
    "col2im": lambda: {"input": np.arange(36, dtype=np.float32).reshape(1, 4, 9),
                       "image_shape": np.array([4, 4]), "block_shape": np.array([2, 2])},
    "affine": lambda: {"x": np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4),
                       "theta": np.tile(np.array([[0.8, 0.1, 0.0], [-0.1, 0.9, 0.1]], np.float32), (2, 1, 1)),
                       "size": np.array([2, 1, 3, 3])},
}
#: A model whose handler kills its own process on one particular body, the poison request (Col2Im with zero sizes
#: did that on onnxruntime 1.20.1, with SIGFPE; 1.32.0 refuses the values instead).
POISONABLE = "poisonable"
POISON = b"poison"
FEEDS[POISONABLE] = lambda: b"good"
POISONABLE_HANDLER = """
import json, os, signal


def handle(data, context):
    if data is None:
        return None
    answers = []
    for request in data:
        body = request.get("body") or request.get("data") or b""
        if bytes(body) == b"poison":
            os.kill(os.getpid(), signal.SIGKILL)
        answers.append(json.dumps({"length": len(body)}))
    return answers
"""


def write_poisonable(folder):
    manifest = {"runtime": "python", "model": {"modelName": POISONABLE, "handler": "poisonable_service:handle"},
                "modelServerVersion": "1.0", "implementationVersion": "1.0", "specificationVersion": "1.0"}
    mar.write_mar(os.path.join(str(folder), POISONABLE + ".mar"),
                  {"MAR-INF/MANIFEST.json": json.dumps(manifest).encode(),
                   "poisonable_service.py": POISONABLE_HANDLER.encode()}, force=True)


def save(name, folder):
    path = os.path.join(str(folder), name + ".onnx")
    onnx.save(GRAPHS[name](), path)
    return path


def build(name, folder):
    return onnx_model.build(onnx_model.OnnxConfig(name=name, model=save(name, folder), export_path=str(folder)))


def batching_of(archive):
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("signature.json"))["batching"]


def body(feeds):
    return json.dumps({"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32" if v.dtype == np.float32
                                   else "INT64", "data": v.reshape(-1).tolist()} for k, v in feeds.items()]})


def reference(folder, name, feeds):
    session = ort.InferenceSession(os.path.join(str(folder), name + ".onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


# -- the builder (unit) ------------------------------------------------------------------------------------
@pytest.mark.unit
def test_col2im_failing_its_trial_is_archived_not_batchable_with_the_reason(tmp_path):
    """Col2Im divides by its integer inputs: onnxruntime 1.20.1 died of SIGFPE on made-up ones (the builder with
    it); 1.32.0 refuses them in its kernel. Either way the model is archived, not batchable, with the reason (a
    crash of the trial's process is covered by test_trials_are_bounded_in_time_and_survive_crashes)."""
    batching = batching_of(build("col2im", tmp_path))
    assert batching["batchable"] is False and batching["example_shapes"] is None
    assert "a forward pass on made-up inputs failed on inputs input[3, 4, 3], image_shape[2], block_shape[2]" \
        in batching["reason"] and "'image_shape' values must be positive" in batching["reason"], batching


@pytest.mark.unit
def test_affine_grid_with_a_shape_input_is_archived_not_batchable_with_the_reason(tmp_path):
    batching = batching_of(build("affine", tmp_path))
    assert batching["batchable"] is False and batching["example_shapes"] is None
    assert "a forward pass on made-up inputs failed on inputs x[3, 1, 4, 4], theta[3, 2, 3], size[4]" \
        in batching["reason"], batching


def _sleep_job(_run, seconds):
    time.sleep(seconds)
    return "slept"


def _crash_job(_run):
    os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.unit
def test_trials_are_bounded_in_time_and_survive_crashes(tmp_path):
    model_bytes = relu().SerializeToString()
    assert trials.run(_sleep_job, model_bytes, "relu.onnx", "", 0.0, timeout=60) == (trials.DONE, "slept")
    kind, reason = trials.run(_sleep_job, model_bytes, "relu.onnx", "", 600.0, timeout=1.0)
    assert kind == trials.FAILED and "took more than 1 s" in reason
    kind, reason = trials.run(_crash_job, model_bytes, "relu.onnx", "", timeout=60)
    assert kind == trials.FAILED and "crashed with SIGSEGV" in reason
    with pytest.raises(InvalidInput, match="onnxruntime .* cannot load bad.onnx"):
        trials.run(_sleep_job, b"not a model", "bad.onnx", "", 0.0, timeout=60)


# -- served: helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("availability-store")
    for name in GRAPHS:
        build(name, folder)
    write_poisonable(folder)
    return str(folder)


class Served:
    def __init__(self, state_dir, metrics_port):
        self.state_dir = state_dir
        self.state = server.ServerState.load(state_dir)
        self.metrics = "http://127.0.0.1:%d" % metrics_port
        self.client = ManagementClient(self.state.management_url)

    def post(self, name, feeds, timeout=CLIENT_TIMEOUT):
        """(status or exception name, seconds, body head)."""
        started = time.monotonic()
        try:
            raw = isinstance(feeds, bytes)  # the poisonable model takes plain bytes
            answer = requests.post("%s/predictions/%s" % (self.state.inference_url, name),
                                   data=feeds if raw else body(feeds), headers=None if raw else JSON, timeout=timeout)
            return answer.status_code, time.monotonic() - started, answer.text[:4000]
        except requests.RequestException as err:
            return type(err).__name__, time.monotonic() - started, str(err)[:300]

    def processes(self, name):
        """(listener, [forks]) of a model."""
        listeners, forks = loading.model_processes(loading.frontend_for(self.state.management_url), name)
        assert len(listeners) == 1, (listeners, forks)
        return listeners[0], forks

    def healthy(self, name):
        try:
            self.client.health([name])
            return True
        except ManagementError:
            return False

    def ready(self):
        return requests.get(self.metrics + "/readyz", timeout=10)

    def heals(self):
        found = {}
        for line in requests.get(self.metrics + "/metrics", timeout=10).text.splitlines():
            match = re.match(r'mmsctl_heals_total\{cause="([^"]+)",model="([^"]+)"\} ([0-9.]+)', line)
            if match:
                found[(match.group(2), match.group(1))] = float(match.group(3))
        return found

    def supervisor_log(self):
        path = os.path.join(self.state_dir, "logs", supervisor.LOG_FILE)
        return open(path, encoding="utf-8").read() if os.path.exists(path) else ""


def serve(store, state_dir, *extra):
    metrics = free_port()
    argv = ["serve", "--profile", "cpu-latency", "--vcpus", "4", "--oversubscribe", "--model-store", store,
            "--models"] + ["%s=%s.mar" % (name, name) for name in list(GRAPHS) + [POISONABLE]] + [
            "--inference-port", str(free_port()), "--management-port", str(free_port()),
            "--metrics-port", str(metrics), "--state-dir", state_dir] + list(extra)
    assert cli.main(argv) == 0
    return Served(state_dir, metrics)


def until(predicate, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def served(store, tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("supervised") / "state")
    try:
        yield serve(store, state_dir)
    finally:
        cli.main(["stop", "--state-dir", state_dir])


def kill(procs):
    for proc in procs:
        proc.send_signal(signal.SIGKILL)


def outage(served, name, victims):
    """Kill ``victims`` and send a request every 0.2 s until the model answers 200 again; watch health and
    /readyz. Returns the figures."""
    figures = {"requests": []}
    lock = threading.Lock()
    threads = []

    def send():
        sent = time.monotonic() - killed
        outcome = served.post(name, FEEDS[name]())
        with lock:
            figures["requests"].append((round(sent, 2),) + outcome)

    killed = time.monotonic()
    kill(victims)
    health_down = ready_down = None
    while time.monotonic() - killed < HEAL_BOUND:
        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        threads.append(thread)
        healthy, ready = served.healthy(name), served.ready().status_code == 200
        now = time.monotonic() - killed
        if not healthy and health_down is None:
            health_down = now
        if not ready and ready_down is None:
            ready_down = now
        served_again = any(r[1] == 200 for r in figures["requests"])
        if healthy and ready and served_again and (health_down is not None and ready_down is not None
                                                   or now > 5):
            figures.update(health_down=health_down, ready_down=ready_down, back=now)
            break
        time.sleep(0.2)
    for thread in threads:
        thread.join(CLIENT_TIMEOUT + 5)
    assert not any(thread.is_alive() for thread in threads)
    with lock:
        figures["requests"].sort()
    return figures


def summary(figures):
    counts = {}
    for _sent, status, _took, _text in figures["requests"]:
        counts[status] = counts.get(status, 0) + 1
    def seconds(key):
        return "never" if figures.get(key) is None else "%.2f s" % figures[key]
    return "health down at %s, /readyz down at %s, both back at %s; %d requests %s, longest %.2f s" % (
        seconds("health_down"), seconds("ready_down"), seconds("back"),
        len(figures["requests"]), counts, max(r[2] for r in figures["requests"]))


def assert_answered(figures, allowed=(200, 503)):
    """Every request answered within 5 s: 200, or a status in ``allowed`` with a JSON message; a request in
    flight in the killed worker may get MMS's 500 "Worker died." (one at most: the clients here wait in turn)."""
    assert figures["requests"], figures
    died = 0
    for sent, status, took, text in figures["requests"]:
        assert isinstance(status, int) and took < 5.0, (sent, status, took, text)
        if status == 500 and json.loads(text)["message"] == "Worker died." and sent < 0.1:
            died += 1
        elif status != 200:
            assert status in allowed and json.loads(text)["message"], (sent, status, text)
    assert died <= 1, figures["requests"]


# -- served --------------------------------------------------------------------------------------------------
@pytest.mark.server
def test_served_col2im_and_affine_answer_as_onnxruntime(served, store):
    for name in ("col2im", "affine"):
        status, _took, text = served.post(name, FEEDS[name]())
        assert status == 200, text
        got = json.loads(text)["outputs"][0]
        want = reference(store, name, FEEDS[name]())
        np.testing.assert_allclose(np.array(got["data"], np.float32).reshape(got["shape"]), want, rtol=1e-6)


@pytest.mark.server
def test_poison_request_loses_itself_only(served):
    _listener, [fork] = served.processes(POISONABLE)
    status, _took, text = served.post(POISONABLE, POISON)
    assert status == 500 and json.loads(text)["message"] == "Worker died.", text
    assert not fork.is_running() or fork.status() == psutil.STATUS_ZOMBIE
    assert served.post("relu", FEEDS["relu"]())[0] == 200
    status, _took, text = served.post(POISONABLE, FEEDS[POISONABLE]())  # MMS forks a new worker: served
    assert status == 200 and json.loads(text) == {"length": 4}, text


@pytest.mark.server
def test_killed_fork_mms_restores_it_without_a_heal(served):
    _listener, forks = served.processes("relu")
    before = served.heals()
    figures = outage(served, "relu", forks)
    print("\nfork killed: " + summary(figures))
    assert "back" in figures, figures
    assert_answered(figures, allowed=())
    assert served.heals() == before


@pytest.mark.server
def test_killed_listener_and_fork_are_healed_and_requests_meanwhile_served(served):
    """The supervisor starts the listener again on its socket: MMS's workers reconnect, and the requests
    that waited in the model's queue are served."""
    listener, forks = served.processes("relu")
    before = served.heals().get(("relu", "listener-died"), 0)
    assert served.healthy("relu") and served.ready().status_code == 200
    figures = outage(served, "relu", [listener] + forks)
    print("\nlistener and fork killed (heal by restarting the listener): " + summary(figures))
    assert "back" in figures, (figures, served.supervisor_log())
    assert_answered(figures, allowed=())  # every one served
    assert figures["health_down"] < 2.0 and figures["ready_down"] < 2.0
    healed = "healed model relu (cause listener-died: its listener process (pid %d) died) by starting its " \
             "listener again" % listener.pid
    assert until(lambda: healed in served.supervisor_log(), 5), served.supervisor_log()
    assert until(lambda: served.heals().get(("relu", "listener-died")) == before + 1, 5)
    new_listener, _forks = served.processes("relu")
    assert new_listener.pid != listener.pid
    assert served.post("col2im", FEEDS["col2im"]())[0] == 200  # the other models never noticed
    listed = 'mmsctl_worker_resident_memory_bytes{model="relu",pid="%d",role="listener"}' % new_listener.pid
    assert until(lambda: listed in requests.get(served.metrics + "/metrics", timeout=10).text, 5)
    # killed again: the listener started again is watched as MMS's was
    figures = outage(served, "relu", list(served.processes("relu")[:1]) + served.processes("relu")[1])
    print("killed again: " + summary(figures))
    assert "back" in figures and served.heals().get(("relu", "listener-died")) == before + 2
    assert_answered(figures, allowed=())


@pytest.mark.server
def test_stop_stops_a_listener_the_supervisor_started(store, tmp_path):
    state_dir = str(tmp_path / "state")
    try:
        served = serve(store, state_dir)
        listener, forks = served.processes("relu")
        kill([listener] + forks)
        assert until(lambda: served.healthy("relu") and served.processes("relu")[0].pid != listener.pid, 30)
        restarted = served.processes("relu")[0]
    finally:
        cli.main(["stop", "--state-dir", state_dir])
    assert not restarted.is_running() or restarted.status() == psutil.STATUS_ZOMBIE


@pytest.fixture(scope="module")
def reregistering(store, tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("reregistering") / "state")
    try:
        yield serve(store, state_dir, "--heal-by", "reregister", "--heal-after", "1", "--heal-give-up", "2")
    finally:
        cli.main(["stop", "--state-dir", state_dir])


@pytest.mark.server
def test_heal_by_unregister_and_register_answers_503_then_serves(reregistering):
    """The management API's sequence MMS 1.1.11 survives: scale to 0 (requests get a prompt 503), unregister,
    register with the same settings. (A request that reached the dead model's queue before the scale to 0
    is dropped by the unregistration and never answered: why restarting the listener is the default.)"""
    served = reregistering
    listener, forks = served.processes("relu")
    killed = time.monotonic()
    kill([listener] + forks)
    assert until(lambda: not served.healthy("relu"), 5)
    assert until(lambda: served.client.describe("relu")["minWorkers"] == 0, 5)  # fenced
    outcomes = []
    while time.monotonic() - killed < HEAL_BOUND:
        outcomes.append((round(time.monotonic() - killed, 2),) + served.post("relu", FEEDS["relu"]()))
        if outcomes[-1][1] == 200:
            break
        time.sleep(0.2)
    back = time.monotonic() - killed
    print("\nlistener and fork killed (heal by unregister and register): first 200 at %.2f s; %d requests %s, "
          "longest %.2f s" % (back, len(outcomes), sorted({o[1] for o in outcomes}), max(o[2] for o in outcomes)))
    assert outcomes[-1][1] == 200, outcomes
    for _at, status, took, text in outcomes[:-1]:
        assert status in (503, 404) and took < 2.0 and json.loads(text)["message"], (status, took, text)
    assert until(lambda: "by unregister and register" in served.supervisor_log(), 5), served.supervisor_log()
    assert "healed model relu (cause listener-died" in served.supervisor_log()
    described = served.client.describe("relu")
    assert described["minWorkers"] == 1 and served.healthy("relu")


@pytest.mark.server
def test_without_supervisor_scale_and_unregister_of_a_dead_model_answer_at_once(store, tmp_path, capsys):
    state_dir = str(tmp_path / "state")
    try:
        plain = serve(store, state_dir, "--no-supervisor")
        listener, forks = plain.processes("relu")
        kill([listener] + forks)
        assert until(lambda: not plain.healthy("relu"), 5)
        url = ["--management-url", plain.state.management_url]
        capsys.readouterr()
        started = time.monotonic()
        assert cli.main(["scale", "relu", "--min-worker", "2"] + url) == 1
        took = time.monotonic() - started
        err = capsys.readouterr().err
        assert took < 10 and len(err.strip().splitlines()) == 1, (took, err)
        with capsys.disabled():
            print("\nscale on a dead model answered in %.2f s: %s" % (took, err.strip()))
        assert "model relu has no live worker process" in err and "mmsctl unregister relu" in err, err
        assert cli.main(["health", "relu", "--state-dir", state_dir] + url) == 1
        assert "model relu: no live worker has loaded it" in capsys.readouterr().err
        time.sleep(3)
        assert plain.client.describe("relu")["workers"][0]["status"] == "READY"  # what MMS still says
        started = time.monotonic()
        assert cli.main(["unregister", "relu"] + url) == 0
        took = time.monotonic() - started
        assert took < 10
        with capsys.disabled():
            print("unregister of a dead model answered in %.2f s" % took)
        assert "which had no live worker process" in capsys.readouterr().out
        assert cli.main(["register", "relu.mar", "--name", "relu", "--workers", "1"] + url) == 0
        assert until(lambda: plain.healthy("relu"), 30)
        assert plain.post("relu", FEEDS["relu"]())[0] == 200
    finally:
        cli.main(["stop", "--state-dir", state_dir])


@pytest.mark.server
def test_a_model_the_operator_scales_is_never_healed(reregistering, capsys):
    served = reregistering
    url = ["--management-url", served.state.management_url]
    before = served.supervisor_log().count("col2im")
    assert cli.main(["scale", "col2im", "--min-worker", "2"] + url) == 0  # forks loading: not a heal
    assert served.client.describe("col2im")["minWorkers"] == 2 and served.healthy("col2im")
    assert cli.main(["scale", "col2im", "--min-worker", "0", "--max-worker", "0"] + url) == 0  # MMS stops it
    time.sleep(4)  # more than --heal-after
    assert served.supervisor_log().count("col2im") == before, served.supervisor_log()
    assert served.client.describe("col2im")["minWorkers"] == 0 and not served.healthy("col2im")
    assert ("col2im", "listener-died") not in served.heals()


@pytest.mark.server
def test_a_model_that_cannot_be_registered_again_is_given_up(reregistering, store, capsys):
    served = reregistering
    entry = served.client.describe("affine")["modelUrl"]
    listener, forks = served.processes("affine")
    os.rename(os.path.join(store, entry), os.path.join(store, entry + ".gone"))  # registering fails now
    try:
        kill([listener] + forks)
        assert until(lambda: "gave up on model affine" in served.supervisor_log(), 30), served.supervisor_log()
    finally:
        os.rename(os.path.join(store, entry + ".gone"), os.path.join(store, entry))
    log = served.supervisor_log()
    assert log.count("heal of model affine") == 2, log
    answer = served.ready()
    assert answer.status_code == 503 and "the supervisor gave up healing it" in answer.json()["reason"]
    capsys.readouterr()
    assert cli.main(["health", "--state-dir", served.state_dir, "--management-url",
                     served.state.management_url]) == 1
    assert "model affine: the supervisor of `mmsctl serve` gave up healing it" in capsys.readouterr().err
    time.sleep(3)
    assert served.supervisor_log().count("heal of model affine") == 2  # it does not flap
    assert served.healthy("relu")


@pytest.mark.slow
def test_a_listener_that_cannot_load_the_model_falls_back_to_registering_then_gives_up(store, tmp_path):
    """The listener started again gets no worker loaded (its model file is corrupt; MMS kills it, or the bound
    passes): the model is registered again, which fails too; two failures and the supervisor gives up."""
    state_dir = str(tmp_path / "state")
    lines = []
    try:
        plain = serve(store, state_dir, "--no-supervisor")
        watcher = supervisor.Supervisor(plain.state, grace=1, max_failures=2, restart_bound=8,
                                        log=lines.append).start()
        try:
            assert until(lambda: "affine" in watcher.specs, 10)  # it has seen the listener
            folder = os.path.join(store, plain.client.describe("affine")["modelUrl"])
            weights = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".onnx")]
            assert weights, os.listdir(folder)
            saved = {path: open(path, "rb").read() for path in weights}
            listener, forks = plain.processes("affine")
            for path in weights:  # loading fails now
                with open(path, "wb") as handle:
                    handle.write(b"not a model")
            try:
                kill([listener] + forks)
                assert until(lambda: any("gave up on model affine" in line for line in lines), 60), lines
            finally:
                for path, data in saved.items():
                    with open(path, "wb") as handle:
                        handle.write(data)
        finally:
            watcher.stop()
        text = "\n".join(lines)
        assert re.search(r"the listener of model affine started again \(pid \d+\) (exited with status|got no worker "
                         r"loaded in 8 s)", text), text
        assert "heal of model affine (cause listener-restart-failed" in text, text
        assert not watcher.adopted  # the listener it started was stopped
        assert supervisor.read_record(state_dir)["gave_up"]["affine"]
    finally:
        cli.main(["stop", "--state-dir", state_dir])


# -- chaos under load (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_chaos_under_load(served):
    """Two clients for 60 s while worker processes are killed every 15 s (the fork, then the listener and
    the fork, ...); a third sends a poison request now and then among good ones."""
    outcomes = {"relu": [], POISONABLE: [], "poison": []}
    lock = threading.Lock()
    stop = threading.Event()

    def client(name, poison_every=None):
        count = 0
        while not stop.is_set():
            count += 1
            poisoned = poison_every and count % poison_every == 0
            sent = time.monotonic()
            outcome = served.post(name, POISON if poisoned else FEEDS[name]())
            with lock:
                outcomes["poison" if poisoned else name].append((sent,) + outcome)
            if poison_every:
                time.sleep(0.2)

    threads = [threading.Thread(target=client, args=("relu",), daemon=True) for _ in range(2)]
    threads.append(threading.Thread(target=client, args=(POISONABLE, 10), daemon=True))
    started = time.monotonic()
    kills = []
    for thread in threads:
        thread.start()
    try:
        for round_ in range(3):
            time.sleep(max(0.0, started + 15 * (round_ + 1) - time.monotonic()))
            listener, forks = served.processes("relu")
            victims = forks if round_ % 2 == 0 else [listener] + forks
            kill(victims)
            until(lambda: not any(processes.alive(v) for v in victims), 5, step=0.005)  # "back" counts from here
            kills.append((time.monotonic(), "fork" if round_ % 2 == 0 else "listener+fork"))
        time.sleep(max(0.0, started + 60 - time.monotonic()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(CLIENT_TIMEOUT + 5)
    assert not any(thread.is_alive() for thread in threads)
    report = {}
    for kind, rows in outcomes.items():
        statuses = {}
        for row in rows:
            statuses[row[1]] = statuses.get(row[1], 0) + 1
        report[kind] = (len(rows), statuses, round(max(r[2] for r in rows), 2) if rows else None)
    back = []
    for at, what in kills:
        first = min((r[0] + r[2] - at for r in outcomes["relu"] if r[0] > at and r[1] == 200), default=None)
        back.append((what, round(first, 2) if first is not None else None))
    print("\nchaos: %s; back after each kill: %s" % (report, back))
    everything = [r for rows in outcomes.values() for r in rows]
    assert all(isinstance(r[1], int) for r in everything), [r for r in everything if not isinstance(r[1], int)]
    assert max(r[2] for r in everything) < CLIENT_TIMEOUT
    assert all(first is not None and first < HEAL_BOUND for _what, first in back), back
    assert outcomes["poison"] and all(r[1] == 500 for r in outcomes["poison"]), outcomes["poison"]
    assert all(r[1] == 200 for r in outcomes[POISONABLE]), [r for r in outcomes[POISONABLE] if r[1] != 200]
    lost = [r for r in outcomes["relu"] if r[1] != 200]
    assert all(r[1] == 500 and json.loads(r[3])["message"] == "Worker died." for r in lost), lost
    assert len(lost) <= 2 * len(kills), lost  # at most the request each client had in the killed worker
