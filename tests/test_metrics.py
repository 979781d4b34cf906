"""Unit tests of mmsctl.metrics: log parsing, the rotation-following tail on real files,
the log4j2 configuration, worker-state accounting, EMF lines against the EMF
specification, ``mmsctl top``'s arithmetic, and the exporter's HTTP side on hand-written logs."""
import io
import json
import os
import socket
import xml.etree.ElementTree as ET

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mmsctl import cli
from mmsctl.docker import ecs
from mmsctl.errors import ServerError
from mmsctl.metrics import cli as metrics_cli
from mmsctl.metrics import emf, logconfig, parse, top
from mmsctl.metrics.exporter import Exporter
from mmsctl.metrics.store import Store
from mmsctl.metrics.tail import Follower

from helpers import REPO, free_port

pytestmark = pytest.mark.unit

T0 = 1796175513475


def access_line(model="m", status=200, ms=12, when=T0, path=None):
    return '%d /127.0.0.1:5921 "POST %s HTTP/1.1" %d %d' % (when, path or "/predictions/" + model, status, ms)


# -- parsing ---------------------------------------------------------------------------------
def test_access_lines_parse_and_name_their_model():
    record = parse.access(access_line("resnet-18", 404, 7))
    assert (record.model, record.status, record.duration_ms, record.time_ms) == ("resnet-18", 404, 7, T0)
    assert parse.access(access_line(path="/ping")).model is None
    assert parse.access(access_line(path="/predictions/m/1.0?x=1")).model == "m"
    assert parse.access(access_line(path="/legacy/predict")).model == "legacy"


@pytest.mark.parametrize("line", ["", "garbage", '2026-12-02T01:38:33,474 - /1.2.3.4:5 "GET / HTTP/1.1" 200 1',
                                  '%d /x "POST /predictions/m HTTP/1.1" abc 1' % T0, "%d" % T0])
def test_unreadable_access_lines_are_none(line):
    assert parse.access(line) is None


def test_metric_and_state_lines_parse():
    metric = parse.metric("%d PredictionTime.Milliseconds:70.95|#ModelName:m,Level:Model|#hostname:vm,"
                          "requestID:abc,timestamp:1796175513" % T0)
    assert (metric.name, metric.unit, metric.value, metric.dimensions) == (
        "PredictionTime", "Milliseconds", 70.95, {"ModelName": "m", "Level": "Model"})
    assert parse.metric("%d PredictionTime.Milliseconds:x|#a|#b" % T0) is None
    change = parse.state_change("%d W-9001-resnet-18 State change WORKER_MODEL_LOADED -> WORKER_STOPPED" % T0)
    assert change == parse.StateChange(T0, 9001, "resnet-18", "WORKER_MODEL_LOADED", "WORKER_STOPPED")
    assert parse.state_change("%d W-9001-m Retry worker" % T0) is None


# -- tail ------------------------------------------------------------------------------------
def _append(path, text):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def test_follower_starts_at_the_end_and_reads_only_complete_lines(tmp_path):
    path = str(tmp_path / "access_log.log")
    _append(path, "old 1\nold 2\n")
    follower = Follower(path)
    assert follower.lines() == []
    _append(path, "new 1\nnew ")
    assert follower.lines() == ["new 1"]
    assert follower.unread_bytes() == 4
    _append(path, "2\n")
    assert follower.lines() == ["new 2"]
    assert follower.lines() == []


def test_follower_reads_a_file_that_appears_later_from_its_start(tmp_path):
    path = str(tmp_path / "late.log")
    follower = Follower(path)
    assert follower.lines() == []
    _append(path, "a\nb\n")
    assert follower.lines() == ["a", "b"]


def test_follower_survives_rename_and_recreate_without_losing_or_repeating(tmp_path):
    path = str(tmp_path / "access_log.log")
    _append(path, "before\n")
    follower = Follower(path)
    _append(path, "1\n2\n")
    assert follower.lines() == ["1", "2"]
    with open(path, "a", encoding="utf-8") as writer:  # the writer still holds the old file
        writer.write("3\n")
        os.rename(path, path + ".2026-12-02-1")
        writer.write("4 (after the rename, same file)\n")
    _append(path, "5 (new file)\n")
    assert follower.lines() == ["3", "4 (after the rename, same file)", "5 (new file)"]
    assert follower.rotations == 1
    os.rename(path, path + ".2026-12-02-2")  # rotated again, new file not yet there
    assert follower.lines() == []
    _append(path, "6\n")
    assert follower.lines() == ["6"]
    assert follower.lines() == []


def test_follower_rereads_a_truncated_file(tmp_path):
    path = str(tmp_path / "x.log")
    follower = Follower(path, from_start=True)
    _append(path, "a long first line\n")
    assert follower.lines() == ["a long first line"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("b\n")
    assert follower.lines() == ["b"]


# -- log4j2 configuration ----------------------------------------------------------------------
def test_log_config_is_xml_with_our_layouts(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / logconfig.WORKER_STATE_LOG).write_text("a previous server's workers\n")
    path = logconfig.write(str(tmp_path), roll_size="4 KB")
    assert not (tmp_path / "logs" / logconfig.WORKER_STATE_LOG).exists()  # replayed: this server's only
    root = ET.parse(path).getroot()
    files = {a.get("name"): a for a in root.iter("RollingFile")}
    assert set(files) == {"access_log", "model_log", "model_metrics", "mms_log", "mms_metrics", "worker_state"}
    assert files["access_log"].get("fileName") == os.path.join(str(tmp_path), "logs", "access_log.log")
    assert files["access_log"].find("PatternLayout").get("pattern") == "%d{UNIX_MILLIS} %m%n"
    assert files["worker_state"].find("RegexFilter") is not None
    assert {s.get("size") for s in root.iter("SizeBasedTriggeringPolicy")} == {"4 KB"}
    loggers = {lg.get("name") for lg in root.iter("Logger")}
    assert logconfig.WORKER_THREAD_LOGGER in loggers and "ACCESS_LOG" in loggers


# -- worker states -------------------------------------------------------------------------------
def _states(store, *changes):
    for index, (old, new) in enumerate(changes):
        store.on_state(parse.StateChange(T0 + index, 9000, "m", old, new))


def test_worker_states_count_loads_restarts_and_skip_the_listener():
    store = Store()
    _states(store, (None, "WORKER_MODEL_LOADED"), (None, "WORKER_STARTED"), (None, "WORKER_STARTED"),
            ("WORKER_STARTED", "WORKER_MODEL_LOADED"))
    assert store.loaded_workers("m") == 1 and store.worker_states("m") == {
        "WORKER_STARTED": 1, "WORKER_MODEL_LOADED": 1}
    _states(store, ("WORKER_STARTED", "WORKER_MODEL_LOADED"), ("WORKER_MODEL_LOADED", "WORKER_STOPPED"))
    assert store.loaded_workers("m") == 1 and store.restarts["m"] == 0
    _states(store, ("WORKER_STOPPED", "WORKER_STARTED"))
    assert store.restarts["m"] == 1 and store.ports["m"] == 9000


def test_unregistered_models_lose_their_series_and_unknown_names_share_one():
    store = Store()
    store.set_registered(["a", "b"], T0)
    for record in (parse.access(access_line("a")), parse.access(access_line("b", 400)),
                   parse.access(access_line("nope", 404)), parse.access(access_line(path="/ping"))):
        store.on_access(record)
    assert dict(store.requests) == {("a", "200"): 1, ("b", "400"): 1, ("_unknown", "404"): 1}
    assert dict(store.other_requests) == {"200": 1}
    store.set_registered(["a"], T0 + 1000)
    assert dict(store.requests) == {("a", "200"): 1, ("_unknown", "404"): 1}
    store.on_state(parse.StateChange(T0 + 500, 9001, "b", "WORKER_MODEL_LOADED", "WORKER_SCALED_DOWN"))
    assert "b" not in store.states  # its unregistration, logged before it was noticed


# -- EMF ------------------------------------------------------------------------------------------
def emf_errors(event):
    """What the EMF specification's schema (tests/emf_schema.json, written apart from mmsctl's validator) finds
    wrong with ``event``, plus the target-member rule: every dimension a directive names is a top-level string,
    every metric a top-level number or a list of at most 100 numbers."""
    try:
        import jsonschema
    except ImportError:
        pytest.fail("jsonschema is not installed: run scripts/bootstrap.sh (requirements/test.txt pins it)")
    with open(os.path.join(REPO, "tests", "emf_schema.json"), encoding="utf-8") as handle:
        schema = json.load(handle)
    validator = jsonschema.Draft7Validator(schema)
    errors = [error.message for error in validator.iter_errors(event)]
    if errors:
        return errors
    number = {"type": "number"}
    members = {"type": "object", "required": [], "properties": {}}
    for directive in event["_aws"]["CloudWatchMetrics"]:
        for name in {name for dimension_set in directive["Dimensions"] for name in dimension_set}:
            members["required"].append(name)
            members["properties"][name] = {"type": "string"}
        for definition in directive["Metrics"]:
            members["required"].append(definition["Name"])
            members["properties"][definition["Name"]] = {
                "anyOf": [number, {"type": "array", "items": number, "minItems": 1, "maxItems": 100}]}
    return [error.message for error in jsonschema.Draft7Validator(members).iter_errors(event)]


def test_emf_lines_meet_the_specification_and_carry_the_minute():
    minute = 1796175480000
    clock = [minute / 1000.0 + 30]
    out = io.StringIO()
    writer = emf.EmfWriter(out, lambda model: 2, clock=lambda: clock[0])
    for index, status in enumerate([200] * 98 + [404, 503]):
        writer.observe(parse.access(access_line("m", status, index + 1, when=minute + index)), "m")
    assert writer.flush(["m", "idle"]) == 2  # the minute is not over: both models' idle minute before it
    clock[0] += 60
    assert writer.flush(["m", "idle"]) == 2  # now it is
    assert writer.flush(["m", "idle"]) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    for event in events:
        assert emf.problems(event) == []
        assert emf_errors(event) == []  # the independent check
        directive = event["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "mmsctl" and directive["Dimensions"] == [["Model"]]
        assert all(d["Name"] in event for d in directive["Metrics"])
    assert len(events) == 4
    busy = [e for e in events if e["Model"] == "m" and e["_aws"]["Timestamp"] == minute][0]
    assert busy["_aws"]["Timestamp"] == minute
    assert (busy["Requests2XX"], busy["Requests4XX"], busy["Requests5XX"], busy["Workers"]) == (98, 1, 1, 2)
    assert (busy["LatencyP50"], busy["LatencyP90"], busy["LatencyP99"]) == (50.0, 90.0, 99.0)
    idle = [e for e in events if e["Model"] == "idle"][-1]
    assert idle["Requests2XX"] == 0 and "LatencyP50" not in idle and emf.problems(idle) == []


@pytest.mark.parametrize("breakage, expected", [
    (lambda e: e.pop("_aws"), "no _aws"),
    (lambda e: e["_aws"].update(Timestamp="now"), "Timestamp"),
    (lambda e: e.pop("Model"), "dimension 'Model'"),
    (lambda e: e.pop("Requests2XX"), "metric Requests2XX"),
    (lambda e: e["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Requests"), "not a CloudWatch unit"),
    (lambda e: e["_aws"]["CloudWatchMetrics"][0].update(Namespace=""), "Namespace"),
    (lambda e: e.update(Model=7), "dimension 'Model'"),
    (lambda e: e.update(Requests2XX="3"), "metric Requests2XX"),
])
def test_emf_validator_finds_what_the_specification_forbids(breakage, expected):
    event = emf.line("m", 1796175480000, {"2XX": 3}, [5, 6, 7], 1)
    assert emf_errors(event) == []
    breakage(event)
    assert any(expected in problem for problem in emf.problems(event))
    assert emf_errors(event), "the independent schema check accepts what the specification forbids"


# -- top --------------------------------------------------------------------------------------------
def test_top_figures_between_two_scrapes():
    def scrape(count, fast, slow):
        text = ('mmsctl_requests_total{model="m",code="200"} %d\n'
                'mmsctl_request_duration_seconds_bucket{model="m",code="200",le="0.01"} %d\n'
                'mmsctl_request_duration_seconds_bucket{model="m",code="200",le="0.1"} %d\n'
                'mmsctl_request_duration_seconds_bucket{model="m",code="200",le="+Inf"} %d\n'
                'mmsctl_workers{model="m",state="loaded"} 2\n'
                'mmsctl_worker_resident_memory_bytes{model="m",pid="1",role="worker"} 104857600\n'
                % (count, fast, fast + slow, fast + slow))
        return {(s.name, frozenset(s.labels.items())): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}
    rows = top.figures(scrape(10, 10, 0), scrape(30, 20, 10), 2.0)
    assert len(rows) == 1
    row = rows[0]
    assert row["rps"] == 10.0 and row["workers"] == 2 and row["rss_mib"] == 100.0
    assert row["p50_ms"] == pytest.approx(10.0) and 10.0 < row["p99_ms"] <= 100.0
    assert "REQ/S" in top.render(rows, "http://x")


# -- the exporter on hand-written logs (no server) ------------------------------------------------
def test_exporter_counts_new_lines_skips_bad_ones_and_is_not_ready_without_a_server(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    access = logs / logconfig.ACCESS_LOG
    access.write_text(access_line("m") + "\n")  # before the exporter: not counted
    exporter = Exporter(str(tmp_path), port=free_port(), tail_interval=0.05, poll_interval=0.2).start()
    try:
        _append(str(access), access_line("m", 200, 3) + "\nnot an access line\n" + access_line("m", 500, 2000) + "\n")
        exporter.tail_once()
        families = {f.name: f for f in text_string_to_metric_families(
            requests.get(exporter.url + "/metrics", timeout=5).text)}
        counts = {(s.labels["model"], s.labels["code"]): s.value for s in families["mmsctl_requests"].samples}
        assert counts == {("m", "200"): 1, ("m", "500"): 1}
        unparsed = {s.labels["log"]: s.value for s in families["mmsctl_log_unparsed_lines"].samples}
        assert unparsed["access"] == 1
        buckets = {s.labels["le"]: s.value for s in families["mmsctl_request_duration_seconds"].samples
                   if s.name.endswith("_bucket") and s.labels["code"] == "500"}
        assert buckets["1.0"] == 0 and buckets["2.5"] == 1
        ready = requests.get(exporter.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        health = requests.get(exporter.url + "/healthz", timeout=5)
        assert health.status_code == 503 and "no server state" in health.json()["reason"]
        (tmp_path / "draining").write_text("1\n")
        assert requests.get(exporter.url + "/readyz", timeout=5).json() == {"ready": False, "reason": "draining"}
        assert requests.get(exporter.url + "/nope", timeout=5).status_code == 404
    finally:
        exporter.stop()


# -- serve's options ----------------------------------------------------------------------------
def test_serve_metrics_options_plan_the_exporter(tmp_path):
    def args(*extra):
        return cli.build_parser().parse_args(["serve", "--model-store", str(tmp_path)] + list(extra))
    assert metrics_cli.plan(args("--metrics-port", "0")) is None
    port = free_port()
    assert metrics_cli.plan(args("--metrics-port", str(port), "--public")) == {
        "host": "0.0.0.0", "port": port, "skip": None}
    parsed = args("--emf")
    assert parsed.emf and parsed.metrics_port is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        with pytest.raises(ServerError) as info:
            metrics_cli.plan(args("--metrics-port", str(port)))
        assert "metrics exporter" in str(info.value) and "\n" not in str(info.value)


def test_top_says_in_one_line_when_no_exporter_answers():
    with pytest.raises(ServerError) as info:
        top.scrape("http://127.0.0.1:%d" % free_port(), timeout=2)
    assert "does not answer" in str(info.value) and "\n" not in str(info.value)
    assert cli.main(["top", "--url", "http://127.0.0.1:%d" % free_port(), "--iterations", "1"]) == 1


def test_ecs_task_definition_enables_emf_with_the_awslogs_driver():
    def task(**changes):
        fields = dict(profile="cpu-latency", image="mmsctl:cpu", models=(("m", "m.mar"),), vcpus=2,
                      log_group="/ecs/mmsctl", emf=True)
        fields.update(changes)
        return ecs.task_definition(ecs.TaskOptions(**fields))
    (container,) = task()["containerDefinitions"]
    assert "--emf" in container["command"] + container.get("entryPoint", [])
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    (plain,) = task(emf=False)["containerDefinitions"]
    assert "--emf" not in plain["command"] + plain.get("entryPoint", [])
    with pytest.raises(ecs.EcsError) as info:
        task(log_group=None)
    assert "--emf needs --log-group" in str(info.value)
    args = cli.build_parser().parse_args(["ecs", "task-definition", "--profile", "cpu-latency", "--image", "i",
                                          "--models", "m=m.mar", "--emf", "--log-group", "/g"])
    assert args.emf
