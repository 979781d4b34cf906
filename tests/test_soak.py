"""Soak: the figures and verdict as pure functions, then 60 s of full-concurrency load
on the default model (efficientnet-lite0) in a real server, through ``mmsctl soak``.

The 60-second run fails on any failed request, on a worker restart, or on worker
RSS growing more than 100 MiB or 20% from the first interval after warm-up to the
last. ``mmsctl soak --model M --input FILE --duration 600`` is the 10-minute version (not run here).
"""
import json
import re
import threading
import time

import pytest

from mmsctl import cli
from mmsctl.bench import soak

SOAK_SECONDS = 60.0
SOAK_INTERVAL = 10.0


def report_of(rows, late_errors=0):
    return {"intervals": rows, "late_errors": late_errors}


def row(rss, errors=0, pids=(11,), requests=50):
    return {"requests": requests, "errors": errors, "worker_rss_mib": rss, "worker_pids": list(pids)}


@pytest.mark.parametrize("rows, late, problem", [
    ([row(900.0), row(300.0), row(310.0), row(330.0)], 0, None),  # warm-up interval ignored, +10%
    ([row(300.0), row(300.0), row(370.0)], 0, r"grew 70.0 MiB \(23.3%\)"),
    ([row(2000.0), row(2000.0), row(2110.0)], 0, r"grew 110.0 MiB \(5.5%\)"),
    ([row(300.0), row(300.0, errors=2)], 0, r"^2 failed request"),
    ([row(300.0), row(300.0)], 1, r"^1 failed request"),
    ([row(300.0), row(300.0, pids=(12,))], 0, r"changed during the soak"),
    ([row(300.0, requests=0), row(300.0, requests=0)], 0, r"no request completed"),
])
def test_verdict(rows, late, problem):
    problems = soak.verdict(report_of(rows, late))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and re.search(problem, problems[0]), problems


class CountingSender:
    """Stands in for the HTTP client: every fifth call answers 503."""

    calls = 0
    lock = threading.Lock()

    def __init__(self, url, model, body, timeout):
        self.body = body

    def __call__(self):
        with CountingSender.lock:
            CountingSender.calls += 1
            call = CountingSender.calls
        time.sleep(0.005)  # a request's latency
        return 503 if call % 5 == 0 else 200

    def close(self):
        pass


def test_run_soak_counts_every_request_in_some_interval():
    CountingSender.calls = 0
    report = soak.run_soak("http://127.0.0.1:1", "m", b"x", duration=1.0, interval=0.25, concurrency=3,
                           sender_factory=CountingSender)
    assert [r["interval"] for r in report["intervals"]] == [0, 1, 2, 3]
    assert report["requests"] == CountingSender.calls
    assert report["errors"] == CountingSender.calls // 5
    assert report["problems"] and "failed request" in report["problems"][0]
    assert "FAIL" in soak.render_table(report)


@pytest.fixture(scope="module")
def soak_server(servers, model_store):
    return servers.start(model_store, {"efficientnet-lite0": "efficientnet-lite0.mar"})


@pytest.mark.slow  # 60 s of load
def test_sixty_second_soak_has_no_error_and_no_memory_growth(soak_server, cat_photo, tmp_path, capsys):
    out = tmp_path / "soak.json"
    code = cli.main(["soak", "--state-dir", soak_server.state_dir, "--model", "efficientnet-lite0",
                     "--input", cat_photo, "--duration", str(SOAK_SECONDS), "--interval", str(SOAK_INTERVAL),
                     "--out", str(out)])
    captured = capsys.readouterr()
    with capsys.disabled():
        print("\n" + captured.out)
    report = json.loads(out.read_text())
    assert code == 0, captured.err
    assert report["problems"] == [] and report["errors"] == 0
    assert len(report["intervals"]) == int(SOAK_SECONDS / SOAK_INTERVAL)
    assert all(r["requests"] > 0 and r["workers"] >= 1 and r["worker_rss_mib"] > 0 for r in report["intervals"])
    assert report["concurrency"] == 2  # full concurrency: two clients for the one cpu-latency worker
    assert "verdict: PASS" in captured.out
