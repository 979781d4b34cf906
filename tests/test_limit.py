"""Issue 11: the independent in-process limit, the per-request breakdown, the MMS floor
and the docs-style reference handler.

Unit tests check the arithmetic and the rendering on known figures; the server tests
run a short sweep (the report names both engines of the limit and the floor) and
serve the docs-style handler next to our archive on the same weights."""
import json
import os

import pytest
import requests

from mmsctl import bench, cli
from mmsctl.bench import breakdown, limit, reference
from mmsctl.bench import compare_handlers as bench_compare
from mmsctl.config import profiles

PNG = "/photos/chelsea.png"


def limit_figures(mxnet=(4.0, 14.0, 0.5), onnxruntime=(4.0, 10.0, 0.5), key=PNG, rps=None):
    """A limit result as ``mmsctl.bench.limit`` returns it; None for an engine makes it unavailable."""
    engines = {}
    for name, parts in (("mxnet", mxnet), ("onnxruntime", onnxruntime)):
        if parts is None:
            engines[name] = {"available": False, "why": "UsageError: the archive has no MXNet checkpoint"}
            continue
        total = sum(parts)
        engines[name] = {"available": True, "how": name + " here", "load_s": 1.0, "inputs": {key: {
            "preprocess_ms": parts[0], "forward_ms": parts[1], "postprocess_ms": parts[2], "total_ms": total,
            "requests": 10, "rps": rps or 1000.0 / total, "top1": "n02123159 tiger cat"}}}
    result = {"threads": 2, "engines": engines, "inputs": [key]}
    result["best"] = {key: breakdown.best_engine(result, key)[0]}
    return result


def server_row(config, concurrency, p50, rps):
    return bench.make_row("server", bench.summarize([(p50, 200)], 1.0 / rps), concurrency, config=config)


def a_report(floor=3.0, limit_result=None):
    report = {"title": "t", "created": "now", "model": "m", "input": {"path": PNG, "bytes": 100, "sha256": "x"},
              "machine": {"hostname": "h", "vcpus": 2, "cpu": "c", "load_average": [0, 0, 0]},
              "price": {"label": "this machine", "usd_per_hour": None, "source": "none"},
              "rows": [server_row("cpu-latency", 1, 20.0, 50.0), server_row("cpu-latency", 2, 38.0, 52.0),
                       server_row("cpu-throughput", 1, 30.0, 33.0)],
              "first_requests": [], "cold_start": [], "notes": [],
              "limit": limit_result or limit_figures(),
              "floor": {"cpu-latency": {"p50_ms": floor, "requests": 10}}}
    return bench.finish_report(report)


@pytest.mark.unit
def test_breakdown_line_arithmetic():
    row = breakdown.line("cpu-latency", "chelsea.png", 20.0, 3.0, limit_figures(), PNG)
    assert row["best_engine"] == "onnxruntime"
    assert (row["preprocess_ms"], row["forward_ms"], row["postprocess_ms"]) == (4.0, 10.0, 0.5)
    assert row["inprocess_best_ms"] == 14.5 and row["engines"] == {"mxnet": 18.5, "onnxruntime": 14.5}
    assert row["served_over_best"] == pytest.approx(20.0 / 14.5)
    assert row["best_plus_floor_ms"] == 17.5 and row["served_over_best_plus_floor"] == pytest.approx(20.0 / 17.5)
    assert row["unexplained_ms"] == pytest.approx(2.5)
    assert row["met"] is False  # 1.38 > 1.25
    assert breakdown.line("c", "x", 18.0, 3.0, limit_figures(), PNG)["met"] is True


@pytest.mark.unit
def test_breakdown_with_one_engine_unavailable_and_no_floor():
    only_ort = limit_figures(mxnet=None)
    row = breakdown.line("cpu-latency", "x", 29.0, None, only_ort, PNG)
    assert row["best_engine"] == "onnxruntime" and row["engines"]["mxnet"] is None
    assert row["floor_ms"] is None and row["unexplained_ms"] is None and row["served_over_best_plus_floor"] is None
    assert row["served_over_best"] == pytest.approx(2.0)
    nothing = breakdown.line("cpu-latency", "x", 29.0, 3.0, limit_figures(mxnet=None, onnxruntime=None), PNG)
    assert nothing["best_engine"] is None and nothing["served_over_best"] is None and nothing["met"] is None


@pytest.mark.unit
def test_report_breakdown_uses_concurrency_1_rows_and_the_floor_of_each_config():
    report = a_report(limit_result=limit_figures(rps=60.0))
    lines = {b["config"]: b for b in report["breakdown"]["lines"]}
    assert set(lines) == {"cpu-latency", "cpu-throughput"}
    assert lines["cpu-latency"]["served_p50_ms"] == 20.0 and lines["cpu-latency"]["floor_ms"] == 3.0
    assert lines["cpu-throughput"]["floor_ms"] is None  # no floor measured for that server
    assert report["breakdown"]["best_server_rps"] == pytest.approx(52.0)
    assert report["breakdown"]["limit_rps"] == 60.0
    assert report["breakdown"]["throughput_ratio"] == pytest.approx(52.0 / 60.0)
    assert report["breakdown"]["throughput_met"] is False


@pytest.mark.unit
def test_markdown_names_both_engines_the_best_and_the_breakdown():
    report = a_report(limit_result=limit_figures(mxnet=None))
    text = bench.render_markdown(report)
    assert "## Independent in-process limit" in text and "## Per-request breakdown (concurrency 1)" in text
    assert "|chelsea.png|onnxruntime (best)|onnxruntime here|4.0|10.0|0.50|14.5|" in text
    assert "|chelsea.png|mxnet|unavailable: UsageError: the archive has no MXNet checkpoint|" in text
    expected = "|cpu-latency|chelsea.png|3.0|4.0|10.0|0.50|14.5 (onnxruntime)|mxnet n/a / onnxruntime 14.5|20.0|1.379|"
    assert expected in text
    both = bench.render_markdown(a_report())
    assert "onnxruntime (best)" in both and "|chelsea.png|mxnet|mxnet here|4.0|14.0|0.50|18.5|" in both


@pytest.mark.unit
def test_a_report_without_limit_has_no_breakdown():
    report = a_report()
    report.pop("limit")
    assert bench.finish_report(report)["breakdown"] is None and breakdown.render(report) == ""


@pytest.mark.unit
def test_docs_config_follows_the_signature():
    signature = {"inputs": [{"name": "data", "shape": [1, 3, 224, 224]}],
                 "preprocess": {"height": 224, "width": 224, "resize": 256, "mean": [123.675, 116.28, 103.53],
                                "std": [58.395, 57.12, 57.375]}, "postprocess": {"apply_softmax": False}}
    config = reference.docs_config(signature)
    assert config == {"input_name": "data", "height": 224, "width": 224, "resize": 256,
                      "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "interpolation": "bilinear",
                      "apply_softmax": False}
    signature["preprocess"]["resize"] = 0
    assert reference.docs_config(signature)["resize"] == 224


@pytest.mark.unit
def test_floor_folder_is_a_function_handler_answering_a_top5_sized_json(tmp_path):
    entry = reference.write_floor(str(tmp_path))
    folder = tmp_path / entry
    manifest = json.loads((folder / "MAR-INF" / "MANIFEST.json").read_text())
    assert manifest["model"] == {"modelName": "mmsctl-floor", "handler": "noop_service:handle",
                                 "description": manifest["model"]["description"]}
    namespace = {}
    exec(compile((folder / "noop_service.py").read_text(), "noop_service.py", "exec"), namespace)
    assert namespace["handle"](None, None) is None
    answers = namespace["handle"]([{"body": b"x" * 10}, {"body": b"y"}], None)
    assert len(answers) == 2 and len(json.loads(answers[0])) == 5


@pytest.mark.unit
def test_camera_jpeg_is_deterministic(tmp_path, cat_photo):
    from PIL import Image
    first = bench_compare.camera_jpeg(str(tmp_path / "a.jpg"), cat_photo)
    second = bench_compare.camera_jpeg(str(tmp_path / "b.jpg"), cat_photo)
    assert open(first, "rb").read() == open(second, "rb").read()
    with Image.open(first) as image:
        assert image.size == (1280, 960) and image.format == "JPEG"


@pytest.mark.unit
def test_compare_rows_and_targets_from_known_figures():
    images = {"chelsea.png": PNG}
    limits = {"efficientnet-lite0": limit_figures(rps=70.0),
              "efficientnet-lite0-int8": limit_figures(mxnet=None, onnxruntime=(4.0, 2.5, 0.5), rps=140.0),
              "resnet-18": limit_figures(mxnet=(4.0, 40.0, 0.5), onnxruntime=(4.0, 36.0, 0.5), rps=20.0)}
    latency = {("efficientnet-lite0", "chelsea.png"): {"p50_ms": 17.0, "ok": 5, "errors": {}, "answer": "[]"},
               ("efficientnet-lite0-int8", "chelsea.png"): {"p50_ms": 12.0, "ok": 5, "errors": {}, "answer": "[]"},
               ("resnet-18", "chelsea.png"): {"p50_ms": 45.0, "ok": 5, "errors": {}, "answer": "[]"},
               ("resnet-18-docs", "chelsea.png"): {"p50_ms": 60.0, "ok": 5, "errors": {}, "answer": "[]"}}
    floors = {"chelsea.png": {"p50_ms": 3.0}}
    saturated = {("resnet-18", "chelsea.png"): {"rps": 19.5, "ok": 30, "errors": {}, "concurrency": 4, "workers": 2},
                 ("efficientnet-lite0", "chelsea.png"): {"rps": 60.0, "ok": 30, "errors": {}, "concurrency": 4,
                                                         "workers": 2},
                 ("efficientnet-lite0-int8", "chelsea.png"): {"rps": 90.0, "ok": 30, "errors": {}, "concurrency": 4,
                                                              "workers": 2}}
    models = {"efficientnet-lite0": "e.mar", "resnet-18": "r.mar", "resnet-18-docs": "d.mar",
              "efficientnet-lite0-int8": "i.mar"}
    result = bench_compare.assemble(models, images, latency, floors, limits, saturated, "resnet-18")
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["efficientnet-lite0"]["over_best"] == pytest.approx(17.0 / 14.5)
    assert rows["efficientnet-lite0"]["ours_ms"] == pytest.approx(14.0)
    assert rows["efficientnet-lite0"]["ours_over_best"] == pytest.approx(14.0 / 14.5)
    # int8 is held to the fp32 weights' in-process best, not to its own
    assert rows["efficientnet-lite0-int8"]["ours_over_best"] == pytest.approx(9.0 / 14.5)
    assert rows["resnet-18"]["over_docs"] == pytest.approx(0.75)
    assert rows["resnet-18"]["over_fused"] == pytest.approx(45.0 / 44.5)
    assert rows["resnet-18-docs"]["handler"] == "docs-style" and rows["resnet-18-docs"]["over_docs"] is None
    tput = {row["model"]: row for row in result["throughput"]}
    assert tput["resnet-18"]["ratio"] == pytest.approx(19.5 / 20.0)
    assert tput["efficientnet-lite0-int8"]["over_fp32_served"] == pytest.approx(1.5)
    verdicts = {t["target"]: t["met"] for t in result["targets"]}
    assert verdicts == {
        "efficientnet-lite0 chelsea.png ours (p50 - floor) <= 1.15x in-process best": True,
        "efficientnet-lite0-int8 chelsea.png ours (p50 - floor) <= 0.80x fp32 in-process best": True,
        "resnet-18 chelsea.png p50 <= 0.90x docs handler": True,
        "resnet-18 chelsea.png p50 <= 1.10x in-process MXNet fused": True,
        "resnet-18 chelsea.png throughput >= 0.95x in-process best": True,
        "efficientnet-lite0 chelsea.png throughput >= 0.95x in-process best": False,
        "efficientnet-lite0-int8 chelsea.png throughput >= 0.95x in-process best": False,
        "efficientnet-lite0-int8 chelsea.png served throughput >= 1.40x fp32 archive's": True}
    result.update({"machine": {"hostname": "h", "vcpus": 2, "cpu": "c"}, "requests": 5, "limit_requests": 3,
                   "docs_handler_packed_by": "model-archiver"})
    text = bench_compare.render(result)
    row = ("| resnet-18 | chelsea.png | mmsctl | 45.0 | 3.0 | 42.0 | 0.750 | 40.5 (onnxruntime) | 1.037 | 1.111 | 44.5 "
           "| 1.011 |")
    assert row in text


@pytest.mark.unit
@pytest.mark.parametrize("name", ["cpu-latency", "cpu-throughput", "ei"])
def test_profiles_keep_async_logging_as_measured(name):
    """Issue 11 item 5: async_logging=true measured better (mmsctl bench request-costs; the numbers are in
    config/profiles.py and the README), so every profile and the rendered reference files keep it."""
    profile = profiles.build_profile(name, vcpus=4)
    assert profiles.properties(profile)["async_logging"] == "true"
    assert "\nasync_logging=true\n" in profiles.render_properties(profile)


@pytest.mark.unit
def test_limit_refuses_zero_requests(tmp_path):
    with pytest.raises(limit.UsageError):
        limit.run_limit(str(tmp_path), [PNG], requests=0)


# -- real runs -----------------------------------------------------------------------------------------
@pytest.mark.server
@pytest.mark.slow
def test_sweep_report_has_the_independent_limit_and_the_floor(model_store, cat_photo, tmp_path):
    out = str(tmp_path / "sweep")
    assert cli.main(["bench", "sweep", "--archive", os.path.join(model_store, "resnet18.mar"), "--input", cat_photo,
                     "--profiles", "cpu-latency", "--concurrency", "1", "--requests", "4", "--warmup", "1",
                     "--out", out]) == 0
    with open(os.path.join(out, "report.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    with open(os.path.join(out, "report.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    engines = report["limit"]["engines"]
    assert set(engines) == {"mxnet", "onnxruntime"} and all(e["available"] for e in engines.values())
    key = os.path.abspath(cat_photo)
    for entry in engines.values():
        figures = entry["inputs"][key]
        assert figures["requests"] == 4 and figures["forward_ms"] > 0 and figures["preprocess_ms"] > 0
        assert figures["total_ms"] >= figures["forward_ms"]
    assert "MKLDNN" in engines["mxnet"]["how"] and "the archive's ONNX model" in engines["onnxruntime"]["how"]
    # both engines run the same weights: the same top-1
    assert engines["mxnet"]["inputs"][key]["top1"] == engines["onnxruntime"]["inputs"][key]["top1"]
    best = report["limit"]["best"][key]
    assert engines[best]["inputs"][key]["total_ms"] == min(e["inputs"][key]["total_ms"] for e in engines.values())
    floor = report["floor"]["cpu-latency"]
    assert floor["ok"] == 4 and floor["p50_ms"] > 0 and floor["body_bytes"] == os.path.getsize(cat_photo)
    (line,) = report["breakdown"]["lines"]
    served = next(r for r in report["rows"] if r["kind"] == "server" and r["concurrency"] == 1)
    assert line["served_p50_ms"] == served["latency_ms"]["p50"] and line["floor_ms"] == floor["p50_ms"]
    assert line["served_over_best"] == pytest.approx(served["latency_ms"]["p50"] / line["inprocess_best_ms"])
    assert "## Independent in-process limit" in markdown and "%s (best)" % best in markdown
    assert "## Per-request breakdown (concurrency 1)" in markdown


@pytest.mark.server
@pytest.mark.slow
def test_docs_style_handler_answers_like_our_archive(model_store, servers, cat_photo, tmp_path):
    archive = os.path.join(model_store, "efficientnet-lite0.mar")
    store = tmp_path / "store"
    store.mkdir()
    os.link(archive, str(store / "efficientnet-lite0.mar"))
    path, how = reference.build_docs_archive(archive, str(store), "effnet-docs")
    if reference.model_archiver():
        assert how.startswith("model-archiver")
    state = servers.start(str(store), {"ours": "efficientnet-lite0.mar", "docs": "effnet-docs.mar"})
    with open(cat_photo, "rb") as handle:
        body = handle.read()
    answers = {}
    for model in ("ours", "docs"):
        response = requests.post("%s/predictions/%s" % (state.inference_url, model), data=body, timeout=60,
                                 headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 200, response.text
        answers[model] = response.json()
    assert answers["docs"][0]["class"] == answers["ours"][0]["class"] == "n02123159 tiger cat"
    assert answers["docs"][0]["probability"] == pytest.approx(answers["ours"][0]["probability"], abs=1e-4)
    assert [a["class"] for a in answers["docs"][:3]] == [a["class"] for a in answers["ours"][:3]]


@pytest.mark.slow
def test_limit_of_single_engine_archives(resnet_checkpoint, cat_photo, tmp_path):
    """An MXNet-only archive: onnxruntime runs on an export made here; an onnxruntime-only archive:
    the MXNet side is reported unavailable, with the reason, and the limit still has a best engine."""
    from mmsctl.archives import mxnet_checkpoint
    paths = {}
    for engine in ("mxnet", "onnxruntime"):
        paths[engine] = mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(
            name="r18-" + engine, symbol=resnet_checkpoint["symbol"], params=resnet_checkpoint["params"],
            synset=resnet_checkpoint["synset"], export_path=str(tmp_path), engine=engine))
    key = os.path.abspath(cat_photo)
    only_mxnet = limit.run_limit(paths["mxnet"], [cat_photo], requests=2, warmup=1, log_dir=str(tmp_path / "logs"))
    engines = only_mxnet["engines"]
    assert engines["mxnet"]["available"] and engines["onnxruntime"]["available"]
    assert "exported here from the archive's MXNet checkpoint" in engines["onnxruntime"]["how"]
    assert engines["mxnet"]["inputs"][key]["top1"] == engines["onnxruntime"]["inputs"][key]["top1"]
    only_ort = limit.run_limit(paths["onnxruntime"], [cat_photo], requests=2, warmup=1, log_dir=str(tmp_path / "logs"))
    assert only_ort["engines"]["mxnet"] == {"available": False, "why": "UsageError: the archive has no MXNet "
                                                                      "checkpoint (onnxruntime-only archive)"}
    assert only_ort["best"][key] == "onnxruntime"


@pytest.mark.unit
@pytest.mark.parametrize("name, workers, threads", [("cpu-latency", 1, 2), ("cpu-throughput", 2, 1)])
def test_the_comparison_plans_each_model_as_if_alone(tmp_path, name, workers, threads):
    """One model is busy at a time there, so each gets every core, like the in-process limit."""
    profile = bench_compare._profile(name, str(tmp_path), 2, {"a": "a.mar", "b": "b.mar", "c": "c.mar"})
    assert [(step.name, step.workers, step.threads) for step in profile.plan] == [
        (model, workers, threads) for model in "abc"]
    assert profile.environment["MMSCTL_THREADS"] == "a=%d,b=%d,c=%d" % (threads, threads, threads)
