"""mmsctl bench: the report's arithmetic from known inputs, then short real runs
(a real server from ``default_server``, and the archive's handler in-process)."""
import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from mmsctl import bench, cli
from mmsctl.bench import inprocess, mmslog
from mmsctl.errors import UsageError

SEEDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "seeds")

#: seed 002, Table 1: (hourly price it implies, requests/s, printed cost per 100k requests)
SEED_002_TABLE = [
    ("m5.large", None, 4.50, 0.59),
    ("m5.large", None, 4.08, 0.65),
    ("m5.large", "eia.medium", 19.08, 0.33),
    ("c5.xlarge", None, 9.95, 0.47),
    ("c5.xlarge", None, 7.38, 0.64),
    ("p3.2xlarge", None, 41.42, 2.05),
]


# -- arithmetic ----------------------------------------------------------------------
@pytest.mark.parametrize("q", [0, 1, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(q):
    values = list(np.random.default_rng(q).exponential(100.0, size=137))
    assert bench.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_edges():
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile([], 50) is None
    assert bench.percentile([3, 1, 2], 50) == 2  # order of the input does not matter
    with pytest.raises(ValueError):
        bench.percentile([1, 2], 101)


def test_summary_of_known_samples():
    samples = [(float(ms), 200) for ms in range(1, 101)] + [(5.0, 503), (1.0, "ConnectionResetError")]
    summary = bench.summarize(samples, elapsed_s=20.0, hourly_usd=0.096, cpu_s=0.51)
    assert summary["requests"] == 102 and summary["ok"] == 100
    assert summary["errors"] == {"503": 1, "ConnectionResetError": 1}
    assert summary["rps"] == 5.0  # successful answers only
    lat = summary["latency_ms"]
    assert (lat["p50"], lat["p95"], lat["p99"], lat["max"], lat["min"]) == (50.5, 95.05, 99.01, 100.0, 1.0)
    assert lat["mean"] == 50.5
    assert summary["cost_per_100k_usd"] == pytest.approx(0.096 / (5.0 * 3600) * 100000)
    assert summary["client_cpu_ms_per_request"] == pytest.approx(5.0)


def test_requests_per_second_and_cost_formulas():
    assert bench.requests_per_second(45, 10.0) == 4.5
    assert bench.requests_per_second(3, 0) is None
    assert bench.cost_per_100k(0.10, 1.0) == pytest.approx(0.10 / 3600 * 100000)
    assert bench.cost_per_100k(0.10, 0) is None
    assert bench.thousand_requests_per_usd(0.36, 10.0) == pytest.approx(100.0)


@pytest.mark.parametrize("instance, accelerator, rps, printed", SEED_002_TABLE)
def test_price_table_reproduces_seed_002_cost_column(instance, accelerator, rps, printed):
    price = bench.resolve_price(bench.load_prices(), instance, accelerator)
    assert round(bench.cost_per_100k(price.usd_per_hour, rps), 2) == printed


def test_prices_combine_and_name_their_sources():
    prices = bench.load_prices()
    combo = bench.resolve_price(prices, "m5.large", "eia1.large")
    assert combo.usd_per_hour == pytest.approx(0.356)  # seed 003: "you would spend $0.356"
    assert combo.label == "m5.large + eia1.large"
    assert "003_a710f2fc45e75137.txt" in combo.source and "us-west-2" in combo.source
    assert bench.resolve_price(prices).usd_per_hour is None
    given = bench.resolve_price(prices, "m5.large", price_per_hour=0.5)
    assert given.usd_per_hour == 0.5 and "--price-per-hour" in given.source
    with pytest.raises(UsageError, match="no price for instance t2.nano"):
        bench.resolve_price(prices, "t2.nano")
    with pytest.raises(UsageError, match="eia2"):
        bench.resolve_price(prices, "m5.large", "eia2.medium")


def test_every_price_is_printed_in_its_seed():
    if not os.path.isdir(SEEDS):
        pytest.skip("shared/seeds is not beside the repository")
    prices = bench.load_prices()
    for table in ("instances", "accelerators"):
        for name, entry in prices[table].items():
            source = prices["sources"][entry["source"]]
            with open(os.path.join(SEEDS, os.path.basename(source["file"])), encoding="utf-8") as handle:
                text = handle.read()
            value = entry["usd_per_hour"]
            printed = {"$%g" % value, "$%.2f" % value, "$ %.2f" % value, "$%.3f" % value}
            assert any(p in text for p in printed), (name, value, source["file"])


def test_compare_and_targets_from_known_rows():
    def row(kind, config, concurrency, p50, rps, pipelines=None, levels=None):
        summary = bench.summarize([(p50, 200)], 1.0 / rps)
        made = bench.make_row(kind, summary, concurrency, config=config, pipelines=pipelines)
        if levels:
            made["levels"] = levels
        return made

    report = {"rows": [
        row("server", "cpu-latency", 1, 102.0, 9.8),
        row("server", "cpu-latency", 2, 190.0, 10.0),
        row("in-process", "cpu-latency", 1, 100.0, 10.0, pipelines=1, levels=[1, 2]),
        row("server", "cpu-throughput", 2, 170.0, 11.0),
        row("in-process", "cpu-throughput", 2, 160.0, 12.5, pipelines=2, levels=[2]),
    ], "cold_start": [{"config": "cpu-latency", "kind": "server", "serve_to_first_answer_s": 3.5}],
        "first_requests": [bench.first_request_entry("cpu-latency", "server", 160.0, 200, [])]}
    report["first_requests"][0]["ratio_to_p50"] = 1.6
    report["comparison"] = bench.compare(report["rows"])
    pairs = {(p["config"], p["concurrency"]): p for p in report["comparison"]["pairs"]}
    assert pairs[("cpu-latency", 1)]["overhead_p50"] == pytest.approx(1.02)
    assert pairs[("cpu-latency", 2)]["overhead_p50"] is None  # the server queues, the pipeline does not
    assert pairs[("cpu-latency", 2)]["throughput_ratio"] == pytest.approx(1.0)
    assert pairs[("cpu-throughput", 2)]["overhead_p50"] == pytest.approx(170.0 / 160.0)
    assert report["comparison"]["saturated_throughput_ratio"] == pytest.approx(11.0 / 12.5)
    met = {t["target"].split(" ")[0] + t["target"].split(" ")[1]: t["met"] for t in bench.check_targets(report)}
    assert met == {"p50at": True, "saturatedthroughput": False, "serveto": True, "firstrequest": False}


def test_markdown_keeps_seed_002_table_layout(tmp_path):
    load = bench.LoadConfig(concurrency=(1,), requests=3)
    price = bench.resolve_price(bench.load_prices(), "m5.large")
    report = bench.new_report("t", "m", {"path": "/x/cat.jpg", "bytes": 3, "sha256": "0"}, load, price)
    report["rows"].append(bench.make_row("server", bench.summarize([(244.0, 200)] * 3, 3 / 4.08, 0.096), 1,
                                         config="cpu-latency", optimized_for="Latency", workers=1, omp_threads=2))
    text = bench.render_markdown(bench.finish_report(report))
    header = ("|**Instance Type**|**Optimized for**|**# of workers ***|**# of OMP threads ****|**Hourly cost**|"
              "**Cost Efficiency**|**Latency (ms)**|**Throughput (requests/sec)**|")
    assert header in text
    assert "|m5.large|Latency (cpu-latency, c=1)|1|2|$ 0.096|$ 0.65|244|4.08|" in text


# -- the load loop and its guards ------------------------------------------------------------
class CountingSender:
    """A sender that answers at once: the loop's own contract, no server involved."""

    def __init__(self, status=200):
        self.calls = 0
        self.status = status

    def __call__(self):
        self.calls += 1
        return self.status


def test_count_bounded_phase_sends_exactly_n():
    senders = [CountingSender() for _ in range(3)]
    seen = []
    phase = bench.run_phase(senders, requests=101, progress=lambda *a: seen.append(a), label="t")
    assert len(phase.samples) == 101 == sum(s.calls for s in senders)
    assert phase.concurrency == 3 and phase.elapsed_s > 0


def test_time_bounded_phase_ends_by_itself():
    phase = bench.run_phase([CountingSender(503)], duration=0.2)
    assert phase.elapsed_s >= 0.2  # it ran its duration, and returned (no wall-clock upper bound in a unit test)
    assert bench.summarize(phase.samples, phase.elapsed_s)["errors"]["503"] == len(phase.samples) > 0
    with pytest.raises(UsageError):
        bench.run_phase([CountingSender()], requests=5, duration=1.0)


def test_interleaved_load_takes_turns_in_chunks():
    order = []

    class Named(CountingSender):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def __call__(self):
            order.append(self.name)
            return super().__call__()

    samples = bench.interleaved({"a": Named("a"), "b": Named("b")}, requests=5, warmup=1, chunk=2)
    assert [len(samples["a"]), len(samples["b"])] == [5, 5]
    assert "".join(order) == "a" + "b" + "aabbaabbab"


def test_closed_loop_keeps_completion_times_per_thread_while_it_runs():
    loop = bench.ClosedLoop([CountingSender(), CountingSender()], duration=0.2).start()
    phase = loop.join()
    stamps = [ended for mine in loop.per_thread for ended, _, _ in mine]
    assert len(stamps) == len(phase.samples) > 0 and all(loop.started <= t for t in stamps)
    assert all(a[0] <= b[0] for mine in loop.per_thread for a, b in zip(mine, mine[1:]))


def test_terminal_progress_draws_one_tqdm_bar_per_phase():
    stream = io.StringIO()
    progress = bench.TerminalProgress(stream)
    progress("c=1", 5, 10, 1.0)
    progress("c=1", 10, 10, 2.0)
    progress.message("between the phases")
    progress("c=2", 3, None, 0.5)
    progress.close()
    text = stream.getvalue()
    assert "c=1" in text and "10/10" in text and "between the phases\n" in text and "c=2" in text


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8080",
                                 "http://127.3.4.5:80"])
def test_loopback_urls_are_accepted(url):
    assert bench.check_loopback(url) == url


@pytest.mark.parametrize("url", ["http://10.0.0.5:8080", "http://192.168.1.2", "https://example.com/", "nohost"])
def test_load_never_leaves_this_machine(url):
    with pytest.raises(UsageError):
        bench.check_loopback(url)


def test_mms_log_markers_and_cold_start_parts():
    log = "\n".join([
        "2026-11-23T13:58:31,807 [INFO ] main com.amazonaws.ml.mms.ModelServer - Management API bind to: http://x",
        "2026-11-23T13:58:31,900 [INFO ] pool-1 com.amazonaws.ml.mms.wlm.ModelManager - Model resnet-152 loaded.",
        "2026-11-23T13:58:32,100 [INFO ] W-9000-r-stdout com.amazonaws.ml.mms.wlm.WorkerLifeCycle - Connection "
        "accepted: /tmp/.mms.sock.9000.",
        "2026-11-23T13:58:33,500 [INFO ] W-9000-r-stdout com.amazonaws.ml.mms.wlm.WorkerLifeCycle - MXNet 1.9.1 on "
        "cpu(0): because",
        "2026-11-23T13:58:34,250 [INFO ] W-9000-r-stdout com.amazonaws.ml.mms.wlm.WorkerLifeCycle - model resnet-152 "
        "ready on cpu(0) in 2.10 s",
    ])
    markers = mmslog.find_markers(mmslog.parse_log(log))
    api = markers["api_bound"]
    assert [round(markers[k] - api, 3) for k in ("model_registered", "worker_connected", "framework_imported",
                                                 "model_ready")] == [0.093, 0.293, 1.693, 2.443]
    parts = mmslog.cold_start_parts(markers, api - 1.0, None, markers["model_ready"] + 0.2)
    expected = {"serve_to_first_answer_s": 3.643, "frontend_s": 1.0, "unzip_s": 0.093, "worker_start_s": 0.2,
                "import_s": 1.4, "load_s": 0.75, "first_request_s": 0.2}
    assert {k: round(parts[k], 3) for k in expected} == expected
    assert mmslog.cold_start_parts({}, 1.0, None, 2.0)["import_s"] is None  # a missing marker is not guessed


@pytest.mark.parametrize("argv", [["bench", "--help"], ["bench", "sweep", "--help"],
                                  ["bench", "random-resnet", "--help"]])
def test_help_ends_with_an_example(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    assert "example:\n  mmsctl bench" in capsys.readouterr().out


def test_cli_refuses_options_that_do_not_fit(tmp_path, capsys):
    assert cli.main(["bench", "--url", "http://127.0.0.1:1", "--model", "m", "--out", str(tmp_path),
                     "--instance", "t2.nano"]) == 2
    assert "no price for instance t2.nano" in capsys.readouterr().err
    assert cli.main(["bench", "--inprocess", "x.mar", "--url", "http://127.0.0.1:1", "--out", str(tmp_path)]) == 2
    assert cli.main(["bench", "--url", "http://10.1.2.3:8080", "--model", "m", "--out", str(tmp_path),
                     "--requests", "1"]) == 2
    assert "this machine only" in capsys.readouterr().err


# -- in-process: a handler without MXNet, then the real archive ----------------------------------
SERVICE = b'''
def handle(data, context):
    if data is None:
        return None
    body = data[0]["body"]
    if body.startswith(b"bad"):
        context.set_response_status(code=415, phrase="Unsupported", idx=0)
    return ["%d bytes" % len(body)]
'''


def tiny_archive(folder, service=SERVICE):
    path = os.path.join(folder, "tiny.mar")
    manifest = {"runtime": "python", "model": {"modelName": "tiny", "handler": "tiny_service:handle"}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("tiny_service.py", service)
    return path


def test_inprocess_function_handler_counts_and_statuses(tmp_path):
    archive = tiny_archive(str(tmp_path))
    good = tmp_path / "good.bin"
    good.write_bytes(b"x" * 10)
    model_dir, _ = inprocess.extract_archive(archive, str(tmp_path / "model"))
    phase, ready = inprocess.run_level(model_dir, str(good), 2, dict(os.environ), requests=9, warmup=1,
                                       timeout=60, log_dir=str(tmp_path / "logs"))
    assert len(phase.samples) == 9 and {status for _, status in phase.samples} == {200}
    assert ready["first_status"] == 200 and ready["framework"] is None
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"bad input")
    phase, _ = inprocess.run_level(model_dir, str(bad), 1, dict(os.environ), requests=3, timeout=60,
                                   log_dir=str(tmp_path / "logs"))
    assert bench.summarize(phase.samples, phase.elapsed_s)["errors"] == {"415": 3}


def test_inprocess_reports_a_handler_that_fails_to_load(tmp_path):
    archive = tiny_archive(str(tmp_path), service=b"raise RuntimeError('weights are missing')\n")
    model_dir, _ = inprocess.extract_archive(archive, str(tmp_path / "model"))
    body = tmp_path / "in.bin"
    body.write_bytes(b"x")
    with pytest.raises(inprocess.InProcessError, match="weights are missing"):
        inprocess.run_level(model_dir, str(body), 1, dict(os.environ), requests=1, timeout=60,
                            log_dir=str(tmp_path / "logs"))


def read_report(folder):
    with open(os.path.join(folder, "report.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    with open(os.path.join(folder, "report.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    with Image.open(os.path.join(folder, "report.png")) as image:
        assert image.format == "PNG" and image.size == (900, 600)
    return report, markdown


def check_rows(report, markdown, kind, levels, per_level):
    rows = [r for r in report["rows"] if r["kind"] == kind]
    assert [r["concurrency"] for r in rows] == levels
    price = report["price"]["usd_per_hour"]
    for row in rows:
        assert row["requests"] == per_level and row["ok"] == per_level and row["errors"] == {}
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert row["rps"] == pytest.approx(row["ok"] / row["elapsed_s"])
        assert row["cost_per_100k_usd"] == pytest.approx(price / (row["rps"] * 3600) * 100000)
        assert "|%.0f|%.2f|" % (lat["p50"], row["rps"]) in markdown
    return rows


def test_short_run_against_a_real_server(default_server, model_store, cat_photo, tmp_path, capsys):
    out = str(tmp_path / "server")
    code = cli.main(["bench", "--url", default_server.inference_url, "--model", "efficientnet-lite0",
                     "--input", cat_photo, "--concurrency", "1,2", "--requests", "12", "--warmup", "2",
                     "--instance", "m5.large", "--profile", "cpu-latency",
                     "--compare-inprocess", os.path.join(model_store, "efficientnet-lite0.mar"), "--out", out,
                     "--management-url", default_server.management_url, "--model-store", model_store])
    assert code == 0
    assert capsys.readouterr().out.strip() == os.path.join(out, "report.md")
    report, markdown = read_report(out)
    assert report["price"]["usd_per_hour"] == 0.096 and report["model"] == "efficientnet-lite0"
    server_rows = check_rows(report, markdown, "server", [1, 2], 12)
    assert all(r["workers"] == 1 and r["omp_threads"] == report["machine"]["vcpus"] for r in server_rows)
    assert all(r["client_cpu_ms_per_request"] > 0 for r in server_rows)
    inproc = check_rows(report, markdown, "in-process", [1], 12)
    assert inproc[0]["levels"] == [1, 2]  # cpu-latency runs one request at a time at either level
    pair = next(p for p in report["comparison"]["pairs"] if p["concurrency"] == 1)
    assert pair["overhead_p50"] == pytest.approx(server_rows[0]["latency_ms"]["p50"] / inproc[0]["latency_ms"]["p50"])
    first = {f["kind"]: f for f in report["first_requests"]}
    assert first["server"]["status"] == 200 and first["in-process"]["status"] == 200
    assert first["server"]["ratio_to_p50"] == pytest.approx(
        first["server"]["latency_ms"] / server_rows[0]["latency_ms"]["p50"])
    answer = json.loads(report["sample_answers"]["cpu-latency batch 1"])
    assert len(answer) == 5 and {"probability", "class"} == set(answer[0])
    assert "## Server against the in-process limit" in markdown
    # issue 11: the independent limit (both engines), the MMS floor on the same server, the breakdown
    assert {name for name, e in report["limit"]["engines"].items() if e["available"]} == {"mxnet", "onnxruntime"}
    assert report["floor"]["cpu-latency"]["ok"] == 12 and report["floor"]["cpu-latency"]["p50_ms"] > 0
    (line,) = report["breakdown"]["lines"]
    assert line["served_p50_ms"] == server_rows[0]["latency_ms"]["p50"]
    assert line["best_engine"] in ("mxnet", "onnxruntime")
    assert "## Per-request breakdown (concurrency 1)" in markdown


@pytest.mark.slow
def test_short_inprocess_run(model_store, cat_photo, tmp_path):
    out = str(tmp_path / "inproc")
    assert cli.main(["bench", "--inprocess", os.path.join(model_store, "resnet18.mar"), "--input", cat_photo,
                     "--concurrency", "2", "--requests", "8", "--warmup", "1", "--price-per-hour", "0.2",
                     "--out", out]) == 0
    report, markdown = read_report(out)
    (row,) = check_rows(report, markdown, "in-process", [2], 8)
    assert row["pipelines"] == 2 and row["omp_threads"] == max(1, report["machine"]["vcpus"] // 2)
    (cold,) = report["cold_start"]
    # resnet18.mar holds the MXNet checkpoint and its ONNX export: the worker imports onnxruntime
    assert cold["framework"] == "onnxruntime" and cold["import_framework_s"] > 0 and cold["initialize_s"] > 0
    assert cold["start_to_first_answer_s"] > cold["initialize_s"]
    assert report["first_requests"][0]["status"] == 200
    assert "--price-per-hour 0.2" in markdown


@pytest.mark.server
def test_short_sweep_reads_cold_start_from_mms_logs(model_store, cat_photo, tmp_path):
    out = str(tmp_path / "sweep")
    assert cli.main(["bench", "sweep", "--archive", os.path.join(model_store, "efficientnet-lite0.mar"),
                     "--input", cat_photo, "--profiles", "cpu-latency", "--concurrency", "1", "--requests", "5",
                     "--warmup", "1", "--no-inprocess", "--instance", "c5.xlarge", "--out", out]) == 0
    report, markdown = read_report(out)
    check_rows(report, markdown, "server", [1], 5)
    (cold,) = report["cold_start"]
    parts = ("frontend_s", "unzip_s", "worker_start_s", "import_s", "load_s", "first_request_s")
    assert all(cold[k] is not None for k in parts), cold  # every MMS / handler log marker was found
    assert sum(cold[k] for k in parts) <= cold["serve_to_first_answer_s"] + 0.5
    assert cold["ready_reported_s"] <= cold["serve_to_first_answer_s"]
    times = {t["segment"]: t for t in report["server_time"]}
    assert times["c=1"]["requests_seen"] == 5 and times["first"]["requests_seen"] == 1
    assert 0 < times["c=1"]["handler_ms"] <= times["c=1"]["frontend_ms"]
    assert not os.path.exists(os.path.join(out, "servers", "cpu-latency", "tmp"))  # the unpacked copy is gone
    assert "|c5.xlarge|Latency (cpu-latency, c=1)|1|" in markdown
