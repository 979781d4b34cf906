"""The exporter against real servers: exact request counts per model and status
through log rotation, a real Prometheus scraping it, /readyz while a model loads,
after its worker is killed and once MMS restarted it, unregistered models, and
``mmsctl serve`` / ``top`` / ``stop`` and the SIGTERM drain of ``serve --foreground``."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mmsctl import server
from mmsctl.management import ManagementClient
from mmsctl.metrics import emf, logconfig, runner

from helpers import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]  # the built model store (conftest: slow)

MAIN, SECOND = "efficientnet-lite0", "resnet18"


@pytest.fixture(scope="module")
def watched(servers, model_store):
    """A server with two models whose logs rotate every 2 KB, and an exporter in this process."""
    saved = os.environ.get(logconfig.ROLL_SIZE_ENV)
    os.environ[logconfig.ROLL_SIZE_ENV] = "2 KB"
    try:
        state = servers.start(model_store, {MAIN: MAIN + ".mar", SECOND: SECOND + ".mar"})
    finally:
        if saved is None:
            os.environ.pop(logconfig.ROLL_SIZE_ENV)
        else:
            os.environ[logconfig.ROLL_SIZE_ENV] = saved
    exporter = runner.start_in_process(state.state_dir, port=free_port())
    time.sleep(1.0)  # mmsctl's warm-up requests (one 400 per worker) may still reach the access log
    try:
        yield state, exporter
    finally:
        exporter.stop()


def samples(url, name):
    text = requests.get(url + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def request_counts(url):
    return {(dict(k)["model"], dict(k)["code"]): v for k, v in samples(url, "mmsctl_requests_total").items()}


def send(state, model, body, count):
    with requests.Session() as session:
        codes = [session.post("%s/predictions/%s" % (state.inference_url, model), data=body, timeout=120).status_code
                 for _ in range(count)]
    return codes


def until(predicate, timeout, step=0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def expected_after(before, sent):
    out = dict(before)
    for key, count in sent.items():
        out[key] = out.get(key, 0) + count
    return out


def test_counts_equal_the_requests_sent_per_model_and_status_across_rotation(watched, cat_photo):
    state, exporter = watched
    with open(cat_photo, "rb") as handle:
        photo = handle.read()
    before = request_counts(exporter.url)
    assert send(state, MAIN, photo, 12) == [200] * 12
    assert send(state, SECOND, photo, 4) == [200] * 4
    assert send(state, SECOND, b"", 7) == [400] * 7  # our handlers refuse an empty body
    assert send(state, "no-such-model", photo, 3) == [404] * 3
    sent = {(MAIN, "200"): 12, (SECOND, "200"): 4, (SECOND, "400"): 7, ("_unknown", "404"): 3}
    want = expected_after(before, sent)
    until(lambda: request_counts(exporter.url) == want, 15)
    time.sleep(1.0)  # and nothing is counted twice afterwards
    assert request_counts(exporter.url) == want
    rotated = [n for n in os.listdir(os.path.join(state.state_dir, "logs")) if n.startswith("access_log.")
               and n != logconfig.ACCESS_LOG]
    assert rotated, "the 2 KB access log never rotated"
    durations = {dict(k)["model"]: v for k, v in samples(exporter.url, "mmsctl_request_duration_seconds_count").items()
                 if dict(k)["code"] == "200"}
    assert durations[MAIN] >= 12
    handler = {dict(k)["model"]: v for k, v in samples(exporter.url, "mmsctl_prediction_time_seconds_count").items()}
    assert handler[MAIN] >= 12 and handler[SECOND] >= 11
    rss = samples(exporter.url, "mmsctl_worker_resident_memory_bytes")
    roles = {(dict(k)["model"], dict(k)["role"]) for k in rss}
    assert {(MAIN, "listener"), (MAIN, "worker"), (SECOND, "worker")} <= roles and all(v > 0 for v in rss.values())
    lag = samples(exporter.url, "mmsctl_log_unparsed_lines_total")
    assert lag[(("log", "access"),)] == 0


@pytest.mark.slow
def test_a_real_prometheus_reads_the_exact_counts(watched, tmp_path):
    binary = shutil.which("prometheus")
    if not binary:
        pytest.skip("the prometheus binary is missing: `apt-get install prometheus` (scripts/test.sh installs it "
                    "as root or with sudo)")
    state, exporter = watched
    before = request_counts(exporter.url)
    assert send(state, SECOND, b"", 5) == [400] * 5
    want = expected_after(before, {(SECOND, "400"): 5})
    until(lambda: request_counts(exporter.url) == want, 15)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mmsctl\n"
        "    static_configs:\n      - targets: ['%s']\n" % exporter.url.split("//", 1)[1])
    process = subprocess.Popen([binary, "--config.file", str(tmp_path / "prometheus.yml"),
                                "--storage.tsdb.path", str(tmp_path / "data"),
                                "--web.listen-address", "127.0.0.1:%d" % port],
                               stdout=subprocess.DEVNULL, stderr=open(str(tmp_path / "prometheus.log"), "wb"))
    try:
        def from_prometheus():
            try:
                answer = requests.get("http://127.0.0.1:%d/api/v1/query" % port,
                                      params={"query": "mmsctl_requests_total"}, timeout=5).json()
            except (requests.RequestException, ValueError):
                return None
            got = {(r["metric"]["model"], r["metric"]["code"]): float(r["value"][1])
                   for r in answer.get("data", {}).get("result", [])}
            return got if got == want else None
        got = until(from_prometheus, 60, step=0.5)
        assert got == want, (from_prometheus(), want, (tmp_path / "prometheus.log").read_text()[-2000:])
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_readyz_turns_503_when_the_worker_dies_and_200_once_restarted(watched):
    state, exporter = watched
    ready = requests.get(exporter.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
    assert requests.get(exporter.url + "/healthz", timeout=10).json() == {"healthy": True}
    restarts = samples(exporter.url, "mmsctl_worker_restarts_total")[(("model", MAIN),)]
    workers = [p for p in psutil.Process(state.pid).children(recursive=True)
               if "model_service_worker" in " ".join(p.cmdline()) and p.parent() is not None
               and "model_service_worker" in " ".join(p.parent().cmdline())]
    port_of = {p.pid: p.cmdline()[p.cmdline().index("--sock-name") + 1] for p in workers}
    victim = [p for p in workers if port_of[p.pid].endswith(".%d" % exporter.store.ports[MAIN])]
    assert len(victim) == 1  # cpu-latency: one worker
    seen = []

    def not_ready():
        answer = requests.get(exporter.url + "/readyz", timeout=10)
        seen.append((round(time.time() * 1000), answer.status_code))
        return answer.json() if answer.status_code == 503 else None  # (a 503 Response is falsy)
    victim[0].kill()
    answer = until(not_ready, 5, step=0.1)
    assert answer is not None, ("readyz stayed 200 after the worker was killed", seen,
                                open(os.path.join(state.state_dir, "logs", logconfig.WORKER_STATE_LOG)).read())
    assert MAIN in answer["reason"] and SECOND not in answer["reason"]
    back = until(lambda: requests.get(exporter.url + "/readyz", timeout=10).status_code == 200, 120, step=0.5)
    assert back, requests.get(exporter.url + "/readyz", timeout=10).text
    assert samples(exporter.url, "mmsctl_worker_restarts_total")[(("model", MAIN),)] == restarts + 1


def test_readyz_is_503_while_a_model_loads_and_its_series_go_when_unregistered(watched):
    state, exporter = watched
    client = ManagementClient(state.management_url)
    client.register(SECOND + ".mar", name="late", workers=1, synchronous=False)
    try:
        answer = requests.get(exporter.url + "/readyz", timeout=10)
        assert answer.status_code == 503 and "model late" in answer.json()["reason"], answer.text
        assert until(lambda: requests.get(exporter.url + "/readyz", timeout=10).status_code == 200, 180, step=0.5)
        assert send(state, "late", b"", 2) == [400, 400]
        until(lambda: request_counts(exporter.url).get(("late", "400")) == 2, 15)
        assert request_counts(exporter.url)[("late", "400")] == 2
    finally:
        client.unregister("late")
    assert until(lambda: not any(m == "late" for m, _ in request_counts(exporter.url)), 10)
    assert not any(dict(k)["model"] == "late" for k in samples(exporter.url, "mmsctl_workers"))
    assert any(m == MAIN for m, _ in request_counts(exporter.url))
    assert requests.get(exporter.url + "/readyz", timeout=10).status_code == 200


def _mmsctl():
    return os.path.join(os.path.dirname(sys.executable), "mmsctl")


def _port_closed(port):
    try:
        requests.get("http://127.0.0.1:%d/metrics" % port, timeout=2)
        return False
    except requests.ConnectionError:
        return True


@pytest.mark.slow
def test_serve_top_and_stop_run_and_end_the_exporter_child(model_store, tmp_path):
    state_dir, port = str(tmp_path / "state"), free_port()
    common = ["--state-dir", state_dir]
    out = subprocess.run([_mmsctl(), "serve", "--model-store", model_store, "--models", "%s=%s.mar" % (SECOND, SECOND),
                          "--inference-port", str(free_port()), "--management-port", str(free_port()),
                          "--metrics-port", str(port), "--vcpus", "1"] + common,
                         capture_output=True, text=True, timeout=300)
    try:
        assert out.returncode == 0, out.stderr[-2000:]
        assert "metrics, /healthz, /readyz on http://127.0.0.1:%d" % port in out.stdout
        assert requests.get("http://127.0.0.1:%d/readyz" % port, timeout=10).status_code == 200
        top = subprocess.run([_mmsctl(), "top", "--iterations", "1", "--interval", "0.5"] + common,
                             capture_output=True, text=True, timeout=60)
        assert top.returncode == 0, top.stderr
        row = [line for line in top.stdout.splitlines() if line.startswith(SECOND)]
        assert row and row[0].split()[5] == "1", top.stdout  # WORKERS
    finally:
        stop = subprocess.run([_mmsctl(), "stop"] + common, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert until(lambda: _port_closed(port), 10)


def test_sigterm_drains_readyz_then_stops_and_emf_lines_count_the_requests(model_store, tmp_path):
    state_dir, port = str(tmp_path / "state"), free_port()
    process = subprocess.Popen(
        [_mmsctl(), "serve", "--foreground", "--model-store", model_store, "--models", "%s=%s.mar" % (SECOND, SECOND),
         "--inference-port", str(free_port()), "--management-port", str(free_port()), "--metrics-port", str(port),
         "--drain-timeout", "4", "--vcpus", "1", "--state-dir", state_dir, "--emf"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        for line in process.stdout:
            if line.startswith("serving ") or time.monotonic() > deadline:
                break
        url = "http://127.0.0.1:%d" % port
        assert requests.get(url + "/readyz", timeout=10).status_code == 200
        inference = server.ServerState.load(state_dir).inference_url
        time.sleep(1.0)  # serve's own warm-up request (a 400) may reach the access log after the exporter started
        key = (("code", "400"), ("model", SECOND))
        baseline = samples(url, "mmsctl_requests_total").get(key, 0)
        codes = [requests.post(inference + "/predictions/" + SECOND, data=b"", timeout=60).status_code
                 for _ in range(3)]
        assert codes == [400] * 3
        until(lambda: samples(url, "mmsctl_requests_total").get(key) == baseline + 3, 10)
        # a request still being sent holds the drain (mmsctl.drain) to its 4 s bound
        held = socket.create_connection((urlsplit(inference).hostname, urlsplit(inference).port))
        held.sendall(b"POST /predictions/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"
                     % SECOND.encode())
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        answer = until(lambda: (lambda r: r.json() if r.status_code == 503 else None)(
            requests.get(url + "/readyz", timeout=5)), 2, step=0.1)
        assert answer == {"ready": False, "reason": "draining"}
        assert os.path.exists(os.path.join(state_dir, "draining"))
        time.sleep(1.5)  # still draining: the server still answers
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        held.close()
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 0
        assert _port_closed(port)
        events = [json.loads(line) for line in rest.splitlines() if line.startswith('{"_aws"')]
        assert events and all(emf.problems(event) == [] for event in events), rest[-3000:]
        mine = [event for event in events if event["Model"] == SECOND]
        assert sum(event["Requests4XX"] for event in mine) == baseline + 3  # the last minute: written at the stop
        assert sum(event["Requests2XX"] for event in mine) == 0 and mine[-1]["Workers"] == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if os.path.exists(os.path.join(state_dir, server.STATE_FILE)):
            server.stop(server.ServerState.load(state_dir))
