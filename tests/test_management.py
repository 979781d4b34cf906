"""The operator CLI over MMS's management API, against a real server.

One server (``mmsctl serve``, cpu-latency, 1 vCPU) serves the module; each test
that registers a model gives it an archive of its own, because MMS 1.1.11
unpacks identical archives into one folder and unregistering either deletes it.
Every failure is checked to be one line on stderr that names the server (and
the model), with a non-zero exit and no traceback. The last test runs the real
``mmsctl`` entry point in a subprocess: ``serve --foreground`` and SIGTERM.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from mmsctl import cli, server
from mmsctl.archives import mxnet_checkpoint

from helpers import end_foreground_serve, free_port

MAIN = "efficientnet-lite0"


def run(capsys, *argv):
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, *names):
    """A non-zero exit and exactly one line on stderr naming each of ``names``; no traceback."""
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, err
    assert lines[0].startswith("mmsctl: error: ") and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def gone(procs, timeout=15):
    """Wait until every process has exited (an unreaped zombie counts as exited)."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    return not alive


@pytest.fixture(scope="module")
def mgmt(tmp_path_factory, model_store):
    base = tmp_path_factory.mktemp("management")
    store = base / "store"
    store.mkdir()
    for name in (MAIN + ".mar", "resnet18.mar"):
        shutil.copy(os.path.join(model_store, name), store / name)
    for name in ("partial", "zero"):  # distinct archives (their manifests name them)
        mxnet_checkpoint.build_efficientnet_lite0(str(store), name=name)
    state_dir = str(base / "state")
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    assert cli.main(["serve", "--profile", "cpu-latency", "--vcpus", "1", "--model-store", str(store),
                     "--models", "%s=%s.mar" % (MAIN, MAIN), "--state-dir", state_dir,
                     "--inference-port", str(free_port()), "--management-port", str(port)]) == 0
    try:
        yield argparse.Namespace(url=url, store=str(store), state_dir=state_dir,
                                 state=server.ServerState.load(state_dir))
    finally:
        if os.path.exists(os.path.join(state_dir, server.STATE_FILE)):
            server.stop(server.ServerState.load(state_dir))


# -- commands that work --------------------------------------------------------------------------
def test_describe_and_health(mgmt, capsys):
    code, out, _ = run(capsys, "describe", MAIN, "--management-url", mgmt.url)
    described = json.loads(out)
    assert code == 0 and described["modelName"] == MAIN and described["minWorkers"] == 1
    assert [w["status"] for w in described["workers"]] == ["READY"]
    code, out, _ = run(capsys, "health", MAIN, "--management-url", mgmt.url)
    assert code == 0 and out == "%s: 1 live worker loaded\n" % MAIN


def test_register_list_follows_pages_unregister(mgmt, capsys):
    code, out, _ = run(capsys, "register", "resnet18.mar", "--name", "listed", "--workers", "0",
                       "--management-url", mgmt.url)
    assert code == 0 and out == 'Model "listed" registered\n'
    first_page = requests.get(mgmt.url + "/models", params={"limit": 1}, timeout=10).json()
    assert len(first_page["models"]) == 1 and first_page["nextPageToken"]  # so limit=1 needs a second page
    code, out, _ = run(capsys, "list", "--limit", "1", "--management-url", mgmt.url)
    names = [m["modelName"] for m in json.loads(out)]
    assert code == 0 and {MAIN, "listed"} <= set(names) and len(names) == len(set(names))
    code, out, _ = run(capsys, "unregister", "listed", "--management-url", mgmt.url)
    assert code == 0 and out == 'Model "listed" unregistered\n'
    code, out, _ = run(capsys, "list", "--management-url", mgmt.url)
    assert "listed" not in [m["modelName"] for m in json.loads(out)]


def test_scale_up_and_down(mgmt, capsys):
    try:
        code, out, _ = run(capsys, "scale", MAIN, "--min-worker", "2", "--management-url", mgmt.url)
        assert code == 0 and out == "Workers scaled\n"
        code, out, _ = run(capsys, "health", MAIN, "--management-url", mgmt.url)
        assert code == 0 and out == "%s: 2 live workers loaded\n" % MAIN
    finally:
        code, out, _ = run(capsys, "scale", MAIN, "--min-worker", "1", "--management-url", mgmt.url)
    assert code == 0 and out == "Workers scaled\n"
    described = json.loads(run(capsys, "describe", MAIN, "--management-url", mgmt.url)[1])
    assert len(described["workers"]) == 1


def test_health_fails_when_a_model_has_no_ready_worker(mgmt, capsys):
    assert run(capsys, "register", "zero.mar", "--name", "zero", "--workers", "1", "--management-url", mgmt.url)[0] == 0
    assert run(capsys, "health", "zero", "--management-url", mgmt.url)[0] == 0
    code, out, _ = run(capsys, "scale", "zero", "--min-worker", "0", "--management-url", mgmt.url)
    assert code == 0 and out == "Workers scaled\n"
    code, _, err = run(capsys, "health", "zero", "--management-url", mgmt.url)
    assert_one_error_line(code, err, "model zero", mgmt.url, "no live worker has loaded it")
    code, _, err = run(capsys, "health", "--management-url", mgmt.url)  # all models: zero fails the lot
    assert_one_error_line(code, err, "zero", mgmt.url)
    assert MAIN not in err


def test_a_failed_scale_goes_back_and_a_failing_worker_is_not_scaled_over(mgmt, capsys):
    """A model whose unpacked files were damaged after it loaded: scaling it up starts a
    worker that cannot load it. MMS answers 500 and would keep retrying that worker (its
    next scale answering 210, partial success); mmsctl scales back to the previous
    workers instead. With MMS's own API the failing worker stays, and mmsctl refuses to
    scale over a model whose workers have not all loaded it, sending nothing.
    """
    assert run(capsys, "register", "partial.mar", "--workers", "1", "--management-url", mgmt.url)[0] == 0
    try:
        folders = {os.path.dirname(os.path.dirname(path)) for path in glob.glob(os.path.join(
            mgmt.state_dir, "tmp", "models", "*", "MAR-INF", "MANIFEST.json"))
            if '"modelName": "partial"' in open(path, encoding="utf-8").read()}
        assert len(folders) == 1
        os.remove(os.path.join(folders.pop(), "signature.json"))
        code, _, err = run(capsys, "scale", "partial", "--min-worker", "2", "--timeout", "120",
                           "--management-url", mgmt.url)
        assert_one_error_line(code, err, "scale model partial", mgmt.url, "answered 500: Failed to start workers",
                              "the model keeps its previous 1 worker")
        described = json.loads(run(capsys, "describe", "partial", "--management-url", mgmt.url)[1])
        assert (described["minWorkers"], len(described["workers"]), described["allWorkersLoaded"]) == (1, 1, True)
        requests.put(mgmt.url + "/models/partial", params={"min_worker": 2, "synchronous": "true"}, timeout=120)
        code, out, err = run(capsys, "scale", "partial", "--min-worker", "3", "--timeout", "2",
                             "--management-url", mgmt.url)
        assert_one_error_line(code, err, "scale model partial", "is still loading (1 of 2 workers have loaded it",
                              "nothing was sent")
        assert len(json.loads(run(capsys, "describe", "partial", "--management-url", mgmt.url)[1])["workers"]) == 2
        code, _, err = run(capsys, "unregister", "partial", "--timeout", "1", "--management-url", mgmt.url)
        assert_one_error_line(code, err, "unregister model partial", "is still loading", "--force")
        assert run(capsys, "unregister", "partial", "--force", "--management-url", mgmt.url)[0] == 0
    finally:
        requests.delete(mgmt.url + "/models/partial", timeout=60)  # whatever failed above


# -- every failure: one line, the server and the model named, non-zero exit ---------------------
@pytest.mark.parametrize("argv", [
    ["describe", "missing"],
    ["scale", "missing", "--min-worker", "1"],
    ["unregister", "missing"],
    ["health", "missing"],
])
def test_model_not_found(mgmt, capsys, argv):
    code, _, err = run(capsys, *argv, "--management-url", mgmt.url)
    assert_one_error_line(code, err, "model missing", mgmt.url, "answered 404")


def test_register_a_file_not_in_the_store(mgmt, capsys):
    code, _, err = run(capsys, "register", "missing.mar", "--management-url", mgmt.url)
    assert_one_error_line(code, err, "register missing.mar", mgmt.url, "answered 404")


def test_refused_request(mgmt, capsys):
    code, _, err = run(capsys, "scale", MAIN, "--min-worker", "2", "--max-worker", "1", "--management-url", mgmt.url)
    assert_one_error_line(code, err, "scale model %s" % MAIN, mgmt.url, "answered 400",
                          "max_worker cannot be less than min_worker")


@pytest.mark.parametrize("argv, what", [
    (["register", "x.mar"], "register x.mar"),
    (["scale", "m", "--min-worker", "1"], "scale model m"),
    (["describe", "m"], "describe model m"),
    (["list"], "list models"),
    (["unregister", "m"], "unregister model m"),
    (["health", "m"], "describe model m"),
])
def test_server_down(capsys, argv, what):
    url = "http://127.0.0.1:%d" % free_port()  # nothing listens there
    code, out, err = run(capsys, *argv, "--management-url", url)
    line = assert_one_error_line(code, err, what, url, "is not reachable (is the server running?)")
    assert code == 1 and out == "" and line


def test_management_url_from_the_environment(mgmt, capsys, monkeypatch):
    monkeypatch.setenv("MMSCTL_MANAGEMENT_URL", mgmt.url)
    code, out, _ = run(capsys, "describe", MAIN)
    assert code == 0 and json.loads(out)["modelName"] == MAIN


def test_stop_without_a_server(tmp_path, capsys):
    code, _, err = run(capsys, "stop", "--state-dir", tmp_path)
    assert_one_error_line(code, err, "no server state in %s" % tmp_path)


# -- help --------------------------------------------------------------------------------------------
def all_parsers(parser, path=("mmsctl",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, path + (name,))


def test_every_help_ends_with_an_example():
    checked = []
    for path, parser in all_parsers(cli.build_parser()):
        lines = parser.format_help().rstrip().splitlines()
        start = max(i for i, line in enumerate(lines) if line == "example:")
        example = lines[start + 1:]
        assert example and all(line.startswith("  ") for line in example), (path, lines[-5:])
        assert example[0].startswith("  mmsctl "), (path, example)
        checked.append(" ".join(path))
    for command in ("mmsctl", "mmsctl serve", "mmsctl stop", "mmsctl config render", "mmsctl register",
                    "mmsctl scale", "mmsctl describe", "mmsctl list", "mmsctl unregister", "mmsctl health"):
        assert command in checked


# -- the real entry point, in front, stopped by SIGTERM -------------------------------------------------
@pytest.mark.server
def test_serve_foreground_stops_the_whole_tree_on_sigterm(model_store, tmp_path):
    mmsctl = os.path.join(os.path.dirname(sys.executable), "mmsctl")
    state_dir = str(tmp_path / "state")
    process = subprocess.Popen(
        [mmsctl, "serve", "--foreground", "--profile", "cpu-throughput", "--vcpus", "2", "--model-store", model_store,
         "--models", "%s=%s.mar" % (MAIN, MAIN), "--state-dir", state_dir, "--inference-port", str(free_port()),
         "--management-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        seen = []
        for line in process.stdout:  # MMS's log goes to stdout too; the ready line comes once loaded
            seen.append(line)
            if line.startswith("serving %s" % MAIN) or time.monotonic() > deadline:
                break
        assert seen and seen[-1].startswith("serving %s on http://127.0.0.1:" % MAIN), "".join(seen[-20:])
        tree = psutil.Process(process.pid).children(recursive=True)
        workers = [p for p in tree if "model_service_worker" in " ".join(p.cmdline())]
        assert len(workers) == 3  # the model's backend process and its 2 forked workers
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.stdout.read()
        assert process.wait(timeout=20) == 0
        assert gone(tree, timeout=5), [p for p in tree if p.is_running()]
        elapsed = time.monotonic() - started
        assert elapsed < 10, elapsed
        assert not os.path.exists(os.path.join(state_dir, server.STATE_FILE))
    finally:
        end_foreground_serve(process, state_dir)
