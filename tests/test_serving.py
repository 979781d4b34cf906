"""End to end on real multi-model-server processes: the spine of the product.

checkpoint -> archive -> server -> handler -> answer, for the default archive
(real EfficientNet-Lite0 weights) and a Gluon model-zoo ResNet-18 checkpoint.
"""
import concurrent.futures
import json
import os
import subprocess

import pytest
import requests

from mmsctl.management import ManagementClient

from helpers import PIP_INSTALL_TIMEOUT_S, cached_venv, free_port

CAT_CLASSES = {"n02123045 tabby, tabby cat", "n02123159 tiger cat", "n02124075 Egyptian cat"}


def post(url, model, body=None, files=None):
    if files is not None:
        return requests.post("%s/predictions/%s" % (url, model), files=files, timeout=60)
    return requests.post("%s/predictions/%s" % (url, model), data=body, timeout=60,
                         headers={"Content-Type": "application/octet-stream"})


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_cat_photo_top5(default_server, cat_photo):
    response = post(default_server.inference_url, "efficientnet-lite0", read(cat_photo))
    assert response.status_code == 200, response.text
    top5 = response.json()
    assert len(top5) == 5
    assert all(set(entry) == {"probability", "class"} for entry in top5)
    assert [e["probability"] for e in top5] == sorted((e["probability"] for e in top5), reverse=True)
    assert {e["class"] for e in top5[:3]} == CAT_CLASSES, top5
    print("chelsea.png top-5:", json.dumps(top5))


def test_coffee_is_espresso(default_server, coffee_photo):
    top5 = post(default_server.inference_url, "efficientnet-lite0", read(coffee_photo)).json()
    assert top5[0]["class"] == "n07920052 espresso", top5


@pytest.mark.parametrize("model", ["efficientnet-lite0", "resnet18"])
def test_alone_batch_and_multipart_agree_exactly(default_server, model_store, cat_photo, coffee_photo, model):
    url = default_server.inference_url
    photos = [read(cat_photo), read(coffee_photo)]
    alone = [post(url, model, body).json() for body in photos]

    multipart = post(url, model, files=[("image%d" % i, ("p%d.png" % i, body, "image/png"))
                                        for i, body in enumerate(photos)])
    assert multipart.status_code == 200
    assert multipart.json() == alone

    batched = model + "-b4"
    client = ManagementClient(default_server.management_url)
    client.register(model + ".mar", name=batched, batch_size=4, max_batch_delay=2000, workers=1)
    try:
        assert client.describe(batched)["batchSize"] == 4
        bodies = [photos[i % 2] for i in range(4)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda b: post(url, batched, b), bodies))
        assert [a.status_code for a in answers] == [200] * 4
        assert [a.json() for a in answers] == [alone[i % 2] for i in range(4)]
    finally:
        # Not unregister: MMS 1.1.11 unpacks identical archive bytes into ONE folder (named by
        # their SHA-1) and unregistering either model deletes it under the other's feet.
        client.scale(batched, min_worker=0, max_worker=0)


def test_parts_sharing_a_name_keep_only_the_last(default_server, cat_photo, coffee_photo):
    """Documented MMS 1.1.11 behaviour: parts need distinct names."""
    url = default_server.inference_url
    same = post(url, "efficientnet-lite0", files=[("image", ("a.png", read(cat_photo), "image/png")),
                                                  ("image", ("b.png", read(coffee_photo), "image/png"))])
    assert same.status_code == 200
    answer = same.json()
    assert len(answer) == 1 and answer[0][0]["class"] == "n07920052 espresso"


def test_scale_synchronously_and_predict_through_cli(default_server, cat_photo, capsys):
    from mmsctl import cli
    assert cli.main(["scale", "efficientnet-lite0", "--min-worker", "1",
                     "--management-url", default_server.management_url]) == 0
    assert cli.main(["predict", "--model", "efficientnet-lite0", "--url", default_server.inference_url,
                     cat_photo]) == 0
    out = capsys.readouterr().out
    top5 = json.loads(out[out.index("["):])
    assert {e["class"] for e in top5[:3]} == CAT_CLASSES


# -- a stock MMS environment: multi-model-server, mxnet, numpy<1.24, Pillow, nothing of ours -----------
STOCK_PACKAGES = ["multi-model-server==1.1.11", "mxnet==1.9.1", "numpy==1.23.5", "Pillow==10.4.0"]


@pytest.fixture(scope="module")
def stock_python():
    python = cached_venv("stock-mms", [STOCK_PACKAGES])
    probe = subprocess.run([python, "-c", "import mmsctl"], capture_output=True)
    assert probe.returncode != 0, "the stock environment must not contain mmsctl"
    return python


def start_stock_mms(stock_python, model_store, folder, models, environ=None):
    """``multi-model-server`` of the stock environment, by hand, as a user would; returns (process, state)."""
    from mmsctl.server import ServerState
    inference, management = free_port(), free_port()
    (folder / "tmp").mkdir()
    config = folder / "config.properties"
    config.write_text("inference_address=http://127.0.0.1:%d\nmanagement_address=http://127.0.0.1:%d\n"
                      "model_store=%s\n" % (inference, management, model_store))
    bindir = os.path.dirname(stock_python)
    env = dict(os.environ, TEMP=str(folder / "tmp"), TMPDIR=str(folder / "tmp"), LOG_LOCATION=str(folder),
               METRICS_LOCATION=str(folder), PATH=bindir + os.pathsep + os.environ["PATH"], **(environ or {}))
    process = subprocess.Popen(
        [os.path.join(bindir, "multi-model-server"), "--start", "--foreground", "--mms-config", str(config),
         "--model-store", model_store, "--models"] + ["%s=%s" % item for item in models.items()],
        env=env, cwd=str(folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = ServerState(pid=process.pid, state_dir=str(folder), inference_url="http://127.0.0.1:%d" % inference,
                        management_url="http://127.0.0.1:%d" % management, profile="stock")
    return process, state


def engine_lines(folder):
    """The handler's "model NAME runs on ENGINE: why" lines from MMS's log of the worker output."""
    with open(os.path.join(str(folder), "mms_log.log"), encoding="utf-8", errors="replace") as handle:
        return sorted({line.split(" - ", 1)[-1].strip() for line in handle if " runs on " in line})


STOCK_MODELS = {"efficientnet-lite0": "efficientnet-lite0.mar", "resnet18": "resnet18.mar"}


@pytest.mark.server  # starts multi-model-server by hand
def test_archives_run_on_stock_multi_model_server(stock_python, model_store, tmp_path, cat_photo):
    """Start `multi-model-server` by hand from an environment without mmsctl and without onnxruntime:
    the archives (MXNet checkpoint + ONNX export) are served on MXNet."""
    import psutil
    from mmsctl.server import stop, wait_ready
    process, state = start_stock_mms(stock_python, model_store, tmp_path, STOCK_MODELS)
    try:
        wait_ready(state, list(STOCK_MODELS), 180, process=process)
        client = ManagementClient(state.management_url)
        status, _ = client.scale("efficientnet-lite0", min_worker=1)
        assert status == 200
        top5 = post(state.inference_url, "efficientnet-lite0", read(cat_photo)).json()
        assert {e["class"] for e in top5[:3]} == CAT_CLASSES
        answer = post(state.inference_url, "resnet18", read(cat_photo))
        assert answer.status_code == 200 and len(answer.json()) == 5
        worker_pythons = set()
        for proc in psutil.Process(process.pid).children(recursive=True):
            try:
                if "model_service_worker" in " ".join(proc.cmdline()):
                    worker_pythons.add(proc.exe())
            except psutil.Error:  # a worker that exited meanwhile
                continue
        bindir = os.path.dirname(stock_python)
        assert worker_pythons and all(exe.startswith(bindir) or os.path.realpath(exe) == os.path.realpath(
            stock_python) for exe in worker_pythons), worker_pythons
    finally:
        stop(state)
    because = "onnxruntime, the archive's first choice, is not installed in the server's Python"
    assert engine_lines(tmp_path) == ["model efficientnet-lite0 runs on mxnet: " + because,
                                      "model resnet18 runs on mxnet: " + because]


@pytest.fixture(scope="module")
def onnxruntime_path(stock_python, tmp_path_factory):
    """onnxruntime (requirements/onnxruntime.txt) in a folder of its own, for the stock environment's PYTHONPATH."""
    folder = tmp_path_factory.mktemp("stock-onnxruntime")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    install = subprocess.run([stock_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              "--no-deps", "--target", str(folder), "-r",
                              os.path.join(root, "requirements", "onnxruntime.txt")], capture_output=True, text=True,
                             timeout=PIP_INSTALL_TIMEOUT_S)  # with stock_python's venv, within INSTALL_TEST_TIMEOUT_S
    assert install.returncode == 0, install.stdout + install.stderr
    return str(folder)


@pytest.mark.server  # starts multi-model-server by hand
def test_stock_multi_model_server_with_onnxruntime_prefers_it(stock_python, onnxruntime_path, model_store, tmp_path,
                                                             cat_photo, coffee_photo):
    """The same stock server with onnxruntime installed: the archives run on it, except the model that
    MMSCTL_ENGINE forces onto MXNet (answers equal across engines: tests/test_engines.py)."""
    from mmsctl.server import stop, wait_ready
    environ = {"PYTHONPATH": onnxruntime_path, "MMSCTL_ENGINE": "resnet18=mxnet"}
    process, state = start_stock_mms(stock_python, model_store, tmp_path, STOCK_MODELS, environ)
    try:
        wait_ready(state, list(STOCK_MODELS), 180, process=process)
        for photo in (cat_photo, coffee_photo):
            answer = post(state.inference_url, "efficientnet-lite0", read(photo))
            assert answer.status_code == 200, answer.text
        top5 = post(state.inference_url, "efficientnet-lite0", read(cat_photo)).json()
        assert {e["class"] for e in top5[:3]} == CAT_CLASSES
        assert post(state.inference_url, "resnet18", read(cat_photo)).status_code == 200
        bad = post(state.inference_url, "efficientnet-lite0", b"\x00not an image" * 10)
        assert bad.status_code == 400 and "not a recognised image" in bad.json()["message"]
    finally:
        stop(state)
    assert engine_lines(tmp_path) == [
        "model efficientnet-lite0 runs on onnxruntime: the archive's first choice, installed; on the CPU",
        "model resnet18 runs on mxnet: MMSCTL_ENGINE forces it"]
