"""End to end on real multi-model-server processes: the spine of the product.

checkpoint -> archive -> server -> handler -> answer, for the default archive
(real EfficientNet-Lite0 weights) and a Gluon model-zoo ResNet-18 checkpoint.
"""
import concurrent.futures
import json
import os
import subprocess
import sys

import pytest
import requests

from mmsctl.management import ManagementClient

from conftest import free_port

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
def stock_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("stock-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
                             + STOCK_PACKAGES, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    probe = subprocess.run([python, "-c", "import mmsctl"], capture_output=True)
    assert probe.returncode != 0, "the stock environment must not contain mmsctl"
    return python


def test_archives_run_on_stock_multi_model_server(stock_python, model_store, tmp_path, cat_photo):
    """Start `multi-model-server` by hand from an environment without mmsctl, as a user would."""
    import psutil
    inference, management = free_port(), free_port()
    (tmp_path / "tmp").mkdir()
    config = tmp_path / "config.properties"
    config.write_text("inference_address=http://127.0.0.1:%d\nmanagement_address=http://127.0.0.1:%d\n"
                      "model_store=%s\n" % (inference, management, model_store))
    bindir = os.path.dirname(stock_python)
    env = dict(os.environ, TEMP=str(tmp_path / "tmp"), TMPDIR=str(tmp_path / "tmp"), LOG_LOCATION=str(tmp_path),
               METRICS_LOCATION=str(tmp_path), PATH=bindir + os.pathsep + os.environ["PATH"])
    process = subprocess.Popen(
        [os.path.join(bindir, "multi-model-server"), "--start", "--foreground", "--mms-config", str(config),
         "--model-store", model_store, "--models", "efficientnet-lite0=efficientnet-lite0.mar",
         "resnet18=resnet18.mar"],
        env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        from mmsctl.server import ServerState, wait_ready
        state = ServerState(pid=process.pid, state_dir=str(tmp_path), inference_url="http://127.0.0.1:%d" % inference,
                            management_url="http://127.0.0.1:%d" % management, profile="stock")
        wait_ready(state, ["efficientnet-lite0", "resnet18"], 180, process=process)
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
        assert worker_pythons and all(exe.startswith(bindir) or os.path.realpath(exe) == os.path.realpath(
            stock_python) for exe in worker_pythons), worker_pythons
    finally:
        from mmsctl.server import ServerState, stop
        stop(ServerState(pid=process.pid, state_dir=str(tmp_path), inference_url="", management_url="",
                         profile="stock"))
